import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  CloseCode, closeReason, decodeDeviceMessage, decodeHubMessage, encodeDeviceMessage, encodeHubMessage, parseRetryAfterMs,
} from '../src/index.ts';

test('proto - every device message round-trips', () => {
  const now = 1_700_000_000_000;
  const msgs = [
    { hello: { deviceId: 'dev-1', protocolVersion: 1, firmware: 'fw 1.2', deviceTimeMs: now, features: ['config'] } },
    { batch: { seq: 2 ** 40, baseTimeMs: now, metricDefs: [{ id: 1, name: 'temperature', unit: 'degC' }], metricIds: [1, 1], timeOffsetsMs: [0, -1500], values: [21.25, -0.5], sentTimeMs: now + 5 } },
    { commandResult: { id: 7, ok: true, message: 'applied' } },
  ];
  for (const m of msgs) {
    const back = decodeDeviceMessage(encodeDeviceMessage(m));
    assert.deepEqual(JSON.parse(JSON.stringify(back)), m);
  }
});

test('proto - every hub message round-trips, 64-bit fields are numbers even when unset', () => {
  const msgs = [
    { welcome: { sessionId: 's', protocolVersion: 1, serverTimeMs: 1_700_000_000_123, echoDeviceTimeMs: 5, window: 32, credit: 16, lastSeq: 99, limits: { maxMessageBytes: 1024, idleTimeoutMs: 60_000 }, features: ['config', 'invoke'] } },
    { ack: { seq: 12, credit: 3, reports: [{ seq: 11, nonFiniteDropped: 1, skewDropped: 2, skewCorrected: 3, clockOffsetMs: -3_600_000 }] } },
    { notice: { code: CloseCode.RATE_LIMITED, reason: 'slow down', retryAfterMs: 1500 } },
    { command: { id: 3, config: { sampleIntervalMs: 1000, batchIntervalMs: 5000 } } },
  ];
  for (const m of msgs) assert.deepEqual(JSON.parse(JSON.stringify(decodeHubMessage(encodeHubMessage(m)))), m);
  const empty = decodeHubMessage(encodeHubMessage({ welcome: {} })).welcome!;
  assert.equal(typeof empty.lastSeq, 'number');
  assert.equal(empty.lastSeq, 0);
  assert.equal(typeof decodeDeviceMessage(encodeDeviceMessage({ batch: {} })).batch!.seq, 'number');
});

test('proto - a steady-state reading costs about 10 bytes on the wire', () => {
  // 100 readings of 4 interned metrics, 1 s apart per metric, no definitions.
  const n = 100;
  const bytes = encodeDeviceMessage({ batch: {
    seq: 123_456, baseTimeMs: 1_700_000_000_000, sentTimeMs: 1_700_000_025_000,
    metricIds: Array.from({ length: n }, (_, i) => 1 + (i % 4)),
    timeOffsetsMs: Array.from({ length: n }, (_, i) => Math.floor(i / 4) * 1000),
    values: Array.from({ length: n }, (_, i) => 20 + Math.sin(i) * 5),
  } }).length;
  const perReading = bytes / n;
  assert.ok(perReading < 12, `${perReading} bytes per reading`);
});

test('proto - malformed input throws instead of returning garbage', () => {
  assert.throws(() => decodeDeviceMessage(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])));
  assert.throws(() => decodeDeviceMessage(Uint8Array.from([0x12, 0x05, 0x08])));
});

test('proto - close reasons carry retry-after and fit in 123 bytes', () => {
  assert.equal(parseRetryAfterMs(closeReason('overloaded', 2500)), 2500);
  assert.equal(parseRetryAfterMs('no hint'), undefined);
  const long = closeReason('é'.repeat(200), 1000);
  assert.ok(Buffer.byteLength(long) <= 123);
  assert.equal(parseRetryAfterMs(long), 1000);
});

test('proto - the committed generated code matches the schema', () => {
  execFileSync(process.execPath, ['--import', 'tsx', 'proto/scripts/gen.ts', '--check'], { stdio: 'pipe' });
});
