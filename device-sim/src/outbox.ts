// device-sim/: the device's outbox, every batch it has closed and not yet seen acked, in
// seq order, in a session-independent form (metric indexes, offsets, values)
// so it can be re-encoded for any session. The front `inflight` entries were
// sent in the current session. Bounded like firmware memory: when full, the
// oldest batch not in flight is dropped (proto/README.md §11 "Bound the outbox").
// Imports: nothing.

export interface KeptBatch {
  readonly seq: number;
  /** Device clock, Unix ms, the offsets are relative to (the first reading). */
  readonly baseTimeMs: number;
  /** Per reading: index into the device's sensor list (also its metric id on the wire). */
  readonly metrics: Uint16Array;
  readonly offsets: Int32Array;
  readonly values: Float64Array;
  /** performance.now() when sent in the current session; 0 = not sent in it. */
  sentAt: number;
  /** Sent in some session before (so the next send is a resend). */
  everSent: boolean;
}

export class Outbox {
  #items: (KeptBatch | undefined)[] = [];
  #head = 0;
  #inflight = 0;

  constructor(readonly cap: number) {
    if (!(cap >= 1)) throw new RangeError(`outbox cap must be >= 1 (got ${cap})`);
  }

  get length(): number { return this.#items.length - this.#head; }
  /** Entries sent in this session and not yet acked (the front of the outbox). */
  get inflight(): number { return this.#inflight; }
  /** The oldest batch not yet sent in this session. */
  get nextUnsent(): KeptBatch | undefined { return this.#items[this.#head + this.#inflight]; }
  at(i: number): KeptBatch | undefined { return i < 0 ? undefined : this.#items[this.#head + i]; }

  /**
   * Appends a batch (seq above every kept one). When full, drops the oldest
   * batch not in flight (the new one itself if everything kept is in flight)
   * and returns it.
   */
  push(b: KeptBatch): KeptBatch | undefined {
    if (this.length < this.cap) {
      this.#items.push(b);
      return undefined;
    }
    if (this.#inflight >= this.length) return b;
    const i = this.#head + this.#inflight;
    const dropped = this.#items[i]!;
    // Shift the in-flight entries (at most the window) one slot towards the
    // back instead of splicing the whole array: O(window), not O(cap).
    for (let j = i; j > this.#head; j--) this.#items[j] = this.#items[j - 1];
    this.#items[this.#head] = undefined;
    this.#head++;
    this.#items.push(b);
    this.#compact();
    return dropped;
  }

  /** Marks nextUnsent as sent in this session. */
  markSent(now: number): KeptBatch {
    const b = this.nextUnsent;
    if (!b) throw new Error('outbox: nothing unsent');
    b.sentAt = now;
    this.#inflight++;
    return b;
  }

  /** Removes every batch with seq <= seq (cumulative ack), calling each(b) for each, oldest first. */
  ackThrough(seq: number, each?: (b: KeptBatch) => void): number {
    let n = 0;
    while (this.#head < this.#items.length) {
      const b = this.#items[this.#head]!;
      if (b.seq > seq) break;
      each?.(b);
      this.#items[this.#head++] = undefined;
      n++;
    }
    this.#inflight = Math.max(0, this.#inflight - n);
    this.#compact();
    return n;
  }

  /** A session ended: nothing is in flight any more; what was sent will be a resend. */
  endSession(): void {
    for (let i = this.#head; i < this.#head + this.#inflight; i++) {
      const b = this.#items[i]!;
      b.sentAt = 0;
      b.everSent = true;
    }
    this.#inflight = 0;
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}
