// Socket-free units: clock offset estimation, token bucket, retry jitter,
// metric definitions and batch validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClockOffsetEstimator } from '../src/ingest/clock.ts';
import { TokenBucket } from '../src/core/token-bucket.ts';
import { AddressCounter, jitteredRetryMs } from '../src/ingest/limits.ts';
import { MetricNames, MetricTable, defineMetrics, validateBatch, type ValidationLimits } from '../src/ingest/validate.ts';

test('clock - the estimate is the least-delayed sample (offset minus the smallest delay)', () => {
  const c = new ClockOffsetEstimator();
  assert.equal(c.known, false);
  assert.equal(c.offsetMs, 0);
  // True offset +1000 ms; one-way delays 80, 5, 40 ms.
  for (const delay of [80, 5, 40]) c.sample(10_000 + 1000, 10_000 + delay);
  assert.equal(c.offsetMs, 995);
  c.sample(0, 20_000); // no clock: ignored
  assert.equal(c.offsetMs, 995);
});

test('clock - an old maximum expires so a reset device clock is followed', () => {
  const c = new ClockOffsetEstimator();
  c.sample(1_000 + 3_600_000, 1_000);
  assert.equal(c.offsetMs, 3_600_000);
  c.sample(62_000, 62_000); // clock fixed; the old maximum is over 60 s old
  assert.equal(c.offsetMs, 0);
  c.sample(200_000, 200_000 + 10);
  assert.equal(c.offsetMs, -10);
});

test('clock - the first sample is the estimate whatever its sign (device clock behind the hub)', () => {
  const c = new ClockOffsetEstimator();
  c.sample(5_000, 5_500);
  assert.deepEqual([c.known, c.offsetMs], [true, -500]);
  c.sample(6_000, 6_700);
  assert.equal(c.offsetMs, -500, 'a more delayed sample does not replace it');
});

test('limits - token bucket refills at its rate up to its burst', () => {
  const b = new TokenBucket(100, 200, 0);
  assert.equal(b.take(200, 0), true);
  assert.equal(b.take(1, 0), false);
  assert.equal(b.waitMs(50, 0), 500);
  assert.equal(b.take(50, 500), true);
  assert.equal(b.take(1, 500), false);
  assert.equal(b.take(200, 100_000), true, 'capped at burst');
  assert.equal(b.take(1, 100_000), false);
});

test('limits - address counter forgets addresses at zero', () => {
  const a = new AddressCounter();
  a.inc('1.2.3.4'); a.inc('1.2.3.4'); a.inc('5.6.7.8');
  assert.equal(a.get('1.2.3.4'), 2);
  a.dec('1.2.3.4'); a.dec('1.2.3.4');
  assert.equal(a.get('1.2.3.4'), 0);
  assert.equal(a.addresses, 1);
});

test('limits - retry hints are jittered between the base and twice the base', () => {
  assert.equal(jitteredRetryMs(1000, () => 0), 1000);
  assert.equal(jitteredRetryMs(1000, () => 0.999), 1999);
});

test('clock - a device time past 2^53 ms is not a sample (the offset stays an exact integer)', () => {
  const c = new ClockOffsetEstimator();
  c.sample(2 ** 63, 1_700_000_000_000);
  c.sample(2 ** 53, 1_700_000_000_000);
  assert.equal(c.known, false);
  c.sample(1_700_000_003_000, 1_700_000_000_000);
  assert.equal(c.offsetMs, 3000);
});

const LIMITS: ValidationLimits = {
  maxBatchReadings: 100, maxMetricsPerSession: 8, maxMetricNameBytes: 64, maxMetricsPerDevice: 3,
  maxFutureSkewMs: 300_000, maxPastSkewMs: 7 * 86_400_000, skewPolicy: 'correct',
};

test('validate - a device time outside the safe-integer range is dropped as skew_dropped, never stored or corrected', () => {
  const now = 1_700_000_000_000;
  const table = new MetricTable();
  assert.equal(defineMetrics(table, [{ id: 1, name: 'temp' }], LIMITS, new Set(), new MetricNames(10)), null);
  const cases: { base: number; offsets: number[]; clock: { known: boolean; offsetMs: number } }[] = [
    // An absurd device clock, and a clock whose offset would "correct" it back into bounds.
    { base: 1e300, offsets: [0], clock: { known: true, offsetMs: 1e300 - now } },
    { base: 2 ** 62, offsets: [2 ** 62], clock: { known: true, offsetMs: 2 ** 63 - now } },
    { base: -(2 ** 63), offsets: [0], clock: { known: true, offsetMs: -(2 ** 63) - now } },
  ];
  for (const c of cases) {
    const out = validateBatch('d', {}, { seq: 1, baseTimeMs: c.base, metricIds: [1], timeOffsetsMs: c.offsets, values: [1] }, table, LIMITS, now, c.clock);
    assert.ok(out.ok);
    assert.deepEqual(out.report, { nonFiniteDropped: 0, skewDropped: 1, skewCorrected: 0 }, `base ${c.base}`);
    assert.equal(out.batch.values.length, 0);
    assert.equal(out.batch.deviceTimesMs, null);
  }
  // A corrected time is an exact integer too.
  const fast = validateBatch('d', {}, { seq: 2, baseTimeMs: now + 3_600_000, metricIds: [1], timeOffsetsMs: [7], values: [1] }, table, LIMITS, now, { known: true, offsetMs: 3_600_000 });
  assert.ok(fast.ok);
  assert.equal(fast.report.skewCorrected, 1);
  assert.deepEqual([...fast.batch.timesMs, ...fast.batch.deviceTimesMs!], [now + 7, now + 3_600_007]);
});

test('validate - a unit with a backslash is refused (line protocol cannot escape it)', () => {
  for (const unit of ['deg\\', 'a\\,b', '\\ ']) {
    const v = defineMetrics(new MetricTable(), [{ id: 1, name: 'temp', unit }], LIMITS, new Set(), new MetricNames(10));
    assert.equal(v?.limit, 'metric_unit', unit);
    assert.match(v.reason, /must not contain a backslash/);
  }
  assert.equal(defineMetrics(new MetricTable(), [{ id: 1, name: 'temp', unit: 'm/s²' }], LIMITS, new Set(), new MetricNames(10)), null);
});

test('validate - metric names count per device across sessions and fleet-wide; a name the device has is always fine', () => {
  let grown = 0;
  const fleet = new MetricNames(5, (n) => { grown = n; });
  const devA = new Set<string>();
  const devB = new Set<string>();
  // Device A, session 1 and 2: three names in all (its cap), the second session repeating one.
  assert.equal(defineMetrics(new MetricTable(), [{ id: 1, name: 'a1' }, { id: 2, name: 'a2' }], LIMITS, devA, fleet), null);
  const s2 = new MetricTable();
  assert.equal(defineMetrics(s2, [{ id: 9, name: 'a1' }, { id: 3, name: 'a3' }], LIMITS, devA, fleet), null);
  const over = defineMetrics(s2, [{ id: 4, name: 'a4' }], LIMITS, devA, fleet);
  assert.equal(over?.limit, 'metrics_per_device');
  assert.match(over.reason, /HUB_MAX_METRICS_PER_DEVICE/);
  assert.equal(defineMetrics(new MetricTable(), [{ id: 1, name: 'a3' }, { id: 2, name: 'a2' }, { id: 3, name: 'a1' }], LIMITS, devA, fleet), null, 'old names in a new session');
  // Device B: two new names fill the fleet (5); a third is refused fleet-wide, but A's names are fine.
  assert.equal(defineMetrics(new MetricTable(), [{ id: 1, name: 'b1' }, { id: 2, name: 'b2' }], LIMITS, devB, fleet), null);
  const full = defineMetrics(new MetricTable(), [{ id: 3, name: 'b3' }], LIMITS, devB, fleet);
  assert.equal(full?.limit, 'metric_names');
  assert.match(full.reason, /HUB_MAX_METRIC_NAMES/);
  const t = new MetricTable();
  assert.equal(defineMetrics(t, [{ id: 4, name: 'a1' }], LIMITS, devB, fleet), null, 'a name another device defined');
  assert.deepEqual([fleet.size, grown, devA.size, devB.size], [5, 5, 3, 3]);
  // Sessions share the fleet's copy of a name.
  assert.equal(t.get(4)!.name, 'a1');
});
