// The InfluxDB sink's failure policy without a server: how a failed write
// is sorted (failures.ts), how long the sink waits before trying again and
// how the /ping probe ends an outage's backoff (retry.ts).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { HttpError, RequestTimedOutError } from '@influxdata/influxdb-client';
import { MAX_RETRY_AFTER_MS, classify, retryAfterMs } from '../src/sinks/influx/failures.ts';
import { Backoff, authRetryDelayMs, retryDelayMs } from '../src/sinks/influx/retry.ts';

const httpError = (status: number, headers: Record<string, string> = {}, body = '{"message":"nope"}') =>
  new HttpError(status, 'status text', body, headers['retry-after'], 'application/json', undefined, headers);

test('influx failures - 400/422 are data errors, 413 splits, 401/403 are auth, 429/5xx/network retry', () => {
  const data = classify(httpError(400, {}, JSON.stringify({ message: "unable to parse 'x': bad" })));
  assert.deepEqual(data, { kind: 'data', reason: "HTTP 400: unable to parse 'x': bad", message: "unable to parse 'x': bad", status: 400 });
  assert.equal(classify(httpError(422)).kind, 'data');
  assert.deepEqual(classify(httpError(413)), { kind: 'split' });
  assert.deepEqual(classify(httpError(401)), { kind: 'auth', reason: 'HTTP 401: nope' });
  assert.equal(classify(httpError(403)).kind, 'auth');
  for (const status of [429, 500, 502, 503, 504, 418]) {
    assert.deepEqual(classify(httpError(status)), { kind: 'retry', reason: `HTTP ${status}: nope`, afterMs: 0, unreachable: false }, String(status));
  }
  // A body without JSON: the text is the reason.
  assert.equal((classify(httpError(500, {}, 'proxy says no')) as { reason: string }).reason, 'HTTP 500: proxy says no');
});

test('influx failures - Retry-After counts on 429 and 503 only; no answer at all is an outage, a timeout is not', () => {
  assert.equal((classify(httpError(429, { 'retry-after': '7' })) as { afterMs: number }).afterMs, 7000);
  assert.equal((classify(httpError(503, { 'retry-after': '2' })) as { afterMs: number }).afterMs, 2000);
  assert.equal((classify(httpError(500, { 'retry-after': '2' })) as { afterMs: number }).afterMs, 0);
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8086'), { code: 'ECONNREFUSED' });
  assert.deepEqual(classify(refused), { kind: 'retry', reason: refused.message, afterMs: 0, unreachable: true });
  assert.equal((classify(new RequestTimedOutError()) as { unreachable: boolean }).unreachable, false);
});

test('influx failures - Retry-After: delay-seconds or an HTTP-date, clamped to an hour; anything else is 0', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const at = (value: string) => retryAfterMs(httpError(503, { 'retry-after': value }), now);
  assert.equal(at('0'), 0);
  assert.equal(at(' 30 '), 30_000);
  assert.equal(at(new Date(now + 90_000).toUTCString()), 90_000);
  assert.equal(at(new Date(now - 90_000).toUTCString()), 0, 'a date in the past: now');
  assert.equal(at('999999'), MAX_RETRY_AFTER_MS);
  assert.equal(at(new Date(now + 7 * 86_400_000).toUTCString()), MAX_RETRY_AFTER_MS);
  assert.equal(at('-5'), 0);
  assert.equal(at('soon'), 0);
  assert.equal(retryAfterMs(httpError(503), now), 0);
});

test('influx retry - full jitter under a cap doubling from the base to the cap, never before Retry-After', () => {
  const delays = { backoffBaseMs: 1000, backoffCapMs: 60_000, authRetryMs: 30_000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8].map((attempt) => retryDelayMs(attempt, 0, delays, 0.999_999)).map(Math.round), [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
  assert.equal(retryDelayMs(3, 0, delays, 0.5), 2000);
  assert.equal(retryDelayMs(3, 0, delays, 0), 0);
  assert.equal(retryDelayMs(1, 5000, delays, 0.5), 5000, 'the server asked for more');
  assert.equal(retryDelayMs(7, 5000, delays, 0.5), 30_000);
  assert.equal(retryDelayMs(10_000, 0, delays, 0.5), 30_000, 'no overflow on a long outage');
  assert.equal(authRetryDelayMs(delays, 0), 15_000);
  assert.equal(authRetryDelayMs(delays, 0.5), 30_000);
  assert.equal(Math.round(authRetryDelayMs(delays, 0.999_999)), 45_000);
});

/** A Backoff whose /ping answers are scripted: `answers[n]` for the n-th ping, the last one after that. */
function scriptedBackoff(t: TestContext, answers: boolean[]) {
  const seen = { pings: 0, backUp: 0 };
  const backoff = new Backoff({
    probeIntervalMs: 20,
    ping: () => Promise.resolve(answers[Math.min(seen.pings++, answers.length - 1)]!),
    onBackUp: () => { seen.backUp++; },
  });
  t.after(() => { backoff.stopProbing(); backoff.wakeAll(); backoff.dispose(); });
  return { backoff, seen };
}

const settled = (p: Promise<void>, ms: number) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

test('influx retry - a probing backoff ends once /ping answers after failing; one that never failed waits its time out', async (t) => {
  const outage = scriptedBackoff(t, [false, false, true]);
  assert.equal(await settled(outage.backoff.sleep(60_000, true), 2000), true, 'ended by the probe');
  assert.equal(outage.seen.backUp, 1);
  assert.ok(outage.seen.pings >= 3);

  // /ping answers all along: the server is up and failing writes, so the backoff stands.
  const up = scriptedBackoff(t, [true]);
  assert.equal(await settled(up.backoff.sleep(60_000, true), 300), false);
  assert.ok(up.seen.pings >= 3, 'probed meanwhile');
  assert.equal(up.seen.backUp, 0);

  // ...unless a write found it unreachable first: then the next answer ends the outage.
  up.backoff.markUnreachable();
  assert.equal(await settled(up.backoff.sleep(60_000, true), 2000), true);
  assert.equal(up.seen.backUp, 1);
});

test('influx retry - the probe never ends a backoff before Retry-After, and never ends a non-probing one', async (t) => {
  const { backoff, seen } = scriptedBackoff(t, [false, true]);
  const started = Date.now();
  const plain = backoff.sleep(60_000, false);
  await backoff.sleep(60_000, true, 400);
  assert.ok(Date.now() - started >= 390, `ended after ${Date.now() - started} ms, before the 400 ms Retry-After`);
  assert.equal(seen.backUp, 1);
  assert.equal(await settled(plain, 100), false, 'an auth backoff is not an outage');
  backoff.wakeAll();
  assert.equal(await settled(plain, 100), true, 'wakeAll ends every sleep');
});

test('influx retry - after stopProbing no more pings are sent', async (t) => {
  const { backoff, seen } = scriptedBackoff(t, [false]);
  void backoff.sleep(60_000, true);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(seen.pings >= 1);
  backoff.stopProbing();
  await new Promise((r) => setTimeout(r, 50));
  const pings = seen.pings;
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(seen.pings, pings);
});
