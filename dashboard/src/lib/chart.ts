// Chart.js for time series: the bounded point store charts draw from
// (SeriesSet), the `timeChart` Svelte action that binds a canvas to one, and
// the single requestAnimationFrame loop that redraws dirty charts. Data
// changes only mark charts dirty; each animation frame redraws each dirty
// chart once with update('none'). Only the Chart.js parts used are registered.
import {
  Chart, Filler, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip,
  type ChartConfiguration, type ChartDataset, type LegendItem,
} from 'chart.js';
import type { Action } from 'svelte/action';
import { hhmmss, num } from './format.ts';

Chart.register(LineController, LineElement, PointElement, LinearScale, Filler, Tooltip, Legend);

export interface Pt {
  x: number;
  y: number;
}

type LineChart = Chart<'line', Pt[]>;

export interface SeriesOptions {
  /** The x range shown: [now - windowMs, now]. Older points are pruned. */
  windowMs: number;
  /** Hard cap per set; the oldest points go first. */
  maxPoints: number;
  /** Appends closer than this to the previous point are skipped (0: none). */
  minSpacingMs?: number;
  /** The right edge of the x axis (hub clock). */
  now: () => number;
}

/**
 * Parallel point arrays (one per dataset), x strictly increasing in each.
 * Plain arrays, never Svelte state: Chart.js reads and patches them directly.
 */
export class SeriesSet {
  readonly sets: Pt[][];
  windowMs: number;
  minSpacingMs: number;
  readonly maxPoints: number;
  readonly now: () => number;
  private readonly charts = new Set<LineChart>();

  constructor(count: number, o: SeriesOptions) {
    this.sets = Array.from({ length: count }, () => []);
    this.windowMs = o.windowMs;
    this.maxPoints = o.maxPoints;
    this.minSpacingMs = o.minSpacingMs ?? 0;
    this.now = o.now;
  }

  lastX(i: number): number {
    const s = this.sets[i];
    return s && s.length > 0 ? s[s.length - 1]!.x : -Infinity;
  }

  /** Appends to set i when x is past its last point (same x: replaces y). Returns whether it changed. */
  append(i: number, x: number, y: number): boolean {
    const s = this.sets[i];
    if (!s || !Number.isFinite(x) || !Number.isFinite(y)) return false;
    const last = s[s.length - 1];
    if (last && x === last.x) {
      if (last.y === y) return false;
      s.splice(s.length - 1, 1, { x, y });
      return true;
    }
    if (last && x < last.x + Math.max(1, this.minSpacingMs)) return false;
    s.push({ x, y });
    return true;
  }

  /** Prepends points strictly older than set i's first point (history fetched while live points arrived). */
  backfill(i: number, pts: readonly Pt[]): void {
    const s = this.sets[i];
    if (!s) return;
    const first = s.length > 0 ? s[0]!.x : Infinity;
    const older = pts.filter((p) => p.x < first && Number.isFinite(p.y));
    if (older.length > 0) s.unshift(...older);
  }

  /** Changes the window (e.g. a range button) and redraws. */
  setWindow(windowMs: number, minSpacingMs: number): void {
    this.windowMs = windowMs;
    this.minSpacingMs = minSpacingMs;
    this.prune();
    this.touch();
  }

  clear(): void {
    for (const s of this.sets) s.splice(0, s.length);
  }

  /** Drops points left of the window and beyond maxPoints. */
  prune(): void {
    const minX = this.now() - this.windowMs;
    for (const s of this.sets) {
      let k = 0;
      while (k < s.length && s[k]!.x < minX) k++;
      k = Math.max(k, s.length - this.maxPoints);
      if (k > 0) s.splice(0, k);
    }
  }

  /** Marks every chart drawing this set dirty (redrawn on the next animation frame). */
  touch(): void {
    for (const c of this.charts) markDirty(c);
  }

  attach(c: LineChart): void {
    this.charts.add(c);
  }

  detach(c: LineChart): void {
    this.charts.delete(c);
  }
}

// ---- the redraw loop

const dirty = new Set<LineChart>();
const owners = new WeakMap<LineChart, SeriesSet>();
let raf = 0;

function markDirty(c: LineChart): void {
  dirty.add(c);
  if (raf === 0) raf = requestAnimationFrame(flush);
}

function flush(): void {
  raf = 0;
  for (const c of dirty) {
    const s = owners.get(c);
    if (!s) continue;
    const now = s.now();
    const x = c.options.scales?.['x'];
    if (x) {
      x.min = now - s.windowMs;
      x.max = now;
    }
    try {
      c.update('none');
      stamp(c);
    } catch (err) {
      console.error('chart redraw failed', err);
    }
  }
  dirty.clear();
}

/** Test hooks on the canvas: data-points (first dataset's length) and data-last (its last y). */
function stamp(c: LineChart): void {
  const first = c.data.datasets[0]?.data ?? [];
  const last = first[first.length - 1];
  c.canvas.dataset['points'] = String(first.length);
  c.canvas.dataset['last'] = last ? String(last.y) : '';
}

// ---- the action

export type LineStyle = 'line' | 'dashed' | 'band-low' | 'band-high';

export interface LineSpec {
  label: string;
  /** CSS color; for band-high the fill (use alpha). */
  color: string;
  style?: LineStyle;
}

export interface ChartSpec {
  series: SeriesSet;
  /** One per set of `series`, same order; the first is the one the test hooks report. */
  lines: readonly LineSpec[];
  unit?: string;
  legend?: boolean;
  /** Start the y axis at 0 (rates, counts). */
  zeroBased?: boolean;
}

const TICK_STEPS = [10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 10800, 21600].map((s) => s * 1000);

function tickStep(windowMs: number): number {
  return TICK_STEPS.find((s) => windowMs / s <= 6) ?? 21600_000;
}

/** Ticks on round local times (every `step` ms) between min and max. */
function alignedTicks(min: number, max: number, step: number): { value: number }[] {
  const tz = new Date(min).getTimezoneOffset() * 60_000;
  const ticks: { value: number }[] = [];
  for (let v = Math.ceil((min - tz) / step) * step + tz; v <= max; v += step) ticks.push({ value: v });
  return ticks;
}

function legendItems(chart: Chart, lines: readonly LineSpec[]): LegendItem[] {
  const items = Chart.defaults.plugins.legend.labels.generateLabels(chart);
  for (const item of items) {
    const spec = lines[item.datasetIndex ?? -1];
    if (!spec) continue;
    if (spec.style === 'band-high') Object.assign(item, { pointStyle: 'rect', fillStyle: spec.color, strokeStyle: spec.color, lineWidth: 0 });
    else Object.assign(item, { pointStyle: 'line', strokeStyle: spec.color, lineWidth: 2, lineDash: spec.style === 'dashed' ? [3, 2] : [] });
  }
  return items.filter((item) => lines[item.datasetIndex ?? -1]?.style !== 'band-low');
}

function dataset(spec: LineSpec, data: Pt[]): ChartDataset<'line', Pt[]> {
  const style = spec.style ?? 'line';
  const base: ChartDataset<'line', Pt[]> = {
    label: spec.label, data, borderColor: spec.color, backgroundColor: spec.color,
    borderWidth: 1.5, tension: 0, fill: false, pointHoverRadius: 3,
    // A line needs two points: until a series has them, show its points.
    pointRadius: (ctx) => ((ctx.dataset.data as Pt[]).length < 3 ? 2.5 : 0),
  };
  if (style === 'dashed') return { ...base, borderDash: [4, 3], borderWidth: 1.25 };
  if (style === 'band-low') return { ...base, borderWidth: 0, borderColor: 'transparent', pointRadius: 0, pointHoverRadius: 0 };
  if (style === 'band-high') return { ...base, borderWidth: 0, borderColor: 'transparent', pointRadius: 0, pointHoverRadius: 0, fill: '-1' };
  return base;
}

function config(spec: ChartSpec): ChartConfiguration<'line', Pt[]> {
  const s = spec.series;
  const unit = spec.unit ? ` ${spec.unit}` : '';
  const now = s.now();
  return {
    type: 'line',
    data: { datasets: spec.lines.map((l, i) => dataset(l, s.sets[i] ?? [])) },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      scales: {
        x: {
          type: 'linear',
          min: now - s.windowMs,
          max: now,
          grid: { color: '#eef0f3' },
          border: { color: '#d5d9df' },
          afterBuildTicks: (axis) => {
            const windowMs = owners.get(axis.chart as LineChart)?.windowMs ?? axis.max - axis.min;
            axis.ticks = alignedTicks(axis.min, axis.max, tickStep(windowMs));
          },
          ticks: {
            maxRotation: 0,
            autoSkipPadding: 12,
            color: '#6b7280',
            font: { size: 10 },
            callback: (v) => hhmmss(Number(v)),
          },
        },
        y: {
          type: 'linear',
          grace: '5%',
          beginAtZero: spec.zeroBased ?? false,
          grid: { color: '#eef0f3' },
          border: { display: false },
          ticks: { color: '#6b7280', font: { size: 10 }, maxTicksLimit: 5 },
        },
      },
      plugins: {
        legend: {
          display: spec.legend ?? false,
          position: 'top',
          align: 'end',
          labels: {
            usePointStyle: true, boxWidth: 14, boxHeight: 8, font: { size: 11 }, color: '#4b5563',
            generateLabels: (chart) => legendItems(chart, spec.lines),
          },
        },
        tooltip: {
          filter: (item) => spec.lines[item.datasetIndex]?.style !== 'band-low',
          callbacks: {
            title: (items) => (items[0] ? hhmmss(items[0].parsed.x ?? 0) : ''),
            label: (item) => `${item.dataset.label ?? ''}: ${num(item.parsed.y ?? 0)}${unit}`,
          },
        },
      },
    },
  };
}

/**
 * `<canvas use:timeChart={{ series, lines }}>`: a line chart over a SeriesSet
 * with a linear ms x axis labelled HH:MM:SS. The parent must give the canvas
 * a sized, position: relative box.
 */
export const timeChart: Action<HTMLCanvasElement, ChartSpec> = (canvas, spec) => {
  let cur = spec;
  const chart: LineChart = new Chart(canvas, config(cur));
  owners.set(chart, cur.series);
  cur.series.attach(chart);
  stamp(chart);

  return {
    update(next: ChartSpec) {
      if (next.series === cur.series) return;
      cur.series.detach(chart);
      cur = next;
      owners.set(chart, cur.series);
      chart.data.datasets.forEach((d, i) => (d.data = cur.series.sets[i] ?? []));
      cur.series.attach(chart);
      markDirty(chart);
    },
    destroy() {
      cur.series.detach(chart);
      dirty.delete(chart);
      chart.destroy();
    },
  };
};
