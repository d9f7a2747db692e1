// Test support for the InfluxDB sink tests: spool batches with two metrics
// (temperature, humidity), registry-style tags and ms timestamps from T0.
import type { AcceptedBatch } from '../src/spool/store.ts';

export const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);

export interface BatchOpts { metric?: string; n?: number; corrected?: boolean; tags?: Record<string, string>; units?: [string, string] }

export function batch(deviceId: string, seq: number, opts: BatchOpts = {}): AcceptedBatch {
  const n = opts.n ?? 10;
  const times = Float64Array.from({ length: n }, (_, i) => T0 + seq * 1000 + i * 50);
  return {
    deviceId, seq, tags: opts.tags ?? { site: 'north side', model: 'th-2' }, receivedAtMs: T0, clockOffsetMs: 0,
    metricNames: [opts.metric ?? 'temperature', 'humidity'], metricUnits: opts.units ?? ['degC', '%'],
    metricIndex: Uint16Array.from({ length: n }, (_, i) => i % 2),
    timesMs: times,
    deviceTimesMs: opts.corrected ? times.map((t) => t + 3_600_000) : null,
    values: Float64Array.from({ length: n }, (_, i) => seq + i / 4),
  };
}
