// spool/: the on-disk record, one AcceptedBatch framed with its length and
// a CRC-32 so recovery can tell a complete record from a torn or corrupted
// one. Layout (little endian) is documented in docs/spool.md. Imports: core.
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

export function encodeRecord(batch: AcceptedBatch): Buffer {
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
  buf.writeUInt8(VERSION, at); at += 1;
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
export function decodeRecord(payload: Buffer): AcceptedBatch {
  let at = 0;
  const str8 = () => { const len = payload.readUInt8(at); const text = payload.toString('utf8', at + 1, at + 1 + len); at += 1 + len; return text; };
  const str16 = () => { const len = payload.readUInt16LE(at); const text = payload.toString('utf8', at + 2, at + 2 + len); at += 2 + len; return text; };
  const f64s = (n: number) => { const array = new Float64Array(n); for (let i = 0; i < n; i++) { array[i] = payload.readDoubleLE(at); at += 8; } return array; };
  const version = payload.readUInt8(at); at += 1;
  if (version !== VERSION) throw new Error(`spool record version ${version} is not supported`);
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
