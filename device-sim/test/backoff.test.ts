// device-sim/ tests: the reconnect wait as a pure function, and the state a
// device keeps between attempts (no device, no socket, no timers).
// Imports: node:test, and this package's reconnect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeReason } from '@telemetry/proto';
import { DEFAULT_BACKOFF, ReconnectState, backoffDelayMs } from '../src/reconnect.ts';

const NO_HINTS = { retryAfterMs: 0, fatalFloorMs: 0 };
/** A random() that returns these values in order, counts its draws and throws past the last. */
const fixed = (...values: number[]) => {
  const random = () => {
    if (random.draws >= values.length) throw new Error(`random() drawn ${random.draws + 1} times`);
    return values[random.draws++]!;
  };
  random.draws = 0;
  return random;
};

test('backoff - attempt n waits random * min(cap, base * 2^(n-1)): doubling, capped', () => {
  const options = { baseMs: 10, capMs: 80 };
  const top = [1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(n, NO_HINTS, () => 0.999, options));
  assert.deepEqual(top, [10, 20, 40, 80, 80, 80].map((x) => x * 0.999));
  assert.equal(backoffDelayMs(3, NO_HINTS, () => 0, options), 0, 'full jitter reaches 0');
  assert.equal(backoffDelayMs(3, NO_HINTS, () => 0.5, options), 20);
  // The defaults: 1 s doubling to 30 s (§11); a huge attempt number neither overflows nor passes the cap.
  assert.deepEqual(DEFAULT_BACKOFF, { baseMs: 1000, capMs: 30_000 });
  assert.equal(backoffDelayMs(1, NO_HINTS, () => 0.5), 500);
  assert.equal(backoffDelayMs(1_000_000, NO_HINTS, () => 0.5), 15_000);
});

test('backoff - without a hint it draws random() once; with one, once more for its own jitter', () => {
  const once = fixed(0.5);
  backoffDelayMs(2, NO_HINTS, once, DEFAULT_BACKOFF);
  assert.equal(once.draws, 1);
  const twice = fixed(0.5, 0.5);
  backoffDelayMs(2, { retryAfterMs: 100, fatalFloorMs: 0 }, twice, DEFAULT_BACKOFF);
  assert.equal(twice.draws, 2, 'the device shares this stream with the bad actors: the count must not change');
});

test('backoff - a retry hint is a floor, plus up to min(1 s, hint) of jitter', () => {
  const options = { baseMs: 20, capMs: 100 };
  assert.equal(backoffDelayMs(1, { retryAfterMs: 400, fatalFloorMs: 0 }, fixed(0.5, 0.25), options), 400 + 0.25 * 400);
  assert.equal(backoffDelayMs(1, { retryAfterMs: 400, fatalFloorMs: 0 }, fixed(0.5, 0.999), options), 400 + 0.999 * 400);
  // A long hint: own jitter at most 1 s.
  assert.equal(backoffDelayMs(1, { retryAfterMs: 5000, fatalFloorMs: 0 }, fixed(0, 0.5), options), 5500);
  // A backoff already longer than the hint plus jitter wins.
  assert.equal(backoffDelayMs(8, { retryAfterMs: 10, fatalFloorMs: 0 }, fixed(0.9, 0), { baseMs: 1000, capMs: 30_000 }), 27_000);
});

test('backoff - after a fatal close the larger of the fatal floor and the hint is the floor', () => {
  const options = { baseMs: 20, capMs: 100 };
  assert.equal(backoffDelayMs(1, { retryAfterMs: 0, fatalFloorMs: 250 }, fixed(0.5, 0), options), 250);
  assert.equal(backoffDelayMs(1, { retryAfterMs: 300, fatalFloorMs: 250 }, fixed(0.5, 0), options), 300);
  assert.equal(backoffDelayMs(1, { retryAfterMs: 300, fatalFloorMs: 30_000 }, fixed(0.5, 0.5), options), 30_500);
});

test('reconnect state - hints: the largest counts, used up by the next attempt, cleared by a Welcome', () => {
  const options = { baseMs: 20, capMs: 100 };
  const s = new ReconnectState();
  s.hint(300);
  s.closed(1013, closeReason('storage full', 400));
  s.hint(undefined);
  s.refused(503, '0.2'); // not delay-seconds: no hint
  assert.equal(s.nextDelayMs(fixed(0, 0), options, 0), 400, 'the largest hint');
  assert.equal(s.attempt, 1);
  assert.equal(s.nextDelayMs(fixed(0), options, 0), 0, 'the hint was used up');
  assert.equal(s.attempt, 2);
  s.refused(429, '2');
  s.refused(500, '9'); // Retry-After counts on 429 and 503 only
  assert.equal(s.nextDelayMs(fixed(0, 0), options, 0), 2000);
  s.hint(700);
  s.welcomed();
  assert.equal(s.attempt, 0, '§11: reset after each Welcome');
  assert.equal(s.nextDelayMs(fixed(0.5), options, 0), 10, 'and the hint with it; attempt 1 again');
});

test('reconnect state - fatal closes and refusals, and the fatal floor only when fatal', () => {
  const options = { baseMs: 20, capMs: 100 };
  const s = new ReconnectState();
  for (const code of [1000, 1001, 1006, 1011, 1013, 4001, 4004]) { s.closed(code, ''); assert.equal(s.fatal, false, `${code}`); }
  assert.equal(s.nextDelayMs(fixed(0), options, 250), 0, 'not fatal: no floor');
  s.closed(4003, 'window exceeded');
  assert.equal(s.fatal, true);
  assert.equal(s.nextDelayMs(fixed(0, 0), options, 250), 250);
  s.attemptStarted();
  assert.equal(s.fatal, false, 'a new attempt starts unjudged');
  s.refused(403, undefined);
  assert.equal(s.fatal, true);
  s.attemptStarted();
  s.refused(503, undefined);
  assert.equal(s.fatal, false);
});
