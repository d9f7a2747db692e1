// spool/: how segment files are named and how each one starts; shared by
// the spool and its recovery. Imports: the spool's Position type.
//
//   <16-digit segment number>.seg   header "TSPOOL1\n", then frames (codec.ts)
import type { Position } from './reader.ts';

/** First bytes of every segment: a file without them was torn while being created. */
export const SEGMENT_HEADER = Buffer.from('TSPOOL1\n');

/** Where a new log starts: the first record of segment 1. */
export const LOG_START: Position = { segment: 1, offset: SEGMENT_HEADER.length };

const SEGMENT_NAME_RE = /^(\d{16})\.seg$/;

/** `7` -> `0000000000000007.seg`: names sort in segment order. */
export const segmentName = (segment: number): string => `${String(segment).padStart(16, '0')}.seg`;

/** The segment number a file name stands for, or null when it is not a segment. */
export function segmentNumber(fileName: string): number | null {
  const match = SEGMENT_NAME_RE.exec(fileName);
  return match ? Number(match[1]) : null;
}

/** A segment on disk: its number and how many bytes of it hold complete records (header included). */
export interface Segment { number: number; size: number }
