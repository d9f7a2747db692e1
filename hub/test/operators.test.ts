// Operator sign-in: hashed accounts, session cookies, what needs a session
// (everything but /healthz, /readyz and /login), failed-attempt limits, cross-origin
// refusals, the dashboard's files, and the alarm-rule API.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { Operators } from '../src/auth/operators.ts';
import { LiveState } from '../src/live/state.ts';
import { signIn, startHub, TEST_OPERATOR } from './helpers.ts';

const json = { 'Content-Type': 'application/json' };

test('operators - accounts and sessions are stored hashed and survive a restart; sign-out and new passwords end sessions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ops-'));
  const file = join(dir, 'operators.json'), sessionsFile = join(dir, 'sessions.json');
  const a = new Operators({ file, sessionsFile, sessionTtlMs: 60_000 });
  await a.setPassword('alice', 'correct horse battery');
  const r = await a.signIn('alice', 'correct horse battery', '10.0.0.1');
  assert.ok(r.ok);
  assert.ok(!readFileSync(file, 'utf8').includes('correct horse'), 'no plaintext password on disk');
  assert.ok(!readFileSync(sessionsFile, 'utf8').includes(r.token), 'no plaintext session token on disk');
  assert.match(readFileSync(file, 'utf8'), /"password": "scrypt\$32768\$8\$1\$/);
  const b = new Operators({ file, sessionsFile, sessionTtlMs: 60_000 });
  assert.equal(b.check(r.token)?.user, 'alice', 'a restarted hub keeps the session');
  await b.signOut(r.token);
  assert.equal(b.check(r.token), null);
  const r2 = await b.signIn('alice', 'correct horse battery', '10.0.0.1');
  assert.ok(r2.ok);
  await b.ensurePassword('alice', 'correct horse battery');
  assert.equal(b.check(r2.token)?.user, 'alice', 'setting the same password again (HUB_ADMIN_PASSWORD at each start) keeps sessions');
  await b.ensurePassword('alice', 'a new password!');
  assert.equal(b.check(r2.token), null, 'a new password ends existing sessions');
  await assert.rejects(b.setPassword('alice', 'short'), /8 to 1024/);
  await assert.rejects(b.setPassword('bad name', 'long enough'), /operator name/);
  // Expiry.
  let now = 1000;
  const c = new Operators({ file, sessionsFile: null, sessionTtlMs: 5000, now: () => now });
  const r3 = await c.signIn('alice', 'a new password!', 'x');
  assert.ok(r3.ok);
  now += 5001;
  assert.equal(c.check(r3.token), null);
  // A password that cannot be saved does not apply either.
  rmSync(file);
  mkdirSync(file);
  await assert.rejects(c.setPassword('alice', 'yet another password'));
  assert.ok((await c.signIn('alice', 'a new password!', 'y')).ok, 'the old password still works');
  rmSync(file, { recursive: true });
  writeFileSync(file, '{"operators":[{"name":"x","password":"plain"}]}');
  assert.throws(() => new Operators({ file, sessionsFile: null, sessionTtlMs: 1 }), /scrypt password hash/);
});

test('operators - sign-in: cookie flags, wrong password, unknown name, failed-attempt limit, cross-origin, oversized body', async (t) => {
  const th = await startHub(t);
  const base = `http://127.0.0.1:${th.port}`;
  await th.hub.operators.setPassword(TEST_OPERATOR.user, TEST_OPERATOR.password);
  const ok = await fetch(`${base}/login`, { method: 'POST', headers: json, body: JSON.stringify(TEST_OPERATOR) });
  assert.equal(ok.status, 200);
  const cookie = ok.headers.get('set-cookie')!;
  assert.match(cookie, /^hub_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);

  // The form: 303 to / on success, the page again with a message on failure.
  const form = await fetch(`${base}/login`, { method: 'POST', redirect: 'manual', body: new URLSearchParams(TEST_OPERATOR) });
  assert.equal(form.status, 303);
  assert.equal(form.headers.get('location'), '/');
  const wrong = await fetch(`${base}/login`, { method: 'POST', body: new URLSearchParams({ user: 'admin', password: 'nope-nope' }) });
  assert.equal(wrong.status, 401);
  assert.match(await wrong.text(), /wrong name or password/);
  assert.equal(wrong.headers.get('set-cookie'), null);

  const other = { 'Content-Type': 'application/json' };
  const unknown = await fetch(`${base}/login`, { method: 'POST', headers: other, body: JSON.stringify({ user: 'mallory', password: 'whatever1' }) });
  assert.equal(unknown.status, 401);
  assert.deepEqual(await unknown.json(), { error: 'wrong name or password' });
  // 5 failures from one address (2 so far), then 429 with a retry hint, even for the right password.
  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${base}/login`, { method: 'POST', headers: other, body: JSON.stringify({ user: 'admin', password: `guess-${i}` }) })).status, 401);
  const limited = await fetch(`${base}/login`, { method: 'POST', headers: other, body: JSON.stringify(TEST_OPERATOR) });
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  assert.equal(await th.hub.metrics.value('hub_operator_sign_ins_total', { result: 'limited' }), 1);

  const cross = await fetch(`${base}/login`, { method: 'POST', headers: { ...json, origin: 'https://evil.example' }, body: JSON.stringify(TEST_OPERATOR) });
  assert.equal(cross.status, 403);
  const big = await fetch(`${base}/login`, { method: 'POST', headers: json, body: 'x'.repeat(100_000) });
  assert.equal(big.status, 413);
  const garbage = await fetch(`${base}/login`, { method: 'POST', headers: json, body: '{nope' });
  assert.equal(garbage.status, 400);
});

test('operators - nothing but /healthz, /readyz and /login without a session; /metrics also takes HUB_METRICS_TOKEN', async (t) => {
  const dist = mkdtempSync(join(tmpdir(), 'dist-'));
  mkdirSync(join(dist, 'assets'));
  writeFileSync(join(dist, 'index.html'), '<!doctype html><title>dash</title>');
  writeFileSync(join(dist, 'assets', 'app-abc123.js'), 'console.log(1)');
  const th = await startHub(t, { config: { metricsToken: 'scrape-secret', dashboardDir: dist } });
  const base = `http://127.0.0.1:${th.port}`;
  const get = (p: string, headers: Record<string, string> = {}) => fetch(`${base}${p}`, { headers, redirect: 'manual' });

  assert.equal((await get('/healthz')).status, 200);
  assert.equal((await get('/readyz')).status, 200);
  const login = await get('/login');
  assert.equal(login.status, 200);
  const page = await login.text();
  assert.match(page, /<form method="post" action="\/login"/);
  assert.doesNotMatch(page, /dev-1|temperature/, 'the sign-in page shows no data');
  assert.equal((await get('/')).status, 303);
  assert.equal((await get('/')).headers.get('location'), '/login');
  for (const p of ['/assets/app-abc123.js', '/api/v1/me', '/api/v1/status', '/api/v1/history?metric=temperature', '/api/v1/alarms/rules', '/metrics']) {
    assert.equal((await get(p)).status, 401, p);
  }
  assert.equal((await get('/metrics', { authorization: 'Bearer wrong' })).status, 401);
  assert.equal((await get('/metrics', { authorization: 'Bearer scrape-secret' })).status, 200);

  const cookie = await signIn(th);
  assert.deepEqual(await (await get('/api/v1/me', { cookie })).json(), { user: 'admin', role: 'admin' });
  const index = await get('/', { cookie });
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  assert.equal(await index.text(), '<!doctype html><title>dash</title>');
  const asset = await get('/assets/app-abc123.js', { cookie });
  assert.equal(asset.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.match(asset.headers.get('cache-control')!, /immutable/);
  assert.equal((await get('/assets/app-abc123.js', { cookie, 'if-none-match': asset.headers.get('etag')! })).status, 304);
  assert.equal((await get('/assets/nope.js', { cookie })).status, 404);
  assert.equal((await get('/metrics', { cookie })).status, 200);

  // Sign out: the cookie is cleared and dead.
  const out = await fetch(`${base}/api/v1/logout`, { method: 'POST', headers: { cookie } });
  assert.equal(out.status, 204);
  assert.match(out.headers.get('set-cookie')!, /hub_session=; .*Max-Age=0/);
  assert.equal((await get('/api/v1/me', { cookie })).status, 401);
});

test('operators - a signed-in operator gets 503 with instructions when the dashboard is not built', async (t) => {
  const th = await startHub(t, { config: { dashboardDir: mkdtempSync(join(tmpdir(), 'empty-')) } });
  const r = await fetch(`http://127.0.0.1:${th.port}/`, { headers: { cookie: await signIn(th) } });
  assert.equal(r.status, 503);
  assert.match(await r.text(), /npm run build -w dashboard/);
});

test('alarm rules API: validation, create, list, delete; cross-origin writes refused', async (t) => {
  const th = await startHub(t);
  const cookie = await signIn(th);
  const url = `http://127.0.0.1:${th.port}/api/v1/alarms/rules`;
  const post = (body: unknown, headers: Record<string, string> = {}) => fetch(url, { method: 'POST', headers: { ...json, cookie, ...headers }, body: JSON.stringify(body) });
  const bad = await post({ name: 'x', metric: 'temperature', op: '=>', threshold: 1 });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: string }).error, /op: one of/);
  assert.equal((await fetch(url, { method: 'POST', headers: { ...json, cookie }, body: '{' })).status, 400);
  assert.equal((await post({ name: 'Hot', metric: 'temperature', op: '>', threshold: 80, forS: 10 }, { origin: 'https://evil.example' })).status, 403);
  const created = await post({ name: 'Hot', metric: 'temperature', group: 'site=test', op: '>', threshold: 80, forS: 10 });
  assert.equal(created.status, 201);
  const { rule } = await created.json() as { rule: { id: string } };
  const list = await (await fetch(url, { headers: { cookie } })).json() as { rules: { id: string; group: string; forS: number }[] };
  assert.deepEqual(list.rules.map((r) => [r.id, r.group, r.forS]), [[rule.id, 'site=test', 10]]);
  assert.equal((await fetch(`${url}/${rule.id}`, { method: 'DELETE', headers: { cookie } })).status, 204);
  assert.equal((await fetch(`${url}/${rule.id}`, { method: 'DELETE', headers: { cookie } })).status, 404);
});

test('alarm rules API: a rules file that cannot be written gives 500 and changes nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rules-'));
  const file = join(dir, 'rules.json');
  const live = new LiveState({ maxSeries: 100, maxDevices: 100, alarmRulesFile: file });
  const th = await startHub(t, { deps: { live } });
  const cookie = await signIn(th);
  const url = `http://127.0.0.1:${th.port}/api/v1/alarms/rules`;
  const made = await fetch(url, { method: 'POST', headers: { ...json, cookie }, body: JSON.stringify({ name: 'Hot', metric: 'temperature', op: '>', threshold: 80 }) });
  const { rule } = await made.json() as { rule: { id: string } };
  rmSync(file);
  mkdirSync(file); // the next write fails
  const post = await fetch(url, { method: 'POST', headers: { ...json, cookie }, body: JSON.stringify({ name: 'Cold', metric: 'temperature', op: '<', threshold: 0 }) });
  assert.equal(post.status, 500);
  assert.equal((await fetch(`${url}/${rule.id}`, { method: 'DELETE', headers: { cookie } })).status, 500);
  const list = await (await fetch(url, { headers: { cookie } })).json() as { rules: { name: string }[] };
  assert.deepEqual(list.rules.map((r) => r.name), ['Hot']);
});
