// spool/: CRC-32 (the zlib / ISO-HDLC one, reflected polynomial 0xEDB88320)
// of a byte range, for the record frame (codec.ts). zlib's native crc32 costs
// about 150-250 ns per call whatever the size, which is most of the work for
// a record of a few hundred bytes; a table-driven loop (slicing by 8) is
// faster below NATIVE_FROM bytes, zlib's above. Both give the same value
// (hub/test/spool-codec.test.ts checks them against each other).
// Imports: nothing of the hub.
import { crc32 as zlibCrc32 } from 'node:zlib';

/** From this many bytes on, zlib's crc32 is faster than the loop (measured on x86-64, Node 20). */
const NATIVE_FROM = 256;

/** TABLE[k * 256 + b]: the CRC of byte b followed by k zero bytes. */
const TABLE = new Int32Array(256 * 8);
for (let b = 0; b < 256; b++) {
  let c = b;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[b] = c;
}
for (let b = 0; b < 256; b++) {
  let c = TABLE[b]!;
  for (let k = 1; k < 8; k++) {
    c = TABLE[c & 0xff]! ^ (c >>> 8);
    TABLE[k * 256 + b] = c;
  }
}

/** The CRC-32 of bytes[start, end), as an unsigned 32-bit number (what zlib.crc32 returns). */
export function crc32Of(bytes: Uint8Array, start: number, end: number): number {
  if (end - start >= NATIVE_FROM) return zlibCrc32(new Uint8Array(bytes.buffer, bytes.byteOffset + start, end - start));
  const t = TABLE;
  let c = -1;
  let i = start;
  const last = end - 8;
  for (; i <= last; i += 8) {
    c ^= bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    c = t[1792 + (c & 0xff)]! ^ t[1536 + ((c >>> 8) & 0xff)]! ^ t[1280 + ((c >>> 16) & 0xff)]! ^ t[1024 + (c >>> 24)]!
      ^ t[768 + bytes[i + 4]!]! ^ t[512 + bytes[i + 5]!]! ^ t[256 + bytes[i + 6]!]! ^ t[bytes[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
