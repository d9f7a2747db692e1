// Metric-name cardinality: one device token cannot grow the hub without
// bound by defining new names session after session. Names are capped per
// device across sessions (HUB_MAX_METRICS_PER_DEVICE) and fleet-wide
// (HUB_MAX_METRIC_NAMES); the live path and history stay bounded, and other
// devices keep getting series.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { CloseCode, LIVE_PATH, LIVE_SUBPROTOCOL, decodeLiveFrame, encodeLiveRequest, type LiveFrame } from '@telemetry/proto';
import { MemoryHistory } from '../src/live/rollups.ts';
import { parseHistoryQuery } from '../src/http/history.ts';
import { connectDevice, metric, signIn, startHub, until, within, type TestHub } from './helpers.ts';

interface Outcome { acked: boolean; code: number; notice: string }

/** One session of `deviceId` that defines `names` (ids 1..n) in batch `seq` with a reading each; acked or closed. */
async function session(th: TestHub, deviceId: string, seq: number, names: string[]): Promise<Outcome> {
  const { d } = await connectDevice(th, deviceId);
  d.batch({
    seq, baseTimeMs: Date.now(), metricDefs: names.map((name, i) => ({ id: i + 1, name })),
    metricIds: names.map((_, i) => i + 1), timeOffsetsMs: names.map(() => 0), values: names.map((_, i) => i),
  });
  const first = await Promise.race([d.ackFor(seq).then(() => 'acked' as const), d.closed]);
  if (first === 'acked') {
    d.close();
    await within(d.closed, 3000, 'clean close');
    return { acked: true, code: 1000, notice: '' };
  }
  return { acked: false, code: first.code, notice: (await d.next('notice')).reason ?? '' };
}

const namesFrom = (prefix: string, from: number, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${from + i}`);

test('metric names - one token opening session after session with new names is closed with 4006 past HUB_MAX_METRICS_PER_DEVICE; its earlier names still work', async (t) => {
  const th = await startHub(t, { config: { maxMetricsPerDevice: 6, maxMetricsPerSession: 4 } });
  let seq = 0;
  for (let s = 0; s < 3; s++) assert.equal((await session(th, 'dev-1', ++seq, namesFrom('m', s * 2, 2))).acked, true, `session ${s}`);
  // Each session is within HUB_MAX_METRICS_PER_SESSION; the device as a whole is not.
  for (let s = 3; s < 23; s++) {
    const out = await session(th, 'dev-1', ++seq, namesFrom('m', s * 2, 2));
    assert.equal(out.code, CloseCode.INVALID_METRIC, `session ${s}`);
    assert.match(out.notice, /this device already uses 6 metric names \(HUB_MAX_METRICS_PER_DEVICE\)/);
  }
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'metrics_per_device' }), 20);
  assert.equal(await metric(th, 'hub_metric_names'), 6);
  assert.deepEqual(th.store.recent().map((b) => b.seq), [1, 2, 3], 'refused batches are not stored');
  // The names it has work in any session, under any ids.
  const again = await session(th, 'dev-1', ++seq, namesFrom('m', 0, 4).reverse());
  assert.equal(again.acked, true);
  assert.equal((await session(th, 'dev-1', seq + 1, namesFrom('m', 4, 2))).acked, true);
});

test('metric names - a name the device already has is fine in every session, even with the fleet at HUB_MAX_METRIC_NAMES', async (t) => {
  const th = await startHub(t, { config: { maxMetricsPerDevice: 2, maxMetricNames: 3 } });
  assert.equal((await session(th, 'dev-1', 1, ['a', 'b'])).acked, true);
  assert.equal((await session(th, 'dev-2', 1, ['c'])).acked, true);
  const full = await session(th, 'dev-2', 2, ['d']);
  assert.equal(full.code, CloseCode.INVALID_METRIC);
  assert.match(full.notice, /the hub already holds 3 metric names fleet-wide \(HUB_MAX_METRIC_NAMES\)/);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'metric_names' }), 1);
  // Repeats across sessions, and another device's name, are fine at the fleet cap.
  assert.equal((await session(th, 'dev-1', 2, ['b', 'a'])).acked, true);
  assert.equal((await session(th, 'dev-2', 2, ['a', 'c'])).acked, true);
  assert.equal((await session(th, 'dev-3', 1, ['b'])).acked, true);
  assert.equal(await metric(th, 'hub_metric_names'), 3);
});

/** Decoded frames: protobufjs fills repeated fields with defaults. */
type Frame = LiveFrame & { deviceDetails: NonNullable<LiveFrame['deviceDetails']> };

test('metric names - the device-detail frame and tracked latest values stay bounded when one token keeps inventing names', async (t) => {
  const th = await startHub(t, { config: { maxMetricsPerDevice: 8, liveTickMs: 100 } });
  let seq = 0;
  for (let s = 0; s < 30; s++) await session(th, 'dev-1', ++seq, namesFrom('attack_metric_', s * 8, 8));
  const tracked = th.hub.live.devices.devices.get('dev-1')!;
  assert.equal(tracked.metrics.length, 8);
  assert.equal(tracked.metricIndex('attack_metric_7'), 7);
  assert.equal(tracked.metricIndex('attack_metric_8'), -1);

  const ws = new WebSocket(`ws://127.0.0.1:${th.port}${LIVE_PATH}`, [LIVE_SUBPROTOCOL], { headers: { cookie: await signIn(th) }, perMessageDeflate: false });
  t.after(() => ws.close());
  const frames: { bytes: number; frame: Frame }[] = [];
  ws.on('message', (data: Buffer) => frames.push({ bytes: data.byteLength, frame: decodeLiveFrame(data) }));
  await within(new Promise((r) => ws.once('open', r)), 3000, 'live open');
  ws.send(encodeLiveRequest({ subscribe: { topics: ['device:dev-1'] } }));
  await until(() => frames.some((f) => f.frame.deviceDetails.length > 0), 3000, 'device detail');
  const detail = frames.find((f) => f.frame.deviceDetails.length > 0)!;
  assert.equal(detail.frame.deviceDetails[0]!.state!.latest!.length, 8);
  // 8 latest values and the presence history: well under 2 KB (the issue saw 3.9 MB).
  assert.ok(detail.bytes < 2048, `device-detail frame ${detail.bytes} B`);
});

test('metric names - a device past its cap cannot crowd out another: the other device\'s new metric gets a live series and a history series', async (t) => {
  // Sized so the attacker's capped names fit and its uncapped ones would not:
  // 4 names x (fleet + site) = 8 live and 8 group series, 4 device series.
  const rollups = new MemoryHistory({ maxSeries: 12, maxDeviceSeries: 8 });
  const th = await startHub(t, {
    config: { maxMetricsPerDevice: 4, liveMaxSeries: 12 },
    deps: { history: rollups, onDurable: (b) => rollups.record(b) },
  });
  let seq = 0;
  for (let s = 0; s < 10; s++) await session(th, 'dev-1', ++seq, namesFrom('attack_metric_', s * 4, 4));
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'metrics_per_device' }), 9);
  assert.equal((await session(th, 'dev-2', 1, ['victim_metric'])).acked, true);

  assert.ok(th.hub.live.scopes.get('fleet')!.series.has('victim_metric'), 'fleet live series');
  assert.ok(th.hub.live.scopes.get('group:site=test')!.series.has('victim_metric'), 'group live series');
  assert.equal(th.hub.live.seriesRefused, 0);
  const now = Date.now();
  for (const scope of ['', '&device=dev-2', '&group=site:test']) {
    const q = parseHistoryQuery(new URLSearchParams(`metric=victim_metric&from=${now - 600_000}&to=${now + 60_000}&step=1m${scope}`), now + 60_000);
    assert.equal((await rollups.query(q)).reduce((n, p) => n + p.count, 0), 1, `history ${scope || 'fleet'}`);
  }
  assert.equal(rollups.refused, 0);
});
