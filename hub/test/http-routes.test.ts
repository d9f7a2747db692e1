// The HTTP surface as attachHttp composes it: every route registered once,
// wildcards last and in their order (uWS tries wildcards in registration
// order); request bodies checked against their schemas, 400 with a message
// that names the field.
import assert from 'node:assert/strict';
import test from 'node:test';
import type { UwsTypes } from '../src/core/uws.ts';
import { attachHttp, type HttpDeps } from '../src/http/routes.ts';
import { signIn, startHub, TEST_OPERATOR } from './helpers.ts';

const json = { 'Content-Type': 'application/json' };

test('http routes - registered once each, exact and parameter routes before the wildcards, wildcards in their order', () => {
  const routes: string[] = [];
  const app: UwsTypes.TemplatedApp = new Proxy({} as UwsTypes.TemplatedApp, {
    get: (_target, method: string) => (pattern: string) => { routes.push(`${method} ${pattern}`); return app; },
  });
  // Every area attached: the registry and management routes need their deps to be there at all.
  attachHttp(app, { devices: {}, management: {} } as HttpDeps);
  const wildcards = ['any /api/*', 'get /*', 'any /*'];
  assert.deepEqual(routes.slice(-wildcards.length), wildcards, 'the catch-alls come last, /api/* first');
  assert.deepEqual(routes.slice(0, -wildcards.length).sort(), [
    'del /api/v1/alarms/rules/:id', 'del /api/v1/config-groups/:key', 'del /api/v1/devices/:id',
    'get /api/v1/alarms/rules', 'get /api/v1/audit', 'get /api/v1/commands/:id', 'get /api/v1/config-groups',
    'get /api/v1/devices', 'get /api/v1/devices/:id', 'get /api/v1/devices/:id/commands', 'get /api/v1/devices/:id/config',
    'get /api/v1/history', 'get /api/v1/me', 'get /api/v1/status', 'get /healthz', 'get /login', 'get /metrics', 'get /readyz',
    'patch /api/v1/devices/:id', 'post /api/v1/alarms/rules', 'post /api/v1/commands', 'post /api/v1/devices',
    'post /api/v1/devices/:id/commands', 'post /api/v1/devices/:id/rotate', 'post /api/v1/devices/bulk', 'post /api/v1/logout', 'post /login',
    'put /api/v1/config-groups/:key', 'put /api/v1/devices/:id/config',
  ]);
  assert.ok(routes.slice(0, -wildcards.length).every((r) => !r.includes('*')));
});

test('http routes - sign-in bodies: what is missing or of the wrong type is 400 and named; the form keeps the name', async (t) => {
  const th = await startHub(t);
  await th.hub.operators.setPassword(TEST_OPERATOR.user, TEST_OPERATOR.password);
  const base = `http://127.0.0.1:${th.port}`;
  const postJson = async (body: string) => {
    const r = await fetch(`${base}/login`, { method: 'POST', headers: json, body });
    return { status: r.status, body: await r.json() as { error?: string } };
  };
  assert.deepEqual(await postJson(JSON.stringify({ user: 'admin' })), { status: 400, body: { error: 'password: required' } });
  assert.deepEqual(await postJson(JSON.stringify({ user: 'admin', password: '' })), { status: 400, body: { error: 'password: required' } });
  assert.deepEqual(await postJson(JSON.stringify({ user: 5, password: 'x' })), { status: 400, body: { error: 'user: must be a string' } });
  assert.deepEqual(await postJson(JSON.stringify({})), { status: 400, body: { error: 'user: required (and 1 more)' } });
  for (const notAnObject of ['null', '5', '"admin"', '[]', '{nope']) {
    assert.deepEqual(await postJson(notAnObject), { status: 400, body: { error: 'expected JSON {"user","password"} or a form' } }, notAnObject);
  }
  const form = await fetch(`${base}/login`, { method: 'POST', body: new URLSearchParams({ user: 'night-shift' }) });
  assert.equal(form.status, 400);
  const page = await form.text();
  assert.match(page, /data-testid="login-error">password: required</);
  assert.match(page, /value="night-shift"/, 'the form keeps the name');
  // None of these reached a password check or a limit.
  assert.equal((await postJson(JSON.stringify(TEST_OPERATOR))).status, 200);
});

test('http routes - alarm-rule bodies: not JSON, not an object, a bad field are 400 with the reason; nothing is added', async (t) => {
  const th = await startHub(t);
  const cookie = await signIn(th);
  const url = `http://127.0.0.1:${th.port}/api/v1/alarms/rules`;
  const post = async (body: string) => {
    const r = await fetch(url, { method: 'POST', headers: { ...json, cookie }, body });
    return { status: r.status, body: await r.json() as { error?: string } };
  };
  const notJson = await post('{');
  assert.equal(notJson.status, 400);
  assert.match(notJson.body.error!, /^request body is not JSON: /);
  assert.deepEqual(await post('[1]'), { status: 400, body: { error: 'a rule is an object' } });
  assert.deepEqual(await post(JSON.stringify({ name: 'Hot', metric: 'temperature', op: '>', threshold: 'hot' })), { status: 400, body: { error: 'threshold: a finite number' } });
  assert.deepEqual(await post(JSON.stringify({ name: 'Hot', metric: 'temperature', op: '>', threshold: 1, group: 'site' })), { status: 400, body: { error: 'group: empty (whole fleet) or key=value, e.g. site=north' } });
  const list = await (await fetch(url, { headers: { cookie } })).json() as { rules: unknown[] };
  assert.deepEqual(list.rules, []);
});
