// Counters and latency percentiles shared by devices, fleets and the CLI.
// Plain data (JSON-safe), so child processes can send them over IPC.
// Imports: nothing.

export interface SimCounters {
  readingsGenerated: number;
  /** Sample instants a saturated simulator could not generate in time (readings). */
  readingsSkipped: number;
  /** Batch frames sent, resends included. */
  batchesSent: number;
  /** Of batchesSent, frames of a batch already sent in an earlier session. */
  batchesResent: number;
  /** Batches an Ack or Welcome.last_seq covered (each counted once). */
  batchesAcked: number;
  readingsAcked: number;
  /** Batches the device threw away because its outbox was full (firmware memory). */
  batchesDropped: number;
  readingsDropped: number;
  /** Readings the hub reported dropped (NaN, skew) or corrected, from Ack reports. */
  hubNonFiniteDropped: number;
  hubSkewDropped: number;
  hubSkewCorrected: number;
  /** Reconnect attempts scheduled. */
  reconnects: number;
  /** Sessions that reached Welcome. */
  sessions: number;
  /** Acks whose credit was below the window (the hub slowing the device down). */
  reducedCreditAcks: number;
  /**
   * How sessions and attempts ended: close codes ("1000", "4004"), HTTP
   * refusals ("http-503"), network errors before an upgrade ("error:ECONNREFUSED"),
   * and the device's own timeouts "welcome-timeout", "ack-timeout", "idle-timeout".
   */
  closes: Record<string, number>;
  /** Notices received, by code. */
  notices: Record<string, number>;
}

type RecordKey = 'closes' | 'notices';
const RECORD_KEYS: ReadonlySet<string> = new Set<RecordKey>(['closes', 'notices']);

export function emptyCounters(): SimCounters {
  return {
    readingsGenerated: 0, readingsSkipped: 0, batchesSent: 0, batchesResent: 0, batchesAcked: 0, readingsAcked: 0, batchesDropped: 0,
    readingsDropped: 0, hubNonFiniteDropped: 0, hubSkewDropped: 0, hubSkewCorrected: 0, reconnects: 0, sessions: 0, reducedCreditAcks: 0,
    closes: {}, notices: {},
  };
}

/** Adds c into `into` (tolerates counters that lack a field). */
export function addCounters(into: SimCounters, c: Partial<SimCounters>): SimCounters {
  for (const k of Object.keys(c) as (keyof SimCounters)[]) {
    if (RECORD_KEYS.has(k)) {
      const dst = into[k as RecordKey];
      for (const [key, n] of Object.entries(c[k as RecordKey] ?? {})) dst[key] = (dst[key] ?? 0) + n;
    } else if (k in into) {
      (into[k] as number) += (c[k] as number | undefined) ?? 0;
    }
  }
  return into;
}

/** Closes that are not a clean 1000, summed (refusals and network errors included): what a status line calls errors. */
export function errorCount(c: SimCounters): number {
  let n = 0;
  for (const [k, v] of Object.entries(c.closes)) if (k !== '1000') n += v;
  return n;
}

export interface Percentiles { p50: number; p95: number; p99: number; samples: number }

/**
 * Latency samples in a bounded reservoir (Algorithm R): a uniform sample of
 * every value added, so percentiles over a long run are an exact sort of at
 * most `capacity` values.
 */
export class Reservoir {
  readonly samples: number[] = [];
  /** Values ever added (the reservoir holds at most capacity of them). */
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

  /**
   * One reservoir standing for several (e.g. one per child process): each
   * slot draws a part with probability proportional to the values it stood
   * for, then a random sample of that part. O(capacity), unbiased.
   */
  static merged(parts: readonly { samples: readonly number[]; count: number }[], capacity = 100_000, random: () => number = Math.random): Reservoir {
    const out = new Reservoir(capacity, random);
    const live = parts.filter((p) => p.samples.length > 0 && p.count > 0);
    const total = live.reduce((a, p) => a + p.count, 0);
    const held = live.reduce((a, p) => a + p.samples.length, 0);
    out.count = total;
    if (held <= capacity && live.every((p) => p.samples.length === p.count)) {
      for (const p of live) for (const v of p.samples) out.samples.push(v); // every value is here: exact
      return out;
    }
    const n = Math.min(capacity, held);
    for (let i = 0; i < n; i++) {
      let r = random() * total;
      let part = live[live.length - 1]!;
      for (const p of live) { if (r < p.count) { part = p; break; } r -= p.count; }
      out.samples.push(part.samples[Math.floor(random() * part.samples.length)]!);
    }
    return out;
  }

  /** Nearest-rank percentile, p in 0..100; NaN when empty. */
  percentile(p: number): number {
    return rank(Float64Array.from(this.samples).sort(), p);
  }

  /** p50/p95/p99 with one sort. */
  percentiles(): Percentiles {
    const s = Float64Array.from(this.samples).sort();
    return { p50: rank(s, 50), p95: rank(s, 95), p99: rank(s, 99), samples: this.count };
  }
}

function rank(sorted: Float64Array, p: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
