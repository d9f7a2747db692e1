// Refusals happen at the HTTP upgrade, before a WebSocket exists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawDevice, connectDevice, metric, signIn, startHub, within } from './helpers.ts';

test('upgrade - no token is refused with 401 and WWW-Authenticate', async (t) => {
  const th = await startHub(t);
  const d = new RawDevice(th.url);
  const r = await within(d.refused, 3000, 'refusal');
  assert.equal(r.status, 401);
  assert.match(String(r.headers['www-authenticate']), /Bearer/);
  assert.equal(await metric(th, 'hub_upgrade_refusals_total', { status: '401', reason: 'no_token' }), 1);
});

test('upgrade - a wrong token is refused with 401', async (t) => {
  const th = await startHub(t);
  const good = th.tokens.get('dev-1')!;
  const wrong = good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  for (const token of [wrong, 'dev-1.short', 'nodot', `unknown-device.${good.split('.').pop()}`]) {
    const r = await within(new RawDevice(th.url, { token }).refused, 3000, 'refusal');
    assert.equal(r.status, 401, token);
  }
  assert.equal(await metric(th, 'hub_upgrade_refusals_total', { status: '401', reason: 'bad_token' }), 4);
});

test('upgrade - a disabled device is refused with 403', async (t) => {
  const th = await startHub(t);
  const file = { version: 1 as const, devices: { 'dev-1': { tokenHash: (await import('../src/auth/registry.ts')).hashToken(th.tokens.get('dev-1')!), tags: {}, disabled: true } } };
  th.registry.replace(file);
  const r = await within(new RawDevice(th.url, { token: th.tokens.get('dev-1') }).refused, 3000, 'refusal');
  assert.equal(r.status, 403);
});

test('upgrade - the token may come as a bearer.<token> subprotocol, which is never echoed', async (t) => {
  const th = await startHub(t);
  const d = new RawDevice(th.url, { token: th.tokens.get('dev-1'), via: 'subprotocol' });
  await within(d.opened, 3000, 'open');
  assert.equal(d.ws.protocol, 'iot.telemetry.v1');
  d.hello('dev-1');
  assert.ok(await d.next('welcome'));
  d.close();
});

test('upgrade - connections per address above the limit are refused with 429 and Retry-After', async (t) => {
  const th = await startHub(t, { config: { maxConnectionsPerAddress: 2, retryAfterMs: 3000 } });
  const a = await connectDevice(th, 'dev-1');
  const b = await connectDevice(th, 'dev-2');
  const r = await within(new RawDevice(th.url, { token: th.tokens.get('dev-3') }).refused, 3000, 'refusal');
  assert.equal(r.status, 429);
  const retry = Number(r.headers['retry-after']);
  assert.ok(retry >= 3 && retry <= 6, `Retry-After ${retry} is the base hint with up to 2x jitter`);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'per_address' }), 1);
  // Another loopback address is another address.
  const c = new RawDevice(th.url, { token: th.tokens.get('dev-3'), localAddress: '127.0.0.2' });
  await within(c.opened, 3000, 'open from 127.0.0.2');
  // Closing one frees a place.
  a.d.close();
  await a.d.closed;
  c.close();
  await c.closed;
  const again = await connectDevice(th, 'dev-1');
  again.d.close();
  b.d.close();
});

test('upgrade - admission control refuses new sessions above the rate with 503 and Retry-After', async (t) => {
  let now = 1_000_000;
  const th = await startHub(t, { config: { admissionRate: 1, admissionBurst: 2 }, deps: { now: () => now } });
  const a = await connectDevice(th, 'dev-1');
  const b = await connectDevice(th, 'dev-2');
  const r = await within(new RawDevice(th.url, { token: th.tokens.get('dev-3') }).refused, 3000, 'refusal');
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers['retry-after']) >= 1);
  assert.equal(await metric(th, 'hub_upgrade_refusals_total', { status: '503', reason: 'admission' }), 1);
  now += 1000; // one more token
  const c = await connectDevice(th, 'dev-3');
  for (const x of [a, b, c]) x.d.close();
});

test('upgrade - the total connection cap refuses with 503', async (t) => {
  const th = await startHub(t, { config: { maxConnections: 1 } });
  const a = await connectDevice(th, 'dev-1');
  const r = await within(new RawDevice(th.url, { token: th.tokens.get('dev-2') }).refused, 3000, 'refusal');
  assert.equal(r.status, 503);
  assert.match(r.body, /hub at its connection limit \(HUB_MAX_CONNECTIONS=1\)/, 'the refusal names the key');
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'max_connections' }), 1);
  a.d.close();
});

test('upgrade - a store that is unavailable refuses new sessions with 503', async (t) => {
  const th = await startHub(t);
  await th.store.close();
  const r = await within(new RawDevice(th.url, { token: th.tokens.get('dev-1') }).refused, 3000, 'refusal');
  assert.equal(r.status, 503);
  assert.match(r.body, /storage/);
});

test('http - /healthz says ok; /api/v1/status reports the binding and connections to operators; unknown paths are 404', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  const h = await fetch(`http://127.0.0.1:${th.port}/healthz`);
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: 'ok' });
  const cookie = await signIn(th);
  const body = await (await fetch(`http://127.0.0.1:${th.port}/api/v1/status`, { headers: { cookie } })).json() as { status: string; binding: string; connections: number; sessions: number };
  assert.equal(body.status, 'ok');
  assert.match(body.binding, /uWebSockets|uws/);
  assert.equal(body.connections, 1);
  assert.equal(body.sessions, 1);
  assert.equal((await fetch(`http://127.0.0.1:${th.port}/nope`, { headers: { cookie } })).status, 404);
  const m = await (await fetch(`http://127.0.0.1:${th.port}/metrics`, { headers: { cookie } })).text();
  assert.match(m, /hub_device_connections 1/);
  assert.match(m, /hub_spool_pressure 0/);
  assert.match(m, /hub_spool_bytes 0/);
  d.close();
});
