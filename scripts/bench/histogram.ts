// scripts/bench/: a latency histogram the load generators of `npm run bench`
// keep per process and the parent merges: log-spaced buckets 1 % wide above
// 100 µs, exact microseconds below, so a percentile is within 1 % of the true
// value (reported as the top of its bucket, never below it). Plain JSON
// travels over IPC.

/** Bucket index of a value in microseconds. */
function bucketOf(us: number): number {
  if (us < 100) return Math.max(0, Math.ceil(us));
  return 100 + Math.ceil(Math.log(us / 100) / Math.log(1.01));
}

/** Upper bound of a bucket, in microseconds. */
function upperOf(b: number): number {
  return b <= 100 ? b : 100 * 1.01 ** (b - 100);
}

export type HistogramJson = Record<string, number>;

export class LatencyHistogram {
  readonly #counts = new Map<number, number>();
  #total = 0;

  get count(): number { return this.#total; }

  recordMs(ms: number): void {
    const b = bucketOf(ms * 1000);
    this.#counts.set(b, (this.#counts.get(b) ?? 0) + 1);
    this.#total++;
  }

  add(other: LatencyHistogram | HistogramJson): void {
    const entries: [number, number][] = other instanceof LatencyHistogram
      ? [...other.#counts]
      : Object.entries(other).map(([k, v]) => [Number(k), v]);
    for (const [b, c] of entries) {
      this.#counts.set(b, (this.#counts.get(b) ?? 0) + c);
      this.#total += c;
    }
  }

  /** The q-quantile in ms (top of its bucket); NaN when empty. */
  quantileMs(q: number): number {
    if (this.#total === 0) return NaN;
    const need = Math.max(1, Math.ceil(q * this.#total));
    let seen = 0;
    for (const b of [...this.#counts.keys()].sort((x, y) => x - y)) {
      seen += this.#counts.get(b) ?? 0;
      if (seen >= need) return upperOf(b) / 1000;
    }
    return NaN;
  }

  toJSON(): HistogramJson {
    return Object.fromEntries(this.#counts);
  }

  static fromJSON(j: HistogramJson): LatencyHistogram {
    const h = new LatencyHistogram();
    h.add(j);
    return h;
  }
}
