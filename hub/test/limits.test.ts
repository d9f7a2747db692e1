// Every limit with its bad input: the close code or report, and the counter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, NoticeCode, parseRetryAfterMs } from '@telemetry/proto';
import { hardMessageCap } from '../src/ingest/endpoint.ts';
import { ManualStore, RawDevice, batchOf, connectDevice, metric, startHub, until, within } from './helpers.ts';

test('limits - a message over max_message_bytes closes with 1009', async (t) => {
  const th = await startHub(t, { config: { maxMessageBytes: 2048 } });
  const { d, welcome } = await connectDevice(th, 'dev-1');
  assert.equal(welcome.limits?.maxMessageBytes, 2048);
  d.batch(batchOf(1, 300)); // ~3.3 KB
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.MESSAGE_TOO_BIG);
  assert.match((await d.next('notice')).reason ?? '', /the limit is 2048/);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'message_size' }), 1);
  assert.equal(th.store.recent().length, 0);
});

test('limits - a frame over twice the limit is cut off by uWS before it is buffered', async (t) => {
  const th = await startHub(t, { config: { maxMessageBytes: 2048 } });
  const { d } = await connectDevice(th, 'dev-1');
  d.sendRaw(Buffer.alloc(hardMessageCap(2048) + 1));
  const closed = await within(d.closed, 3000, 'close');
  assert.notEqual(closed.code, 1000);
  await until(async () => (await metric(th, 'hub_device_connections')) === 0, 3000, 'connection gone');
  // The hub is fine.
  const again = await connectDevice(th, 'dev-1');
  again.d.batch(batchOf(1));
  await again.d.ackFor(1);
  again.d.close();
});

test('limits - a batch over max_batch_readings closes with 4005 and is not stored', async (t) => {
  const th = await startHub(t, { config: { maxBatchReadings: 10 } });
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1, 10));
  await d.ackFor(1);
  d.batch(batchOf(2, 11, { defs: false }));
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.BATCH_TOO_LARGE);
  assert.match((await d.next('notice')).reason ?? '', /11 readings; the limit is 10/);
  assert.deepEqual(th.store.recent().map((b) => b.seq), [1]);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'batch_readings' }), 1);
});

test('limits - readings per second above the token bucket close with 4004 and a retry hint', async (t) => {
  let now = 5_000_000;
  const th = await startHub(t, { config: { maxReadingsPerSecond: 100, readingsBurst: 200, maxBatchReadings: 100 }, deps: { now: () => now } });
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1, 100));
  d.batch(batchOf(2, 100, { defs: false }));
  await d.ackFor(2);
  now += 500; // refills 50
  d.batch(batchOf(3, 100, { defs: false }));
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.RATE_LIMITED);
  const retry = parseRetryAfterMs(closed.reason);
  assert.ok(retry !== undefined && retry >= 500, `retry-after ${retry}`);
  assert.equal((await d.next('notice')).retryAfterMs, retry);
  assert.deepEqual(th.store.recent().map((b) => b.seq), [1, 2]);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'readings_rate' }), 1);
  // The bucket belongs to the device, not the session: reconnecting does not refill it.
  const again = await connectDevice(th, 'dev-1');
  again.d.batch(batchOf(3, 100));
  assert.equal((await within(again.d.closed, 3000, 'close')).code, CloseCode.RATE_LIMITED);
  now += 1000;
  const later = await connectDevice(th, 'dev-1');
  later.d.batch(batchOf(3, 100));
  assert.equal((await later.d.ackFor(3)).seq, 3);
  later.d.close();
});

test('limits - more unacked batches than the window closes with 4003', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { config: { window: 4 }, deps: { store } });
  const { d } = await connectDevice(th, 'dev-1');
  for (let seq = 1; seq <= 4; seq++) d.batch(batchOf(seq));
  await until(() => store.pending === 4, 3000, 'four pending');
  assert.equal(d.frames.length, 0, 'window full but legal: no close yet');
  d.batch(batchOf(5));
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.WINDOW_EXCEEDED);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'window' }), 1);
  // Acked data is never lost by a violation: the four are still committed.
  store.commit();
  assert.deepEqual(store.batches.map((b) => b.seq), [1, 2, 3, 4]);
});

test('limits - credit shrinks as the store fills and comes back as it drains', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { config: { window: 10 }, deps: { store } });
  store.pressureValue = 0.75;
  const { d, welcome } = await connectDevice(th, 'dev-1');
  assert.equal(welcome.window, 10);
  assert.equal(welcome.credit, 5);
  store.pressureValue = 1;
  const zero = await d.next('ack'); // credit-only ack from the refresh tick
  assert.equal(zero.credit, 0);
  const notice = await d.next('notice');
  assert.equal(notice.code, NoticeCode.BACKPRESSURE);
  store.pressureValue = 0;
  assert.equal((await d.next('ack')).credit, 10);
  d.close();
});

test('limits - no Hello within the handshake timeout closes with 4001', async (t) => {
  const th = await startHub(t, { config: { handshakeTimeoutMs: 200 } });
  const d = new RawDevice(th.url, { token: th.tokens.get('dev-1') });
  await d.opened;
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.HANDSHAKE_TIMEOUT);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'handshake_timeout' }), 1);
});

test('limits - NaN and Infinity readings are dropped, reported in the Ack and counted', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1, 5, { value: (i) => [1, Number.NaN, 3, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY][i]! }));
  const ack = await d.ackFor(1);
  assert.equal(ack.reports?.length, 1);
  assert.equal(ack.reports[0]!.seq, 1);
  assert.equal(ack.reports[0]!.nonFiniteDropped, 3);
  assert.deepEqual([...th.store.recent()[0]!.values], [1, 3]);
  assert.equal(await metric(th, 'hub_readings_total', { result: 'non_finite_dropped' }), 3);
  // A clean batch has no report.
  d.batch(batchOf(2, 2, { defs: false }));
  assert.equal((await d.ackFor(2)).reports?.length ?? 0, 0);
  d.close();
});

test('limits - metric names: length, charset, redefinition, unit and count per session close with 4006', async (t) => {
  const th = await startHub(t, { devices: ['dev-1'], config: { maxMetricNameBytes: 8, maxMetricsPerSession: 2 } });
  const cases: [string, Parameters<RawDevice['batch']>[0]['metricDefs'], string][] = [
    ['too long', [{ id: 1, name: 'abcdefghi' }], 'metric_name'],
    ['bad charset', [{ id: 1, name: 'temp erature' }], 'metric_name'],
    ['starts with a digit', [{ id: 1, name: '1temp' }], 'metric_name'],
    ['empty', [{ id: 1, name: '' }], 'metric_name'],
    ['injection', [{ id: 1, name: 'a,b=c' }], 'metric_name'],
    ['unit too long', [{ id: 1, name: 'temp', unit: 'x'.repeat(17) }], 'metric_unit'],
    ['unit control chars', [{ id: 1, name: 'temp', unit: 'a\nb' }], 'metric_unit'],
    ['unit with a backslash', [{ id: 1, name: 'temp', unit: 'deg\\' }], 'metric_unit'],
    ['redefined', [{ id: 1, name: 'temp' }, { id: 1, name: 'hum' }], 'metric_redefined'],
    ['too many', [{ id: 1, name: 'a' }, { id: 2, name: 'b' }, { id: 3, name: 'c' }], 'metrics_per_session'],
  ];
  for (const [name, defs, limit] of cases) {
    const { d } = await connectDevice(th, 'dev-1');
    d.batch({ seq: 1, baseTimeMs: Date.now(), metricDefs: defs, metricIds: [], timeOffsetsMs: [], values: [] });
    const closed = await within(d.closed, 3000, `${name}: close`);
    assert.equal(closed.code, CloseCode.INVALID_METRIC, name);
    assert.equal(await metric(th, 'hub_limit_violations_total', { limit }) >= 1, true, name);
  }
  // Repeating an identical definition (a resend) is fine.
  const { d } = await connectDevice(th, 'dev-1');
  d.batch({ seq: 1, baseTimeMs: Date.now(), metricDefs: [{ id: 1, name: 'temp', unit: '°C' }], metricIds: [1], timeOffsetsMs: [0], values: [1] });
  d.batch({ seq: 2, baseTimeMs: Date.now(), metricDefs: [{ id: 1, name: 'temp', unit: '°C' }], metricIds: [1], timeOffsetsMs: [0], values: [2] });
  assert.equal((await d.ackFor(2)).seq, 2);
  assert.deepEqual(th.store.recent().map((b) => b.metricUnits[0]), ['°C', '°C']);
  d.close();
});

test('limits - skew: a device clock 1 h fast is corrected by the estimated offset, device times kept, reported', async (t) => {
  const th = await startHub(t);
  const d = new RawDevice(th.url, { token: th.tokens.get('dev-1') });
  await d.opened;
  const fast = 3_600_000;
  d.hello('dev-1', { deviceTimeMs: Date.now() + fast });
  await d.next('welcome');
  const deviceBase = Date.now() + fast;
  d.batch({ ...batchOf(1, 3, { base: deviceBase }), sentTimeMs: Date.now() + fast });
  const skewNotice = await d.next('notice'); // once per session, before the ack
  assert.equal(skewNotice.code, NoticeCode.CLOCK_SKEW);
  const ack = await d.ackFor(1);
  const r = ack.reports![0]!;
  assert.equal(r.skewCorrected, 3);
  assert.match(skewNotice.reason ?? '', /offset/);
  assert.equal(r.skewDropped ?? 0, 0);
  assert.ok(Math.abs((r.clockOffsetMs ?? 0) - fast) < 1000, `offset ${r.clockOffsetMs}`);
  const b = th.store.recent()[0]!;
  assert.deepEqual([...b.deviceTimesMs!], [deviceBase, deviceBase + 10, deviceBase + 20]);
  assert.ok(Math.abs(b.timesMs[0]! - (deviceBase - fast)) < 1000, 'stored time is hub time');
  assert.equal(await metric(th, 'hub_readings_total', { result: 'skew_corrected' }), 3);
  d.close();
});

test('limits - skew: out-of-bounds readings are dropped under the drop policy, or when no offset helps', async (t) => {
  const th = await startHub(t, { config: { skewPolicy: 'drop' } });
  const { d } = await connectDevice(th, 'dev-1');
  const now = Date.now();
  d.batch({ seq: 1, baseTimeMs: now, metricDefs: [{ id: 1, name: 'temp' }], metricIds: [1, 1, 1], timeOffsetsMs: [0, 3_600_000, -30 * 86_400_000], values: [1, 2, 3] });
  const ack = await d.ackFor(1);
  assert.equal(ack.reports![0]!.skewDropped, 2);
  assert.deepEqual([...th.store.recent()[0]!.values], [1]);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'skew' }), 1);
  d.close();

  // Correct policy, but the device clock is right and one reading is a year off: no offset helps.
  const th2 = await startHub(t);
  const x = await connectDevice(th2, 'dev-1');
  x.d.batch({ seq: 1, baseTimeMs: Date.now(), metricDefs: [{ id: 1, name: 'temp' }], metricIds: [1, 1], timeOffsetsMs: [0, 365 * 86_400_000], values: [1, 2] });
  const a2 = await x.d.ackFor(1);
  assert.equal(a2.reports![0]!.skewDropped, 1);
  assert.equal(a2.reports![0]!.skewCorrected ?? 0, 0);
  x.d.close();
});

test('limits - a unit with a backslash closes with 4006 and says why', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  d.batch({ seq: 1, baseTimeMs: Date.now(), metricDefs: [{ id: 1, name: 'temp', unit: 'a\\,b' }], metricIds: [1], timeOffsetsMs: [0], values: [1] });
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.INVALID_METRIC);
  assert.match(closed.reason, /metric temp: unit must not contain a backslash/);
  assert.equal(th.store.recent().length, 0);
});

test('limits - skew: a device time past 2^53 ms is dropped and reported, even when the device clock would "correct" it into bounds', async (t) => {
  const th = await startHub(t);
  const d = new RawDevice(th.url, { token: th.tokens.get('dev-1') });
  await d.opened;
  // A device whose clock reads 2^63 ms: readings at 2^62 + 2^62, and sent_time_ms 2^63 as well.
  d.hello('dev-1', { deviceTimeMs: 2 ** 63 });
  await d.next('welcome');
  const now = Date.now();
  d.batch({ seq: 1, baseTimeMs: 2 ** 62, metricDefs: [{ id: 1, name: 'temp' }], metricIds: [1, 1], timeOffsetsMs: [2 ** 62, now - 2 ** 62], values: [1, 2], sentTimeMs: 2 ** 63 });
  const ack = await d.ackFor(1);
  assert.equal(ack.reports![0]!.skewDropped, 1);
  assert.equal(ack.reports![0]!.skewCorrected ?? 0, 0);
  const b = th.store.recent()[0]!;
  assert.deepEqual([...b.values], [2]);
  for (const t of [...b.timesMs, ...(b.deviceTimesMs ?? [])]) assert.ok(Number.isSafeInteger(t), `stored time ${t}`);
  assert.equal(await metric(th, 'hub_readings_total', { result: 'skew_dropped' }), 1);
  d.close();
});

test('limits - a silent device that answers pings stays; one that does not is dropped after the idle timeout', async (t) => {
  const th = await startHub(t, { config: { idleTimeoutS: 8 } });
  const good = await connectDevice(th, 'dev-1');
  const mute = await connectDevice(th, 'dev-2', { autoPong: false });
  let pings = 0;
  good.d.ws.on('ping', () => { pings++; });
  const closed = await within(mute.d.closed, 30_000, 'mute device dropped');
  assert.notEqual(closed.code, 1000);
  assert.ok(pings >= 1, 'the hub pinged the silent device');
  assert.equal(good.d.ws.readyState, good.d.ws.OPEN);
  good.d.close();
});
