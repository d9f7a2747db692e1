// Socket-free units: clock offset estimation, token bucket, retry jitter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClockOffsetEstimator } from '../src/ingest/clock.ts';
import { AddressCounter, TokenBucket, jitteredRetryMs } from '../src/ingest/limits.ts';

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
