// device-sim/: the lean load generator's wire path (lean-fleet.ts drives it).
// A Batch is encoded once per device per template (with the session's metric
// definitions, and without); each send patches only the varying fields in
// place: seq, base_time_ms and sent_time_ms. The bytes are exactly what the
// generated encoder writes for the same Batch (fields in number order, packed
// columns, minimal varints), so the hub decodes an ordinary message:
//
//   [0x12 len] [0x08 seq] [0x10 base_time_ms] | metric_defs?, metric_ids,     | [0x38 sent_time_ms]
//   envelope + header, re-written per batch   | time_offsets_ms, values (fixed) | trailer, re-written
//
// The header is written right-aligned in front of the fixed part, so its
// width (seq 1..8 bytes) may change without moving the fixed part.
// Also: reading an Ack's seq and credit straight from a HubMessage's bytes
// (readPlainAck), so the hot path decodes nothing else.
// Imports: @telemetry/proto.
import { v1, type MetricDef } from '@telemetry/proto';

/** What the readings of a lean batch look like. */
export interface LeanBatchShape {
  /** Readings per batch (R). */
  readings: number;
  /** Distinct metrics (M): reading i is metric i % M. */
  metrics: number;
  /** Varies the values between devices (e.g. the device's index). */
  valueSeed?: number;
}

/** The fixed columns: reading i is metric i % M, sample j = floor(i / M), at j - (S - 1) ms (S samples per metric, the last at the base time). */
export interface LeanColumns { metricIds: number[]; timeOffsetsMs: number[]; values: number[] }

/** The metric definitions a lean session sends once: ids 0..M-1, names lean_0.., no unit. */
export function leanMetricDefs(metrics: number): MetricDef[] {
  return Array.from({ length: metrics }, (_, id) => ({ id, name: `lean_${id}` }));
}

/** A cheap deterministic pattern: finite values, distinct per metric, sample and seed. */
export function leanColumns(shape: LeanBatchShape): LeanColumns {
  const { readings, metrics } = shape;
  const seed = (shape.valueSeed ?? 0) % 1000;
  const samples = Math.ceil(readings / metrics);
  const metricIds: number[] = [];
  const timeOffsetsMs: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < readings; i++) {
    const m = i % metrics;
    const j = Math.floor(i / metrics);
    metricIds.push(m);
    timeOffsetsMs.push(j - (samples - 1));
    values.push(seed + m * 10 + j * 0.25);
  }
  return { metricIds, timeOffsetsMs, values };
}

/** Room in front of the fixed part: envelope tag + length (<= 4), seq (<= 9), base time (<= 11). */
const HEADER_ROOM = 24;
/** Room after it: sent_time_ms, tag + up to 10 bytes. */
const TRAILER_ROOM = 11;

/** Bytes of v as a varint (v a non-negative integer <= 2^53). */
export function varintLength(v: number): number {
  let n = 1;
  while (v >= 128) { v = Math.floor(v / 128); n++; }
  return n;
}

function writeVarint(buf: Uint8Array, p: number, v: number): number {
  while (v >= 0x8000_0000) { buf[p++] = (v % 128) | 0x80; v = Math.floor(v / 128); }
  while (v > 0x7f) { buf[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
  buf[p++] = v;
  return p;
}

/** Bytes of v as a varint, by comparisons for the usual sizes. */
function varintLen(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x20_0000 ? 3 : v < 0x1000_0000 ? 4 : varintLength(v);
}

// The time's varint, kept for the last time seen: a flush reads the clock
// once, so every frame it makes (all devices) has the same time.
let cachedTime = -1;
const timeBytes = new Uint8Array(10);
let timeLen = 0;

/**
 * One template: a Batch whose columns (and definitions, if any) are fixed,
 * encoded once. frame() patches seq and the times in place and returns the
 * whole DeviceMessage, a view into one buffer that the next frame() call
 * overwrites: send it (ws copies it while masking, lean-socket.ts) before
 * asking for the next.
 */
export class LeanBatchFrame {
  readonly readings: number;
  readonly #buf: Buffer;
  readonly #fixedLength: number;
  #view: Buffer;
  #viewStart = -1;
  #viewEnd = -1;

  /** `defs`: the metric definitions this template carries (a session's first batch); [] for the steady one. */
  constructor(columns: LeanColumns, defs: readonly MetricDef[] = []) {
    // Fields 3..6 exactly as the generated encoder writes them (seq, times = 0 are left out).
    const fixed = v1.Batch.encode({ metricDefs: [...defs], metricIds: columns.metricIds, timeOffsetsMs: columns.timeOffsetsMs, values: columns.values }).finish();
    this.readings = columns.values.length;
    this.#fixedLength = fixed.length;
    this.#buf = Buffer.alloc(HEADER_ROOM + fixed.length + TRAILER_ROOM);
    this.#buf.set(fixed, HEADER_ROOM);
    this.#view = this.#buf;
  }

  /** The encoded size with this seq and time. */
  byteLength(seq: number, timeMs: number): number {
    const inner = 1 + varintLength(seq) + 2 * (1 + varintLength(timeMs)) + this.#fixedLength;
    return 1 + varintLength(inner) + inner;
  }

  /**
   * DeviceMessage{batch: {seq, base_time_ms: nowMs, <fixed columns>, sent_time_ms: nowMs}}.
   * seq in 1..2^53-1, nowMs a non-negative integer (the wall clock, Unix ms).
   */
  frame(seq: number, nowMs: number): Buffer {
    const buf = this.#buf;
    if (nowMs !== cachedTime) { timeLen = writeVarint(timeBytes, 0, nowMs); cachedTime = nowMs; }
    const tl = timeLen;
    const seqLen = varintLen(seq);
    const inner = 1 + seqLen + 2 * (1 + tl) + this.#fixedLength;
    const start = HEADER_ROOM - (1 + varintLen(inner) + 1 + seqLen + 1 + tl);
    let p = start;
    buf[p++] = 0x12; // DeviceMessage.batch, LEN
    p = writeVarint(buf, p, inner);
    buf[p++] = 0x08; // Batch.seq
    p = writeVarint(buf, p, seq);
    buf[p++] = 0x10; // Batch.base_time_ms
    for (let i = 0; i < tl; i++) buf[p + i] = timeBytes[i]!;
    let q = HEADER_ROOM + this.#fixedLength;
    buf[q++] = 0x38; // Batch.sent_time_ms
    for (let i = 0; i < tl; i++) buf[q + i] = timeBytes[i]!;
    q += tl;
    if (start !== this.#viewStart || q !== this.#viewEnd) {
      this.#view = buf.subarray(start, q);
      this.#viewStart = start;
      this.#viewEnd = q;
    }
    return this.#view;
  }
}

/** A device's two templates: the session's first batch (with the definitions) and every later one. */
export interface LeanFrames { first: LeanBatchFrame; steady: LeanBatchFrame }

export function leanFrames(shape: LeanBatchShape): LeanFrames {
  const columns = leanColumns(shape);
  return { first: new LeanBatchFrame(columns, leanMetricDefs(shape.metrics)), steady: new LeanBatchFrame(columns) };
}

/** Ack fields read by readPlainAck (absent = 0, as proto3 defaults). */
export interface AckFields { seq: number; credit: number }

/**
 * Reads HubMessage{ack: {seq, credit}} straight from its bytes into `out`.
 * false when the message is anything else: another member, an Ack with
 * reports or unknown fields, trailing bytes, or malformed. The caller then
 * decodes it with the generated decoder, which handles (or rejects) all of
 * those.
 */
export function readPlainAck(data: Uint8Array, out: AckFields): boolean {
  const n = data.length;
  if (n < 2 || data[0] !== 0x12) return false; // HubMessage.ack, LEN
  // Length: one or two bytes (an Ack without reports is at most 16 bytes).
  let p = 1;
  let len = data[p++]!;
  if (len & 0x80) {
    if (p >= n) return false;
    const b = data[p++]!;
    if (b & 0x80) return false;
    len = (len & 0x7f) | (b << 7);
  }
  if (p + len !== n) return false;
  let seq = 0;
  let credit = 0;
  while (p < n) {
    const tag = data[p++]!;
    if (tag !== 0x08 && tag !== 0x10) return false; // reports (0x1a) or a field this reader does not know
    // A varint of at most 8 bytes (2^53 fits in 8 x 7 bits).
    let v = 0;
    let scale = 1;
    for (let k = 0; ; k++) {
      if (p >= n || k === 8) return false;
      const b = data[p++]!;
      v += (b & 0x7f) * scale;
      if (!(b & 0x80)) break;
      scale *= 128;
    }
    if (tag === 0x08) seq = v;
    else credit = v;
  }
  out.seq = seq;
  out.credit = credit;
  return true;
}
