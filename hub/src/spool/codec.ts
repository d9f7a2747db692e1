// The spool's on-disk record: one AcceptedBatch, framed with its length and
// a CRC-32 so recovery can tell a complete record from a torn or corrupted
// one. Layout (little endian) is documented in docs/spool.md.
//
//   frame   = u32 payloadLength, u32 crc32(payload), payload
//   payload = u8 version(1), str16 deviceId, f64 seq, f64 receivedAtMs,
//             f64 clockOffsetMs, u8 nTags, (str8 key, str16 value)*,
//             u16 nMetrics, (str8 name, str8 unit)*, u32 n,
//             u16[n] metricIndex, f64[n] timesMs, u8 hasDeviceTimes,
//             f64[n] deviceTimesMs?, f64[n] values
import { crc32 } from 'node:zlib';
import type { AcceptedBatch } from '../core/batch.ts';

export const FRAME_HEADER_BYTES = 8;
const VERSION = 1;

export function encodeRecord(b: AcceptedBatch): Buffer {
  const tags = Object.entries(b.tags);
  const n = b.values.length;
  let size = 1 + 2 + Buffer.byteLength(b.deviceId) + 8 * 3 + 1;
  for (const [k, v] of tags) size += 1 + Buffer.byteLength(k) + 2 + Buffer.byteLength(v);
  size += 2;
  for (let i = 0; i < b.metricNames.length; i++) size += 1 + Buffer.byteLength(b.metricNames[i]!) + 1 + Buffer.byteLength(b.metricUnits[i]!);
  size += 4 + n * 2 + n * 8 + 1 + (b.deviceTimesMs ? n * 8 : 0) + n * 8;

  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + size);
  let o = FRAME_HEADER_BYTES;
  const str8 = (s: string) => { const l = buf.write(s, o + 1); buf.writeUInt8(l, o); o += 1 + l; };
  const str16 = (s: string) => { const l = buf.write(s, o + 2); buf.writeUInt16LE(l, o); o += 2 + l; };
  const f64s = (a: Float64Array) => { for (let i = 0; i < a.length; i++) { buf.writeDoubleLE(a[i]!, o); o += 8; } };
  buf.writeUInt8(VERSION, o); o += 1;
  str16(b.deviceId);
  buf.writeDoubleLE(b.seq, o); o += 8;
  buf.writeDoubleLE(b.receivedAtMs, o); o += 8;
  buf.writeDoubleLE(b.clockOffsetMs, o); o += 8;
  buf.writeUInt8(tags.length, o); o += 1;
  for (const [k, v] of tags) { str8(k); str16(v); }
  buf.writeUInt16LE(b.metricNames.length, o); o += 2;
  for (let i = 0; i < b.metricNames.length; i++) { str8(b.metricNames[i]!); str8(b.metricUnits[i]!); }
  buf.writeUInt32LE(n, o); o += 4;
  for (let i = 0; i < n; i++) { buf.writeUInt16LE(b.metricIndex[i]!, o); o += 2; }
  f64s(b.timesMs);
  buf.writeUInt8(b.deviceTimesMs ? 1 : 0, o); o += 1;
  if (b.deviceTimesMs) f64s(b.deviceTimesMs);
  f64s(b.values);
  if (o !== buf.length) throw new Error(`spool codec: wrote ${o} of ${buf.length} bytes`);
  buf.writeUInt32LE(size, 0);
  buf.writeUInt32LE(crc32(buf.subarray(FRAME_HEADER_BYTES)), 4);
  return buf;
}

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
  const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len);
  if (crc32(payload) !== buf.readUInt32LE(off + 4)) return { kind: 'corrupt', why: 'checksum mismatch' };
  return { kind: 'ok', payload, next: off + FRAME_HEADER_BYTES + len };
}

/** Decodes a payload that passed checkFrame. */
export function decodeRecord(p: Buffer): AcceptedBatch {
  let o = 0;
  const str8 = () => { const l = p.readUInt8(o); const s = p.toString('utf8', o + 1, o + 1 + l); o += 1 + l; return s; };
  const str16 = () => { const l = p.readUInt16LE(o); const s = p.toString('utf8', o + 2, o + 2 + l); o += 2 + l; return s; };
  const f64s = (n: number) => { const a = new Float64Array(n); for (let i = 0; i < n; i++) { a[i] = p.readDoubleLE(o); o += 8; } return a; };
  const version = p.readUInt8(o); o += 1;
  if (version !== VERSION) throw new Error(`spool record version ${version} is not supported`);
  const deviceId = str16();
  const seq = p.readDoubleLE(o); o += 8;
  const receivedAtMs = p.readDoubleLE(o); o += 8;
  const clockOffsetMs = p.readDoubleLE(o); o += 8;
  const nTags = p.readUInt8(o); o += 1;
  const tags: Record<string, string> = {};
  for (let i = 0; i < nTags; i++) { const k = str8(); tags[k] = str16(); }
  const nMetrics = p.readUInt16LE(o); o += 2;
  const metricNames: string[] = [];
  const metricUnits: string[] = [];
  for (let i = 0; i < nMetrics; i++) { metricNames.push(str8()); metricUnits.push(str8()); }
  const n = p.readUInt32LE(o); o += 4;
  const metricIndex = new Uint16Array(n);
  for (let i = 0; i < n; i++) { metricIndex[i] = p.readUInt16LE(o); o += 2; }
  const timesMs = f64s(n);
  const hasDevice = p.readUInt8(o); o += 1;
  const deviceTimesMs = hasDevice ? f64s(n) : null;
  const values = f64s(n);
  return { deviceId, seq, tags, receivedAtMs, clockOffsetMs, metricNames, metricUnits, metricIndex, timesMs, deviceTimesMs, values };
}
