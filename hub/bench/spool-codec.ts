// Spool record codec benchmark: encode + decode ns per record and bytes per
// reading, record version 1 (a frozen copy of the old codec, below) against
// the codec in hub/src/spool/codec.ts, for batches shaped like the
// simulator's: 4 metrics (temperature/humidity/pressure/battery), one reading
// of each per sample instant, regular instants, values with the sensors'
// decimals, registry tags (frozen, as the registry hands them out), fresh
// metricNames arrays per batch (as ingest builds them), 64 devices in turn.
//
//   node --conditions=@telemetry/source --import tsx hub/bench/spool-codec.ts [--repeat 5] [--ms 300]
//   node --cpu-prof --cpu-prof-dir=/tmp/prof --conditions=@telemetry/source --import tsx \
//        hub/bench/spool-codec.ts --profile v1|v2 [--op encode|decode] [--n 20] [--seconds 10]
//
// The machine may be shared: figures are CPU time (process.cpuUsage), the
// median of --repeat runs of at least --ms each (the minimum in brackets).
// tsx's transform wraps closures in __name() calls (v1's helpers pay for
// it); to measure what the hub runs (tsc output), compile first:
//   npx tsc --outDir /tmp/benchjs --rootDir hub --module nodenext --target es2022 --lib es2023 --types node \
//     --skipLibCheck --allowImportingTsExtensions --rewriteRelativeImportExtensions --noCheck hub/bench/spool-codec.ts
//   echo '{"type":"module"}' > /tmp/benchjs/package.json; node /tmp/benchjs/bench/spool-codec.js
import { crc32 } from 'node:zlib';
import { parseArgs } from 'node:util';
import type { AcceptedBatch } from '../src/core/batch.ts';
import { checkFrame, decodeRecord, encodeRecord, FRAME_HEADER_BYTES } from '../src/spool/codec.ts';
import { seededRandom } from '../../test/support/random.ts';

// ---- record version 1, as it was (for comparison) ---------------------------

export function encodeRecordV1(batch: AcceptedBatch): Buffer {
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
  if (at !== buf.length) throw new Error(`spool codec: wrote ${at} of ${buf.length} bytes`);
  buf.writeUInt32LE(size, 0);
  buf.writeUInt32LE(crc32(buf.subarray(FRAME_HEADER_BYTES)), 4);
  return buf;
}

export function decodeRecordV1(payload: Buffer): AcceptedBatch {
  let at = 0;
  const str8 = () => { const len = payload.readUInt8(at); const text = payload.toString('utf8', at + 1, at + 1 + len); at += 1 + len; return text; };
  const str16 = () => { const len = payload.readUInt16LE(at); const text = payload.toString('utf8', at + 2, at + 2 + len); at += 2 + len; return text; };
  const f64s = (n: number) => { const array = new Float64Array(n); for (let i = 0; i < n; i++) { array[i] = payload.readDoubleLE(at); at += 8; } return array; };
  const version = payload.readUInt8(at); at += 1;
  if (version !== 1) throw new Error(`spool record version ${version} is not supported`);
  const deviceId = str16();
  const seq = payload.readDoubleLE(at); at += 8;
  const receivedAtMs = payload.readDoubleLE(at); at += 8;
  const clockOffsetMs = payload.readDoubleLE(at); at += 8;
  const nTags = payload.readUInt8(at); at += 1;
  const tags: Record<string, string> = {};
  for (let i = 0; i < nTags; i++) { const key = str8(); tags[key] = str16(); }
  const nMetrics = payload.readUInt16LE(at); at += 2;
  const metricNames: string[] = [];
  const metricUnits: string[] = [];
  for (let i = 0; i < nMetrics; i++) { metricNames.push(str8()); metricUnits.push(str8()); }
  const n = payload.readUInt32LE(at); at += 4;
  const metricIndex = new Uint16Array(n);
  for (let i = 0; i < n; i++) { metricIndex[i] = payload.readUInt16LE(at); at += 2; }
  const timesMs = f64s(n);
  const hasDevice = payload.readUInt8(at); at += 1;
  const deviceTimesMs = hasDevice ? f64s(n) : null;
  const values = f64s(n);
  return { deviceId, seq, tags, receivedAtMs, clockOffsetMs, metricNames, metricUnits, metricIndex, timesMs, deviceTimesMs, values };
}

// ---- batches ---------------------------------------------------------------

const METRICS = [
  { name: 'temperature', unit: 'degC', decimals: 2, mean: 19, sd: 4 },
  { name: 'humidity', unit: '%', decimals: 1, mean: 55, sd: 10 },
  { name: 'pressure', unit: 'hPa', decimals: 1, mean: 1013, sd: 8 },
  { name: 'battery', unit: 'V', decimals: 3, mean: 3.7, sd: 0.2 },
];
const SITES = ['north', 'south', 'east', 'west', 'lab'];
const DEVICES = 64;
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;


export type ValueKind = 'sensor' | 'random';

/**
 * `count` batches of `n` readings (n / 4 instants of the 4 metrics, `stepMs`
 * apart), devices in turn. 'sensor' values have the simulator's decimals;
 * 'random' values are arbitrary doubles (no short form).
 */
export function makeBatches(n: number, count: number, values: ValueKind = 'sensor', stepMs = 40): AcceptedBatch[] {
  const random = seededRandom(n * 7919 + count);
  const tags = Array.from({ length: DEVICES }, (_, d) => Object.freeze({ site: SITES[d % SITES.length]!, model: d % 3 === 0 ? 'th-2' : 'thp-1' }));
  const out: AcceptedBatch[] = [];
  let t = 1_760_000_000_000;
  for (let b = 0; b < count; b++) {
    const d = b % DEVICES;
    const timesMs = new Float64Array(n);
    const vals = new Float64Array(n);
    const metricIndex = new Uint16Array(n);
    for (let i = 0; i < n; i++) {
      const m = i % METRICS.length;
      const metric = METRICS[m]!;
      metricIndex[i] = m;
      timesMs[i] = t + Math.floor(i / METRICS.length) * stepMs;
      const v = metric.mean + (random() - 0.5) * 2 * metric.sd;
      vals[i] = values === 'sensor' ? round(v, metric.decimals) : v;
    }
    const used = Math.min(n, METRICS.length);
    out.push({
      deviceId: `sim-${String(d).padStart(4, '0')}`, seq: 1000 + b, tags: tags[d]!,
      receivedAtMs: t + Math.ceil(n / METRICS.length) * stepMs + 3, clockOffsetMs: 0,
      metricNames: METRICS.slice(0, used).map((m) => m.name), metricUnits: METRICS.slice(0, used).map((m) => m.unit),
      metricIndex, timesMs, deviceTimesMs: null, values: vals,
    });
    t += Math.ceil(n / METRICS.length) * stepMs;
  }
  return out;
}

export function bytesPerReading(encode: (b: AcceptedBatch) => Buffer, batches: readonly AcceptedBatch[]): number {
  let bytes = 0;
  let readings = 0;
  for (const b of batches) { bytes += encode(b).length; readings += b.values.length; }
  return bytes / readings;
}

// ---- timing ----------------------------------------------------------------

let sink = 0;

/** CPU time of this process (all threads: GC helpers count too), ns. */
function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/**
 * CPU ns per call of `fn` over `items` in turn, run for at least `ms` of
 * CPU time: on a shared machine, time spent descheduled does not count.
 */
function time<T>(items: readonly T[], fn: (item: T) => unknown, ms: number): number {
  let calls = 0;
  const started = cpuNs();
  const until = started + ms * 1e6;
  let now = started;
  while (now < until) {
    for (let i = 0; i < items.length; i++) { if (fn(items[i]!) === undefined) sink++; }
    calls += items.length;
    now = cpuNs();
  }
  return (now - started) / calls;
}

function stats(samples: number[]): { median: number; min: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]! };
}

function payloadOf(frame: Buffer): Buffer {
  const f = checkFrame(frame, 0, 1 << 30);
  if (f.kind !== 'ok') throw new Error(`bench: frame ${f.kind}`);
  return f.payload;
}

function main(): void {
  const { values: args } = parseArgs({
    options: {
      repeat: { type: 'string', default: '5' },
      ms: { type: 'string', default: '300' },
      profile: { type: 'string' },
      n: { type: 'string', default: '20' },
      seconds: { type: 'string', default: '10' },
      values: { type: 'string', default: 'sensor' },
      op: { type: 'string', default: 'encode' },
    },
  });
  const kind = args.values as ValueKind;
  if (args.profile) {
    // A steady loop to profile: node --cpu-prof ... --profile v1|v2 [--op encode|decode]
    const v1 = args.profile === 'v1';
    const encode = v1 ? encodeRecordV1 : encodeRecord;
    const decode = v1 ? decodeRecordV1 : decodeRecord;
    const batches = makeBatches(Number(args.n), 512, kind);
    const payloads = batches.map((b) => payloadOf(encode(b)));
    const until = Date.now() + Number(args.seconds) * 1000;
    let records = 0;
    while (Date.now() < until) {
      if (args.op === 'decode') for (const p of payloads) sink += decode(p).values.length;
      else for (const b of batches) sink += encode(b).length;
      records += batches.length;
    }
    console.log(`profile ${args.profile} ${args.op}: ${records} records of ${args.n} readings (${sink})`);
    return;
  }
  const repeat = Number(args.repeat);
  const ms = Number(args.ms);
  console.log(`values: ${kind}; CPU ns per record, median (min) of ${repeat} runs of >= ${ms} ms CPU`);
  console.log('readings | v1 B/rdg | v2 B/rdg | v1 enc | v2 enc | v1 dec | v2 dec | v1 enc+dec | v2 enc+dec | speed-up');
  for (const n of [8, 20, 100, 1000]) {
    const count = n >= 1000 ? 128 : 1024;
    const batches = makeBatches(n, count, kind);
    const v1Payloads = batches.map((b) => payloadOf(encodeRecordV1(b)));
    const v2Payloads = batches.map((b) => payloadOf(encodeRecord(b)));
    const runs = { e1: [] as number[], e2: [] as number[], d1: [] as number[], d2: [] as number[] };
    for (let r = 0; r < repeat; r++) {
      runs.e1.push(time(batches, encodeRecordV1, ms));
      runs.e2.push(time(batches, encodeRecord, ms));
      runs.d1.push(time(v1Payloads, decodeRecordV1, ms));
      runs.d2.push(time(v2Payloads, decodeRecord, ms));
    }
    const [e1, e2, d1, d2] = [stats(runs.e1), stats(runs.e2), stats(runs.d1), stats(runs.d2)];
    const f = (s: { median: number; min: number }) => `${s.median.toFixed(0)} (${s.min.toFixed(0)})`;
    const total1 = e1.median + d1.median;
    const total2 = e2.median + d2.median;
    console.log([n, bytesPerReading(encodeRecordV1, batches).toFixed(2), bytesPerReading(encodeRecord, batches).toFixed(2),
      f(e1), f(e2), f(d1), f(d2), total1.toFixed(0), total2.toFixed(0), `${(total1 / total2).toFixed(1)}x`].join(' | '));
  }
  if (sink === -1) console.log(sink);
}

main();
