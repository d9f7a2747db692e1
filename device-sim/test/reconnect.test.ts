// Reconnect policy: exponential backoff with full jitter, retry hints from
// all three places the hub puts them, and no reconnect loop after a
// "fix your device" close or refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { CloseCode, closeReason, encodeHubMessage } from '@telemetry/proto';
import { FATAL_CLOSE_CODES, retryAfterHeaderMs } from '../src/device.ts';
import { device, fakeHub, welcome } from './fake-hub.ts';

/** Delays of the reconnects a device schedules. */
function delays(d: ReturnType<typeof device>): number[] {
  const out: number[] = [];
  d.on('reconnecting', (r) => out.push(r.delayMs));
  return out;
}

test('reconnect - backoff doubles per attempt with full jitter and resets after a Welcome', async (t) => {
  const hub = await fakeHub(t, { refuse: (n) => (n <= 5 ? { status: 500 } : null) });
  // random() = 0.999: each delay sits at the top of its jitter range, so the doubling shows exactly.
  const d = device(t, hub.url, { backoffBaseMs: 10, backoffCapMs: 80, random: () => 0.999 });
  const seen = delays(d);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'the sixth attempt accepted', 4000);
  assert.deepEqual(seen.map((x) => Math.round(x * 10) / 10), [10, 20, 40, 80, 80].map((x) => x * 0.999).map((x) => Math.round(x * 10) / 10));
  assert.equal(d.counters.closes['http-500'], 5);
  welcome(hub.conns[0]!);
  await once(d, 'welcome');
  hub.conns[0]!.ws.close(CloseCode.INTERNAL_ERROR, 'storage error');
  await once(d, 'reconnecting');
  assert.equal(seen.at(-1), 10 * 0.999, 'back to the first step after a Welcome');
});

test('reconnect - full jitter spreads delays over 0..cap', async (t) => {
  const hub = await fakeHub(t, { refuse: (n) => (n <= 8 ? { status: 502 } : null) });
  const d = device(t, hub.url, { backoffBaseMs: 1, backoffCapMs: 4, seed: 3 });
  const seen = delays(d);
  d.start();
  await hub.until(() => hub.conns.length === 1, 'accepted after 8 refusals');
  assert.equal(seen.length, 8);
  for (const [i, ms] of seen.entries()) assert.ok(ms >= 0 && ms <= Math.min(4, 2 ** i), `attempt ${i + 1}: ${ms}`);
  assert.ok(new Set(seen).size > 1, 'jittered, not fixed');
});

test('reconnect - waits at least retry-after from a close reason', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  const seen = delays(d);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const closedAt = Date.now();
  hub.conns[0]!.ws.close(CloseCode.TRY_AGAIN_LATER, closeReason('storage full', 400));
  await hub.until(() => hub.conns.length === 2, 'the reconnect');
  assert.ok(seen[0]! >= 400 && seen[0]! <= 800, `scheduled ${seen[0]} ms`);
  assert.ok(Date.now() - closedAt >= 400, `reconnected after ${Date.now() - closedAt} ms`);
  assert.equal(d.counters.closes['1013'], 1);
});

test('reconnect - waits at least Notice.retry_after_ms', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  const seen = delays(d);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const c = hub.conns[0]!;
  welcome(c);
  c.ws.send(encodeHubMessage({ notice: { code: CloseCode.RATE_LIMITED, reason: 'over 1000 readings/s', retryAfterMs: 300 } }));
  await once(d, 'notice');
  assert.equal(d.lastNotice?.code, CloseCode.RATE_LIMITED);
  assert.equal(d.counters.notices['4004'], 1);
  c.ws.close(CloseCode.RATE_LIMITED, 'over 1000 readings/s'); // no hint in the reason: the Notice's counts
  await hub.until(() => hub.conns.length === 2, 'the reconnect');
  assert.ok(seen[0]! >= 300 && seen[0]! <= 600, `scheduled ${seen[0]} ms`);
});

test('reconnect - waits at least Retry-After on 503 and 429 refusals', async (t) => {
  const hub = await fakeHub(t, { refuse: (n) => (n === 1 ? { status: 503, retryAfter: 1 } : n === 2 ? { status: 429, retryAfter: 1 } : null) });
  const d = device(t, hub.url);
  const seen = delays(d);
  const started = Date.now();
  d.start();
  await hub.until(() => hub.conns.length === 1, 'the third attempt accepted', 4500);
  assert.ok(seen[0]! >= 1000 && seen[1]! >= 1000, `scheduled ${seen.join(', ')} ms`);
  assert.ok(Date.now() - started >= 2000);
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

test('reconnect - every "fix your device" close code stops it', async (t) => {
  const hub = await fakeHub(t);
  const codes = [...FATAL_CLOSE_CODES];
  assert.deepEqual(codes.sort(), [1003, 1007, 1009, 4000, 4002, 4003, 4005, 4006, 4007, 4008]);
  const devices = codes.map((code) => device(t, hub.url, { id: `dev-${code}`, token: `dev-${code}.secret` }));
  for (const d of devices) d.start();
  await hub.until(() => hub.conns.filter((c) => c.msgs.length === 1).length === codes.length, 'every hello');
  for (const c of hub.conns) {
    const code = Number(c.msgs[0]!.hello!.deviceId!.slice(4));
    c.ws.close(code, 'fix the device');
  }
  await hub.until(() => devices.every((d) => d.stopped), 'every device gives up');
  for (const [i, d] of devices.entries()) {
    assert.equal(d.fatal, true);
    assert.equal(d.counters.reconnects, 0);
    assert.equal(d.lastClose?.code, codes[i]);
  }
  assert.equal(hub.attempts, codes.length, 'no device came back');
});

test('reconnect - 401, 403 and 404 refusals stop it; a reconnectable code does not', async (t) => {
  const statuses = [401, 403, 404];
  const hub = await fakeHub(t, { refuse: (_n, req) => {
    const s = Number(/dev-(\d+)/.exec(req.headers.authorization ?? '')?.[1]);
    return statuses.includes(s) ? { status: s } : null;
  } });
  const devices = statuses.map((s) => device(t, hub.url, { id: `dev-${s}`, token: `dev-${s}.secret` }));
  for (const d of devices) d.start();
  await hub.until(() => devices.every((d) => d.stopped), 'every device gives up');
  assert.equal(hub.attempts, 3);

  const ok = device(t, hub.url);
  ok.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  hub.conns[0]!.ws.close(CloseCode.HANDSHAKE_TIMEOUT, 'no hello');
  await hub.until(() => hub.conns.length === 2, '4001 is retried');
});

test('reconnect - with reconnectOnFatal it keeps trying, no faster than fatalBackoffMs', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { reconnectOnFatal: true, fatalBackoffMs: 250 });
  const seen = delays(d);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  hub.conns[0]!.ws.close(CloseCode.PROTOCOL_ERROR, 'bad');
  await hub.until(() => hub.conns.length === 2, 'the reconnect');
  assert.ok(seen[0]! >= 250 && seen[0]! <= 500, `scheduled ${seen[0]} ms`);
  assert.equal(d.stopped, false);
});
