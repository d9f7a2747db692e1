// device-sim/ tests: the device's reconnect policy on the in-memory socket,
// with node:test's mock timers standing in for the wait: exponential backoff
// with full jitter, retry hints from all three places the hub puts them, and
// no reconnect loop after a "fix your device" close or refusal.
// Imports: node:test, @telemetry/proto, and this package's reconnect and test helpers.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, closeReason } from '@telemetry/proto';
import { FATAL_CLOSE_CODES, retryAfterHeaderMs } from '../src/reconnect.ts';
import { fakeDevice } from './fake-socket.ts';

/** Delays of the reconnects a device schedules. */
function delays(d: ReturnType<typeof fakeDevice>['device']): number[] {
  const out: number[] = [];
  d.on('reconnecting', (r) => out.push(r.delayMs));
  return out;
}

/** The wait is the reconnect timer's: nothing happens before it runs out, the next attempt right when it does. */
function waitOut(t: TestContext, hub: ReturnType<typeof fakeDevice>['hub'], delayMs: number): void {
  const before = hub.sockets.length;
  const justShort = Math.max(0, Math.ceil(delayMs) - 1);
  t.mock.timers.tick(justShort);
  assert.equal(hub.sockets.length, before, `no attempt ${justShort} ms into a ${delayMs} ms wait`);
  t.mock.timers.tick(Math.ceil(delayMs) - justShort);
  assert.equal(hub.sockets.length, before + 1, `the next attempt after ${delayMs} ms`);
}

test('reconnect - backoff doubles per attempt with full jitter and resets after a Welcome', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  // random() = 0.999: each delay sits at the top of its jitter range, so the doubling shows exactly.
  const { device: d, hub } = fakeDevice(t, { backoffBaseMs: 10, backoffCapMs: 80, random: () => 0.999 });
  const seen = delays(d);
  d.start();
  for (let i = 0; i < 5; i++) {
    hub.last.refuse(500);
    waitOut(t, hub, seen.at(-1)!);
  }
  assert.deepEqual(seen.map((x) => Math.round(x * 10) / 10), [10, 20, 40, 80, 80].map((x) => x * 0.999).map((x) => Math.round(x * 10) / 10));
  assert.equal(d.counters.closes['http-500'], 5);
  hub.last.accept().welcome();
  assert.equal(d.connected, true);
  hub.last.hubClose(CloseCode.INTERNAL_ERROR, 'storage error');
  assert.equal(seen.at(-1), 10 * 0.999, 'back to the first step after a Welcome');
});

test('reconnect - full jitter spreads delays over 0..cap', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub } = fakeDevice(t, { backoffBaseMs: 1, backoffCapMs: 4, seed: 3 });
  const seen = delays(d);
  d.start();
  for (let i = 0; i < 8; i++) {
    hub.last.refuse(502);
    waitOut(t, hub, seen.at(-1)!);
  }
  hub.last.accept();
  assert.equal(seen.length, 8);
  for (const [i, ms] of seen.entries()) assert.ok(ms >= 0 && ms <= Math.min(4, 2 ** i), `attempt ${i + 1}: ${ms}`);
  assert.ok(new Set(seen).size > 1, 'jittered, not fixed');
});

test('reconnect - waits at least retry-after from a close reason', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub } = fakeDevice(t);
  const seen = delays(d);
  d.start();
  hub.last.accept();
  hub.last.hubClose(CloseCode.TRY_AGAIN_LATER, closeReason('storage full', 400));
  assert.ok(seen[0]! >= 400 && seen[0]! <= 800, `scheduled ${seen[0]} ms`);
  waitOut(t, hub, seen[0]!); // reconnected no sooner than the hint
  assert.equal(d.counters.closes['1013'], 1);
});

test('reconnect - waits at least Notice.retry_after_ms', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub } = fakeDevice(t);
  const seen = delays(d);
  d.start();
  const c = hub.last.accept();
  c.welcome();
  c.deliver({ notice: { code: CloseCode.RATE_LIMITED, reason: 'over 1000 readings/s', retryAfterMs: 300 } });
  assert.equal(d.lastNotice?.code, CloseCode.RATE_LIMITED);
  assert.equal(d.counters.notices['4004'], 1);
  c.hubClose(CloseCode.RATE_LIMITED, 'over 1000 readings/s'); // no hint in the reason: the Notice's counts
  assert.ok(seen[0]! >= 300 && seen[0]! <= 600, `scheduled ${seen[0]} ms`);
  waitOut(t, hub, seen[0]!);
});

test('reconnect - waits at least Retry-After on 503 and 429 refusals', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub } = fakeDevice(t);
  const seen = delays(d);
  d.start();
  hub.last.refuse(503, '1');
  waitOut(t, hub, seen[0]!);
  hub.last.refuse(429, '1');
  waitOut(t, hub, seen[1]!);
  assert.ok(seen[0]! >= 1000 && seen[1]! >= 1000, `scheduled ${seen.join(', ')} ms`);
  assert.equal(hub.sockets.length, 3, 'the third attempt, no sooner than 2 s in');
  assert.equal(d.counters.closes['http-503'], 1);
  assert.equal(d.counters.closes['http-429'], 1);
});

test('reconnect - Retry-After as seconds or an HTTP date', () => {
  const now = Date.parse('2026-11-25T05:00:00Z');
  assert.equal(retryAfterHeaderMs('7', now), 7000);
  assert.equal(retryAfterHeaderMs('Wed, 25 Nov 2026 05:00:09 GMT', now), 9000);
  assert.equal(retryAfterHeaderMs('soon', now), undefined);
  assert.equal(retryAfterHeaderMs(undefined, now), undefined);
});

test('reconnect - every "fix your device" close code stops it', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const codes = [...FATAL_CLOSE_CODES];
  assert.deepEqual(codes.sort(), [1003, 1007, 1009, 4000, 4002, 4003, 4005, 4006, 4007, 4008]);
  const devices = codes.map((code) => fakeDevice(t, { id: `dev-${code}`, token: `dev-${code}.secret` }));
  for (const { device } of devices) device.start();
  for (const [i, { hub }] of devices.entries()) hub.last.accept().hubClose(codes[i]!, 'fix the device');
  assert.ok(devices.every(({ device }) => device.stopped), 'every device gives up');
  t.mock.timers.tick(3_600_000);
  for (const [i, { device: d, hub }] of devices.entries()) {
    assert.equal(d.fatal, true);
    assert.equal(d.counters.reconnects, 0);
    assert.equal(d.lastClose?.code, codes[i]);
    assert.equal(hub.sockets.length, 1, 'no device came back');
  }
});

test('reconnect - 401, 403 and 404 refusals stop it; a reconnectable code does not', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const statuses = [401, 403, 404];
  const devices = statuses.map((s) => fakeDevice(t, { id: `dev-${s}`, token: `dev-${s}.secret` }));
  for (const { device } of devices) device.start();
  for (const [i, { hub }] of devices.entries()) hub.last.refuse(statuses[i]!);
  assert.ok(devices.every(({ device }) => device.stopped), 'every device gives up');
  t.mock.timers.tick(3_600_000);
  assert.equal(devices.reduce((n, { hub }) => n + hub.sockets.length, 0), 3);

  const { device: ok, hub } = fakeDevice(t);
  const seen = delays(ok);
  ok.start();
  hub.last.accept().hubClose(CloseCode.HANDSHAKE_TIMEOUT, 'no hello');
  waitOut(t, hub, seen[0]!); // 4001 is retried
});

test('reconnect - with reconnectOnFatal it keeps trying, no faster than fatalBackoffMs', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub } = fakeDevice(t, { reconnectOnFatal: true, fatalBackoffMs: 250 });
  const seen = delays(d);
  d.start();
  hub.last.accept().hubClose(CloseCode.PROTOCOL_ERROR, 'bad');
  assert.ok(seen[0]! >= 250 && seen[0]! <= 500, `scheduled ${seen[0]} ms`);
  waitOut(t, hub, seen[0]!);
  assert.equal(d.stopped, false);
});

test('reconnect - a network error is counted by its code and retried; a URL the client rejects at once is fatal', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub } = fakeDevice(t);
  const seen = delays(d);
  d.start();
  hub.last.fail('ECONNREFUSED');
  assert.equal(d.counters.closes['error:ECONNREFUSED'], 1);
  waitOut(t, hub, seen[0]!);

  const { device: bad } = fakeDevice(t, { connect: () => { throw new SyntaxError('Invalid URL'); } });
  bad.start();
  assert.equal(bad.counters.closes['error:SyntaxError'], 1);
  assert.equal(bad.fatal, true);
  assert.equal(bad.stopped, true, 'retrying cannot fix a configuration bug');
});
