// device-sim/: the numbers a run reports. Counters shared by devices, fleets
// and the CLI (plain data, JSON-safe, so child processes can send them over
// IPC), and the send -> ack latency histogram (HDR: fixed relative precision,
// merged exactly by adding counts).
// Imports: hdr-histogram-js.
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';

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
  /** DesiredConfigs applied in full (ConfigReport ok = true), proto/README.md §15. */
  configUpdatesApplied: number;
  /** DesiredConfigs refused (a value out of range, a bad custom_json): ConfigReport ok = false, nothing applied. */
  configUpdatesRefused: number;
  /** Commands answered with a CommandResult (ConfigUpdate, Invoke, unknown ones), ok or not. */
  commandsAnswered: number;
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
    configUpdatesApplied: 0, configUpdatesRefused: 0, commandsAnswered: 0, closes: {}, notices: {},
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
  // "injected:<code>": a session a load test ended on purpose (a reconnect storm, a flaky link), not an error.
  for (const [k, v] of Object.entries(c.closes)) if (k !== '1000' && !k.startsWith('injected:')) n += v;
  return n;
}

export interface Percentiles { p50: number; p95: number; p99: number; samples: number }

/**
 * Histogram settings. Values are whole microseconds, 3 significant digits:
 * exact to 1 µs up to 2.048 ms, above that within 0.1 % (a bucket is at most
 * 1/1024 of its value wide), far finer than the 0.1 ms the summary prints.
 * The range starts at 1 h (the device gives up on an ack after 60 s by
 * default) and grows past it rather than throwing; 95 KB per histogram. The
 * pure-JS build: no WebAssembly instance to initialise, no memory to free
 * by hand.
 */
export const LATENCY_HISTOGRAM = {
  lowestDiscernibleValue: 1,
  highestTrackableValue: 3_600_000_000,
  numberOfSignificantValueDigits: 3,
  autoResize: true,
  useWebAssembly: false,
} as const;

const US_PER_MS = 1000;

/** Send -> ack latencies, ms in and out (microseconds inside). */
export class LatencyHistogram {
  readonly #histogram: Histogram;

  constructor(histogram: Histogram = build({ ...LATENCY_HISTOGRAM, bitBucketSize: 32 })) {
    this.#histogram = histogram;
  }

  /** Values recorded. */
  get count(): number { return this.#histogram.totalCount; }
  /** The smallest value recorded, rounded down to its bucket; NaN when empty. */
  get minMs(): number { return this.count ? this.#histogram.getValueAtPercentile(0) / US_PER_MS : Number.NaN; }
  /** The largest value recorded, to the µs (after decode(), the top of its bucket); NaN when empty. */
  get maxMs(): number { return this.count ? this.#histogram.maxValue / US_PER_MS : Number.NaN; }

  /** Records one latency, ms (negative counts as 0). */
  add(ms: number): void {
    this.#histogram.recordValue(ms > 0 ? Math.round(ms * US_PER_MS) : 0);
  }

  /** Records `count` equal latencies at once, ms (a burst of batches sent together and acked together). */
  addMany(ms: number, count: number): void {
    this.#histogram.recordValueWithCount(ms > 0 ? Math.round(ms * US_PER_MS) : 0, count);
  }

  /** Adds every value another histogram holds: exact, the counts add up. */
  merge(other: LatencyHistogram): this {
    this.#histogram.add(other.#histogram);
    return this;
  }

  /** A histogram with the values this one holds now, recorded into separately from then on. */
  copy(): LatencyHistogram {
    return new LatencyHistogram().merge(this);
  }

  /** Removes the values `earlier` holds (a copy() of this histogram taken before): what was recorded since. */
  since(earlier: LatencyHistogram): LatencyHistogram {
    const out = this.copy();
    out.#histogram.subtract(earlier.#histogram);
    return out;
  }

  /** One histogram holding the values of all (e.g. one per child process). */
  static merged(parts: readonly LatencyHistogram[]): LatencyHistogram {
    const out = new LatencyHistogram();
    for (const p of parts) out.merge(p);
    return out;
  }

  /** Every count, as a JSON-safe string (HdrHistogram V2 compressed, base64) to send over IPC. */
  encode(): string {
    return encodeIntoCompressedBase64(this.#histogram);
  }

  static decode(encoded: string): LatencyHistogram {
    return new LatencyHistogram(decodeFromCompressedBase64(encoded, 32, false));
  }

  /**
   * The value p % of the recorded values are at or below (p in 0..100), as
   * the top of its histogram bucket (HDR convention: never an underestimate
   * beyond the precision above); NaN when empty.
   */
  percentile(p: number): number {
    return this.count ? this.#histogram.getValueAtPercentile(p) / US_PER_MS : Number.NaN;
  }

  percentiles(): Percentiles {
    return { p50: this.percentile(50), p95: this.percentile(95), p99: this.percentile(99), samples: this.count };
  }
}
