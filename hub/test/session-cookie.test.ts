// The operator session cookie: `__Host-hub_session` with Secure whenever
// browsers reach the hub over https (its own TLS, or HUB_TLS_PROXY), plain
// `hub_session` over http; the routes and /v1/live read it with one
// function, accept only the name for the mode, and treat the cookie sent
// twice as no session (cookie tossing).
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import test from 'node:test';
import WebSocket from 'ws';
import { LIVE_PATH, LIVE_SUBPROTOCOL } from '@telemetry/proto';
import { makeDevCert } from '../../scripts/dev-cert.ts';
import { servedOverHttps, sessionToken } from '../src/auth/operators.ts';
import { tempDir } from '../../test/support/fs.ts';
import { startHub, TEST_OPERATOR, within, type TestHub } from './helpers.ts';

const json = { 'Content-Type': 'application/json' };

async function signInRaw(th: TestHub): Promise<{ setCookie: string; token: string }> {
  if (!th.hub.operators.names().includes(TEST_OPERATOR.user)) await th.hub.operators.setPassword(TEST_OPERATOR.user, TEST_OPERATOR.password);
  const r = await fetch(`http://127.0.0.1:${th.port}/login`, { method: 'POST', headers: json, body: JSON.stringify(TEST_OPERATOR) });
  assert.equal(r.status, 200);
  const setCookie = r.headers.get('set-cookie')!;
  return { setCookie, token: /=([^;]*)/.exec(setCookie)![1]! };
}

const me = async (th: TestHub, cookie: string) => (await fetch(`http://127.0.0.1:${th.port}/api/v1/me`, { headers: { cookie } })).status;

/** 101 when /v1/live accepts the Cookie header, else the refusal's status. */
function liveStatus(th: TestHub, cookie: string): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${th.port}${LIVE_PATH}`, [LIVE_SUBPROTOCOL], { headers: { cookie }, perMessageDeflate: false });
  ws.on('error', () => { /* via the events below */ });
  return within(new Promise<number>((res) => {
    ws.once('open', () => { ws.close(); res(101); });
    ws.once('unexpected-response', (_q, r) => { res(r.statusCode ?? 0); ws.terminate(); });
  }), 3000, 'live upgrade');
}

test('session cookie - https mode is the hub\'s own TLS or HUB_TLS_PROXY; the reader takes only that mode\'s name, once', () => {
  assert.equal(servedOverHttps({ tlsCert: undefined, tlsProxy: false }), false);
  assert.equal(servedOverHttps({ tlsCert: '/certs/cert.pem', tlsProxy: false }), true);
  assert.equal(servedOverHttps({ tlsCert: undefined, tlsProxy: true }), true);
  assert.equal(sessionToken('a=1; hub_session=tok; b=2', false), 'tok');
  assert.equal(sessionToken('__Host-hub_session=tok', false), null);
  assert.equal(sessionToken('__Host-hub_session=tok', true), 'tok');
  assert.equal(sessionToken('hub_session=tok', true), null, 'over https only the __Host- cookie counts');
  assert.equal(sessionToken('hub_session=tossed; __Host-hub_session=tok', true), 'tok', 'a tossed plain cookie does not matter over https');
  assert.equal(sessionToken('__host-hub_session=tok', true), null, 'the prefix is matched exactly');
  assert.equal(sessionToken('hub_session=a; hub_session=b', false), null);
  assert.equal(sessionToken('hub_session=a;hub_session=a', false), null);
  assert.equal(sessionToken('__Host-hub_session=a; __Host-hub_session=b', true), null);
  assert.equal(sessionToken('', false), null);
});

test('session cookie - behind a TLS proxy (HUB_TLS_PROXY): __Host-hub_session with Secure, Path=/ and no Domain; the plain name is no session', async (t) => {
  const th = await startHub(t, { config: { tlsProxy: true } });
  const { setCookie, token } = await signInRaw(th);
  assert.match(setCookie, /^__Host-hub_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/);
  assert.doesNotMatch(setCookie, /Domain=/i);
  assert.equal(await me(th, `__Host-hub_session=${token}`), 200);
  assert.equal(await me(th, `hub_session=${token}`), 401);
  assert.equal(await liveStatus(th, `__Host-hub_session=${token}`), 101);
  assert.equal(await liveStatus(th, `hub_session=${token}`), 401);
  const out = await fetch(`http://127.0.0.1:${th.port}/api/v1/logout`, { method: 'POST', headers: { cookie: `__Host-hub_session=${token}` } });
  assert.equal(out.status, 204);
  assert.equal(out.headers.get('set-cookie'), '__Host-hub_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure');
  assert.equal(await me(th, `__Host-hub_session=${token}`), 401, 'signed out');
});

test('session cookie - the hub\'s own TLS: __Host-hub_session with Secure', async (t) => {
  const dir = tempDir(t, 'cookie-tls-');
  const cert = makeDevCert(dir);
  const th = await startHub(t, { config: { tlsCert: cert.certFile, tlsKey: cert.keyFile } });
  await th.hub.operators.setPassword(TEST_OPERATOR.user, TEST_OPERATOR.password);
  const setCookie = await new Promise<string>((res, rej) => {
    const req = request({ host: '127.0.0.1', port: th.port, path: '/login', method: 'POST', ca: readFileSync(cert.caFile), headers: json }, (r) => {
      r.resume();
      res(String(r.headers['set-cookie']?.[0] ?? `status ${r.statusCode}`));
    });
    req.on('error', rej);
    req.end(JSON.stringify(TEST_OPERATOR));
  });
  assert.match(setCookie, /^__Host-hub_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure$/);
});

test('session cookie - plain http: hub_session without Secure; our cookie twice in one header is no session, in the routes and on /v1/live', async (t) => {
  const th = await startHub(t);
  const { setCookie, token } = await signInRaw(th);
  assert.match(setCookie, /^hub_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/);
  assert.equal(await me(th, `theme=dark; hub_session=${token}`), 200);
  assert.equal(await liveStatus(th, `hub_session=${token}`), 101);
  for (const cookie of [`hub_session=${token}; hub_session=planted`, `hub_session=planted; hub_session=${token}`, `hub_session=${token}; hub_session=${token}`]) {
    assert.equal(await me(th, cookie), 401, cookie);
    assert.equal(await liveStatus(th, cookie), 401, cookie);
    const page = await fetch(`http://127.0.0.1:${th.port}/`, { headers: { cookie }, redirect: 'manual' });
    assert.equal(page.status, 303, 'the dashboard sends the browser to sign in');
  }
});
