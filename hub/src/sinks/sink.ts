// sinks/: what ships spooled batches onward. A sink reads a SpoolReader
// (spool/reader.ts) from its checkpoint and calls commit() only for data its
// destination has confirmed. Imports: spool/reader.ts (never the Spool class),
// core. Each implementation has its own folder (influx/).
//
// Guarantees every Sink gives:
// - Data is committed in spool order; nothing is committed before the
//   destination confirmed it (or it went to the dead-letter file with a reason).
// - Failures never drop data except a line the destination rejects as
//   invalid on its own, or one the sink cannot express exactly in the
//   destination's format (dead letter, either way); everything else is
//   retried from the spool.
// - close() resolves only after every write in flight has settled.

import type { SinkStatus } from '../core/sink-status.ts';

export type { SinkState, SinkStatus } from '../core/sink-status.ts';

export interface Sink {
  start(): void;
  /** Ships what it can until `deadlineMs` (Unix ms), then stops. */
  close(deadlineMs: number): Promise<void>;
  status(): SinkStatus;
}
