// The simulated device against a scripted fake hub (a `ws` server speaking
// the protocol), so each device rule can be driven exactly.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, closeReason, decodeDeviceMessage, encodeHubMessage, type DeviceMessage } from '@telemetry/proto';
import { SimDevice, type SimDeviceOptions } from '../src/device.ts';
import { Battery, Humidity, Pressure, Temperature, defaultSensors, prng } from '../src/sensors.ts';
import { Reservoir, expandAddresses } from '../src/index.ts';

interface Conn { ws: WebSocket; got: DeviceMessage[]; req: IncomingMessage }

/** A fake hub: records every connection and message; the test decides the replies. */
async function fakeHub(t: TestContext, opts: { refuse?: (n: number) => { status: number; retryAfter?: number } | null } = {}) {
  const conns: Conn[] = [];
  let attempts = 0;
  const waiters: (() => void)[] = [];
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    attempts++;
    const r = opts.refuse?.(attempts);
    if (r) {
      socket.end(`HTTP/1.1 ${r.status} Refused\r\n${r.retryAfter ? `Retry-After: ${r.retryAfter}\r\n` : ''}Content-Length: 0\r\nConnection: close\r\n\r\n`);
      for (const w of waiters.splice(0)) w();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c: Conn = { ws, got: [], req };
      conns.push(c);
      ws.on('message', (d: Buffer) => { c.got.push(decodeDeviceMessage(d)); for (const w of waiters.splice(0)) w(); });
      for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => { for (const c of conns) c.ws.terminate(); wss.close(); server.close(); });
  const port = (server.address() as { port: number }).port;
  const until = async (cond: () => boolean, ms = 5000, what = 'condition') => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 20); });
    }
  };
  return { url: `ws://127.0.0.1:${port}/v1/devices`, conns, until, get attempts() { return attempts; } };
}

function welcome(ws: WebSocket, lastSeq: number, credit = 32, window = 32) {
  ws.send(encodeHubMessage({ welcome: { sessionId: 's', protocolVersion: 1, window, credit, lastSeq, limits: { maxMessageBytes: 262_144, maxBatchReadings: 10_000 } } }));
}
const batches = (c: Conn) => c.got.filter((m) => m.batch).map((m) => m.batch!);

function device(t: TestContext, url: string, extra: Partial<SimDeviceOptions> = {}): SimDevice {
  const d = new SimDevice({ id: 'dev-1', token: 'dev-1.secret', url, rate: 20, batchIntervalMs: 50, backoffBaseMs: 20, backoffCapMs: 100, ...extra });
  t.after(() => d.stop());
  return d;
}

/** Drives the device's sampling without waiting for a fleet ticker. */
function drive(t: TestContext, d: SimDevice): void {
  const timer = setInterval(() => d.tick(), 10);
  t.after(() => clearInterval(timer));
}

test('device - Hello first, with the token in the Authorization header', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.got.length === 1, 3000, 'hello');
  const c = hub.conns[0]!;
  assert.equal(c.req.headers.authorization, 'Bearer dev-1.secret');
  assert.equal(c.req.headers['sec-websocket-protocol'], 'iot.telemetry.v1');
  assert.equal(c.got[0]!.hello?.deviceId, 'dev-1');
  assert.equal(c.got[0]!.hello?.protocolVersion, 1);
});

test('device - the subprotocol carries the token when asked', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { authVia: 'subprotocol' }).start();
  await hub.until(() => hub.conns.length === 1, 3000, 'connection');
  assert.equal(hub.conns[0]!.req.headers.authorization, undefined);
  assert.equal(hub.conns[0]!.req.headers['sec-websocket-protocol'], 'iot.telemetry.v1,bearer.dev-1.secret');
});

test('device - never more unacked batches than the credit', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { rate: 200, batchIntervalMs: 10 });
  d.start();
  drive(t, d);
  await hub.until(() => hub.conns.length === 1 && hub.conns[0]!.got.length === 1, 3000, 'hello');
  const c = hub.conns[0]!;
  welcome(c.ws, 0, 3);
  await hub.until(() => batches(c).length >= 3, 3000, 'three batches');
  await new Promise((r) => setTimeout(r, 150)); // batches keep closing; none may be sent
  assert.equal(batches(c).length, 3);
  assert.ok(d.outboxSize > 3, 'more batches are waiting');
  c.ws.send(encodeHubMessage({ ack: { seq: batches(c)[0]!.seq, credit: 3 } }));
  await hub.until(() => batches(c).length === 4, 3000, 'one more after one ack');
  c.ws.send(encodeHubMessage({ ack: { seq: batches(c)[3]!.seq, credit: 0 } }));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(batches(c).length, 4, 'credit 0 stops sending');
});

test('device - after a forced disconnect it resends from Welcome.last_seq: nothing lost, nothing below resent', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  drive(t, d);
  await hub.until(() => hub.conns[0]?.got.length === 1, 3000, 'hello');
  welcome(hub.conns[0]!.ws, 0);
  await hub.until(() => batches(hub.conns[0]!).length >= 6, 5000, 'six batches');
  const first = batches(hub.conns[0]!);
  // The hub stored 1..4 but the acks were lost with the link.
  hub.conns[0]!.ws.terminate();
  await hub.until(() => hub.conns[1]?.got.length === 1, 5000, 'reconnect and hello');
  assert.ok(d.counters.reconnects >= 1);
  welcome(hub.conns[1]!.ws, 4);
  await hub.until(() => batches(hub.conns[1]!).length >= first.length - 4, 5000, 'resends');
  const second = batches(hub.conns[1]!);
  assert.equal(second[0]!.seq, 5, 'resumes right after last_seq');
  assert.deepEqual(second.map((b) => b.seq), Array.from({ length: second.length }, (_, i) => 5 + i), 'in order, no gaps');
  // Metric names are defined again in the new session.
  assert.ok((second[0]!.metricDefs ?? []).length === 4);
  // A resent batch is byte-for-byte the same readings.
  const orig = first.find((b) => b.seq === 5);
  assert.ok(orig, 'batch 5 was sent in the first session');
  assert.deepEqual(second[0]!.values, orig!.values);
  assert.deepEqual(second[0]!.timeOffsetsMs, orig!.timeOffsetsMs);
  assert.ok(d.counters.batchesResent >= 1);
  const lastSeq = second.at(-1)!.seq ?? 0;
  hub.conns[1]!.ws.send(encodeHubMessage({ ack: { seq: lastSeq, credit: 32 } }));
  await hub.until(() => d.counters.batchesAcked >= lastSeq, 3000, 'acks counted');
});

test('device - honours retry-after in a close reason', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.got.length === 1, 3000, 'hello');
  const closedAt = Date.now();
  hub.conns[0]!.ws.close(CloseCode.TRY_AGAIN_LATER, closeReason('overloaded', 400));
  await hub.until(() => hub.conns.length === 2, 5000, 'reconnect');
  assert.ok(Date.now() - closedAt >= 400, `waited ${Date.now() - closedAt} ms`);
  assert.equal(d.counters.closes['1013'], 1);
});

test('device - honours Retry-After on a 503 refusal', async (t) => {
  const hub = await fakeHub(t, { refuse: (n) => (n === 1 ? { status: 503, retryAfter: 1 } : null) });
  const d = device(t, hub.url);
  const started = Date.now();
  d.start();
  await hub.until(() => hub.conns.length === 1, 5000, 'second attempt accepted');
  assert.ok(Date.now() - started >= 1000, `waited ${Date.now() - started} ms`);
  assert.equal(d.counters.closes['http-503'], 1);
});

test('device - a fatal close code or a 401 stops reconnecting', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.got.length === 1, 3000, 'hello');
  hub.conns[0]!.ws.close(CloseCode.PROTOCOL_ERROR, 'bad');
  await hub.until(() => d.stopped, 3000, 'device gives up');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(hub.conns.length, 1);

  const hub2 = await fakeHub(t, { refuse: () => ({ status: 401 }) });
  const d2 = device(t, hub2.url);
  d2.start();
  await hub2.until(() => d2.stopped, 3000, 'device gives up after 401');
  assert.equal(hub2.attempts, 1);
});

test('device - a full outbox drops the oldest unsent batch and counts it', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { outboxCap: 5, rate: 100, batchIntervalMs: 10 });
  d.start();
  drive(t, d);
  // Never welcomed: nothing is sent, the outbox fills.
  await hub.until(() => d.counters.batchesDropped >= 3, 5000, 'drops');
  assert.equal(d.outboxSize, 5);
  assert.ok(d.counters.readingsDropped > 0);
});

test('sensors - deterministic per seed, and within physical ranges', () => {
  const a = defaultSensors(7);
  const b = defaultSensors(7);
  const t0 = Date.UTC(2026, 5, 1);
  for (let i = 0; i < 2000; i++) {
    const t = t0 + i * 60_000;
    const va = a.map((s) => s.sample(t));
    assert.deepEqual(va, b.map((s) => s.sample(t)));
    const [temp, hum, pres, batt] = va as [number, number, number, number];
    assert.ok(temp > -20 && temp < 80, `temperature ${temp}`);
    assert.ok(hum >= 0 && hum <= 100, `humidity ${hum}`);
    assert.ok(pres > 950 && pres < 1080, `pressure ${pres}`);
    assert.ok(batt >= 3.28 && batt <= 4.25, `battery ${batt}`);
  }
});

test('sensors - temperature follows a daily cycle; battery drains', () => {
  const r = prng(1);
  const temp = new Temperature(r, 0);
  const day = Date.UTC(2026, 5, 1);
  const at = (h: number) => { let s = 0; for (let i = 0; i < 50; i++) s += temp.sample(day + h * 3_600_000); return s / 50; };
  assert.ok(at(17) - at(5) > 8, 'afternoon warmer than early morning');
  const hum = new Humidity(r, temp);
  assert.ok(hum.sample(day + 5 * 3_600_000) > hum.sample(day + 17 * 3_600_000), 'humidity anti-correlated');
  const batt = new Battery(r, 0.001);
  const first = batt.sample();
  for (let i = 0; i < 200; i++) batt.sample();
  assert.ok(batt.sample() < first - 0.1);
  const p = new Pressure(r);
  assert.ok(Math.abs(p.sample() - 1013) < 40);
});

test('stats - reservoir percentiles and address ranges', () => {
  const res = new Reservoir(1000);
  for (let i = 1; i <= 100; i++) res.add(i);
  assert.equal(res.percentile(50), 50);
  assert.equal(res.percentile(99), 99);
  assert.deepEqual(expandAddresses('127.0.0.2-127.0.0.4,::1'), ['127.0.0.2', '127.0.0.3', '127.0.0.4', '::1']);
});
