// /v1/live end to end: sign-in and Origin at the upgrade, snapshot then
// per-tick deltas with contiguous sequence numbers, presence reasons, alarms,
// bad requests, sign-out, and a stalled dashboard that cannot slow ingest or
// other dashboards.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import test from 'node:test';
import WebSocket from 'ws';
import { LIVE_PATH, LIVE_SUBPROTOCOL, LiveCloseCode, Presence, decodeLiveFrame, encodeLiveRequest, type LiveFrame } from '@telemetry/proto';
import { createLogger } from '../src/core/log.ts';
import { batchOf, connectDevice, signIn, startHub, until, within, type TestHub } from './helpers.ts';

/** A decoded frame: protobufjs fills repeated fields and scalars with defaults. */
type Dec<T> = T extends (infer U)[] ? Dec<U>[] : T extends object ? { [K in keyof T]-?: Dec<NonNullable<T[K]>> } : T;
type Frame = Dec<LiveFrame>;

class LiveClient {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly refused: Promise<number>;
  bytes = 0;
  constructor(th: TestHub, cookie: string | null, opts: { origin?: string } = {}) {
    const headers: Record<string, string> = {};
    if (cookie) headers.cookie = cookie;
    if (opts.origin) headers.origin = opts.origin;
    this.ws = new WebSocket(`ws://127.0.0.1:${th.port}${LIVE_PATH}`, [LIVE_SUBPROTOCOL], { headers, perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => { this.ws.once('open', () => resolve()); this.ws.once('error', reject); });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.refused = new Promise((resolve) => this.ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0)));
    this.ws.on('error', () => { /* via opened/refused */ });
    this.ws.on('message', (data: Buffer) => {
      this.bytes += data.byteLength;
      this.frames.push(decodeLiveFrame(data) as unknown as Frame);
    });
  }
  subscribe(...topics: string[]): void { this.ws.send(encodeLiveRequest({ subscribe: { topics } })); }
  get last(): Frame | undefined { return this.frames[this.frames.length - 1]; }
}

const fast = { liveTickMs: 100 };

test('live - no session: 401; a foreign Origin: 403; signed in from the same origin: frames', async (t) => {
  const th = await startHub(t, { config: fast });
  const anon = new LiveClient(th, null);
  assert.equal(await within(anon.refused, 3000, '401'), 401);
  const forged = new LiveClient(th, 'hub_session=not-a-session');
  assert.equal(await within(forged.refused, 3000, '401'), 401);
  const cookie = await signIn(th);
  const evil = new LiveClient(th, cookie, { origin: 'https://evil.example' });
  assert.equal(await within(evil.refused, 3000, '403'), 403);
  const ok = new LiveClient(th, cookie, { origin: `http://127.0.0.1:${th.port}` });
  await within(ok.opened, 3000, 'open');
  assert.equal(ok.ws.protocol, LIVE_SUBPROTOCOL);
  ok.subscribe('fleet');
  await until(() => ok.frames.length >= 3, 3000, 'frames');
  ok.ws.close();
  assert.equal(await th.hub.metrics.value('hub_live_refusals_total', { status: '401' }), 2);
  assert.equal(await th.hub.metrics.value('hub_live_refusals_total', { status: '403' }), 1);
});

test('live - snapshot, then deltas: contiguous seq, device latest values, presence with reasons, fleet stats', async (t) => {
  const th = await startHub(t, { config: fast });
  const c = new LiveClient(th, await signIn(th));
  await within(c.opened, 3000, 'open');
  c.subscribe('fleet', 'devices', 'device:dev-1', 'group:site=test');
  await until(() => c.frames.length >= 1, 3000, 'snapshot');
  const snap = c.frames[0]!;
  assert.equal(snap.seq, 1);
  assert.equal(snap.snapshot, true);
  // Registered devices are listed before they ever connect.
  assert.deepEqual(snap.devices.map((d) => d.id).sort(), ['dev-1', 'dev-2', 'dev-3']);
  assert.ok(snap.devices.every((d) => d.presence === Presence.OFFLINE));
  assert.equal(snap.health.devicesTotal, 3);

  const { d } = await connectDevice(th, 'dev-1');
  const t0 = Date.now();
  d.send({ batch: { ...batchOf(1, 5, { base: t0, value: (i) => 40 + i }) } });
  await d.ackFor(1);
  await until(() => c.frames.some((f) => f.devices.some((x) => x.id === 'dev-1' && x.latest.length > 0)), 3000, 'latest values');
  const upd = c.frames.find((f) => f.devices.some((x) => x.id === 'dev-1' && x.latest.length > 0))!;
  assert.equal(upd.snapshot, false);
  const row = upd.devices.find((x) => x.id === 'dev-1')!;
  assert.equal(row.presence, Presence.ONLINE);
  assert.equal(row.presenceReason, 'connected');
  assert.deepEqual(row.latest.map((l) => [l.metric, l.unit, l.value, l.timeMs]), [['temperature', 'degC', 44, t0 + 40]]);
  assert.ok(upd.devices.every((x) => x.id === 'dev-1'), 'deltas carry only changed devices');

  // The 1 s window with these readings closes and reaches the fleet and group stats.
  await until(() => c.frames.some((f) => f.scopes.some((s) => s.scope === 'fleet' && s.metrics.some((m) => m.windows.some((w) => w.windowMs === 1000 && Number(w.count) === 5)))), 4000, 'fleet window');
  const f = c.frames.find((x) => x.scopes.some((s) => s.scope === 'fleet' && s.metrics.some((m) => m.windows.some((w) => Number(w.count) === 5))))!;
  const w = f.scopes.find((s) => s.scope === 'fleet')!.metrics[0]!.windows.find((x) => x.windowMs === 1000)!;
  assert.deepEqual([w.min, w.max, w.mean, w.last], [40, 44, 42, 44]);
  assert.ok(Math.abs(w.p50 - 42) / 42 < 0.02);
  assert.equal(Number(w.newestTimeMs), t0 + 40);
  const g = f.scopes.find((s) => s.scope === 'group:site=test')!;
  assert.equal(g.devicesOnline, 1);
  assert.equal(g.devicesTotal, 3);
  assert.equal(f.deviceDetails[0]!.firmware, 'test/1');

  d.close();
  const after = c.frames.length;
  await until(() => c.frames.slice(after).some((x) => x.devices.some((y) => y.id === 'dev-1' && y.presence === Presence.OFFLINE)), 3000, 'offline');
  const off = c.frames.findLast((x) => x.devices.some((y) => y.id === 'dev-1'))!.devices.find((y) => y.id === 'dev-1')!;
  assert.equal(off.presenceReason, 'clean close (1000)');
  const hist = c.frames.findLast((x) => x.deviceDetails.length)!.deviceDetails[0]!.history.map((h) => h.reason);
  assert.deepEqual(hist.slice(-2), ['connected', 'clean close (1000)']);

  // No gaps, ever.
  c.frames.forEach((fr, i) => assert.equal(Number(fr.seq), i + 1));
  // Resubscribing gives a fresh snapshot in the same sequence.
  c.subscribe('fleet');
  await until(() => c.frames.some((x) => x.snapshot && Number(x.seq) > 1), 3000, 'second snapshot');
  c.ws.close();
  // A reconnect starts over at 1 with a snapshot.
  const c2 = new LiveClient(th, await signIn(th));
  await within(c2.opened, 3000, 'open');
  c2.subscribe('fleet');
  await until(() => c2.frames.length >= 1, 3000, 'snapshot');
  assert.equal(Number(c2.frames[0]!.seq), 1);
  assert.equal(c2.frames[0]!.snapshot, true);
  c2.ws.close();
});

test('live - an alarm rule fires for a device over the threshold and shows in frames', async (t) => {
  const th = await startHub(t, { config: fast });
  const c = new LiveClient(th, await signIn(th));
  await within(c.opened, 3000, 'open');
  c.subscribe('fleet');
  const rule = await th.hub.live.alarms.add({ name: 'Too hot', metric: 'temperature', op: '>', threshold: 80, forS: 0 });
  const { d } = await connectDevice(th, 'dev-2');
  const t0 = Date.now();
  d.send({ batch: batchOf(1, 1, { base: t0, value: () => 20 }) });
  d.send({ batch: batchOf(2, 1, { base: t0 + 1, defs: false, value: () => 95 }) });
  await d.ackFor(2);
  await until(() => c.frames.some((f) => f.alarms.some((a) => a.ruleId === rule.id && a.device === 'dev-2' && Number(a.untilMs) === 0)), 3000, 'alarm');
  const a = c.frames.find((f) => f.alarms.length)!.alarms[0]!;
  assert.equal(a.condition, 'temperature > 80');
  assert.equal(a.value, 95);
  await until(() => c.frames.some((f) => f.scopes.some((s) => s.scope === 'fleet' && s.alarmsActive === 1)), 3000, 'scope count');
  d.send({ batch: batchOf(3, 1, { base: t0 + 2, defs: false, value: () => 50 }) });
  await until(() => c.frames.some((f) => f.alarms.some((x) => x.id === a.id && Number(x.untilMs) > 0)), 3000, 'cleared');
  c.ws.close();
  d.close();
});

test('live - more dashboards than HUB_LIVE_MAX_DASHBOARDS are refused with 503', async (t) => {
  const th = await startHub(t, { config: { liveMaxDashboards: 2 } });
  const cookie = await signIn(th);
  const a = new LiveClient(th, cookie), b = new LiveClient(th, cookie);
  await within(Promise.all([a.opened, b.opened]), 3000, 'two open');
  assert.equal(await within(new LiveClient(th, cookie).refused, 3000, 'refused'), 503);
  a.ws.close();
  await within(a.closed, 3000, 'closed');
  await until(() => th.hub.dashboards.dashboards === 1, 3000, 'slot freed');
  const c = new LiveClient(th, cookie);
  await within(c.opened, 3000, 'a freed slot is usable');
  b.ws.close();
  c.ws.close();
});

test('live - bad requests close with 4103; signing out closes the socket with 4101', async (t) => {
  const th = await startHub(t, { config: fast });
  const cookie = await signIn(th);
  for (const send of [
    (ws: WebSocket) => ws.send(encodeLiveRequest({ subscribe: { topics: ['weather:everywhere'] } })),
    (ws: WebSocket) => ws.send('{"subscribe":"fleet"}'),
    (ws: WebSocket) => ws.send(Buffer.from([0xff, 0xff, 0xff])),
    (ws: WebSocket) => ws.send(encodeLiveRequest({ subscribe: { topics: Array.from({ length: 40 }, (_, i) => `device:d${i}`) } })),
  ]) {
    const c = new LiveClient(th, cookie);
    await within(c.opened, 3000, 'open');
    send(c.ws);
    assert.equal((await within(c.closed, 3000, 'close')).code, LiveCloseCode.BAD_REQUEST);
  }
  const c = new LiveClient(th, cookie);
  await within(c.opened, 3000, 'open');
  c.subscribe('fleet');
  await until(() => c.frames.length > 0, 3000, 'frame');
  const r = await fetch(`http://127.0.0.1:${th.port}/api/v1/logout`, { method: 'POST', headers: { cookie } });
  assert.equal(r.status, 204);
  assert.equal((await within(c.closed, 3000, 'close')).code, LiveCloseCode.SESSION_ENDED);
  assert.equal(await within(new LiveClient(th, cookie).refused, 3000, 'refused'), 401, 'the cookie is dead');
});

test('live - a stalled dashboard skips ticks, degrades, and is closed; ingest and other dashboards do not notice', async (t) => {
  const th = await startHub(t, { devices: Array.from({ length: 20 }, (_, i) => `dev-${i}`), config: { liveTickMs: 100, liveSkipBytes: 64 * 1024, liveMaxBackpressure: 1 << 20 } });
  const cookie = await signIn(th);
  const healthy = new LiveClient(th, cookie);
  const stalled = new LiveClient(th, cookie);
  await within(Promise.all([healthy.opened, stalled.opened]), 3000, 'open');
  healthy.subscribe('fleet');
  const tick0 = th.hub.live.tick;
  stalled.subscribe('fleet', 'devices');
  await until(() => stalled.frames.length > 0, 3000, 'first frame');
  // Stop reading: the kernel buffers fill, then the hub's.
  (stalled.ws as unknown as { _socket: { pause(): void } })._socket.pause();

  // 20 real devices stream and wait for their acks; a large synthetic fleet
  // (fed straight into the live state) makes every "devices" frame ~1 MB.
  const devs = await Promise.all(Array.from({ length: 20 }, (_, i) => connectDevice(th, `dev-${i}`).then((x) => x.d)));
  const names = Array.from({ length: 8 }, (_, k) => `metric_${k}`);
  const tooSlow = async (): Promise<boolean> => (await th.hub.metrics.value('hub_live_closes_total', { reason: 'too_slow' })) === 1;
  let seq = 0;
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && !(await tooSlow())) {
    seq++;
    const now = Date.now();
    for (let i = 0; i < 5000; i++) {
      th.hub.live.durable({
        deviceId: `synthetic-${i}`, seq, tags: { site: `s${i % 10}` }, receivedAtMs: now, clockOffsetMs: 0,
        metricNames: names, metricUnits: names.map(() => 'u'), metricIndex: Uint16Array.from(names.keys()),
        timesMs: new Float64Array(names.length).fill(now), deviceTimesMs: null, values: Float64Array.from(names, (_, k) => seq + k),
      });
    }
    for (const d of devs) d.send({ batch: batchOf(seq, 5, { defs: seq === 1 }) });
    await Promise.all(devs.map((d) => d.ackFor(seq, 5000)));
    await new Promise((r) => setTimeout(r, 50));
  }
  t.diagnostic(`stalled dashboard closed after ${seq} rounds; every batch of the 20 devices was acked in each round`);
  assert.ok(await tooSlow(), 'the stalled socket was closed as too slow');
  assert.ok(await th.hub.metrics.value('hub_live_ticks_skipped_total') > 0, 'ticks were skipped for the stalled socket first');
  assert.equal(await th.hub.metrics.value('hub_live_degraded_total'), 1, 'then it got coarse updates');
  (stalled.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  await within(stalled.closed, 5000, 'stalled socket closed');
  // The healthy dashboard got a frame on every tick, in order.
  const ticks = th.hub.live.tick - tick0;
  await until(() => healthy.frames.length >= ticks, 2000, 'frames in flight');
  healthy.frames.forEach((fr, i) => assert.equal(Number(fr.seq), i + 1));
  assert.ok(ticks >= 10, `${ticks} ticks`);
  assert.ok(healthy.frames.every((f) => f.skippedTicks === 0 && !f.degraded));
  for (const d of devs) d.close();
  healthy.ws.close();
});

test('live - a dashboard that fell behind gets coarse updates, and every tick again once it has caught up', async (t) => {
  const th = await startHub(t, { config: { liveTickMs: 100, liveSkipBytes: 64 * 1024, liveMaxBackpressure: 64 << 20 } });
  const c = new LiveClient(th, await signIn(th));
  await within(c.opened, 3000, 'open');
  c.subscribe('fleet', 'devices');
  await until(() => c.frames.length > 0, 3000, 'first frame');
  const socket = (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  socket.pause();
  const names = Array.from({ length: 8 }, (_, k) => `metric_${k}`);
  let seq = 0;
  const feed = (): void => {
    seq++;
    const now = Date.now();
    for (let i = 0; i < 5000; i++) {
      th.hub.live.durable({
        deviceId: `synthetic-${i}`, seq, tags: {}, receivedAtMs: now, clockOffsetMs: 0,
        metricNames: names, metricUnits: names.map(() => 'u'), metricIndex: Uint16Array.from(names.keys()),
        timesMs: new Float64Array(names.length).fill(now), deviceTimesMs: null, values: Float64Array.from(names, (_, k) => seq + k),
      });
    }
  };
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && (await th.hub.metrics.value('hub_live_degraded_total')) === 0) {
    feed();
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(await th.hub.metrics.value('hub_live_degraded_total'), 1);
  socket.resume(); // the browser catches up; the fleet goes quiet
  await until(() => {
    const i = c.frames.findIndex((f) => f.degraded);
    return i >= 0 && c.frames.slice(i).some((f) => !f.degraded);
  }, 15_000, 'back to every tick');
  const coarse = c.frames.filter((f) => f.degraded);
  assert.ok(coarse.length >= 2, `${coarse.length} coarse frames`);
  for (const f of coarse) {
    const windows = f.scopes.flatMap((s) => s.metrics.flatMap((m) => m.windows.map((w) => w.windowMs)));
    assert.ok(windows.every((w) => w !== 1000), 'coarse frames carry only the 10 s and 1 min windows');
  }
  assert.ok(coarse.some((f) => f.skippedTicks >= 9), 'a coarse frame comes every 10th tick');
  c.frames.forEach((fr, i) => assert.equal(Number(fr.seq), i + 1));
  assert.equal(await th.hub.metrics.value('hub_live_closes_total', { reason: 'too_slow' }), 0, 'never closed');
  c.ws.close();
});

test('live - a failure on the live path is logged once and never reaches ingest: batches are still acked', async (t) => {
  let errorLines = 0;
  const errors = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line && (JSON.parse(line) as { msg: string }).msg.startsWith('live path failed')) errorLines++;
      done();
    },
  });
  const th = await startHub(t, { deps: { log: createLogger('error', errors) } });
  th.hub.live.durable = () => { throw new Error('boom'); };
  const { d } = await connectDevice(th, 'dev-1');
  for (let seq = 1; seq <= 50; seq++) {
    d.send({ batch: batchOf(seq, 2, { defs: seq === 1 }) });
    assert.equal(Number((await d.ackFor(seq)).seq), seq);
  }
  assert.equal(th.store.batchesStored, 50);
  assert.equal(errorLines, 1, 'fifty failures, one error line');
  d.close();
});
