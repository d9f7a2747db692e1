// device-sim/ tests: counters and the send -> ack latency histogram (HDR):
// its precision, and merges that are exact, across an IPC round trip too.
// Imports: node:test, and this package's sensors and stats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulberry32 } from '../src/sensors.ts';
import { LatencyHistogram, addCounters, emptyCounters, errorCount } from '../src/stats.ts';

const filled = (values: Iterable<number>) => {
  const h = new LatencyHistogram();
  for (const v of values) h.add(v);
  return h;
};
const range = (from: number, to: number, step = 1) => Array.from({ length: Math.round((to - from) / step) + 1 }, (_, i) => from + i * step);

test('stats - nearest-rank percentiles, exact to the microsecond up to 2 ms', () => {
  // 0.01 .. 1.00 ms: every value in the single-microsecond range.
  const h = filled(range(1, 100).map((i) => i / 100));
  assert.deepEqual(h.percentiles(), { p50: 0.5, p95: 0.95, p99: 0.99, samples: 100 });
  assert.equal(h.percentile(100), 1);
  assert.equal(h.minMs, 0.01);
  assert.equal(h.maxMs, 1);
  assert.equal(filled([0.0004, 0.0006]).maxMs, 0.001, 'rounded to the µs');
});

test('stats - above 2 ms percentiles are the top of their bucket: never below the value, at most 0.1 % above', () => {
  const h = filled(range(1, 100));
  const p = h.percentiles();
  assert.equal(p.samples, 100);
  for (const [got, want] of [[p.p50, 50], [p.p95, 95], [p.p99, 99]] as const) {
    assert.ok(got >= want && got <= want * 1.001, `${got} for ${want}`);
  }
  assert.equal(h.maxMs, 100, 'the largest value is kept exactly');
  // Over a wide spread, every percentile holds the bound.
  const random = mulberry32(4);
  const values = Array.from({ length: 20_000 }, () => 0.05 + random() * random() * 5000);
  const wide = filled(values);
  const sorted = values.map((v) => Math.round(v * 1000) / 1000).sort((a, b) => a - b);
  for (const q of [1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100]) {
    // Nearest rank, without the float error of q/100*n (0.999 * 20000 = 19980.000000000004).
    const exact = sorted[Math.max(0, Math.ceil((q / 100) * sorted.length - 1e-9) - 1)]!;
    const got = wide.percentile(q);
    assert.ok(got >= exact && got <= exact * 1.001 + 0.001, `p${q}: ${got} vs ${exact}`);
  }
});

test('stats - empty, zero, negative and past the initial hour', () => {
  const empty = new LatencyHistogram();
  assert.ok(Number.isNaN(empty.percentile(50)));
  assert.ok(Number.isNaN(empty.minMs) && Number.isNaN(empty.maxMs));
  assert.deepEqual(empty.percentiles(), { p50: Number.NaN, p95: Number.NaN, p99: Number.NaN, samples: 0 });
  const h = filled([0, -3, 7_200_000]); // a clock step backwards counts as 0; two hours still records
  assert.equal(h.count, 3);
  assert.equal(h.minMs, 0);
  assert.ok(h.maxMs === 7_200_000 && h.percentile(100) >= 7_200_000 && h.percentile(100) <= 7_200_000 * 1.001);
});

test('stats - merged histograms hold exactly what one histogram of every value holds, also after encode/decode (IPC)', () => {
  const random = mulberry32(2);
  const parts = [3000, 500, 0, 12_000].map((n) => Array.from({ length: n }, () => random() * random() * 800));
  const all = filled(parts.flat());
  const merged = LatencyHistogram.merged(parts.map((p) => LatencyHistogram.decode(filled(p).encode())));
  assert.equal(merged.count, all.count);
  for (let q = 0; q <= 100; q += 0.5) assert.equal(merged.percentile(q), all.percentile(q), `p${q}`);
  assert.equal(merged.minMs, all.minMs);
  // The encoding carries counts, not the exact maximum: after decode() it is the top of its bucket.
  assert.equal(merged.maxMs, LatencyHistogram.decode(all.encode()).maxMs);
  assert.ok(merged.maxMs >= all.maxMs && merged.maxMs <= all.maxMs * 1.001);
  assert.equal(merged.encode(), all.encode(), 'the same counts');
  assert.equal(typeof all.encode(), 'string');
  assert.doesNotThrow(() => JSON.parse(JSON.stringify({ latency: all.encode() })));
});

test('stats - since(copy) holds exactly what was recorded after the copy; the copy is unchanged', () => {
  const h = new LatencyHistogram();
  for (const ms of [1, 2, 300]) h.add(ms);
  const before = h.copy();
  for (const ms of [5, 5, 40]) h.add(ms);
  const since = h.since(before);
  assert.deepEqual([since.count, since.minMs], [3, 5]);
  assert.ok(since.percentile(100) >= 40 && since.percentile(100) <= 40 * 1.001, 'the largest is 40 ms (the top of its bucket)');
  assert.ok(since.percentile(50) >= 5 && since.percentile(50) < 6, 'the 300 ms before the copy is gone');
  assert.equal(before.count, 3, 'the copy is not recorded into');
  assert.equal(h.count, 6);
});

test('stats - a merged part weighs exactly as many values as it holds', () => {
  // 9,000 batches at 1 ms in one process, 1,000 at 2 ms in another.
  const merged = LatencyHistogram.merged([filled(Array(9000).fill(1)), filled(Array(1000).fill(2))]);
  assert.equal(merged.count, 10_000);
  assert.equal(merged.percentile(90), 1, 'the 9,000th value');
  assert.equal(merged.percentile(90.01), 2, 'the 9,001st');
  assert.equal(merged.merge(new LatencyHistogram()).count, 10_000, 'an empty part adds nothing');
});

test('stats - counters add up, records by key, and errors are every close but 1000', () => {
  const a = emptyCounters();
  a.batchesSent = 3;
  a.closes = { 1000: 2, 'http-503': 1 };
  addCounters(a, { batchesSent: 4, closes: { 'http-503': 2, 4004: 1 }, notices: { 101: 5 } });
  assert.equal(a.batchesSent, 7);
  assert.deepEqual(a.closes, { 1000: 2, 'http-503': 3, 4004: 1 });
  assert.deepEqual(a.notices, { 101: 5 });
  assert.equal(errorCount(a), 4);
});
