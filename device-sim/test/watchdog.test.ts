// device-sim/ tests: the session timeouts on their own (times passed in, no device, no socket).
// Imports: node:test, and this package's watchdog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IDLE_MARGIN_MS, SessionWatchdog } from '../src/watchdog.ts';

const options = { welcomeTimeoutMs: 15_000, ackTimeoutMs: 60_000 };

test('watchdog - a Welcome is overdue welcomeTimeoutMs after the upgrade, and stays overdue', () => {
  const w = new SessionWatchdog(options);
  w.opened(1000);
  assert.equal(w.welcomeOverdue(15_999), false);
  assert.equal(w.welcomeOverdue(16_000), true);
  assert.equal(w.welcomeOverdue(16_100), true, 'until the connection is replaced');
  w.opened(20_000);
  assert.equal(w.welcomeOverdue(20_100), false);
});

test('watchdog - acks are overdue only with batches in flight, and the wait restarts when it fires', () => {
  const w = new SessionWatchdog(options);
  w.progressed(0);
  assert.equal(w.ackOverdue(120_000, 0), false, 'nothing in flight: nothing owed');
  assert.equal(w.ackOverdue(59_999, 3), false);
  assert.equal(w.ackOverdue(60_000, 3), true);
  assert.equal(w.ackOverdue(60_001, 3), false, 'restarted');
  w.progressed(100_000);
  assert.equal(w.ackOverdue(159_999, 1), false);
  assert.equal(w.ackOverdue(160_000, 1), true);
});

test('watchdog - a link is silent idle_timeout_ms + 10 s after the last frame, dated to the tick that saw it', () => {
  const w = new SessionWatchdog(options);
  assert.equal(IDLE_MARGIN_MS, 10_000);
  w.heard();
  w.stamp(1000); // the tick after the frame
  assert.equal(w.silent(1000 + 1000 + 9_999, 1000), false);
  w.heard(); // a ping: not dated until the next tick
  assert.equal(w.silent(1000 + 11_000, 1000), true, 'the frame since the last stamp does not count yet');
  w.stamp(12_100);
  assert.equal(w.silent(12_100 + 10_999, 1000), false);
  w.stamp(30_000); // nothing heard since: the stamp keeps the old time
  assert.equal(w.silent(12_100 + 11_000, 1000), true);
  assert.equal(w.silent(12_100 + 11_001, 1000), false, 'restarted when it fired');
  assert.equal(w.silent(1e12, 0), false, 'no idle timeout from the hub: never');
});
