// spool/: the on-disk record, one AcceptedBatch framed with its length and
// a CRC-32 so recovery can tell a complete record from a torn or corrupted
// one. encodeRecord writes version 2; decodeRecord reads versions 2 and 1 (a
// spool written before the upgrade is recovered and shipped as it is).
// Layouts (little endian) are documented in docs/spool.md:
//
//   frame   = u32 payloadLength, u32 crc32(payload), payload
//   v2      = u8 version(2), u8 flags, u8 columns, uvarint headerLength,
//             header (str deviceId, uvarint nTags, (str key, str value)*,
//             uvarint nMetrics, (str name, str unit)*), seq, f64 receivedAtMs,
//             clockOffsetMs, uvarint n, metric index column, times column,
//             device times column?, values column
//
// Every number decodes bit for bit as it was given (-0, denormals,
// fractions): a compact form is used only where the decoder's arithmetic
// gives the exact value back, else the column is plain f64.
//
// Costs: the header (device id, tags, metric names and units) is encoded
// once per device, cached by the registry's frozen tags object (and checked
// against the batch's device id and names), and decoded once per distinct
// header. Like Buffer.allocUnsafe's pool, small frames are views into a
// shared 64 KiB slab, and the typed arrays of a decoded batch views into a
// shared 256 KiB one (a typed array of its own over 64 bytes costs ~0.3 us
// to allocate, more than the rest of decoding a small record). The CRC is
// crc32.ts (a JS loop below 256 bytes, zlib above).
// Imports: core.
import { endianness } from 'node:os';
import type { AcceptedBatch } from '../core/batch.ts';
import { crc32Of } from './crc32.ts';

export const FRAME_HEADER_BYTES = 8;
const V1 = 1;
const V2 = 2;

// v2 flags
const SEQ_VARINT = 0x01; // seq is a uvarint (else f64)
const OFFSET_VARINT = 0x02; // clockOffsetMs is a zigzag varint (else f64)
const HAS_DEVICE_TIMES = 0x04;
const TIMES_DELTA = 0x08; // times are zigzag varint deltas (else f64[n])
const DEVICE_TIMES_DELTA = 0x10; // device times likewise
const KNOWN_FLAGS = 0x1f;
// v2 columns byte: bits 0-1 index mode, bits 2-3 values mode, bits 4-7 decimal digits
const INDEX_U16 = 0;
const INDEX_U8 = 1;
const INDEX_CYCLIC = 2; // metricIndex[i] = i mod nMetrics: nothing stored
const VALUES_F64 = 0;
const VALUES_F32 = 1;
const VALUES_DECIMAL = 2; // zigzag varint k[i], value = k[i] / 10^digits
const MAX_DIGITS = 9;
const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/** Largest time delta stored as a varint: its zigzag form stays a safe integer. */
const MAX_DELTA = 2 ** 52 - 1;

const LITTLE_ENDIAN_HOST = endianness() === 'LE';
/** Columns at least this long are copied as bytes (little-endian hosts); shorter ones by a DataView loop, which is faster there. */
const MEMCPY_FROM = 32;

function corrupt(why: string): Error {
  return new Error(`spool record: ${why}`);
}

// ---- varints -----------------------------------------------------------------

/** Writes v (an integer, 0 to 2^53 - 1) as LEB128; returns the position after it. */
function putUvarint(buf: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80; // & takes v modulo 2^32: the low 7 bits are right
    v = v >= 0x100000000 ? Math.floor(v / 0x80) : v >>> 7;
  }
  buf[at++] = v;
  return at;
}

/** Where the last getUvarint stopped. */
let cursor = 0;

/** Reads a LEB128 number of at most 8 bytes (a safe integer); the position after it is in `cursor`. */
function getUvarint(p: Uint8Array, at: number): number {
  let v = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    const b = p[at + i];
    if (b === undefined) throw corrupt('truncated');
    v += (b & 0x7f) * scale;
    if (b < 0x80) {
      if (v > Number.MAX_SAFE_INTEGER) break;
      cursor = at + i + 1;
      return v;
    }
    scale *= 0x80;
  }
  throw corrupt(`bad varint at byte ${at}`);
}

/** Zigzag decoding of a safe integer (0, -1, 1, -2 ... from 0, 1, 2, 3 ...). */
function unzigzag(z: number): number {
  return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
}

// ---- encoding ------------------------------------------------------------------

/**
 * Frames that can take up to FRAME_SLAB_BYTES / 8 are written straight into
 * a shared slab and handed out as views of it (as Buffer.allocUnsafe's pool
 * does): no copy, no allocation but the view.
 */
const FRAME_SLAB_BYTES = 64 << 10;
let frameSlab = Buffer.allocUnsafeSlow(FRAME_SLAB_BYTES);
let frameSlabView = new DataView(frameSlab.buffer, frameSlab.byteOffset, frameSlab.byteLength);
let frameSlabUsed = 0;
/** Larger frames are built here, then copied out at their exact size. */
let scratch = Buffer.allocUnsafeSlow(0);
let scratchView = new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength);
/** Larger still: a buffer of their own instead of a scratch kept this large. */
const SCRATCH_KEEP = 1 << 20;

let headerScratch = Buffer.allocUnsafeSlow(4 << 10);

/** Writes s as uvarint byte length + UTF-8 (ASCII without a native call); returns the position after it. */
function putString(buf: Buffer, at: number, s: string): number {
  const len = s.length;
  if (len < 0x80) {
    let i = 0;
    for (; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[at + 1 + i] = c;
    }
    if (i === len) {
      buf[at] = len;
      return at + 1 + len;
    }
  }
  const bytes = Buffer.byteLength(s, 'utf8');
  at = putUvarint(buf, at, bytes);
  return at + buf.write(s, at, 'utf8');
}

/** Encodes the header (device id, tags, metric names and units) into headerScratch; returns its length. */
function writeHeader(deviceId: string, tags: Readonly<Record<string, string>>, names: readonly string[], units: readonly string[]): number {
  const keys = Object.keys(tags);
  // A UTF-16 unit is at most 3 bytes of UTF-8; a length at most 5 bytes.
  let worst = 15 + 3 * deviceId.length;
  for (const key of keys) worst += 10 + 3 * (key.length + tags[key]!.length);
  for (let i = 0; i < names.length; i++) worst += 10 + 3 * (names[i]!.length + units[i]!.length);
  if (worst > headerScratch.length) headerScratch = Buffer.allocUnsafeSlow(Math.max(worst, 2 * headerScratch.length));
  const buf = headerScratch;
  let at = putString(buf, 0, deviceId);
  at = putUvarint(buf, at, keys.length);
  for (const key of keys) { at = putString(buf, at, key); at = putString(buf, at, tags[key]!); }
  at = putUvarint(buf, at, names.length);
  for (let i = 0; i < names.length; i++) { at = putString(buf, at, names[i]!); at = putString(buf, at, units[i]!); }
  return at;
}

interface EncodedHeader {
  readonly deviceId: string;
  readonly names: readonly string[];
  readonly units: readonly string[];
  readonly bytes: Uint8Array;
}

/**
 * Encoded headers by tags object. The registry hands every session of a
 * device the same frozen tags object; a tags object that is not frozen could
 * change, so it is never cached. The device id and the metric lists are
 * compared on every use (ingest builds new metric arrays per batch; their
 * strings are interned, so the comparison is cheap).
 */
const encodedHeaders = new WeakMap<object, EncodedHeader>();

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function headerOf(batch: AcceptedBatch): Uint8Array {
  const { deviceId, tags, metricNames: names, metricUnits: units } = batch;
  if (names.length !== units.length) throw new Error(`spool codec: ${names.length} metric names but ${units.length} units`);
  if (!Object.isFrozen(tags)) {
    const length = writeHeader(deviceId, tags, names, units); // first: it may replace headerScratch
    return headerScratch.subarray(0, length);
  }
  const cached = encodedHeaders.get(tags);
  if (cached !== undefined && cached.deviceId === deviceId && sameStrings(cached.names, names) && sameStrings(cached.units, units)) return cached.bytes;
  const length = writeHeader(deviceId, tags, names, units);
  const bytes = new Uint8Array(length);
  bytes.set(headerScratch.subarray(0, length));
  encodedHeaders.set(tags, { deviceId, names: names.slice(), units: units.slice(), bytes });
  return bytes;
}

/** col as f64 little endian at `at`; returns the position after it. */
function putF64s(buf: Buffer, view: DataView, at: number, col: Float64Array): number {
  const n = col.length;
  if (LITTLE_ENDIAN_HOST && n >= MEMCPY_FROM) {
    buf.set(new Uint8Array(col.buffer, col.byteOffset, n * 8), at);
    return at + n * 8;
  }
  for (let i = 0; i < n; i++, at += 8) view.setFloat64(at, col[i]!, true);
  return at;
}

/**
 * col as zigzag varint deltas, the first from `base`; returns the position
 * after it, or -1 when some time is not exactly prev + an integer delta (the
 * decoder computes prev + delta: it must give the time back bit for bit).
 */
function putDeltas(buf: Uint8Array, at: number, col: Float64Array, base: number): number {
  let prev = base;
  for (let i = 0; i < col.length; i++) {
    const t = col[i]!;
    const d = t - prev;
    // Decoded deltas are never -0, so an addition never gives -0 back: such a time needs f64.
    if (prev + d !== t || (t === 0 && 1 / t < 0)) return -1;
    if ((d | 0) === d) {
      const z = ((d << 1) ^ (d >> 31)) >>> 0;
      // Stores into a Uint8Array keep the low 8 bits: z | 0x80 is the low 7 bits and the continuation bit.
      if (z < 0x80) {
        buf[at++] = z;
      } else if (z < 0x4000) {
        buf[at++] = z | 0x80;
        buf[at++] = z >>> 7;
      } else if (z < 0x200000) {
        buf[at++] = z | 0x80;
        buf[at++] = (z >>> 7) | 0x80;
        buf[at++] = z >>> 14;
      } else {
        at = putUvarint(buf, at, z);
      }
    } else {
      if (!(Math.abs(d) <= MAX_DELTA) || Math.floor(d) !== d) return -1;
      at = putUvarint(buf, at, d > 0 ? d * 2 : -d * 2 - 1);
    }
    prev = t;
  }
  return at;
}

/** x rounded to a 32-bit integer (half away from zero; wraps around outside the int32 range, NaN gives 0). */
function nearInt(x: number): number {
  return (x < 0 ? x - 0.5 : x + 0.5) | 0;
}

/** The digits putDecimals chose. */
let decimalDigits = 0;

/**
 * col as zigzag varints of k = round(v * 10^digits), for the fewest digits
 * (0-9) with k / 10^digits === v for every value (a reading that was a short
 * decimal number, parsed or rounded, is that double); returns the position
 * after it, or -1 when there is no such digits or a k does not fit 32 bits.
 */
function putDecimals(buf: Uint8Array, at0: number, col: Float64Array): number {
  let digits = 0;
  restart: for (;;) {
    const scale = POW10[digits]!;
    let at = at0;
    for (let i = 0; i < col.length; i++) {
      const v = col[i]!;
      // Any 32-bit k with k / scale === v decodes exactly; a truncation that
      // wrapped around (|v * scale| >= 2^31) fails that test like any other.
      const k = nearInt(v * scale);
      if (k / scale !== v) {
        // More digits: as many as this value needs, then the column again from its start.
        do {
          if (++digits > MAX_DIGITS) return -1;
        } while (nearInt(v * POW10[digits]!) / POW10[digits]! !== v);
        continue restart;
      }
      // k would decode as +0: -0 needs another form.
      if (k === 0 && 1 / v < 0) return -1;
      const z = ((k << 1) ^ (k >> 31)) >>> 0;
      if (z < 0x80) {
        buf[at++] = z;
      } else if (z < 0x4000) {
        buf[at++] = z | 0x80;
        buf[at++] = z >>> 7;
      } else if (z < 0x200000) {
        buf[at++] = z | 0x80;
        buf[at++] = (z >>> 7) | 0x80;
        buf[at++] = z >>> 14;
      } else {
        at = putUvarint(buf, at, z);
      }
    }
    decimalDigits = digits;
    return at;
  }
}

/** col as f32 when every value is one exactly; returns the position after it, or -1. */
function putF32s(view: DataView, at: number, col: Float64Array): number {
  for (let i = 0; i < col.length; i++, at += 4) {
    const v = col[i]!;
    if (Math.fround(v) !== v) return -1;
    view.setFloat32(at, v, true);
  }
  return at;
}

/** Frames one batch as a version 2 record. */
export function encodeRecord(batch: AcceptedBatch): Buffer {
  const n = batch.values.length;
  const index = batch.metricIndex;
  const times = batch.timesMs;
  const deviceTimes = batch.deviceTimesMs;
  if (index.length !== n || times.length !== n || (deviceTimes !== null && deviceTimes.length !== n)) {
    throw new Error(`spool codec: columns differ in length (${index.length} metric indexes, ${times.length} times, ${deviceTimes?.length ?? 'no'} device times, ${n} values)`);
  }
  const header = headerOf(batch);
  const worst = FRAME_HEADER_BYTES + 3 + 5 + header.length + 8 + 8 + 8 + 5 + n * (2 + 8 + 8) + (deviceTimes === null ? 0 : n * 8);
  let buf: Buffer;
  let view: DataView;
  const inSlab = worst <= FRAME_SLAB_BYTES / 8;
  if (inSlab) {
    if (frameSlabUsed + worst > FRAME_SLAB_BYTES) {
      frameSlab = Buffer.allocUnsafeSlow(FRAME_SLAB_BYTES);
      frameSlabView = new DataView(frameSlab.buffer, frameSlab.byteOffset, frameSlab.byteLength);
      frameSlabUsed = 0;
    }
    buf = frameSlab;
    view = frameSlabView;
  } else {
    if (worst > scratch.length) {
      const size = worst <= SCRATCH_KEEP ? Math.min(SCRATCH_KEEP, Math.max(worst, 2 * scratch.length)) : worst;
      const fresh = Buffer.allocUnsafeSlow(size);
      const freshView = new DataView(fresh.buffer, fresh.byteOffset, fresh.byteLength);
      if (size > SCRATCH_KEEP) return encodeInto(batch, header, fresh, freshView, 0, false);
      scratch = fresh;
      scratchView = freshView;
    }
    buf = scratch;
    view = scratchView;
  }
  return encodeInto(batch, header, buf, view, inSlab ? frameSlabUsed : 0, inSlab);
}

/** Writes the frame at `start` of buf (which has room for the worst case); returns it. */
function encodeInto(batch: AcceptedBatch, header: Uint8Array, buf: Buffer, view: DataView, start: number, inSlab: boolean): Buffer {
  const n = batch.values.length;
  const index = batch.metricIndex;
  const times = batch.timesMs;
  const deviceTimes = batch.deviceTimesMs;
  let at = start + FRAME_HEADER_BYTES + 3;
  let flags = 0;
  let columns = 0;
  at = putUvarint(buf, at, header.length);
  buf.set(header, at);
  at += header.length;

  const seq = batch.seq;
  if (Number.isSafeInteger(seq) && (seq > 0 || (seq === 0 && 1 / seq > 0))) {
    flags |= SEQ_VARINT;
    at = putUvarint(buf, at, seq);
  } else {
    view.setFloat64(at, seq, true);
    at += 8;
  }
  const base = batch.receivedAtMs;
  view.setFloat64(at, base, true);
  at += 8;
  const offset = batch.clockOffsetMs;
  if ((offset | 0) === offset && (offset !== 0 || 1 / offset > 0)) {
    flags |= OFFSET_VARINT;
    at = putUvarint(buf, at, ((offset << 1) ^ (offset >> 31)) >>> 0);
  } else {
    view.setFloat64(at, offset, true);
    at += 8;
  }
  at = putUvarint(buf, at, n);

  // Metric index: nothing when it cycles through the metrics in order (one
  // reading of each per instant), else a byte each when every index fits.
  const nMetrics = batch.metricNames.length;
  let cyclic = nMetrics > 0;
  for (let i = 0, j = 0; i < n && cyclic; i++) {
    cyclic = index[i] === j;
    if (++j === nMetrics) j = 0;
  }
  if (cyclic || n === 0) {
    columns |= INDEX_CYCLIC;
  } else {
    let i = 0;
    for (; i < n; i++) {
      const m = index[i]!;
      if (m > 0xff) break;
      buf[at + i] = m;
    }
    if (i === n) {
      columns |= INDEX_U8;
      at += n;
    } else {
      columns |= INDEX_U16;
      for (i = 0; i < n; i++, at += 2) view.setUint16(at, index[i]!, true);
    }
  }

  let end = putDeltas(buf, at, times, base);
  if (end >= 0) {
    flags |= TIMES_DELTA;
    at = end;
  } else {
    at = putF64s(buf, view, at, times);
  }
  if (deviceTimes !== null) {
    flags |= HAS_DEVICE_TIMES;
    end = putDeltas(buf, at, deviceTimes, base);
    if (end >= 0) {
      flags |= DEVICE_TIMES_DELTA;
      at = end;
    } else {
      at = putF64s(buf, view, at, deviceTimes);
    }
  }

  const values = batch.values;
  end = putDecimals(buf, at, values);
  if (end >= 0) {
    columns |= (VALUES_DECIMAL << 2) | (decimalDigits << 4);
    at = end;
  } else {
    end = putF32s(view, at, values);
    if (end >= 0) {
      columns |= VALUES_F32 << 2;
      at = end;
    } else {
      columns |= VALUES_F64 << 2;
      at = putF64s(buf, view, at, values);
    }
  }

  const payload = start + FRAME_HEADER_BYTES;
  buf[payload] = V2;
  buf[payload + 1] = flags;
  buf[payload + 2] = columns;
  view.setUint32(start, at - payload, true);
  view.setUint32(start + 4, crc32Of(buf, payload, at), true);
  if (inSlab) {
    frameSlabUsed = (at + 7) & ~7;
    return Buffer.from(buf.buffer, buf.byteOffset + start, at - start);
  }
  const frame = Buffer.allocUnsafe(at);
  buf.copy(frame, 0, 0, at);
  return frame;
}

// ---- frames ------------------------------------------------------------------------

export type FrameCheck =
  | { kind: 'ok'; payload: Buffer; next: number }
  | { kind: 'incomplete' }
  | { kind: 'corrupt'; why: string };

/** Checks the frame starting at `off` (without decoding the payload). */
export function checkFrame(buf: Buffer, off: number, maxPayload: number): FrameCheck {
  if (buf.length - off < FRAME_HEADER_BYTES) return { kind: 'incomplete' };
  const len = buf.readUInt32LE(off);
  if (len === 0 || len > maxPayload) return { kind: 'corrupt', why: `implausible record length ${len}` };
  if (buf.length - off - FRAME_HEADER_BYTES < len) return { kind: 'incomplete' };
  const start = off + FRAME_HEADER_BYTES;
  if (crc32Of(buf, start, start + len) !== buf.readUInt32LE(off + 4)) return { kind: 'corrupt', why: 'checksum mismatch' };
  return { kind: 'ok', payload: buf.subarray(start, start + len), next: start + len };
}

// ---- decoding ----------------------------------------------------------------------

/** Decodes a payload that passed checkFrame (version 2 or 1). Throws on a payload that does not parse. */
export function decodeRecord(payload: Buffer): AcceptedBatch {
  const version = payload[0];
  if (version === V2) return decodeV2(payload);
  if (version === V1) return decodeV1(payload);
  throw corrupt(`version ${version ?? '(empty)'} is not supported`);
}

/**
 * Typed arrays of decoded batches are carved from this (8-byte aligned).
 * Its memory is not zeroed (Buffer.allocUnsafeSlow): decoding writes every
 * element of every array it carves.
 */
const SLAB_BYTES = 256 << 10;
let slab = uninitialised(SLAB_BYTES);
let slabUsed = 0;
let carvedOffset = 0;

function uninitialised(bytes: number): ArrayBuffer {
  return Buffer.allocUnsafeSlow(bytes).buffer;
}

/** Room for `bytes` (a multiple of 8) in the slab, or an ArrayBuffer of its own when large; the offset is in carvedOffset. */
function carve(bytes: number): ArrayBuffer {
  if (bytes > SLAB_BYTES / 4) {
    carvedOffset = 0;
    return uninitialised(bytes);
  }
  if (slabUsed + bytes > SLAB_BYTES) {
    slab = uninitialised(SLAB_BYTES);
    slabUsed = 0;
  }
  carvedOffset = slabUsed;
  slabUsed += bytes;
  return slab;
}

interface DecodedHeader {
  readonly deviceId: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly metricNames: readonly string[];
  readonly metricUnits: readonly string[];
}

interface CachedHeader extends DecodedHeader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly next: CachedHeader | null;
}

/**
 * Decoded headers by a hash of their bytes (chains of a few for collisions),
 * checked byte for byte: decoded batches of one device share one frozen tags
 * object and frozen metric arrays, as ingest's batches share the session's
 * tags. Cleared when it holds MAX_CACHED_HEADERS.
 */
const decodedHeaders = new Map<number, CachedHeader>();
let cachedHeaders = 0;
const MAX_CACHED_HEADERS = 8192;
const MAX_CACHED_HEADER_BYTES = 2048;
const MAX_CHAIN = 4;

function parseHeader(p: Buffer, start: number, end: number): DecodedHeader {
  let at = start;
  const str = (): string => {
    const len = getUvarint(p, at);
    at = cursor;
    if (len > end - at) throw corrupt('string runs past its header');
    const text = p.toString('utf8', at, at + len);
    at += len;
    return text;
  };
  const deviceId = str();
  const nTags = getUvarint(p, at);
  at = cursor;
  if (nTags > (end - at) / 2) throw corrupt(`${nTags} tags cannot fit`);
  const tags: [string, string][] = [];
  for (let i = 0; i < nTags; i++) { const key = str(); tags.push([key, str()]); }
  const nMetrics = getUvarint(p, at);
  at = cursor;
  if (nMetrics > (end - at) / 2) throw corrupt(`${nMetrics} metrics cannot fit`);
  const names: string[] = [];
  const units: string[] = [];
  for (let i = 0; i < nMetrics; i++) { names.push(str()); units.push(str()); }
  if (at !== end) throw corrupt('header length does not match its contents');
  return { deviceId, tags: Object.freeze(Object.fromEntries(tags)), metricNames: Object.freeze(names), metricUnits: Object.freeze(units) };
}

function headerAt(p: Buffer, view: DataView, start: number, end: number): DecodedHeader {
  const len = end - start;
  if (len > MAX_CACHED_HEADER_BYTES) return parseHeader(p, start, end);
  // The key: the header's length and its device id (the first string; the
  // whole header when that is long). Whatever else differs is told apart by
  // the comparison below.
  const idBytes = p[start]!;
  const hashEnd = idBytes < 0x80 && idBytes < len ? start + 1 + idBytes : end;
  let h = Math.imul(len, 0x9e3779b1);
  let i = start;
  for (; i + 4 <= hashEnd; i += 4) {
    h = Math.imul(h ^ view.getInt32(i, true), 0x85ebca6b);
    h ^= h >>> 13;
  }
  for (; i < hashEnd; i++) h = Math.imul(h ^ p[i]!, 0x01000193);
  const first = decodedHeaders.get(h);
  let depth = 0;
  for (let e: CachedHeader | null = first ?? null; e !== null; e = e.next, depth++) {
    if (e.bytes.length !== len) continue;
    const ev = e.view;
    let k = 0;
    for (; k + 4 <= len; k += 4) if (view.getInt32(start + k, true) !== ev.getInt32(k, true)) break;
    if (k + 4 <= len) continue;
    for (; k < len; k++) if (p[start + k] !== e.bytes[k]) break;
    if (k === len) return e;
  }
  const parsed = parseHeader(p, start, end);
  let next = first !== undefined && depth < MAX_CHAIN ? first : null;
  if (cachedHeaders >= MAX_CACHED_HEADERS) {
    decodedHeaders.clear();
    cachedHeaders = 0;
    next = null;
  }
  const bytes = new Uint8Array(len);
  bytes.set(p.subarray(start, end));
  decodedHeaders.set(h, { ...parsed, bytes, view: new DataView(bytes.buffer, bytes.byteOffset, len), next });
  cachedHeaders++;
  return parsed;
}

/** f64[n] little endian at `at` into col; returns the position after it. */
function getF64s(p: Buffer, view: DataView, at: number, col: Float64Array): number {
  const n = col.length;
  if (n * 8 > p.length - at) throw corrupt('truncated f64 column');
  if (LITTLE_ENDIAN_HOST && n >= MEMCPY_FROM) {
    new Uint8Array(col.buffer, col.byteOffset, n * 8).set(new Uint8Array(p.buffer, p.byteOffset + at, n * 8));
    return at + n * 8;
  }
  for (let i = 0; i < n; i++, at += 8) col[i] = view.getFloat64(at, true);
  return at;
}

/** Zigzag varint deltas from `base` into col; returns the position after them. */
function getDeltas(p: Buffer, at: number, col: Float64Array, base: number): number {
  let prev = base;
  for (let i = 0; i < col.length; i++) {
    // Up to 3 bytes inline. Past the end a byte reads as undefined, which
    // is not < 0x80: getUvarint then throws.
    let z = p[at]!;
    if (z < 0x80) {
      at += 1;
    } else {
      const b1 = p[at + 1]!;
      if (b1 < 0x80) {
        z = (z & 0x7f) | (b1 << 7);
        at += 2;
      } else {
        const b2 = p[at + 2]!;
        if (b2 < 0x80) {
          z = (z & 0x7f) | ((b1 & 0x7f) << 7) | (b2 << 14);
          at += 3;
        } else {
          prev += unzigzag(getUvarint(p, at));
          at = cursor;
          col[i] = prev;
          continue;
        }
      }
    }
    prev += (z >>> 1) ^ -(z & 1);
    col[i] = prev;
  }
  return at;
}

function decodeV2(p: Buffer): AcceptedBatch {
  const len = p.length;
  if (len < 4) throw corrupt('truncated');
  const flags = p[1]!;
  const columns = p[2]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) throw corrupt(`unknown flags 0x${flags.toString(16)}`);
  const indexMode = columns & 3;
  const valuesMode = (columns >> 2) & 3;
  const digits = columns >> 4;
  if (indexMode > INDEX_CYCLIC || valuesMode > VALUES_DECIMAL || digits > MAX_DIGITS || (valuesMode !== VALUES_DECIMAL && digits !== 0)) {
    throw corrupt(`unknown column modes 0x${columns.toString(16)}`);
  }
  const view = new DataView(p.buffer, p.byteOffset, len);
  const headerLength = getUvarint(p, 3);
  let at = cursor;
  if (headerLength > len - at) throw corrupt('truncated header');
  const header = headerAt(p, view, at, at + headerLength);
  at += headerLength;

  let seq: number;
  if (flags & SEQ_VARINT) {
    seq = getUvarint(p, at);
    at = cursor;
  } else {
    if (at + 8 > len) throw corrupt('truncated');
    seq = view.getFloat64(at, true);
    at += 8;
  }
  if (at + 8 > len) throw corrupt('truncated');
  const receivedAtMs = view.getFloat64(at, true);
  at += 8;
  let clockOffsetMs: number;
  if (flags & OFFSET_VARINT) {
    clockOffsetMs = unzigzag(getUvarint(p, at));
    at = cursor;
  } else {
    if (at + 8 > len) throw corrupt('truncated');
    clockOffsetMs = view.getFloat64(at, true);
    at += 8;
  }
  const n = getUvarint(p, at);
  at = cursor;
  // What the columns take at the least: every count is bounded by the payload before anything is allocated.
  const hasDeviceTimes = (flags & HAS_DEVICE_TIMES) !== 0;
  const least = n * ((indexMode === INDEX_U16 ? 2 : indexMode === INDEX_U8 ? 1 : 0)
    + (flags & TIMES_DELTA ? 1 : 8)
    + (hasDeviceTimes ? (flags & DEVICE_TIMES_DELTA ? 1 : 8) : 0)
    + (valuesMode === VALUES_F64 ? 8 : valuesMode === VALUES_F32 ? 4 : 1));
  if (least > len - at) throw corrupt(`${n} readings cannot fit in ${len} bytes`);
  const nMetrics = header.metricNames.length;
  if (indexMode === INDEX_CYCLIC && n > 0 && nMetrics === 0) throw corrupt('readings without metrics');

  const f64Columns = hasDeviceTimes ? 3 : 2;
  const memory = carve(n * 8 * f64Columns + Math.ceil(n / 4) * 8);
  const base = carvedOffset;
  const timesMs = new Float64Array(memory, base, n);
  const deviceTimesMs = hasDeviceTimes ? new Float64Array(memory, base + n * 8, n) : null;
  const values = new Float64Array(memory, base + n * 8 * (f64Columns - 1), n);
  const metricIndex = new Uint16Array(memory, base + n * 8 * f64Columns, n);

  if (indexMode === INDEX_CYCLIC) {
    for (let i = 0, j = 0; i < n; i++) {
      metricIndex[i] = j;
      if (++j === nMetrics) j = 0;
    }
  } else if (indexMode === INDEX_U8) {
    for (let i = 0; i < n; i++) metricIndex[i] = p[at + i]!;
    at += n;
  } else {
    for (let i = 0; i < n; i++, at += 2) metricIndex[i] = view.getUint16(at, true);
  }

  at = flags & TIMES_DELTA ? getDeltas(p, at, timesMs, receivedAtMs) : getF64s(p, view, at, timesMs);
  if (deviceTimesMs !== null) {
    at = flags & DEVICE_TIMES_DELTA ? getDeltas(p, at, deviceTimesMs, receivedAtMs) : getF64s(p, view, at, deviceTimesMs);
  }

  if (valuesMode === VALUES_DECIMAL) {
    const scale = POW10[digits]!;
    for (let i = 0; i < n; i++) {
      let z = p[at]!;
      if (z < 0x80) {
        at += 1;
      } else {
        const b1 = p[at + 1]!;
        if (b1 < 0x80) {
          z = (z & 0x7f) | (b1 << 7);
          at += 2;
        } else {
          const b2 = p[at + 2]!;
          if (b2 < 0x80) {
            z = (z & 0x7f) | ((b1 & 0x7f) << 7) | (b2 << 14);
            at += 3;
          } else {
            z = getUvarint(p, at);
            at = cursor;
            if (z > 0xffffffff) throw corrupt('decimal value out of range');
          }
        }
      }
      values[i] = ((z >>> 1) ^ -(z & 1)) / scale;
    }
  } else if (valuesMode === VALUES_F32) {
    if (n * 4 > len - at) throw corrupt('truncated f32 column');
    for (let i = 0; i < n; i++, at += 4) values[i] = view.getFloat32(at, true);
  } else {
    at = getF64s(p, view, at, values);
  }
  // Reading past the end gives no byte: a varint column that ran over shows here.
  if (at !== len) throw corrupt(at > len ? 'truncated' : `${len - at} bytes after the last column`);
  return {
    deviceId: header.deviceId, tags: header.tags, seq, receivedAtMs, clockOffsetMs,
    metricNames: header.metricNames, metricUnits: header.metricUnits,
    metricIndex, timesMs, deviceTimesMs, values,
  };
}

/** Version 1 (hubs before record version 2): fixed-width columns. */
function decodeV1(payload: Buffer): AcceptedBatch {
  let at = 1;
  const str8 = () => { const len = payload.readUInt8(at); const text = payload.toString('utf8', at + 1, at + 1 + len); at += 1 + len; return text; };
  const str16 = () => { const len = payload.readUInt16LE(at); const text = payload.toString('utf8', at + 2, at + 2 + len); at += 2 + len; return text; };
  const f64s = (n: number) => { const array = new Float64Array(n); for (let i = 0; i < n; i++) { array[i] = payload.readDoubleLE(at); at += 8; } return array; };
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
  // 2 + 8 + 8 bytes per reading at the least: no allocation beyond what the payload holds.
  if (n * 18 > payload.length - at) throw corrupt(`${n} readings cannot fit in ${payload.length} bytes`);
  const metricIndex = new Uint16Array(n);
  for (let i = 0; i < n; i++) { metricIndex[i] = payload.readUInt16LE(at); at += 2; }
  const timesMs = f64s(n);
  const hasDevice = payload.readUInt8(at); at += 1;
  const deviceTimesMs = hasDevice ? f64s(n) : null;
  const values = f64s(n);
  return { deviceId, seq, tags, receivedAtMs, clockOffsetMs, metricNames, metricUnits, metricIndex, timesMs, deviceTimesMs, values };
}
