// spool/: where accepted batches become durable. This file is the seam
// ingest depends on (BatchStore) plus an in-memory store for tests and
// embedding; spool.ts is the durable one main.ts uses, and reader.ts the
// side sinks read. Imports: core only.
//
// Guarantees every BatchStore gives:
// - append() records the batch as accepted synchronously (acceptedSeq moves
//   at once) and resolves only once the batch is durable for this store.
// - Per device, appends become durable in the order they were made, so
//   durableSeq(device) is the highest seq below which everything is durable.
// - close() resolves only after every append has settled.
// - When append() rejects, acceptedSeq falls back so that a resend is stored.
import type { AcceptedBatch } from '../core/batch.ts';
import { StoreError } from '../core/errors.ts';

export type { AcceptedBatch };

export interface BatchStore {
  /** Highest seq accepted for the device (durable or on its way); 0 if none. */
  acceptedSeq(deviceId: string): number;
  /** Highest seq durably stored for the device; 0 if none. */
  durableSeq(deviceId: string): number;
  /** Accepts the batch now; resolves when it is durable, rejects with a StoreError when it cannot be. */
  append(batch: AcceptedBatch): Promise<void>;
  /** 0 = plenty of room, 1 = full: ingest shrinks credit as this grows. */
  pressure(): number;
  /**
   * Bytes held and not yet handed on (the disk spool: not committed by the
   * sink, or with no sink all it keeps, plus what waits for the next
   * fsync); 0 for a store that hands nothing on. hub_spool_bytes and the
   * live health show it.
   */
  readonly bytes: number;
  /** False while the store cannot take appends (I/O error, closed). */
  readonly healthy: boolean;
  /** Resolves after every append has settled. */
  close(): Promise<void>;
}

export interface MemoryStoreOptions {
  /** Batches kept for inspection (history); older ones are forgotten. */
  keepBatches?: number;
}

/**
 * Keeps per-device sequence numbers and a bounded ring of recent batches in
 * memory. "Durable" here means "in this process": appends made in one tick
 * settle together on the next (the same group-commit shape as the disk
 * spool), so the ack path is exercised as it will be in production.
 */
export class MemoryBatchStore implements BatchStore {
  readonly #accepted = new Map<string, number>();
  readonly #durable = new Map<string, number>();
  readonly #recent: AcceptedBatch[] = [];
  readonly #keep: number;
  #group: { batch: AcceptedBatch; resolve: () => void }[] = [];
  #scheduled = false;
  #closed = false;
  #pending = 0;
  #idle: (() => void)[] = [];
  readingsStored = 0;
  batchesStored = 0;

  constructor(opts: MemoryStoreOptions = {}) {
    this.#keep = opts.keepBatches ?? 10_000;
  }

  get healthy(): boolean { return !this.#closed; }
  acceptedSeq(deviceId: string): number { return this.#accepted.get(deviceId) ?? 0; }
  durableSeq(deviceId: string): number { return this.#durable.get(deviceId) ?? 0; }
  pressure(): number { return 0; }
  /** Nothing here waits to be shipped: the ring is for inspection. */
  get bytes(): number { return 0; }

  /** Recent batches, oldest first (bounded by keepBatches). */
  recent(): readonly AcceptedBatch[] { return this.#recent; }

  append(batch: AcceptedBatch): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreError('HUB_ERR_STORE_CLOSED', 'store is closed'));
    if (batch.seq <= this.acceptedSeq(batch.deviceId)) {
      return Promise.reject(new StoreError('HUB_ERR_STORE', `seq ${batch.seq} for ${batch.deviceId} is not above the accepted ${this.acceptedSeq(batch.deviceId)}`));
    }
    this.#accepted.set(batch.deviceId, batch.seq);
    this.#pending++;
    return new Promise<void>((resolve) => {
      this.#group.push({ batch, resolve });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#commit());
      }
    });
  }

  #commit(): void {
    const group = this.#group;
    this.#group = [];
    this.#scheduled = false;
    for (const { batch } of group) {
      this.#durable.set(batch.deviceId, batch.seq);
      this.#recent.push(batch);
      this.batchesStored++;
      this.readingsStored += batch.values.length;
    }
    if (this.#recent.length > this.#keep) this.#recent.splice(0, this.#recent.length - this.#keep);
    for (const { resolve } of group) resolve();
    this.#pending -= group.length;
    if (this.#pending === 0) for (const wake of this.#idle.splice(0)) wake();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#pending > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
  }
}
