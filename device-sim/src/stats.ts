// Counters and latency percentiles shared by devices, fleets and the CLI.

export interface SimCounters {
  readingsGenerated: number;
  /** Sample instants a saturated simulator could not generate in time. */
  readingsSkipped: number;
  batchesSent: number;
  batchesResent: number;
  batchesAcked: number;
  readingsAcked: number;
  /** Batches the device threw away because its outbox was full (firmware memory). */
  batchesDropped: number;
  readingsDropped: number;
  /** Readings the hub reported dropped (NaN, skew) or corrected. */
  hubNonFiniteDropped: number;
  hubSkewDropped: number;
  hubSkewCorrected: number;
  reconnects: number;
  sessions: number;
  /** Acks whose credit was below the window (the hub slowing the device down). */
  reducedCreditAcks: number;
  /** Close codes (and http-<status> refusals, 'error' for network errors) seen. */
  closes: Record<string, number>;
}

export function emptyCounters(): SimCounters {
  return {
    readingsGenerated: 0, readingsSkipped: 0, batchesSent: 0, batchesResent: 0, batchesAcked: 0, readingsAcked: 0, batchesDropped: 0,
    readingsDropped: 0, hubNonFiniteDropped: 0, hubSkewDropped: 0, hubSkewCorrected: 0, reconnects: 0, sessions: 0, reducedCreditAcks: 0, closes: {},
  };
}

export function addCounters(into: SimCounters, c: SimCounters): SimCounters {
  for (const k of Object.keys(c) as (keyof SimCounters)[]) {
    if (k === 'closes') for (const [code, n] of Object.entries(c.closes)) into.closes[code] = (into.closes[code] ?? 0) + n;
    else into[k] += c[k];
  }
  return into;
}

/**
 * Latency samples with a bounded reservoir (Algorithm R), so a long run's
 * percentiles stay exact-ish without unbounded memory.
 */
export class Reservoir {
  readonly samples: number[] = [];
  count = 0;
  constructor(readonly capacity = 100_000, readonly random: () => number = Math.random) {}
  add(v: number): void {
    this.count++;
    if (this.samples.length < this.capacity) this.samples.push(v);
    else {
      const j = Math.floor(this.random() * this.count);
      if (j < this.capacity) this.samples[j] = v;
    }
  }
  merge(values: readonly number[]): void { for (const v of values) this.add(v); }
  percentile(p: number): number {
    if (!this.samples.length) return NaN;
    const s = [...this.samples].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  }
}
