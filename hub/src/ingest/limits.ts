// ingest/: count limits used at the upgrade, and retry hints (the token
// bucket is core/token-bucket.ts). Imports: nothing.

/** Counts open connections per remote address. */
export class AddressCounter {
  readonly #countByAddress = new Map<string, number>();
  get(addr: string): number { return this.#countByAddress.get(addr) ?? 0; }
  inc(addr: string): void { this.#countByAddress.set(addr, this.get(addr) + 1); }
  dec(addr: string): void {
    const count = this.get(addr) - 1;
    if (count <= 0) this.#countByAddress.delete(addr);
    else this.#countByAddress.set(addr, count);
  }
  /** Addresses with at least one open connection. */
  get addresses(): number { return this.#countByAddress.size; }
}

/** A retry hint with jitter (base..2x base), so refused devices do not return in lockstep. */
export function jitteredRetryMs(baseMs: number, random: () => number = Math.random): number {
  return Math.round(baseMs * (1 + random()));
}
