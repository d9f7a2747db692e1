// live/: aggregates of accepted readings, in memory. This file: the recent
// history the hub serves without a database (the embedded default): per
// metric, for the fleet, each tag group (site:north...) and each device,
// count/sum/min/max in time buckets held in fixed-size rings.
// Imports: spool types, http/history types. Fed by ingest once a batch is durable.
//
// Memory is bounded: fleet and group series keep 1 h of 10 s buckets
// (360 x 36 B = 13 KB each), device series 1 h of 1 min buckets
// (60 x 36 B = 2.2 KB each), and at most `maxSeries` series exist
// (default 50,000: about 110 MB if every one were a fleet/group series;
// 10,000 devices x 4 metrics of device series take ~86 MB).
import type { HistoryPoint, HistoryQuery, HistorySource } from '../http/history.ts';
import type { AcceptedBatch } from '../spool/store.ts';

/** Fleet and group buckets, and device buckets (1 h of each). */
const FINE_MS = 10_000;
const COARSE_MS = 60_000;

class Ring {
  readonly count: Float64Array;
  readonly sum: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Bucket number (time / res) each slot holds; -1 = empty. */
  readonly slot: Float64Array;
  constructor(readonly res: number, readonly n: number) {
    this.count = new Float64Array(n);
    this.sum = new Float64Array(n);
    this.min = new Float64Array(n);
    this.max = new Float64Array(n);
    this.slot = new Float64Array(n).fill(-1);
  }

  /** Adds `count` readings of bucket `b` at once (sum, min, max of them). */
  addRun(b: number, count: number, sum: number, min: number, max: number): void {
    const i = b % this.n;
    const held = this.slot[i]!;
    if (held !== b) {
      if (held > b) return; // older than what the ring holds now
      this.slot[i] = b;
      this.count[i] = count; this.sum[i] = sum; this.min[i] = min; this.max[i] = max;
      return;
    }
    this.count[i]! += count;
    this.sum[i]! += sum;
    if (min < this.min[i]!) this.min[i] = min;
    if (max > this.max[i]!) this.max[i] = max;
  }
}

/**
 * Readings of one metric in one batch, folded into runs of the same bucket
 * (a batch's readings mostly share one 10 s and one 1 min bucket), so rings
 * are touched once per run, not once per reading.
 */
class Run {
  bucket = -1;
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;
  add(b: number, v: number, rings: readonly Ring[]): void {
    if (b !== this.bucket) {
      this.flush(rings);
      this.bucket = b;
    }
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }
  flush(rings: readonly Ring[]): void {
    if (this.count > 0) for (const r of rings) r.addRun(this.bucket, this.count, this.sum, this.min, this.max);
    this.bucket = -1; this.count = 0; this.sum = 0; this.min = Infinity; this.max = -Infinity;
  }
}

export interface RollupOptions {
  maxSeries?: number;
}

export class MemoryHistory implements HistorySource {
  readonly name = 'memory';
  readonly #series = new Map<string, Ring>();
  readonly #max: number;
  readonly #routes = new Map<string, { tags: Readonly<Record<string, string>>; byMetric: Map<string, { fine: Ring[]; coarse: Ring[] }> }>();
  readonly #runs: { fine: Run; coarse: Run }[] = [];
  /** Series not created because maxSeries was reached. */
  refused = 0;

  constructor(o: RollupOptions = {}) {
    this.#max = o.maxSeries ?? 50_000;
  }

  get seriesCount(): number { return this.#series.size; }

  #ring(key: string, device: boolean): Ring | null {
    let r = this.#series.get(key);
    if (!r) {
      if (this.#series.size >= this.#max) { this.refused++; return null; }
      r = device ? new Ring(COARSE_MS, 60) : new Ring(FINE_MS, 360);
      this.#series.set(key, r);
    }
    return r;
  }

  /**
   * Adds a durable batch. A device's rings are resolved once per metric while
   * its tags stay the same (a whole session), not per batch or reading.
   */
  record(b: AcceptedBatch): void {
    let route = this.#routes.get(b.deviceId);
    if (!route || route.tags !== b.tags) {
      if (this.#routes.size >= this.#max) this.#routes.clear();
      route = { tags: b.tags, byMetric: new Map<string, { fine: Ring[]; coarse: Ring[] }>() };
      this.#routes.set(b.deviceId, route);
    }
    const byMetric = route.byMetric;
    const names = b.metricNames;
    // Per metric: the 10 s rings (fleet, groups) and the 1 min ring (device), each fed by runs.
    while (this.#runs.length < names.length) this.#runs.push({ fine: new Run(), coarse: new Run() });
    const rings = names.map((m) => {
      let e = byMetric.get(m);
      if (!e) {
        const fine = [this.#ring(`${m}\0fleet`, false)];
        for (const k in b.tags) fine.push(this.#ring(`${m}\0g:${k}=${b.tags[k]}`, false));
        e = { fine: fine.filter((r): r is Ring => r !== null), coarse: [this.#ring(`${m}\0d:${b.deviceId}`, true)].filter((r): r is Ring => r !== null) };
        byMetric.set(m, e);
      }
      return e;
    });
    const runs = this.#runs;
    const idx = b.metricIndex, times = b.timesMs, vals = b.values;
    for (let i = 0; i < vals.length; i++) {
      const mi = idx[i]!;
      const t = times[i]!;
      const v = vals[i]!;
      const r = runs[mi]!, e = rings[mi]!;
      r.fine.add(Math.floor(t / FINE_MS), v, e.fine);
      r.coarse.add(Math.floor(t / COARSE_MS), v, e.coarse);
    }
    for (let mi = 0; mi < names.length; mi++) {
      runs[mi]!.fine.flush(rings[mi]!.fine);
      runs[mi]!.coarse.flush(rings[mi]!.coarse);
    }
  }

  async query(q: HistoryQuery): Promise<HistoryPoint[]> {
    const scope = q.scope.kind === 'fleet' ? 'fleet' : q.scope.kind === 'device' ? `d:${q.scope.id}` : `g:${q.scope.key}=${q.scope.value}`;
    const r = this.#series.get(`${q.metric}\0${scope}`);
    if (!r) return [];
    // Steps aligned to multiples of the step, as InfluxDB's GROUP BY time().
    const out = new Map<number, HistoryPoint & { sum: number }>();
    for (let i = 0; i < r.n; i++) {
      const b = r.slot[i]!;
      if (b < 0) continue;
      const t = b * r.res;
      if (t < q.fromMs || t >= q.toMs) continue;
      const step = Math.floor(t / q.stepMs) * q.stepMs;
      const p = out.get(step);
      if (!p) out.set(step, { t: step, count: r.count[i]!, sum: r.sum[i]!, mean: 0, min: r.min[i]!, max: r.max[i]! });
      else {
        p.count += r.count[i]!;
        p.sum += r.sum[i]!;
        if (r.min[i]! < p.min) p.min = r.min[i]!;
        if (r.max[i]! > p.max) p.max = r.max[i]!;
      }
    }
    return [...out.values()].sort((a, b) => a.t - b.t).map(({ sum, ...p }) => ({ ...p, mean: sum / p.count }));
  }
}
