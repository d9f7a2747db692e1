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

  add(t: number, v: number): void {
    const b = Math.floor(t / this.res);
    const i = b % this.n;
    const held = this.slot[i]!;
    if (held !== b) {
      if (held > b) return; // older than what the ring holds now
      this.slot[i] = b;
      this.count[i] = 1; this.sum[i] = v; this.min[i] = v; this.max[i] = v;
      return;
    }
    this.count[i]!++;
    this.sum[i]! += v;
    if (v < this.min[i]!) this.min[i] = v;
    if (v > this.max[i]!) this.max[i] = v;
  }
}

export interface RollupOptions {
  maxSeries?: number;
}

export class MemoryHistory implements HistorySource {
  readonly name = 'memory';
  readonly #series = new Map<string, Ring>();
  readonly #max: number;
  readonly #routes = new Map<string, { tags: Readonly<Record<string, string>>; byMetric: Map<string, Ring[]> }>();
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
      r = device ? new Ring(60_000, 60) : new Ring(10_000, 360);
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
      route = { tags: b.tags, byMetric: new Map<string, Ring[]>() };
      this.#routes.set(b.deviceId, route);
    }
    const byMetric = route.byMetric;
    const perMetric = b.metricNames.map((m) => {
      const known = byMetric.get(m);
      if (known) return known;
      const found = [this.#ring(`${m}\0fleet`, false), this.#ring(`${m}\0d:${b.deviceId}`, true)];
      for (const k in b.tags) found.push(this.#ring(`${m}\0g:${k}=${b.tags[k]}`, false));
      const rings = found.filter((r): r is Ring => r !== null);
      byMetric.set(m, rings);
      return rings;
    });
    for (let i = 0; i < b.values.length; i++) {
      const rings = perMetric[b.metricIndex[i]!]!;
      const t = b.timesMs[i]!;
      const v = b.values[i]!;
      for (let j = 0; j < rings.length; j++) rings[j]!.add(t, v);
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
