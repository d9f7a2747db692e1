// device-sim/: pacing. A token bucket mirroring the hub's readings-per-second
// limit (proto/README.md §10), so a device catching up after an outage sends
// no faster than the hub accepts instead of being closed with 4004.
// Imports: @telemetry/proto (types).
import type { Limits } from '@telemetry/proto';

export class ReadingsBucket {
  #tokens = 0;
  #refilledAt = 0;

  /** Tokens now (readings that may go); may be negative after a batch larger than the bucket. */
  get tokens(): number { return this.#tokens; }

  /** The first session: start full. */
  fill(limits: Limits | null | undefined, now: number): void {
    this.#tokens = size(limits);
    this.#refilledAt = now;
  }

  /**
   * Takes `cost` readings' worth if the bucket holds them, refilled up to
   * `now` (called only before a send: with the cap, refilling seldom or
   * often comes to the same). No limit from the hub: always.
   */
  take(cost: number, limits: Limits | null | undefined, now: number): boolean {
    const rate = limits?.maxReadingsPerSecond;
    if (!rate) { this.#tokens = Number.POSITIVE_INFINITY; return true; }
    const burst = size(limits);
    if (now !== this.#refilledAt) {
      this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilledAt) * rate) / 1000);
      this.#refilledAt = now;
    }
    // A batch bigger than the whole bucket goes when the bucket is full, or it would never go.
    if (cost > this.#tokens && this.#tokens < burst) return false;
    this.#tokens -= cost;
    return true;
  }

  /**
   * take() for up to `count` batches of `cost` readings each, at once: how
   * many the bucket affords now (refilled up to `now`), taken. Same rules:
   * a batch bigger than the whole bucket goes (alone) when the bucket is full.
   */
  takeUpTo(count: number, cost: number, limits: Limits | null | undefined, now: number): number {
    const rate = limits?.maxReadingsPerSecond;
    if (!rate) { this.#tokens = Number.POSITIVE_INFINITY; return count; }
    const burst = size(limits);
    if (now !== this.#refilledAt) {
      this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilledAt) * rate) / 1000);
      this.#refilledAt = now;
    }
    if (cost <= 0) return count;
    let n = Math.min(count, Math.floor(this.#tokens / cost));
    if (n <= 0 && this.#tokens >= burst) n = Math.min(count, 1);
    if (n <= 0) return 0;
    this.#tokens -= n * cost;
    return n;
  }
}

function size(limits: Limits | null | undefined): number {
  return limits?.readingsBurst || Number.POSITIVE_INFINITY;
}
