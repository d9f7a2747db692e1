// device-sim/ tests: the readings-per-second bucket on its own (times passed in, no device).
// Imports: node:test, and this package's pacing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadingsBucket } from '../src/pacing.ts';

const LIMITS = { maxReadingsPerSecond: 100, readingsBurst: 50 };

test('pacing - starts full, refills at the hub rate up to the burst, never above', () => {
  const b = new ReadingsBucket();
  b.fill(LIMITS, 0);
  assert.equal(b.tokens, 50);
  assert.equal(b.take(30, LIMITS, 0), true);
  assert.equal(b.take(30, LIMITS, 0), false, '20 left');
  assert.equal(b.tokens, 20);
  assert.equal(b.take(30, LIMITS, 100), true, '+10 at 100/s after 100 ms: 30');
  assert.equal(b.tokens, 0);
  b.take(0, LIMITS, 10_000);
  assert.equal(b.tokens, 50, 'capped at the burst');
});

test('pacing - a batch larger than the whole bucket goes when the bucket is full', () => {
  const b = new ReadingsBucket();
  b.fill(LIMITS, 0);
  assert.equal(b.take(80, LIMITS, 0), true);
  assert.equal(b.tokens, -30, 'owed: the next batch waits until it is paid back');
  assert.equal(b.take(1, LIMITS, 300), false);
  assert.equal(b.take(1, LIMITS, 310), true);
});

test('pacing - refilling seldom or often comes to the same tokens', () => {
  const often = new ReadingsBucket();
  const seldom = new ReadingsBucket();
  often.fill(LIMITS, 0);
  seldom.fill(LIMITS, 0);
  often.take(50, LIMITS, 0);
  seldom.take(50, LIMITS, 0);
  for (let t = 1; t <= 1000; t++) often.take(0, LIMITS, t);
  seldom.take(0, LIMITS, 1000);
  assert.equal(often.tokens, seldom.tokens);
  assert.equal(often.tokens, 50);
});

test('pacing - no limit from the hub (no Welcome limits, or 0): always', () => {
  const b = new ReadingsBucket();
  b.fill(undefined, 0);
  assert.equal(b.take(1e9, undefined, 0), true);
  assert.equal(b.take(1e9, { maxReadingsPerSecond: 0 }, 0), true);
  // A rate without a burst: the bucket is unbounded, so anything already earned goes.
  b.fill({ maxReadingsPerSecond: 10 }, 0);
  assert.equal(b.take(1e9, { maxReadingsPerSecond: 10 }, 1), true);
});
