// Count limits used at the upgrade, and retry hints (the token bucket is
// core/token-bucket.ts). Imports: nothing of ours.

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
