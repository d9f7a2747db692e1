// Rate and count limits used at the upgrade and per session.

/** Token bucket: `rate` tokens per second, at most `burst` saved up. */
export class TokenBucket {
  #tokens: number;
  #last: number;
  constructor(readonly rate: number, readonly burst: number, now: number) {
    this.#tokens = burst;
    this.#last = now;
  }

  #refill(now: number): void {
    if (now > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
      this.#last = now;
    }
  }

  /** Takes n tokens if available. */
  take(n: number, now: number): boolean {
    this.#refill(now);
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Milliseconds until n tokens will be available. */
  waitMs(n: number, now: number): number {
    this.#refill(now);
    return this.#tokens >= n ? 0 : Math.ceil(((n - this.#tokens) / this.rate) * 1000);
  }
}

/** Counts open connections per remote address. */
export class AddressCounter {
  readonly #counts = new Map<string, number>();
  get(addr: string): number { return this.#counts.get(addr) ?? 0; }
  inc(addr: string): void { this.#counts.set(addr, this.get(addr) + 1); }
  dec(addr: string): void {
    const n = this.get(addr) - 1;
    if (n <= 0) this.#counts.delete(addr);
    else this.#counts.set(addr, n);
  }
  get addresses(): number { return this.#counts.size; }
}

/** A retry hint with jitter (base..2x base), so refused devices do not return in lockstep. */
export function jitteredRetryMs(baseMs: number, random: () => number = Math.random): number {
  return Math.round(baseMs * (1 + random()));
}
