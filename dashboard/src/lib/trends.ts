// Chart series fed by the live stream, backfilled from /api/v1/history.
// FleetTrends (app lifetime): the overview's throughput (readings/s in and
// out, one point per frame) and one series per fleet metric from the 10 s
// windows (mean, min, max, p95; a point whenever a new window start appears).
// DeviceTrends (one device page): each metric's latest value, appended when
// its event time advances, over a selectable range.
import type { LiveFrame } from '@telemetry/proto';
import { SeriesSet } from './chart.ts';
import { fetchHistory, type DeviceRange, type HistoryPoint } from './history.ts';
import type { LiveClient } from './live.svelte.ts';
import type { Applied } from './store.ts';

export const FLEET_WINDOW_MS = 15 * 60_000;
/** WindowStats length the overview charts stream. */
const STATS_WINDOW_MS = 10_000;
/** Throughput: one point per frame, at most this many (1 per s for 15 min, with slack for faster ticks). */
const MAX_THROUGHPUT_POINTS = 1800;

export type BackfillState = { state: 'loading' } | { state: 'done'; points: number } | { state: 'failed'; error: string };

/** Series set indexes of a metric chart. */
export const MEAN = 0, MIN = 1, MAX = 2, P95 = 3;

export interface MetricTrend {
  readonly metric: string;
  unit: string;
  readonly series: SeriesSet;
  lastStartMs: number;
  backfill: BackfillState;
}

function backfillFrom(series: SeriesSet, pts: readonly HistoryPoint[], valueSet: number): void {
  series.backfill(valueSet, pts.map((p) => ({ x: p.t, y: p.mean })));
  series.backfill(MIN, pts.map((p) => ({ x: p.t, y: p.min })));
  series.backfill(MAX, pts.map((p) => ({ x: p.t, y: p.max })));
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class FleetTrends {
  /** Sets: 0 readings/s in, 1 readings/s out. */
  readonly throughput: SeriesSet;
  readonly #metrics = new Map<string, MetricTrend>();
  readonly #live: LiveClient;

  constructor(live: LiveClient) {
    this.#live = live;
    const now = () => live.hubNow();
    this.throughput = new SeriesSet(2, { windowMs: FLEET_WINDOW_MS, maxPoints: MAX_THROUGHPUT_POINTS, now });
    live.onFrame((a, f) => this.#onFrame(a, f));
  }

  metric(name: string): MetricTrend | undefined {
    return this.#metrics.get(name);
  }

  #onFrame(_a: Applied, f: LiveFrame): void {
    const h = this.#live.store.health;
    if (f.health && h && f.hubTimeMs) {
      this.throughput.append(0, Number(f.hubTimeMs), h.readingsInPerS);
      this.throughput.append(1, Number(f.hubTimeMs), h.readingsOutPerS);
    }
    this.throughput.prune();
    this.throughput.touch();

    const fleet = this.#live.store.scopes.get('fleet');
    for (const m of fleet?.metrics ?? []) {
      let tr = this.#metrics.get(m.metric);
      if (!tr) tr = this.#create(m.metric, m.unit);
      tr.unit = m.unit || tr.unit;
      const w = m.windows.find((x) => x.windowMs === STATS_WINDOW_MS);
      if (w && w.startMs > tr.lastStartMs) {
        tr.lastStartMs = w.startMs;
        if (w.count > 0) {
          tr.series.append(MEAN, w.startMs, w.mean);
          tr.series.append(MIN, w.startMs, w.min);
          tr.series.append(MAX, w.startMs, w.max);
          tr.series.append(P95, w.startMs, w.p95);
        }
      }
    }
    for (const tr of this.#metrics.values()) {
      tr.series.prune();
      tr.series.touch();
    }
  }

  #create(metric: string, unit: string): MetricTrend {
    const series = new SeriesSet(4, { windowMs: FLEET_WINDOW_MS, maxPoints: 1000, now: () => this.#live.hubNow() });
    const tr: MetricTrend = { metric, unit, series, lastStartMs: 0, backfill: { state: 'loading' } };
    this.#metrics.set(metric, tr);
    fetchHistory({ metric, from: '-15m', step: '10s' }).then(
      (pts) => {
        backfillFrom(series, pts, MEAN);
        tr.backfill = { state: 'done', points: pts.length };
        series.prune();
        series.touch();
      },
      (err: unknown) => {
        tr.backfill = { state: 'failed', error: errorText(err) };
      },
    );
    return tr;
  }
}

/** Per-metric series of one device: sets 0 value (history mean, then live), 1 min, 2 max (history). */
export class DeviceTrends {
  readonly #series = new Map<string, SeriesSet>();
  readonly #live: LiveClient;
  readonly #id: string;
  #range: DeviceRange;
  #abort = new AbortController();
  #off: () => void;
  /** Last history error per metric, for the page to show. */
  readonly errors = new Map<string, string>();

  constructor(live: LiveClient, id: string, range: DeviceRange) {
    this.#live = live;
    this.#id = id;
    this.#range = range;
    this.#off = live.onFrame(() => this.#onFrame());
    this.#onFrame();
  }

  get range(): DeviceRange {
    return this.#range;
  }

  /** The series of a metric, once the device has reported it (created and backfilled on the first frame showing it). */
  series(metric: string): SeriesSet | undefined {
    return this.#series.get(metric);
  }

  setRange(range: DeviceRange): void {
    if (range.key === this.#range.key) return;
    this.#range = range;
    this.#abort.abort();
    this.#abort = new AbortController();
    for (const [metric, s] of this.#series) {
      s.clear();
      s.setWindow(range.ms, spacing(range));
      this.#appendLatest(metric, s);
      this.#backfill(metric, s);
    }
  }

  dispose(): void {
    this.#off();
    this.#abort.abort();
  }

  #onFrame(): void {
    for (const metric of this.#live.store.details.get(this.#id)?.state.latest.keys() ?? []) {
      if (!this.#series.has(metric)) this.#create(metric);
    }
    for (const [metric, s] of this.#series) {
      this.#appendLatest(metric, s);
      s.prune();
      s.touch();
    }
  }

  #create(metric: string): void {
    const r = this.#range;
    const s = new SeriesSet(3, { windowMs: r.ms, maxPoints: 1200, minSpacingMs: spacing(r), now: () => this.#live.hubNow() });
    this.#series.set(metric, s);
    this.#backfill(metric, s);
  }

  #appendLatest(metric: string, s: SeriesSet): void {
    const lv = this.#live.store.details.get(this.#id)?.state.latest.get(metric);
    if (lv && lv.timeMs > s.lastX(0)) s.append(0, lv.timeMs, lv.value);
  }

  #backfill(metric: string, s: SeriesSet): void {
    const r = this.#range;
    const signal = this.#abort.signal;
    fetchHistory({ metric, device: this.#id, from: r.from, step: r.step }, signal).then(
      (pts) => {
        if (signal.aborted) return;
        this.errors.delete(metric);
        backfillFrom(s, pts, 0);
        s.prune();
        s.touch();
      },
      (err: unknown) => {
        if (!signal.aborted) this.errors.set(metric, errorText(err));
      },
    );
  }
}

/** Live points closer than this are skipped: about 900 live points per range. */
function spacing(r: DeviceRange): number {
  return Math.max(1000, Math.floor(r.ms / 900));
}
