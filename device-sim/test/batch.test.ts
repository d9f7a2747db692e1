// device-sim/ tests: batch building on its own (no device, no socket): the
// open batch's columns, closing into kept batches, the builder's schedule and
// caps, and encoding with the definitions a session still needs.
// Imports: node:test, @telemetry/proto, and this package's batch, behaviours, outbox, sensors and stats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeviceMessage, encodeDeviceMessage } from '@telemetry/proto';
import { BatchBuilder, BatchEncoder, OpenBatch } from '../src/batch.ts';
import { behaviourStrategy } from '../src/behaviours.ts';
import { Outbox, type KeptBatch } from '../src/outbox.ts';
import type { SensorModel } from '../src/sensors.ts';
import { emptyCounters } from '../src/stats.ts';

/** Sensors whose reading is metric index * 1000 + the time (easy to check). */
const sensors = (n: number): SensorModel[] => Array.from({ length: n }, (_, i) => ({ name: `m${i}`, unit: 'u', sample: (t: number) => i * 1000 + t }));
const good = behaviourStrategy('good');
const T0 = 1_780_000_000_000;

test('batch - an open batch grows past its first 64 readings and closes into offsets from its first reading', () => {
  const open = new OpenBatch();
  const four = sensors(4);
  for (let i = 0; i < 30; i++) assert.equal(open.addInstant(T0 + i * 10, four, good, Math.random), 4);
  assert.equal(open.length, 120);
  assert.equal(open.firstTime, T0);
  const kept = open.close(7);
  assert.equal(open.length, 0, 'empty after closing');
  assert.deepEqual([kept.seq, kept.baseTimeMs, kept.sentAt, kept.everSent], [7, T0, 0, false]);
  assert.deepEqual(Array.from(kept.metrics.slice(0, 8)), [0, 1, 2, 3, 0, 1, 2, 3]);
  assert.deepEqual(Array.from(kept.offsets.slice(0, 8)), [0, 0, 0, 0, 10, 10, 10, 10]);
  assert.equal(kept.offsets[119], 290);
  assert.equal(kept.values[5], 1000 + T0 + 10);
  // The kept batch owns its columns: the next batch reuses the open ones.
  open.addInstant(T0 + 999, four, good, Math.random);
  assert.equal(kept.values[0], T0);
});

test('batch - a behaviour that alters values sees each reading in sensor order', () => {
  const open = new OpenBatch();
  const seen: number[] = [];
  const doubling = { ...good, onSample: (v: number, random: () => number) => { seen.push(v); return v * random(); } };
  open.addInstant(T0, sensors(3), doubling, () => 2);
  assert.deepEqual(seen, [T0, 1000 + T0, 2000 + T0]);
  assert.deepEqual(Array.from(open.close(1).values), seen.map((v) => v * 2));
});

function builder(o: { sensorCount?: number; rate?: number; batchMs?: number; cap?: number } = {}) {
  const outbox = new Outbox(o.cap ?? 100);
  const counters = emptyCounters();
  const b = new BatchBuilder({ sensors: sensors(o.sensorCount ?? 4), behaviour: good, random: Math.random, outbox, counters }, o.rate ?? 10, o.batchMs ?? 100);
  b.restartAt(T0);
  const kept = (): KeptBatch[] => Array.from({ length: outbox.length }, (_, i) => outbox.at(i)!);
  return { b, outbox, counters, kept };
}

test('batch - the builder samples on the device clock and closes a batch batchIntervalMs after its first reading', () => {
  const { b, counters, kept } = builder({ rate: 10, batchMs: 100 });
  for (let t = 10; t <= 1000; t += 10) b.sampleUntil(T0 + t, undefined);
  // Instants every 100 ms from T0+100; a batch closes at the first tick 100 ms past its first instant.
  assert.deepEqual(kept().map((k) => k.seq), [1, 2, 3, 4, 5]);
  assert.deepEqual(kept().map((k) => k.baseTimeMs - T0), [100, 300, 500, 700, 900]);
  assert.ok(kept().every((k) => k.values.length === 8));
  assert.equal(counters.readingsGenerated, 40);
  assert.equal(b.seq, 5);
});

test('batch - a batch closes early rather than exceed Welcome.max_batch_readings or max_message_bytes', () => {
  const byReadings = builder({ rate: 100, batchMs: 1000 });
  byReadings.b.sampleUntil(T0 + 1000, { maxBatchReadings: 12 });
  assert.ok(byReadings.kept().every((k) => k.values.length === 12), 'three 4-reading instants each');
  const byBytes = builder({ rate: 100, batchMs: 1000 });
  byBytes.b.sampleUntil(T0 + 1000, { maxMessageBytes: 16 * 8 }); // 16 bytes a reading: 8
  assert.ok(byBytes.kept().every((k) => k.values.length === 8));
  const tiny = builder({ rate: 100, batchMs: 1000 });
  tiny.b.sampleUntil(T0 + 50, { maxBatchReadings: 1 });
  assert.ok(tiny.kept().every((k) => k.values.length === 4), 'never less than one instant');
});

test('batch - a saturated simulator skips what it could not generate and counts it', () => {
  const { b, counters, kept } = builder({ rate: 10, batchMs: 100 });
  b.sampleUntil(T0 + 10_000, undefined); // 10 s late: far more than 5 batch intervals
  assert.equal(counters.readingsSkipped, 99 * 4, 'all but the last batch interval');
  assert.equal(counters.readingsGenerated, 4, 'one instant, at the end');
  b.sampleUntil(T0 + 10_100, undefined);
  assert.equal(kept()[0]!.baseTimeMs, T0 + 10_000, 'no backlog: the batch starts now');
  assert.equal(counters.readingsSkipped, 99 * 4);
});

test('batch - a full outbox drops the oldest batch not in flight, and the builder counts it', () => {
  const { b, outbox, counters, kept } = builder({ rate: 10, batchMs: 100, cap: 2 });
  for (let t = 10; t <= 1000; t += 10) b.sampleUntil(T0 + t, undefined);
  assert.equal(outbox.length, 2);
  assert.deepEqual(kept().map((k) => k.seq), [4, 5]);
  assert.deepEqual([counters.batchesDropped, counters.readingsDropped], [3, 24]);
});

test('batch - ConfigUpdate closes the open batch with the old settings and restarts sampling at the new rate', () => {
  const { b, kept, counters } = builder({ rate: 10, batchMs: 1000 });
  b.sampleUntil(T0 + 250, undefined); // two instants in the open batch
  b.reconfigure({ sampleIntervalMs: 5, batchIntervalMs: 40 }, T0 + 250);
  assert.deepEqual(kept().map((k) => k.values.length), [8]);
  assert.deepEqual([b.rate, b.batchIntervalMs], [200, 40]);
  b.sampleUntil(T0 + 300, undefined);
  assert.deepEqual(kept().map((k) => k.values.length), [8, 40], '10 instants, 5 ms apart, from the restart');
  assert.equal(counters.readingsSkipped, 0);
  b.reconfigure({}, T0 + 300);
  assert.deepEqual([b.rate, b.batchIntervalMs], [200, 40], 'absent fields keep their values');
});

test('batch - each session defines a metric id in the first batch that uses it, and only once', () => {
  const four = sensors(4);
  const enc = new BatchEncoder(four);
  const batchOf = (seq: number, metrics: number[]): KeptBatch => ({
    seq, baseTimeMs: T0, metrics: Uint16Array.from(metrics), offsets: new Int32Array(metrics.length),
    values: Float64Array.from(metrics), sentAt: 0, everSent: false,
  });
  const defs = (bytes: Uint8Array) => (decodeDeviceMessage(bytes).batch!.metricDefs ?? []).map((d) => `${d.id}:${d.name}:${d.unit}`);
  enc.startSession();
  assert.deepEqual(defs(enc.encode(batchOf(1, [0, 1, 0]), T0)), ['0:m0:u', '1:m1:u']);
  assert.deepEqual(defs(enc.encode(batchOf(2, [0, 1, 2]), T0)), ['2:m2:u']);
  assert.deepEqual(defs(enc.encode(batchOf(3, [3, 2, 1, 0]), T0)), ['3:m3:u']);
  assert.deepEqual(defs(enc.encode(batchOf(4, [0, 1, 2, 3]), T0)), [], 'all defined: none again');
  enc.startSession(); // a reconnect: ids start empty (§5.7), a resend defines them again (§6)
  assert.deepEqual(defs(enc.encode(batchOf(2, [0, 1, 2]), T0)), ['0:m0:u', '1:m1:u', '2:m2:u']);
});

test('batch - the encoded batch is the Batch envelope, stamped with the time of this send', () => {
  const enc = new BatchEncoder(sensors(2));
  enc.startSession();
  const kept: KeptBatch = {
    seq: 9, baseTimeMs: T0, metrics: Uint16Array.of(0, 1, 0), offsets: Int32Array.of(0, 0, 250), values: Float64Array.of(1.5, -2, Number.NaN),
    sentAt: 0, everSent: true,
  };
  const bytes = enc.encode(kept, T0 + 300);
  const expected = encodeDeviceMessage({ batch: {
    seq: 9, baseTimeMs: T0, metricDefs: [{ id: 0, name: 'm0', unit: 'u' }, { id: 1, name: 'm1', unit: 'u' }],
    metricIds: [0, 1, 0], timeOffsetsMs: [0, 0, 250], values: [1.5, -2, Number.NaN], sentTimeMs: T0 + 300,
  } });
  assert.deepEqual(Buffer.from(bytes), Buffer.from(expected), 'byte for byte');
});
