// spool/: the reader side of a durable log, the one thing of the spool a
// sink may import (positions, their order, SpoolReader). The disk Spool
// implements it; a test can hand a sink any other. Imports: core only.
import type { AcceptedBatch } from '../core/batch.ts';

/** A place in the log: a segment and a byte offset in it. */
export interface Position { readonly segment: number; readonly offset: number }

/** Log order: negative when `a` comes before `b`, 0 when they are the same place. */
export const comparePos = (a: Position, b: Position): number => a.segment - b.segment || a.offset - b.offset;

/** One durable batch and the position right after it (what commit() takes). */
export interface SpoolRecord { batch: AcceptedBatch; end: Position }

/**
 * What a sink needs from the log it ships. Guarantees:
 * - Only durable data is ever read: every record readFrom() returns has been
 *   fsynced (an ack may already have gone to its device).
 * - Records come back in log order, complete (a torn record is never
 *   returned), each with its `end`; reading from an `end` continues right
 *   after that record.
 * - `checkpoint` only moves forward: commit() with a position at or before
 *   it changes nothing. After a restart it is the last persisted commit, so
 *   a sink replays at most what it shipped since then (its writes must be
 *   idempotent).
 * - Data before the checkpoint may be deleted at any time; data at or after
 *   it is never deleted because of a reader (an embedded spool may rotate
 *   its oldest data out, moving the checkpoint past it).
 */
export interface SpoolReader {
  /** Everything before it has been committed: where a new reader starts. */
  readonly checkpoint: Position;
  /** End of durable data: a reader whose cursor is here has read everything. */
  readonly head: Position;
  /**
   * Reads durable records from `from`, about `maxBytes` of them (a record
   * larger than that is returned whole). `next` is where the following read
   * starts: past the last record returned, and past the empty tail of a
   * fully read segment, so a cursor never stalls there. No records and `next`
   * equal to `from`: nothing complete is readable at `from` yet. Rejects with
   * a StoreError when a record on disk is corrupt.
   */
  readFrom(from: Position, maxBytes?: number): Promise<{ records: SpoolRecord[]; next: Position }>;
  /**
   * The reader's destination has confirmed everything before `upTo` (a
   * record `end`). Persisted shortly after, coalesced; a crash before that
   * replays a little.
   */
  commit(upTo: Position): void;
  /** `listener` is called, without arguments, whenever more data became durable; returns an unsubscribe. */
  onDurable(listener: () => void): () => void;
}
