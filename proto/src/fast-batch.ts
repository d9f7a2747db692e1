// A decoder for the message devices send most: a DeviceMessage holding one
// Batch, encoded as every protobuf encoder writes it (packed columns, each
// once, no unknown fields, 64-bit numbers below 2^53). It reads the columns
// straight into typed arrays, with no object per reading and no 64-bit
// arithmetic, and gives exactly what decodeDeviceMessage would give for the
// same bytes. Anything else (another member, unknown or repeated fields,
// unpacked columns, negative or huge numbers, malformed input) returns null:
// the caller decodes with decodeDeviceMessage, which also reports what is
// wrong. proto/test/fast-batch.test.ts holds the two decoders to each other.
// Imports: the generated code (for metric definitions).
import './configure.ts';
import { iot } from '../gen/telemetry.js';
import { columns } from './slab.ts';

const MetricDefCodec = iot.telemetry.v1.MetricDef;
type MetricDefMsg = iot.telemetry.v1.MetricDef;

/** A Batch as decodeBatchMessage reads it; absent scalars are 0, absent columns empty. */
export interface ColumnBatch {
  readonly seq: number;
  readonly baseTimeMs: number;
  readonly sentTimeMs: number;
  readonly metricDefs: readonly MetricDefMsg[];
  readonly metricIds: Uint32Array;
  readonly timeOffsetsMs: Float64Array;
  readonly values: Float64Array;
}

const TWO_32 = 4294967296;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const EMPTY_DEFS: readonly MetricDefMsg[] = Object.freeze([]);

// The reader's position and the varint it read; -1 = not on the fast path.
let pos = 0;

/** An unsigned varint below 2^53 at `pos` (advances it), or -1. */
function varint(b: Uint8Array, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    if (pos >= end) return -1;
    const byte = b[pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return value <= Number.MAX_SAFE_INTEGER ? value : -1;
    scale *= 128;
  }
  return -1; // 9 or 10 bytes: 2^56 and above, or a negative int64
}

/**
 * How many varints a packed column of bytes [from, stop) holds (each ends
 * with a byte below 0x80), so its array is allocated once; -1 when the last
 * one is cut off.
 */
function varintCount(b: Uint8Array, from: number, stop: number): number {
  if (stop > from && b[stop - 1]! >= 0x80) return -1;
  let count = 0;
  for (let i = from; i < stop; i++) if (b[i]! < 0x80) count++;
  return count;
}

/** Decodes `bytes` when it is a DeviceMessage holding one Batch in the common encoding; null otherwise. */
export function decodeBatchMessage(bytes: Uint8Array): ColumnBatch | null {
  const end = bytes.length;
  pos = 0;
  if (end < 2 || bytes[0] !== 0x12) return null; // field 2 (batch), length-delimited
  pos = 1;
  const len = varint(bytes, end);
  if (len < 0 || pos + len !== end) return null;

  let seq = 0, baseTimeMs = 0, sentTimeMs = 0;
  let defs: MetricDefMsg[] | null = null;
  let ids: Uint32Array | null = null;
  let offsets: Float64Array | null = null;
  let values: Float64Array | null = null;
  while (pos < end) {
    const tag = bytes[pos++]!; // fields 1..7: one-byte tags
    switch (tag) {
      case 0x08: { const v = varint(bytes, end); if (v < 0) return null; seq = v; break; }
      case 0x10: { const v = varint(bytes, end); if (v < 0) return null; baseTimeMs = v; break; }
      case 0x38: { const v = varint(bytes, end); if (v < 0) return null; sentTimeMs = v; break; }
      case 0x1a: {
        const n = varint(bytes, end);
        if (n < 0 || pos + n > end) return null;
        let def: MetricDefMsg;
        try {
          def = MetricDefCodec.decode(bytes.subarray(pos, pos + n));
        } catch {
          return null;
        }
        (defs ??= []).push(def);
        pos += n;
        break;
      }
      case 0x22: {
        if (ids) return null;
        const n = varint(bytes, end);
        if (n < 0 || pos + n > end) return null;
        const stop = pos + n;
        const count = varintCount(bytes, pos, stop);
        if (count < 0) return null;
        ids = columns.uint32(count);
        let p = pos;
        for (let k = 0; k < count; k++) {
          const byte = bytes[p]!;
          if (byte < 0x80) { ids[k] = byte; p++; continue; } // ids below 128: one byte
          pos = p;
          const v = varint(bytes, stop);
          if (v < 0 || v >= TWO_32) return null; // uint32 truncation: leave it to the full decoder
          ids[k] = v;
          p = pos;
        }
        pos = p;
        if (pos !== stop) return null;
        break;
      }
      case 0x2a: {
        if (offsets) return null;
        const n = varint(bytes, end);
        if (n < 0 || pos + n > end) return null;
        const stop = pos + n;
        const count = varintCount(bytes, pos, stop);
        if (count < 0) return null;
        offsets = columns.float64(count);
        let p = pos;
        for (let k = 0; k < count; k++) {
          const b0 = bytes[p]!;
          let v: number;
          if (b0 < 0x80) { v = b0; p++; }
          else if (p + 1 < stop && bytes[p + 1]! < 0x80) { v = (b0 & 0x7f) | (bytes[p + 1]! << 7); p += 2; }
          else {
            pos = p;
            v = varint(bytes, stop);
            if (v < 0) return null;
            p = pos;
          }
          // zigzag: 0, -1, 1, -2, ... (exact: v < 2^53; integer ops below 2^31)
          offsets[k] = v < 0x80000000 ? (v >>> 1) ^ -(v & 1) : Math.floor(v / 2) * 2 === v ? v / 2 : -(v + 1) / 2;
        }
        pos = p;
        if (pos !== stop) return null;
        break;
      }
      case 0x32: {
        if (values) return null;
        const n = varint(bytes, end);
        if (n < 0 || pos + n > end || n % 8 !== 0) return null;
        const count = n / 8;
        values = columns.float64(count);
        // Copied out of the input (uWS neuters it after the handler returns):
        // element by element for a small batch, one block copy for a big one.
        if (count > 64 && LITTLE_ENDIAN) {
          new Uint8Array(values.buffer, values.byteOffset, n).set(bytes.subarray(pos, pos + n));
        } else {
          const view = new DataView(bytes.buffer, bytes.byteOffset + pos, n);
          for (let k = 0; k < count; k++) values[k] = view.getFloat64(k * 8, true);
        }
        pos += n;
        break;
      }
      default:
        return null; // unknown field, another wire type, a multi-byte tag
    }
  }
  return {
    seq, baseTimeMs, sentTimeMs,
    metricDefs: defs ?? EMPTY_DEFS,
    metricIds: ids ?? columns.uint32(0),
    timeOffsetsMs: offsets ?? columns.float64(0),
    values: values ?? columns.float64(0),
  };
}

// ---- the message the hub sends most: an Ack without reports ----

const ACK_SCRATCH = new Uint8Array(32);

/** Writes `v` (an integer 0..2^53-1) as a varint at `at`; returns the position after it. */
function putVarint(out: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    out[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[at++] = v;
  return at;
}

/**
 * The bytes encodeHubMessage({ ack: { seq, credit } }) gives, for an Ack
 * with no reports (a view on a slab: no allocation of its own).
 */
export function encodeAckMessage(seq: number, credit: number): Uint8Array {
  const out = ACK_SCRATCH;
  let at = 2;
  if (seq !== 0) { out[at++] = 0x08; at = putVarint(out, at, seq); }
  if (credit !== 0) { out[at++] = 0x10; at = putVarint(out, at, credit); }
  out[0] = 0x12; // HubMessage.ack, length-delimited
  out[1] = at - 2; // at most 17 bytes: a one-byte length
  const bytes = columns.uint8(at);
  for (let i = 0; i < at; i++) bytes[i] = out[i]!;
  return bytes;
}
