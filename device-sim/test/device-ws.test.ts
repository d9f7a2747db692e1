// device-sim/ tests: the device over the real `ws` client against the
// scripted fake hub, for what only a real upgrade shows (request headers,
// subprotocols, the close handshake, the handshake timeout), and the
// wsConnector's side of the SocketListener contract.
// Imports: node:test, node, ws, @telemetry/proto, and this package's socket and test helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { CloseCode, encodeDeviceMessage, encodeHubMessage } from '@telemetry/proto';
import { SocketState, wsConnector, type SocketListener } from '../src/socket.ts';
import { device, fakeHub, flush, welcome } from './fake-hub.ts';

test('device - Hello first, token in the Authorization header, only the protocol subprotocol offered', async (t) => {
  const hub = await fakeHub(t);
  const before = Date.now();
  device(t, hub.url).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const c = hub.conns[0]!;
  assert.equal(c.req.headers.authorization, 'Bearer dev-1.secret');
  assert.equal(c.req.headers['sec-websocket-protocol'], 'iot.telemetry.v1');
  assert.equal(c.req.headers['sec-websocket-extensions'], undefined, 'no permessage-deflate offered');
  const h = c.msgs[0]!.hello!;
  assert.equal(h.deviceId, 'dev-1');
  assert.equal(h.protocolVersion, 1);
  assert.equal(h.firmware, 'device-sim/0.1');
  assert.ok(Number(h.deviceTimeMs) >= before && Number(h.deviceTimeMs) <= Date.now());
  await flush(c);
  assert.equal(c.frames.length, 1, 'nothing before Welcome but Hello');
});

test('device - subprotocol auth offers bearer.<token> and sends no header', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { authVia: 'subprotocol' }).start();
  await hub.until(() => hub.conns.length === 1, 'connection');
  assert.equal(hub.conns[0]!.req.headers.authorization, undefined);
  assert.equal(hub.conns[0]!.req.headers['sec-websocket-protocol'], 'iot.telemetry.v1,bearer.dev-1.secret');
});

test('device - stop() closes with 1000 and does not come back', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await once(d, 'welcome');
  const closed = once(hub.conns[0]!.ws, 'close');
  await d.stop();
  const [code] = (await closed) as [number];
  assert.equal(code, 1000);
  assert.equal(d.stopped, true);
  assert.equal(d.connected, false);
  assert.equal(d.counters.reconnects, 0);
  assert.equal(d.counters.closes['1000'], 1);
});

test('device - a stuck handshake is closed after welcomeTimeoutMs, then it reconnects', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { welcomeTimeoutMs: 200 });
  d.start();
  await hub.until(() => hub.conns.length === 2, 'a second attempt', 4000);
  assert.equal(d.counters.closes['welcome-timeout'], 1);
});

/** A SocketListener that records what the connector reported, in order. */
function recorder() {
  const events: string[] = [];
  const listener: SocketListener = {
    onOpen: () => events.push('open'),
    onMessage: (data, isBinary) => events.push(`message ${isBinary ? 'binary' : 'text'} ${data.length}`),
    onPing: () => events.push('ping'),
    onRefused: (status, retryAfter) => events.push(`refused ${status} retry-after=${String(retryAfter)}`),
    onError: (code) => events.push(`error ${code}`),
    onClose: (code, reason) => events.push(`close ${code} ${reason}`),
  };
  return { events, listener };
}

const request = (url: string) => ({ url, protocols: ['iot.telemetry.v1'], headers: { authorization: 'Bearer dev-1.secret' }, handshakeTimeoutMs: 5000 });

test('socket - the ws connector reports a refusal with its Retry-After header, then the close', async (t) => {
  const hub = await fakeHub(t, { refuse: () => ({ status: 503, retryAfter: 7 }) });
  const { events, listener } = recorder();
  wsConnector(request(hub.url), listener);
  await hub.until(() => events.some((e) => e.startsWith('close')), 'the close');
  assert.deepEqual(events.filter((e) => !e.startsWith('error')), ['refused 503 retry-after=7', 'close 1006 ']);
});

test('socket - the ws connector reports open, binary and text frames, pings, and the close code and reason', async (t) => {
  const hub = await fakeHub(t);
  const { events, listener } = recorder();
  const socket = wsConnector(request(hub.url), listener);
  assert.equal(socket.readyState, SocketState.CONNECTING);
  await hub.until(() => events.includes('open') && hub.conns.length === 1, 'open');
  assert.equal(socket.readyState, SocketState.OPEN);
  const c = hub.conns[0]!;
  const welcomeBytes = encodeHubMessage({ welcome: { sessionId: 's', window: 1, credit: 1 } });
  c.ws.send(welcomeBytes);
  c.ws.send('text');
  c.ws.ping();
  await hub.until(() => events.length === 4, 'message, text, ping');
  // What the device sends: a string goes as a text frame, bytes as binary.
  socket.send('{"hello":"I am JSON"}');
  socket.send(encodeDeviceMessage({ hello: { deviceId: 'dev-1', protocolVersion: 1 } }));
  await hub.until(() => c.frames.length === 2, 'two frames');
  assert.deepEqual(c.frames.map((f) => f.isBinary), [false, true]);
  c.ws.close(CloseCode.TRY_AGAIN_LATER, 'storage full; retry-after=400');
  await hub.until(() => events.some((e) => e.startsWith('close')), 'the close');
  assert.deepEqual(events, ['open', `message binary ${welcomeBytes.length}`, 'message text 4', 'ping', 'close 1013 storage full; retry-after=400']);
  assert.equal(socket.readyState, SocketState.CLOSED);
});

test('socket - the ws connector reports a network error by its code', async (t) => {
  const { events, listener } = recorder();
  // Nothing listens on port 9 here.
  wsConnector(request('ws://127.0.0.1:9/v1/devices'), listener);
  const end = Date.now() + 3000;
  while (!events.some((e) => e.startsWith('close')) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(events, ['error ECONNREFUSED', 'close 1006 ']);
  void t;
});
