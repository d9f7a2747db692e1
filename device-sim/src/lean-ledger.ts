// device-sim/: the lean load generator's per-device account of sequence
// numbers (proto/README.md §6, §7): which seqs were sent, which an Ack or a
// Welcome.last_seq covered, which were lost; what is in flight; and every
// Ack checked against what was sent (cumulative, never going down, covering
// only seqs sent in the session). Send -> ack latency per batch goes into a
// LatencyHistogram, one record per run of batches sent at the same instant.
// Pure: times are passed in, no I/O, so the rules are tested directly.
// Imports: this package's stats (types).
import type { LatencyHistogram } from './stats.ts';

/** Violations of the protocol by the hub, as the ledger sees them. */
export interface AckViolations {
  /** An Ack whose seq is below an earlier Ack's (or Welcome.last_seq) in the same session. */
  ackRegressed: number;
  /** An Ack whose seq is above every seq sent in the session (it covers batches never sent). */
  ackUnknownSeq: number;
  /** A Welcome.last_seq below a seq an Ack had already covered: the hub forgot durable batches. */
  welcomeRegressed: number;
  /** Credit above the session's window (clamped to the window). */
  creditOverWindow: number;
}

export function emptyViolations(): AckViolations {
  return { ackRegressed: 0, ackUnknownSeq: 0, welcomeRegressed: 0, creditOverWindow: 0 };
}

/** The most in flight the ledger can track (the hub's HUB_WINDOW is at most 1024). */
export const MAX_WINDOW = 1024;

export class SeqLedger {
  /** Batch frames sent, resends included. */
  sent = 0;
  /** Of `sent`, frames of a seq already sent in an earlier session (after a close). */
  resent = 0;
  /** Seqs an Ack covered in the session that (last) sent them: latency recorded. */
  acked = 0;
  /** Seqs sent in a session that closed before their Ack, then covered by the next Welcome.last_seq. */
  ackedByWelcome = 0;
  /** Seqs sent and never covered when the ledger was finished. */
  lost = 0;
  readonly violations: AckViolations = emptyViolations();

  readonly #latency: LatencyHistogram | null;
  /** The next seq to send. */
  #nextSeq = 1;
  /** The highest seq ever sent. */
  #highSent = 0;
  /** Every seq <= this is resolved (acked, acked by Welcome or lost); in a session, >= the session's first seq - 1. */
  #through = 0;
  /** The last Ack.seq (or Welcome.last_seq) of this session: Acks may not go below it. */
  #lastAckSeq = 0;
  #open = false;
  #finished = false;
  #times = new Float64Array(32);
  #mask = 31;

  constructor(latency: LatencyHistogram | null = null) {
    this.#latency = latency;
  }

  /** The seq the next send uses. */
  get nextSeq(): number { return this.#nextSeq; }
  /** The highest seq sent so far (0 = none). */
  get highestSent(): number { return this.#highSent; }
  /** Every seq up to here is accounted for. */
  get resolvedThrough(): number { return this.#through; }
  /** Sent in this session and not yet acked (0 outside a session). */
  get inflight(): number { return this.#open ? this.#nextSeq - 1 - this.#through : 0; }
  /** Seqs sent in an earlier session that this session will send again before any new one. */
  get resendsPending(): number { return Math.max(0, this.#highSent - (this.#nextSeq - 1)); }
  /** Sent (once or more), not yet resolved. */
  get outstanding(): number { return this.#highSent - this.#through; }

  /**
   * A Welcome (§6): what last_seq covers of an earlier session's unacked
   * seqs is acked; the rest is resent from the next seq, before new ones
   * (lean batches can be regenerated at any time, so nothing needs keeping).
   * A fresh device starts after last_seq. `window` sizes the send-time ring.
   */
  welcome(lastSeq: number, window: number): void {
    if (this.#finished) throw new Error('ledger finished');
    if (lastSeq < this.#through && this.#highSent > 0) this.violations.welcomeRegressed++;
    if (lastSeq > this.#through) {
      const covered = Math.min(lastSeq, this.#highSent) - this.#through;
      if (covered > 0) this.ackedByWelcome += covered;
      this.#through = lastSeq;
    }
    this.#nextSeq = this.#through + 1;
    this.#lastAckSeq = lastSeq;
    this.#open = true;
    const size = ringSize(window);
    if (size > this.#times.length) { this.#times = new Float64Array(size); this.#mask = size - 1; }
  }

  /** Records the send of seq nextSeq at monotonic time `now`; returns that seq. */
  markSent(now: number): number {
    const seq = this.#nextSeq++;
    this.#times[seq & this.#mask] = now;
    this.sent++;
    if (seq <= this.#highSent) this.resent++;
    else this.#highSent = seq;
    return seq;
  }

  /**
   * An Ack with `seq`, received at monotonic time `now`. Cumulative (§5.8):
   * every seq of this session up to it is acked; a credit-only Ack repeats
   * the last seq. Returns how many seqs it newly acked.
   */
  ack(seq: number, now: number): number {
    if (!this.#open) return 0;
    if (seq < this.#lastAckSeq) { this.violations.ackRegressed++; return 0; }
    this.#lastAckSeq = seq;
    const sentHigh = this.#nextSeq - 1;
    let upTo = seq;
    if (seq > sentHigh) {
      this.violations.ackUnknownSeq++;
      upTo = sentHigh;
    }
    const from = this.#through + 1;
    if (upTo < from) return 0;
    const n = upTo - from + 1;
    const latency = this.#latency;
    if (latency) {
      // Batches sent in one burst share their send time: one record per run.
      const times = this.#times;
      const mask = this.#mask;
      let t = times[from & mask]!;
      let run = 1;
      for (let s = from + 1; s <= upTo; s++) {
        const ts = times[s & mask]!;
        if (ts === t) { run++; continue; }
        latency.addMany(now - t, run);
        t = ts;
        run = 1;
      }
      latency.addMany(now - t, run);
    }
    this.#through = upTo;
    this.acked += n;
    return n;
  }

  /** Checks a credit against the session's window; returns the credit to use. */
  credit(credit: number, window: number): number {
    if (credit > window) { this.violations.creditOverWindow++; return window; }
    return credit;
  }

  /** The session ended: what is in flight stays unresolved until the next Welcome (or finish()). */
  close(): void {
    this.#open = false;
  }

  /** The run is over: every seq sent and not covered is lost. Idempotent. */
  finish(): void {
    if (this.#finished) return;
    this.#open = false;
    this.#finished = true;
    const left = this.#highSent - this.#through;
    if (left > 0) { this.lost += left; this.#through = this.#highSent; }
  }
}

function ringSize(window: number): number {
  const w = Math.max(1, Math.min(MAX_WINDOW, Math.floor(window) || 1));
  let size = 32;
  while (size < w) size *= 2;
  return size;
}
