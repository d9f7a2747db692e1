// The spool record codec: version 2 round-trips every number bit for bit,
// version 1 records (an older hub's spool) still decode, damaged payloads
// throw (never hang or allocate what the payload cannot hold), and the size
// per reading for the batch shapes devices send.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLogger } from '../src/core/log.ts';
import type { AcceptedBatch } from '../src/core/batch.ts';
import { checkFrame, decodeRecord, encodeRecord, FRAME_HEADER_BYTES } from '../src/spool/codec.ts';
import { crc32Of } from '../src/spool/crc32.ts';
import { SEGMENT_HEADER, segmentName } from '../src/spool/segment-file.ts';
import { Spool } from '../src/spool/spool.ts';
import { tempDir } from '../../test/support/fs.ts';
import { seededRandom } from '../../test/support/random.ts';

// ---- helpers ----------------------------------------------------------------

/** The payload of a frame, checked. */
function payloadOf(frame: Buffer): Buffer {
  const f = checkFrame(frame, 0, 1 << 30);
  assert.equal(f.kind, 'ok');
  return (f as { payload: Buffer }).payload;
}

function roundTrip(b: AcceptedBatch): AcceptedBatch {
  return decodeRecord(payloadOf(encodeRecord(b)));
}

function bits(a: Float64Array | Uint16Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
}

/** Equal bit for bit: -0 is not 0, NaN payloads count. */
function assertSameBatch(actual: AcceptedBatch, expected: AcceptedBatch, what = ''): void {
  assert.equal(actual.deviceId, expected.deviceId, what);
  assert.ok(Object.is(actual.seq, expected.seq), `${what} seq ${actual.seq} vs ${expected.seq}`);
  assert.ok(Object.is(actual.receivedAtMs, expected.receivedAtMs), `${what} receivedAtMs`);
  assert.ok(Object.is(actual.clockOffsetMs, expected.clockOffsetMs), `${what} clockOffsetMs ${actual.clockOffsetMs} vs ${expected.clockOffsetMs}`);
  assert.deepEqual({ ...actual.tags }, { ...expected.tags }, what);
  assert.deepEqual(Object.keys(actual.tags), Object.keys(expected.tags), `${what} tag order`);
  assert.deepEqual([...actual.metricNames], [...expected.metricNames], what);
  assert.deepEqual([...actual.metricUnits], [...expected.metricUnits], what);
  assert.ok(actual.metricIndex instanceof Uint16Array && actual.timesMs instanceof Float64Array && actual.values instanceof Float64Array, what);
  assert.equal(bits(actual.metricIndex), bits(expected.metricIndex), `${what} metricIndex`);
  assert.equal(bits(actual.timesMs), bits(expected.timesMs), `${what} timesMs`);
  assert.equal(actual.deviceTimesMs === null, expected.deviceTimesMs === null, `${what} deviceTimesMs presence`);
  if (actual.deviceTimesMs && expected.deviceTimesMs) assert.equal(bits(actual.deviceTimesMs), bits(expected.deviceTimesMs), `${what} deviceTimesMs`);
  assert.equal(bits(actual.values), bits(expected.values), `${what} values`);
}


const SENSORS = [
  { name: 'temperature', unit: 'degC', decimals: 2, mean: 19, sd: 6 },
  { name: 'humidity', unit: '%', decimals: 1, mean: 55, sd: 15 },
  { name: 'pressure', unit: 'hPa', decimals: 1, mean: 1013, sd: 20 },
  { name: 'battery', unit: 'V', decimals: 3, mean: 3.7, sd: 0.3 },
];
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;
const SIM_TAGS = Object.freeze({ site: 'north', model: 'thp-1' });

/**
 * A batch as the simulator sends it and ingest accepts it: one reading of
 * each of the 4 metrics per instant, instants `stepMs` apart (rounded to the
 * ms as the simulator does), values with the sensors' decimals, integer
 * clock offset, the registry's frozen tags, fresh metric arrays.
 */
function deviceBatch(n: number, seq: number, stepMs: number, values: 'sensor' | 'any' = 'sensor'): AcceptedBatch {
  const random = seededRandom(seq * 31 + n);
  const t0 = 1_760_000_000_000 + seq * 10_000;
  const timesMs = new Float64Array(n);
  const vals = new Float64Array(n);
  const metricIndex = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const m = i % SENSORS.length;
    const s = SENSORS[m]!;
    metricIndex[i] = m;
    timesMs[i] = Math.round(t0 + Math.floor(i / SENSORS.length) * stepMs);
    const v = s.mean + (random() - 0.5) * 2 * s.sd;
    vals[i] = values === 'sensor' ? round(v, s.decimals) : v;
  }
  const used = SENSORS.slice(0, Math.min(n, SENSORS.length));
  return {
    deviceId: 'sim-0042', seq, tags: SIM_TAGS, receivedAtMs: Math.round(t0 + (n / SENSORS.length) * stepMs + 37), clockOffsetMs: -12,
    metricNames: used.map((s) => s.name), metricUnits: used.map((s) => s.unit), metricIndex, timesMs, deviceTimesMs: null, values: vals,
  };
}

/** A batch with every column given (index defaults to cycling through the metrics). */
function shaped(parts: Partial<AcceptedBatch> & { values: Float64Array }): AcceptedBatch {
  const n = parts.values.length;
  const names = parts.metricNames ?? ['temperature', 'humidity'];
  return {
    deviceId: 'dev-1', seq: 1, tags: { site: 'lab' }, receivedAtMs: 1_700_000_000_000, clockOffsetMs: 0,
    metricNames: names, metricUnits: parts.metricUnits ?? names.map(() => ''),
    metricIndex: Uint16Array.from({ length: n }, (_, i) => (names.length ? i % names.length : 0)),
    timesMs: Float64Array.from({ length: n }, (_, i) => 1_700_000_000_000 + i * 10),
    deviceTimesMs: null,
    ...parts,
  };
}

function f64(...xs: number[]): Float64Array { return Float64Array.from(xs); }

/** A Float64Array holding the exact 64-bit patterns given in hex. */
function f64bits(...hex: string[]): Float64Array {
  const out = new Float64Array(hex.length);
  const view = new DataView(out.buffer);
  hex.forEach((h, i) => view.setBigUint64(i * 8, BigInt(`0x${h}`), true));
  return out;
}

// ---- round trips ------------------------------------------------------------------

test('spool codec v2 - device-shaped batches of 0 to 10,000 readings round-trip bit for bit', () => {
  for (const n of [0, 1, 2, 3, 4, 5, 8, 20, 100, 1000, 10_000]) {
    for (const stepMs of [1000, 40, 1000 / 3]) {
      for (const kind of ['sensor', 'any'] as const) {
        const b = deviceBatch(n, n + 1, stepMs, kind);
        assertSameBatch(roundTrip(b), b, `${n} readings, step ${stepMs}, ${kind} values`);
      }
    }
  }
});

test('spool codec v2 - times: integer and fractional, out of order, large and tiny deltas, -0, huge and non-finite', () => {
  const values = (n: number) => Float64Array.from({ length: n }, (_, i) => i / 7);
  const cases: [string, Float64Array, number][] = [
    ['integer ms', f64(1_700_000_000_000, 1_700_000_000_000, 1_700_000_001_000), 1_700_000_001_500],
    ['fractional ms', f64(1_700_000_000_000.5, 1_700_000_000_001.25, 1_700_000_000_002), 1_700_000_000_005],
    ['fractional base, integer steps', f64(0.5, 1.5, 2.5, -7.5), 0.5],
    ['out of order, negative deltas', f64(1_700_000_005_000, 1_700_000_000_000, 1_700_000_009_999, 1_700_000_000_001), 1_700_000_010_000],
    ['deltas past 32 bits (years, the 1970s)', f64(1_700_000_000_000, 0, 86_400_000, 1_700_000_000_000, -1_700_000_000_000), 1_700_000_000_000],
    ['deltas at the safe limit', f64(0, 2 ** 52 - 1, 0, -(2 ** 52) + 1, 2 ** 53 - 1, -(2 ** 53) + 1), 0],
    ['beyond safe integers', f64(2 ** 60, 2 ** 60 + 2 ** 10, 1e300, -1e300), 0],
    ['-0 first and later', f64(-0, 0, -0, 5, -0), -0],
    ['-0 against a +0 base', f64(-0), 0],
    ['non-finite', f64(Infinity, -Infinity, NaN, 1), 0],
    ['NaN payload', f64bits('7ff8000000000001', '7ff00000000000ff', 'fff8000000000123'), 0],
    ['denormal and tiny', f64(5e-324, -5e-324, 2.2250738585072014e-308, 1e-300), 0],
    ['receivedAt non-finite', f64(1, 2, 3), NaN],
    ['receivedAt fractional', f64(1_700_000_000_000, 1_700_000_000_001), 1_700_000_000_000.75],
  ];
  for (const [what, timesMs, receivedAtMs] of cases) {
    const n = timesMs.length;
    for (const deviceTimesMs of [null, timesMs.slice().reverse(), Float64Array.from(timesMs, (t) => t + 3_600_000)]) {
      const b = shaped({ values: values(n), timesMs, receivedAtMs, deviceTimesMs });
      assertSameBatch(roundTrip(b), b, `${what}, device times ${deviceTimesMs ? 'present' : 'absent'}`);
    }
  }
  // Long columns take the byte-copy path on little-endian hosts.
  const long = Float64Array.from({ length: 500 }, (_, i) => 1_700_000_000_000 + i * 0.5);
  const b = shaped({ values: values(500), timesMs: long, deviceTimesMs: Float64Array.from(long, (t) => -t) });
  assertSameBatch(roundTrip(b), b, 'long fractional columns');
});

test('spool codec v2 - values: -0, denormals, MAX_VALUE, decimals, float32s, integers, mixed, non-finite', () => {
  const cases: [string, Float64Array][] = [
    ['-0 among decimals', f64(21.5, -0, 3.25, 0)],
    ['-0 alone', f64(-0)],
    ['+0 alone', f64(0)],
    ['denormals', f64(5e-324, -5e-324, 2.2250738585072014e-308, 1e-310)],
    ['extremes', f64(Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53 + 2)],
    ['decimals of 0 to 9 digits', f64(1, 2.5, 3.25, 4.125, 0.0625, 1.23456, 0.1234567, 0.12345678, 0.123456789)],
    ['more than 9 digits', f64(0.1234567891, 1 / 3, Math.PI, Math.E)],
    ['decimals near the 32-bit edge', f64(2147483.647, -2147483.648, 2147483647, -2147483648, 2147483648, -2147483649)],
    ['large integers', f64(1e12, -1e15, 123456789012, 2 ** 40)],
    ['float32 values', Float64Array.from([0.1, 21.37, -3.3, 1e-7, 3.4e38], (v) => Math.fround(v))],
    ['float32 with -0', Float64Array.from([Math.fround(0.1), -0, Math.fround(1.1)])],
    ['mixed decimals then one arbitrary', f64(21.5, 55.2, 1013.25, 3.712, 0.1 + 0.2)],
    ['arbitrary doubles', Float64Array.from({ length: 40 }, (_, i) => Math.sin(i) * 1e3)],
    ['non-finite (dropped upstream, exact anyway)', f64(Infinity, -Infinity, NaN, 1.5)],
    ['NaN payloads', f64bits('7ff8000000000001', '7ff0000000000001', 'fff8dead0000beef')],
    ['NaN payloads, long column', f64bits(...Array.from({ length: 40 }, (_, i) => (0x7ff8000000000000n + BigInt(i + 1)).toString(16)))],
    ['negative decimals', f64(-21.37, -0.5, -1013.2, -0.001)],
  ];
  for (const [what, values] of cases) {
    for (const deviceTimes of [false, true]) {
      const b = shaped({ values, deviceTimesMs: deviceTimes ? Float64Array.from(values, (_, i) => 1_700_000_000_000 + i * 10 + 3_600_000) : null });
      assertSameBatch(roundTrip(b), b, `${what}${deviceTimes ? ', with device times' : ''}`);
    }
  }
});

test('spool codec v2 - header fields: seq, clock offset, unicode ids and tags, 0 and 300 metrics', () => {
  const base = shaped({ values: f64(1, 2, 3) });
  for (const seq of [0, -0, 1, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 1.5, -1, NaN]) {
    assertSameBatch(roundTrip({ ...base, seq }), { ...base, seq }, `seq ${seq}`);
  }
  for (const clockOffsetMs of [0, -0, -12, 3_600_000, -(2 ** 31), 2 ** 31 - 1, 2 ** 31, -(2 ** 31) - 1, 0.5, -1e15, NaN]) {
    assertSameBatch(roundTrip({ ...base, clockOffsetMs }), { ...base, clockOffsetMs }, `clock offset ${clockOffsetMs}`);
  }
  const unicode = shaped({
    deviceId: 'gerät-ü-東京-🌡', tags: Object.freeze({ 'standort': 'nörth', 'ビル': '東京タワー', emoji: '🌡🌧', '': 'empty key', long: 'x'.repeat(256), '10': 'integer-like key', ['__proto__']: 'own key' }),
    metricNames: ['temperature', 'humidity'], metricUnits: ['°C', '‰'], values: f64(20.5, 55),
  });
  assertSameBatch(roundTrip(unicode), unicode, 'unicode');
  const noMetrics = shaped({ metricNames: [], metricUnits: [], values: f64() });
  assertSameBatch(roundTrip(noMetrics), noMetrics, '0 metrics, 0 readings');
  // Readings that point at no metric cannot come from ingest; the codec stores them as given.
  const orphans = shaped({ metricNames: [], metricUnits: [], values: f64(1, 2), metricIndex: Uint16Array.from([0, 7]) });
  assertSameBatch(roundTrip(orphans), orphans, '0 metrics, 2 readings');
  const names = Array.from({ length: 300 }, (_, i) => `metric_${i}`);
  const many = shaped({
    metricNames: names, metricUnits: names.map((_, i) => (i % 2 ? 'V' : '')),
    values: Float64Array.from({ length: 900 }, (_, i) => i * 1.5),
    metricIndex: Uint16Array.from({ length: 900 }, (_, i) => (i * 7) % 300),
  });
  assertSameBatch(roundTrip(many), many, '300 metrics (u16 indexes)');
  const cycling = shaped({ metricNames: names, metricUnits: names.map(() => ''), values: Float64Array.from({ length: 600 }, (_, i) => i) });
  assertSameBatch(roundTrip(cycling), cycling, '300 metrics, cycling index');
  const byteIndexes = shaped({ metricNames: names.slice(0, 256), metricUnits: names.slice(0, 256).map(() => ''), values: f64(1, 2, 3, 4), metricIndex: Uint16Array.from([255, 0, 255, 3]) });
  assertSameBatch(roundTrip(byteIndexes), byteIndexes, '256 metrics, byte indexes');
  // Columns given as views into a larger buffer.
  const big = new Float64Array(64).map((_, i) => i + 0.25);
  const idx = new Uint16Array(64).map((_, i) => i % 3);
  const view = shaped({ metricNames: ['a', 'b', 'c'], metricUnits: ['', '', ''], values: big.subarray(5, 45), timesMs: big.subarray(10, 50), metricIndex: idx.subarray(1, 41) });
  assertSameBatch(roundTrip(view), view, 'subarray columns');
});

test('spool codec v2 - a record too large for the frame slab or the kept scratch (60,000 readings) round-trips', () => {
  for (const n of [2_000, 60_000]) {
    const b = deviceBatch(n, 3, 40, 'any');
    const withDevice = { ...b, deviceTimesMs: Float64Array.from(b.timesMs, (t) => t + 0.5) };
    assertSameBatch(roundTrip(withDevice), withDevice, `${n} readings`);
  }
});

test('spool codec v2 - frames and decoded batches stay intact when many are kept (shared slabs)', () => {
  const batches = Array.from({ length: 3000 }, (_, i) => deviceBatch([1, 8, 20, 100, 1000][i % 5]!, i + 1, 40, i % 3 ? 'sensor' : 'any'));
  const frames = batches.map(encodeRecord);
  const copies = frames.map((f) => Buffer.from(f));
  const decoded = frames.map((f) => decodeRecord(payloadOf(f)));
  for (let i = 0; i < batches.length; i++) {
    assert.ok(frames[i]!.equals(copies[i]!), `frame ${i} was overwritten`);
    assertSameBatch(decoded[i]!, batches[i]!, `batch ${i}`);
  }
  // A decoded batch owns its numbers: changing the payload afterwards changes nothing.
  const frame = Buffer.from(encodeRecord(deviceBatch(50, 9, 40, 'any')));
  const batch = decodeRecord(payloadOf(frame));
  frame.fill(0);
  assertSameBatch(batch, deviceBatch(50, 9, 40, 'any'));
});

test('spool codec v2 - the header cache follows device ids, metric lists and mutable tags', () => {
  const tags = Object.freeze({ site: 'north' });
  const a = shaped({ deviceId: 'dev-a', tags, values: f64(1, 2) });
  const b = shaped({ deviceId: 'dev-b', tags, values: f64(1, 2) });
  const c = shaped({ deviceId: 'dev-a', tags, metricNames: ['pressure'], metricUnits: ['hPa'], values: f64(1, 2) });
  const d = shaped({ deviceId: 'dev-a', tags, metricNames: ['temperature', 'humidity'], metricUnits: ['K', '%'], values: f64(1, 2) });
  for (const x of [a, b, a, c, a, d, b, a]) assertSameBatch(roundTrip(x), x, x.deviceId);
  // A tags object that is not frozen may change between batches: never cached.
  const mutable: Record<string, string> = { site: 'north' };
  const first = roundTrip(shaped({ tags: mutable, values: f64(1) }));
  mutable.site = 'south';
  mutable.floor = '2';
  const second = roundTrip(shaped({ tags: mutable, values: f64(1) }));
  assert.deepEqual({ ...first.tags }, { site: 'north' });
  assert.deepEqual({ ...second.tags }, { site: 'south', floor: '2' });
  // Decoded batches with one header share its (frozen) tags and metric lists, as ingest's batches share a session's tags.
  const x = roundTrip(a);
  const y = roundTrip({ ...a, seq: 2 });
  assert.equal(x.tags, y.tags);
  assert.equal(x.metricNames, y.metricNames);
  assert.ok(Object.isFrozen(x.tags) && Object.isFrozen(x.metricNames) && Object.isFrozen(x.metricUnits));
});

test('spool codec v2 - inconsistent columns are refused when encoding', () => {
  const b = shaped({ values: f64(1, 2, 3) });
  assert.throws(() => encodeRecord({ ...b, timesMs: f64(1, 2) }), /columns differ in length/);
  assert.throws(() => encodeRecord({ ...b, metricIndex: Uint16Array.from([0]) }), /columns differ in length/);
  assert.throws(() => encodeRecord({ ...b, deviceTimesMs: f64(1) }), /columns differ in length/);
  assert.throws(() => encodeRecord({ ...b, metricUnits: ['x'] }), /metric names but/);
});

// ---- size ---------------------------------------------------------------------------

test('spool codec v2 - bytes per reading for batches as devices send them: <= 12 at 20 and 1,000 readings', () => {
  const perReading = (n: number, stepMs: number, values: 'sensor' | 'any') => {
    let bytes = 0;
    for (let seq = 1; seq <= 20; seq++) bytes += encodeRecord(deviceBatch(n, seq, stepMs, values)).length;
    return bytes / (20 * n);
  };
  const sizes: Record<string, number> = {};
  for (const stepMs of [1000, 40, 10, 1000 / 3]) {
    for (const n of [20, 1000]) {
      const size = perReading(n, stepMs, 'sensor');
      sizes[`${n}@${stepMs.toFixed(0)}ms`] = size;
      assert.ok(size <= 12, `${n} readings, ${stepMs} ms apart: ${size.toFixed(2)} bytes per reading (frame included)`);
    }
    // Values with no short form stay 8 bytes each: still within 12 at 1,000 readings.
    const any = perReading(1000, stepMs, 'any');
    assert.ok(any <= 12, `1,000 arbitrary doubles, ${stepMs} ms apart: ${any.toFixed(2)} bytes per reading`);
  }
  // The figures today (a regression shows as a change here, not as a timing).
  assert.ok(sizes['20@1000ms']! <= 9.5 && sizes['1000@40ms']! <= 4, JSON.stringify(sizes));
});

// ---- version 1 -------------------------------------------------------------------

/** The version 1 encoder as it was (hubs before record version 2). */
function encodeV1(batch: AcceptedBatch): Buffer {
  const tags = Object.entries(batch.tags);
  const n = batch.values.length;
  let size = 1 + 2 + Buffer.byteLength(batch.deviceId) + 8 * 3 + 1;
  for (const [k, v] of tags) size += 1 + Buffer.byteLength(k) + 2 + Buffer.byteLength(v);
  size += 2;
  for (let i = 0; i < batch.metricNames.length; i++) size += 1 + Buffer.byteLength(batch.metricNames[i]!) + 1 + Buffer.byteLength(batch.metricUnits[i]!);
  size += 4 + n * 2 + n * 8 + 1 + (batch.deviceTimesMs ? n * 8 : 0) + n * 8;
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + size);
  let at = FRAME_HEADER_BYTES;
  const str8 = (text: string) => { const written = buf.write(text, at + 1); buf.writeUInt8(written, at); at += 1 + written; };
  const str16 = (text: string) => { const written = buf.write(text, at + 2); buf.writeUInt16LE(written, at); at += 2 + written; };
  const f64s = (array: Float64Array) => { for (let i = 0; i < array.length; i++) { buf.writeDoubleLE(array[i]!, at); at += 8; } };
  buf.writeUInt8(1, at); at += 1;
  str16(batch.deviceId);
  buf.writeDoubleLE(batch.seq, at); at += 8;
  buf.writeDoubleLE(batch.receivedAtMs, at); at += 8;
  buf.writeDoubleLE(batch.clockOffsetMs, at); at += 8;
  buf.writeUInt8(tags.length, at); at += 1;
  for (const [k, v] of tags) { str8(k); str16(v); }
  buf.writeUInt16LE(batch.metricNames.length, at); at += 2;
  for (let i = 0; i < batch.metricNames.length; i++) { str8(batch.metricNames[i]!); str8(batch.metricUnits[i]!); }
  buf.writeUInt32LE(n, at); at += 4;
  for (let i = 0; i < n; i++) { buf.writeUInt16LE(batch.metricIndex[i]!, at); at += 2; }
  f64s(batch.timesMs);
  buf.writeUInt8(batch.deviceTimesMs ? 1 : 0, at); at += 1;
  if (batch.deviceTimesMs) f64s(batch.deviceTimesMs);
  f64s(batch.values);
  buf.writeUInt32LE(size, 0);
  buf.writeUInt32LE(crc32(buf.subarray(FRAME_HEADER_BYTES)), 4);
  return buf;
}

/** A version 1 frame written by the hub before version 2 (its encodeRecord, unchanged), and the batch in it. */
const V1_FRAME_HEX = 'ab00000068e091c00106006465762dc3bc0000000000001c4000d03558febc784200000000000028c002047369746506006ec3b6727468056d6f64656c040074682d3202000b74656d706572617475726503c2b0430868756d696469747901250300000000000100000000803558febc784200803558febc784200284558febc78420100801dc701bd784200801dc701bd784200282dc701bd7842000000000080354000000000000000800100000000000000';
const V1_BATCH: AcceptedBatch = {
  deviceId: 'dev-ü', seq: 7, tags: { site: 'nörth', model: 'th-2' }, receivedAtMs: 1_700_000_007_005, clockOffsetMs: -12,
  metricNames: ['temperature', 'humidity'], metricUnits: ['°C', '%'],
  metricIndex: Uint16Array.from([0, 1, 0]),
  timesMs: f64(1_700_000_007_000, 1_700_000_007_000, 1_700_000_007_250.5),
  deviceTimesMs: f64(1_700_003_607_000, 1_700_003_607_000, 1_700_003_607_250.5),
  values: f64(21.5, -0, 5e-324),
};

test('spool codec v1 - a frozen version 1 frame decodes to its batch, and the copy of the old encoder matches it', () => {
  const frame = Buffer.from(V1_FRAME_HEX, 'hex');
  assertSameBatch(decodeRecord(payloadOf(frame)), V1_BATCH, 'frozen v1 frame');
  assert.equal(encodeV1(V1_BATCH).toString('hex'), V1_FRAME_HEX);
});

test('spool codec v1 - version 1 records of every shape decode exactly as version 2 ones do', () => {
  const shapes: AcceptedBatch[] = [
    ...[0, 1, 8, 20, 1000].map((n) => deviceBatch(n, n + 2, 40)),
    shaped({ values: f64(-0, 5e-324, Number.MAX_VALUE, NaN), timesMs: f64(1.5, -0, 3, 2 ** 60), deviceTimesMs: f64(1, 2, 3, 4) }),
    shaped({ deviceId: 'gerät-東京', tags: { 'ビル': '東京' }, values: f64(1) }),
  ];
  for (const b of shapes) {
    const fromV1 = decodeRecord(payloadOf(encodeV1(b)));
    assertSameBatch(fromV1, b, `v1 ${b.values.length}`);
    assertSameBatch(roundTrip(b), fromV1, `v2 ${b.values.length}`);
  }
  // A hostile reading count in a version 1 record is refused before anything is allocated.
  const payload = Buffer.from(payloadOf(encodeV1(shaped({ values: f64(1) }))));
  const nAt = payload.length - (4 + 2 + 8 + 1 + 8);
  assert.equal(payload.readUInt32LE(nAt), 1);
  payload.writeUInt32LE(0xffffffff, nAt);
  assert.throws(() => decodeRecord(payload), /cannot fit/);
});

test('spool codec v1 - an upgraded hub recovers and reads a version 1 spool, then appends version 2 after it', async (t) => {
  const dir = tempDir(t, 'spool-codec-');
  const old = [1, 2, 3].map((seq) => deviceBatch(20, seq, 1000));
  await writeFile(join(dir, segmentName(1)), Buffer.concat([SEGMENT_HEADER, ...old.map(encodeV1)]));
  const options = { dir, maxBytes: 64 << 20, segmentBytes: 1 << 20, commitDelayMs: 2, mode: 'sink' as const, log: createLogger('silent') };
  const s = await Spool.open(options);
  assert.equal(s.recovery.records, 3);
  assert.equal(s.durableSeq('sim-0042'), 3);
  await s.append(deviceBatch(20, 4, 1000));
  const read = await s.read(s.checkpoint, 64 << 20);
  assert.deepEqual(read.map((r) => r.batch.seq), [1, 2, 3, 4]);
  read.forEach((r, i) => assertSameBatch(r.batch, i < 3 ? old[i]! : deviceBatch(20, 4, 1000), `record ${i + 1}`));
  await s.close();
  const again = await Spool.open(options);
  assert.equal(again.recovery.records, 4, 'both versions recovered after a restart');
  await again.close();
});

// ---- damage ---------------------------------------------------------------------------

test('spool codec v2 - every truncation of a payload throws; the frame reports it incomplete', () => {
  const batches = [
    deviceBatch(20, 1, 40), deviceBatch(20, 2, 40, 'any'), deviceBatch(0, 3, 40),
    shaped({ values: f64(-0, 1.5), timesMs: f64(1.5, 2 ** 60), deviceTimesMs: f64(1, 1e12), seq: 1.5, clockOffsetMs: 0.5 }),
    shaped({ values: Float64Array.from({ length: 8 }, (_, i) => Math.fround(i / 3)), deviceTimesMs: f64(...Array.from({ length: 8 }, (_, i) => i * 1e9)) }),
  ];
  for (const b of batches) {
    const frame = encodeRecord(b);
    const payload = payloadOf(frame);
    for (let len = 0; len < payload.length; len++) {
      assert.throws(() => decodeRecord(Buffer.from(payload.subarray(0, len))), /spool record|out of range|outside the bounds/i, `payload cut at ${len} of ${payload.length}`);
      assert.equal(checkFrame(frame.subarray(0, FRAME_HEADER_BYTES + len), 0, 1 << 20).kind, 'incomplete');
    }
    // Extra bytes after the last column are refused too.
    assert.throws(() => decodeRecord(Buffer.concat([payload, Buffer.from([0])])), /bytes after the last column/);
  }
});

test('spool codec v2 - a flipped bit anywhere is caught by the CRC; decoding damage anyway never hangs or over-allocates', () => {
  const frame = encodeRecord(deviceBatch(20, 5, 40));
  const payload = payloadOf(frame);
  for (let at = 0; at < frame.length; at++) {
    for (const bit of [0x01, 0x80]) {
      const bad = Buffer.from(frame);
      bad[at]! ^= bit;
      const check = checkFrame(bad, 0, 1 << 20);
      assert.notEqual(check.kind, 'ok', `bit 0x${bit.toString(16)} of byte ${at}`);
    }
  }
  // Past the CRC (a record that checks but does not parse): it throws or decodes to arrays the payload could hold.
  const random = seededRandom(99);
  for (let round = 0; round < 3000; round++) {
    const bad = Buffer.from(payload);
    for (let k = 1 + Math.floor(random() * 3); k > 0; k--) bad[Math.floor(random() * bad.length)] = Math.floor(random() * 256);
    let batch: AcceptedBatch;
    try { batch = decodeRecord(bad); } catch { continue; }
    assert.ok(batch.values.length <= bad.length && batch.timesMs.length === batch.values.length && batch.metricIndex.length === batch.values.length);
  }
});

test('spool codec v2 - hostile counts and lengths are refused before allocation', () => {
  const uv = (v: number) => { const out: number[] = []; while (v >= 0x80) { out.push((v % 0x80) | 0x80); v = Math.floor(v / 0x80); } out.push(v); return out; };
  const header = [...uv(1), 0x64, ...uv(0), ...uv(1), ...uv(1), 0x74, ...uv(0)]; // device "d", no tags, one metric "t" with no unit
  const record = (after: number[], head = header, flags = 0x08 | 0x01 | 0x02, columns = 0x02 | (2 << 2), headLength = head.length) =>
    Buffer.from([2, flags, columns, ...uv(headLength), ...head, ...uv(1), ...new Array<number>(8).fill(0), ...uv(0), ...after]);
  // A well-formed one first: 1 reading, cyclic index, time delta 0, decimal value 0.
  const ok = decodeRecord(record([...uv(1), 0, 0]));
  assert.equal(ok.values.length, 1);
  assert.throws(() => decodeRecord(record([...uv(2 ** 40), 0, 0])), /cannot fit/);
  assert.throws(() => decodeRecord(record([...uv(2 ** 53 - 1), 0, 0])), /cannot fit/);
  assert.throws(() => decodeRecord(record([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])), /bad varint/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], header, 0x0b, 0x0a, 2 ** 30)), /truncated header/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], [...uv(2 ** 30), 0x64])), /string runs past/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], [...uv(50), 0x64])), /string runs past/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], [...uv(1), 0x64, ...uv(2 ** 31)])), /tags cannot fit/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], [...uv(1), 0x64, ...uv(0), ...uv(2 ** 31)])), /metrics cannot fit/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], [...uv(1), 0x64, ...uv(0), ...uv(0)])), /readings without metrics/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], header, 0x80)), /unknown flags/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], header, 0x0b, 0x03)), /unknown column modes/);
  assert.throws(() => decodeRecord(record([...uv(1), 0, 0], header, 0x0b, 0x02 | (2 << 2) | (10 << 4))), /unknown column modes/);
  assert.throws(() => decodeRecord(Buffer.from([3, 0, 0, 0])), /version 3 is not supported/);
});

// ---- CRC ------------------------------------------------------------------------------

test('spool codec - crc32Of matches zlib.crc32 for every length and alignment, both sides of the native threshold', () => {
  const random = seededRandom(7);
  const buf = Buffer.from(Array.from({ length: 5000 }, () => Math.floor(random() * 256)));
  for (const start of [0, 1, 3, 7, 8]) {
    for (let len = 0; len <= 600; len++) assert.equal(crc32Of(buf, start, start + len), crc32(buf.subarray(start, start + len)), `${start}+${len}`);
    for (const len of [1000, 4096, 4999 - start]) assert.equal(crc32Of(buf, start, start + len), crc32(buf.subarray(start, start + len)));
  }
  const sub = buf.subarray(100, 400);
  assert.equal(crc32Of(sub, 5, 205), crc32(buf.subarray(105, 305)), 'a view with a byte offset');
});
