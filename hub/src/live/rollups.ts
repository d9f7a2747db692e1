// live/: aggregates of accepted readings, in memory. This file: the recent
// history the hub serves without a database (the embedded default): per
// metric, for the fleet, each tag group (site:north...) and each device,
// count/sum/min/max in time buckets held in fixed-size rings.
// Imports: core (the batch type, the history port, metrics types). Fed by ingest once a batch is durable.
//
// Memory is bounded by two caps. A ring holds 5 doubles per bucket in one
// Float64Array. Fleet and group series keep 1 h of 10 s buckets: 360 x 40 B
// = 14.4 KB, ~14.7 KB with object, key and map entry (measured, history
// test); at most HUB_HISTORY_MAX_SERIES (default 4096: ~60 MB). Device series
// keep 1 h of 1 min buckets: 60 x 40 B = 2.4 KB, ~3.1 KB with their share of
// the device's route; at most HUB_HISTORY_MAX_DEVICE_SERIES (default 50,000:
// ~150 MB). Devices cannot crowd each other out by inventing names: ingest
// caps names per device (HUB_MAX_METRICS_PER_DEVICE) and fleet-wide.
import type { HistoryPoint, HistoryQuery, HistorySource } from '../core/history.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { AcceptedBatch } from '../core/batch.ts';

/** Fleet and group buckets, and device buckets (1 h of each). */
const FINE_MS = 10_000;
const COARSE_MS = 60_000;
const FINE_SLOTS = 360;
const COARSE_SLOTS = 60;
/** Doubles per bucket: bucket number (time / res; -1 = empty), count, sum, min, max. */
const CELLS = 5;

class Ring {
  /** One array for every bucket (a typed array each for the five columns would cost ~0.8 KB more per ring). */
  readonly cells: Float64Array;
  constructor(readonly bucketMs: number, readonly slots: number) {
    this.cells = new Float64Array(slots * CELLS);
    for (let i = 0; i < slots; i++) this.cells[i * CELLS] = -1;
  }

  /** Adds `count` readings of bucket `b` at once (sum, min, max of them). */
  addRun(b: number, count: number, sum: number, min: number, max: number): void {
    const c = this.cells;
    const at = (b % this.slots) * CELLS;
    const held = c[at]!;
    if (held !== b) {
      if (held > b) return; // older than what the ring holds now
      c[at] = b;
      c[at + 1] = count; c[at + 2] = sum; c[at + 3] = min; c[at + 4] = max;
      return;
    }
    c[at + 1]! += count;
    c[at + 2]! += sum;
    if (min < c[at + 3]!) c[at + 3] = min;
    if (max > c[at + 4]!) c[at + 4] = max;
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
  /** Fleet and tag-group series (HUB_HISTORY_MAX_SERIES). */
  maxSeries?: number;
  /** Device series (HUB_HISTORY_MAX_DEVICE_SERIES). */
  maxDeviceSeries?: number;
  /** hub_history_series{kind} and hub_history_series_refused_total{kind}. */
  metrics?: Pick<HubMetrics, 'historySeries' | 'historySeriesRefused'>;
}

/** A metric's rings for one device: the 10 s rings (fleet, groups) and the 1 min ring (device). */
interface MetricRings { fine: Ring[]; coarse: Ring[] }

type SeriesKind = 'group' | 'device';

export class MemoryHistory implements HistorySource {
  readonly name = 'memory';
  /** Rings by `${metric}\0${scope}` (scope: fleet, g:key=value, d:deviceId). */
  readonly #series = new Map<string, Ring>();
  /** Series caps per kind (HUB_HISTORY_MAX_SERIES, HUB_HISTORY_MAX_DEVICE_SERIES). */
  readonly #maxSeries: Record<SeriesKind, number>;
  readonly #seriesByKind: Record<SeriesKind, number> = { group: 0, device: 0 };
  readonly #hubMetrics: RollupOptions['metrics'];
  readonly #routes = new Map<string, { tags: Readonly<Record<string, string>>; byMetric: Map<string, MetricRings> }>();
  /** Per metric index of the current batch: its run in the 10 s and in the 1 min buckets (reused). */
  readonly #runs: { fine: Run; coarse: Run }[] = [];
  /** The current batch's rings per metric index (reused batch after batch). */
  readonly #batchRings: MetricRings[] = [];
  /** Series not created because a cap was reached (both kinds). */
  refused = 0;

  constructor(options: RollupOptions = {}) {
    this.#maxSeries = { group: options.maxSeries ?? 4096, device: options.maxDeviceSeries ?? 50_000 };
    this.#hubMetrics = options.metrics;
  }

  get seriesCount(): number { return this.#series.size; }
  /** Series of one kind: fleet and groups, or devices. */
  seriesOf(kind: SeriesKind): number { return this.#seriesByKind[kind]; }

  #ring(key: string, kind: SeriesKind): Ring | null {
    let r = this.#series.get(key);
    if (!r) {
      if (this.#seriesByKind[kind] >= this.#maxSeries[kind]) {
        this.refused++;
        this.#hubMetrics?.historySeriesRefused.labels(kind).inc();
        return null;
      }
      r = kind === 'device' ? new Ring(COARSE_MS, COARSE_SLOTS) : new Ring(FINE_MS, FINE_SLOTS);
      this.#series.set(key, r);
      const count = ++this.#seriesByKind[kind];
      this.#hubMetrics?.historySeries.labels(kind).set(count);
    }
    return r;
  }

  #ringsOf(m: string, b: AcceptedBatch): MetricRings {
    const fine: Ring[] = [];
    const add = (r: Ring | null): void => { if (r) fine.push(r); };
    add(this.#ring(`${m}\0fleet`, 'group'));
    for (const k in b.tags) add(this.#ring(`${m}\0g:${k}=${b.tags[k]}`, 'group'));
    const device = this.#ring(`${m}\0d:${b.deviceId}`, 'device');
    return { fine, coarse: device ? [device] : [] };
  }

  /**
   * Adds a durable batch. A device's rings are resolved once per metric while
   * its tags stay the same (a whole session), not per batch or reading.
   */
  record(b: AcceptedBatch): void {
    let route = this.#routes.get(b.deviceId);
    if (!route || route.tags !== b.tags) {
      // One route per device; each holds at most HUB_MAX_METRICS_PER_DEVICE metrics.
      if (this.#routes.size >= this.#maxSeries.device) this.#routes.clear();
      route = { tags: b.tags, byMetric: new Map<string, MetricRings>() };
      this.#routes.set(b.deviceId, route);
    }
    const byMetric = route.byMetric;
    const names = b.metricNames;
    while (this.#runs.length < names.length) this.#runs.push({ fine: new Run(), coarse: new Run() });
    const rings = this.#batchRings;
    rings.length = names.length;
    for (let mi = 0; mi < names.length; mi++) {
      const m = names[mi]!;
      let e = byMetric.get(m);
      if (!e) {
        e = this.#ringsOf(m, b);
        byMetric.set(m, e);
      }
      rings[mi] = e;
    }
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

  query(q: HistoryQuery): Promise<HistoryPoint[]> {
    return new Promise((resolve) => resolve(this.#points(q))); // a throw rejects
  }

  #points(q: HistoryQuery): HistoryPoint[] {
    const scope = q.scope.kind === 'fleet' ? 'fleet' : q.scope.kind === 'device' ? `d:${q.scope.id}` : `g:${q.scope.key}=${q.scope.value}`;
    const r = this.#series.get(`${q.metric}\0${scope}`);
    if (!r) return [];
    // Steps aligned to multiples of the step, as InfluxDB's GROUP BY time().
    const out = new Map<number, HistoryPoint & { sum: number }>();
    const c = r.cells;
    for (let at = 0; at < c.length; at += CELLS) {
      const b = c[at]!;
      if (b < 0) continue;
      const t = b * r.bucketMs;
      if (t < q.fromMs || t >= q.toMs) continue;
      const step = Math.floor(t / q.stepMs) * q.stepMs;
      const count = c[at + 1]!, sum = c[at + 2]!, min = c[at + 3]!, max = c[at + 4]!;
      const p = out.get(step);
      if (!p) out.set(step, { t: step, count, sum, mean: 0, min, max });
      else {
        p.count += count;
        p.sum += sum;
        if (min < p.min) p.min = min;
        if (max > p.max) p.max = max;
      }
    }
    return [...out.values()].sort((a, b) => a.t - b.t).map(({ sum, ...p }) => ({ ...p, mean: sum / p.count }));
  }
}
