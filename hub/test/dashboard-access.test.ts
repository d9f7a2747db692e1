// The dashboard's files and the API to a client without a session: the
// answer depends on the URL alone (pages go to /login, everything else is
// 401), so it does not tell which files or endpoints exist. Every HTML file
// of the dashboard is served with a Content-Security-Policy.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { DASHBOARD_CSP } from '../src/http/static.ts';
import { signIn, startHub } from './helpers.ts';

function dist(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dist-'));
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>dash</title>');
  writeFileSync(join(dir, 'help.html'), '<!doctype html><title>help</title>');
  writeFileSync(join(dir, 'assets', 'app-abc123.js'), 'console.log(1)');
  return dir;
}

test('dashboard access - without a session a real path and a made-up one get the same answer', async (t) => {
  const th = await startHub(t, { config: { dashboardDir: dist() } });
  const base = `http://127.0.0.1:${th.port}`;
  const answer = async (path: string, method = 'GET') => {
    const r = await fetch(`${base}${path}`, { method, redirect: 'manual' });
    return { status: r.status, location: r.headers.get('location'), type: r.headers.get('content-type'), body: await r.text() };
  };
  const pairs: [string, string, string?][] = [
    ['/assets/app-abc123.js', '/assets/nope-000000.js'],
    ['/index.html', '/nope.html'],
    ['/help.html', '/nope/deeper.html'],
    ['/api/v1/me', '/api/v1/nope'],
    ['/api/v1/alarms/rules', '/api/v2/anything'],
    ['/api/v1/alarms/rules', '/api/v1/nope', 'POST'],
    ['/metrics', '/metricz'],
  ];
  for (const [real, madeUp, method] of pairs) {
    const a = await answer(real, method), b = await answer(madeUp, method);
    assert.ok(a.status === 401 || a.status === 303, `${real}: ${a.status}`);
    if (a.status === 303) assert.equal(a.location, '/login');
    // /metrics names its bearer token; the made-up path cannot know to.
    if (real === '/metrics') assert.equal(b.status, 401);
    else assert.deepEqual(b, a, `${method ?? 'GET'} ${real} and ${madeUp} answer alike`);
  }
  assert.equal((await answer('/')).location, '/login');
  assert.equal((await answer('/nope', 'DELETE')).status, 401);

  // Signed in, what does not exist says so.
  const cookie = await signIn(th);
  const withSession = (p: string, method = 'GET') => fetch(`${base}${p}`, { method, headers: { cookie } });
  assert.equal((await withSession('/assets/nope-000000.js')).status, 404);
  assert.equal((await withSession('/nope.html')).status, 404);
  assert.equal((await withSession('/api/v1/nope')).status, 404);
  assert.equal((await withSession('/nope', 'DELETE')).status, 404);
});

test('dashboard access - every HTML file of the dashboard has a Content-Security-Policy; the sign-in page its own', async (t) => {
  const th = await startHub(t, { config: { dashboardDir: dist() } });
  const base = `http://127.0.0.1:${th.port}`;
  const cookie = await signIn(th);
  for (const p of ['/', '/index.html', '/help.html']) {
    const r = await fetch(`${base}${p}`, { headers: { cookie } });
    assert.equal(r.status, 200, p);
    assert.equal(r.headers.get('content-security-policy'), DASHBOARD_CSP, p);
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
  }
  for (const directive of ["default-src 'self'", "script-src 'self' 'wasm-unsafe-eval'", "connect-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data:", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]) {
    assert.ok(DASHBOARD_CSP.includes(directive), directive);
  }
  const login = await fetch(`${base}/login`);
  const csp = login.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /form-action 'self'/);
});
