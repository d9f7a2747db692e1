// live/: what dashboards see as it happens. This file: windowed aggregates
// of one stream of numbers (a metric in a scope, or the hub's ack latency):
// count, min, max, mean, last and quantiles over tumbling 1 s, 10 s and
// 1 min windows aligned to the epoch, so partials from several hubs line up
// and merge (DDSketch merges exactly; count/min/max/sum trivially).
// Imports: @datadog/sketches-js only.
//
// Cost: per reading one logarithm (its sketch bin, in a per-batch Digest)
// and a bin increment per scope it counts in, into the 1 s window only.
// Closing a 1 s window merges it into the 10 s and 1 min ones (a few
// microseconds per series per second).
//
// Memory: a series holds three open windows and three closed summaries:
// 4.7 KB measured for values spread over one decade (a sketch's bins grow
// with the log of the value range). Series are capped (HUB_LIVE_MAX_SERIES).
import { DDSketch } from '@datadog/sketches-js';

export const WINDOWS_MS = [1_000, 10_000, 60_000] as const;
const ACCURACY = 0.01;

export interface WindowSummary {
  windowMs: number;
  startMs: number;
  count: number;
  min: number;
  max: number;
  mean: number;
  last: number;
  p50: number;
  p95: number;
  p99: number;
  /** Newest event time in the window (Unix ms), 0 when unknown. */
  newestTimeMs: number;
}

/**
 * An open window: a mergeable partial. Count, sum, min and max are the
 * sketch's own (DDSketch keeps them on insert and merge); the partial adds
 * the last value and the newest event time.
 */
export class Partial {
  last = NaN;
  newest = 0;
  sketch = new DDSketch({ relativeAccuracy: ACCURACY });

  get count(): number { return this.sketch.count; }

  add(v: number, eventTimeMs: number): void {
    this.last = v;
    if (eventTimeMs > this.newest) this.newest = eventTimeMs;
    this.sketch.accept(v);
  }

  /** Adds a batch's digest: what add() would do for each of its readings. */
  addDigest(d: Digest): void {
    if (d.count === 0) return;
    this.last = d.last;
    if (d.newest > this.newest) this.newest = d.newest;
    // DDSketch.accept's bookkeeping, with the bins computed once in the digest.
    const sk = this.sketch;
    for (let i = 0; i < d.npos; i++) sk.store.add(d.pos[i]!, d.posCount[i]);
    for (let i = 0; i < d.nneg; i++) sk.negativeStore.add(d.neg[i]!, d.negCount[i]);
    sk.zeroCount += d.zeros;
    sk.count += d.count;
    sk.sum += d.sum;
    if (d.min < sk.min) sk.min = d.min;
    if (d.max > sk.max) sk.max = d.max;
  }

  /** Folds another partial in (same or later arrival window). */
  merge(o: Partial): void {
    if (o.count === 0) return;
    this.last = o.last;
    if (o.newest > this.newest) this.newest = o.newest;
    this.sketch.merge(o.sketch);
  }

  summary(windowMs: number, startMs: number): WindowSummary {
    const sk = this.sketch;
    const n = sk.count;
    const q = (p: number): number => (n ? sk.getValueAtQuantile(p) : 0);
    return {
      windowMs, startMs, count: n,
      min: n ? sk.min : 0, max: n ? sk.max : 0, mean: n ? sk.sum / n : 0, last: n ? this.last : 0,
      p50: q(0.5), p95: q(0.95), p99: q(0.99), newestTimeMs: this.newest,
    };
  }
}

// Every sketch here has the same accuracy, so the same mapping from value to bin.
const MAPPING = new DDSketch({ relativeAccuracy: ACCURACY }).mapping;

/**
 * One batch's readings of one metric, reduced once before they reach any
 * scope: count, sum, min, max, last, newest event time, and each reading's
 * sketch bin (one logarithm per reading), consecutive readings in the same
 * bin folded into one (key, count) run: sensor values drift slowly, so a
 * batch's readings of a metric mostly share a few bins. Partial.addDigest()
 * then costs a bin increment per run per scope instead of a full sketch
 * insert per reading.
 * Reused batch after batch (reset()), so it allocates nothing in steady state.
 */
export class Digest {
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;
  last = NaN;
  newest = 0;
  zeros = 0;
  /** Bin keys of positive values, and how many consecutive readings fell in each run. */
  pos: Int32Array<ArrayBuffer> = new Int32Array(64);
  posCount: Int32Array<ArrayBuffer> = new Int32Array(64);
  npos = 0;
  neg: Int32Array<ArrayBuffer> = new Int32Array(8);
  negCount: Int32Array<ArrayBuffer> = new Int32Array(8);
  nneg = 0;

  reset(): void {
    this.count = 0; this.sum = 0; this.min = Infinity; this.max = -Infinity; this.last = NaN; this.newest = 0;
    this.zeros = 0; this.npos = 0; this.nneg = 0;
  }

  add(v: number, eventTimeMs: number): void {
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    this.last = v;
    if (eventTimeMs > this.newest) this.newest = eventTimeMs;
    // The same bin rule as DDSketch.accept.
    if (v > MAPPING.minPossible) {
      const key = MAPPING.key(v);
      const n = this.npos;
      if (n > 0 && this.pos[n - 1] === key) { this.posCount[n - 1]!++; return; }
      if (n === this.pos.length) { this.pos = grow(this.pos); this.posCount = grow(this.posCount); }
      this.pos[n] = key;
      this.posCount[n] = 1;
      this.npos = n + 1;
    } else if (v < -MAPPING.minPossible) {
      const key = MAPPING.key(-v);
      const n = this.nneg;
      if (n > 0 && this.neg[n - 1] === key) { this.negCount[n - 1]!++; return; }
      if (n === this.neg.length) { this.neg = grow(this.neg); this.negCount = grow(this.negCount); }
      this.neg[n] = key;
      this.negCount[n] = 1;
      this.nneg = n + 1;
    } else {
      this.zeros++;
    }
  }
}

function grow(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** One window length: the open window's start and its partial. */
interface Level { readonly ms: number; start: number; partial: Partial }

/**
 * One stream of numbers over 1 s / 10 s / 1 min tumbling windows (by hub
 * arrival time). add() goes into the 1 s window; roll(now) closes windows
 * whose time has passed and folds each into the next level.
 */
export class WindowedSeries {
  readonly #levels: Level[];
  /** Most recent closed window per level (null until one closes). */
  readonly closed: (WindowSummary | null)[];

  constructor(now: number) {
    this.#levels = WINDOWS_MS.map((ms) => ({ ms, start: Math.floor(now / ms) * ms, partial: new Partial() }));
    this.closed = WINDOWS_MS.map(() => null);
  }

  add(v: number, eventTimeMs: number): void {
    this.#levels[0]!.partial.add(v, eventTimeMs);
  }

  /** Closes every window that ended at or before `now`. */
  roll(now: number): void {
    const levels = this.#levels;
    for (let i = 0; i < levels.length; i++) {
      const lv = levels[i]!;
      if (now < lv.start + lv.ms) continue;
      this.#end(i);
      const current = Math.floor(now / lv.ms) * lv.ms;
      // "Most recent closed window" is the one just before `current`: when
      // nothing arrived in it, that is an empty window, not an older one.
      if (lv.start !== current - lv.ms) this.closed[i] = new Partial().summary(lv.ms, current - lv.ms);
      lv.start = current;
    }
  }

  /** Ends level i's open window: folds it into the next level's window (ending that one first if it is older) and records it. */
  #end(i: number): void {
    const lv = this.#levels[i]!;
    const next = this.#levels[i + 1];
    if (next) {
      const nextStart = Math.floor(lv.start / next.ms) * next.ms;
      if (nextStart !== next.start) {
        this.#end(i + 1);
        next.start = nextStart;
      }
      next.partial.merge(lv.partial);
    }
    this.closed[i] = lv.partial.summary(lv.ms, lv.start);
    lv.partial = new Partial();
  }

  /** The open 1 s partial: what ingest adds to (and what another hub would merge). */
  get open(): Partial { return this.#levels[0]!.partial; }
}

// ---- a partial on the wire (cluster mode: hubs exchange their partials) -----------

/** Bins at most in one store of a partial from another hub (a sketch over 1e-9..1e9 at 1 % accuracy has ~2,100). */
export const MAX_WIRE_BINS = 4096;
/** Keys of doubles at 1 % accuracy stay within about +-36,000; their span within one store bounds its (dense) memory. */
const MAX_WIRE_KEY = 40_000;
const MAX_WIRE_SPAN = 8192;

/** [count, sum, min, max, last, newest, zeros, positive bins as [key, count] pairs..., negative ones...]: plain numbers (JSON). */
export interface WirePartial { n: number; s: number; lo: number; hi: number; l: number; t: number; z: number; p: number[]; q: number[] }

function storePairs(store: { bins: number[]; offset: number }): number[] {
  const out: number[] = [];
  const { bins, offset } = store;
  for (let i = 0; i < bins.length; i++) if (bins[i]! > 0) out.push(i + offset, bins[i]!);
  return out;
}

export function partialToWire(p: Partial): WirePartial {
  const sk = p.sketch;
  return { n: sk.count, s: sk.sum, lo: sk.min, hi: sk.max, l: p.last, t: p.newest, z: sk.zeroCount, p: storePairs(sk.store), q: storePairs(sk.negativeStore) };
}

/** A partial another hub sent, or null when it is not one (wrong types, non-finite numbers, too many bins, counts that do not add up). */
export function partialFromWire(w: unknown): Partial | null {
  if (typeof w !== 'object' || w === null) return null;
  const v = w as Record<string, unknown>;
  const num = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
  if (!num(v.n) || !num(v.s) || !num(v.lo) || !num(v.hi) || !num(v.t) || !num(v.z) || !(num(v.l) || v.l === null)) return null;
  if (!Array.isArray(v.p) || !Array.isArray(v.q) || v.p.length % 2 || v.q.length % 2 || v.p.length + v.q.length > 2 * MAX_WIRE_BINS) return null;
  if (!Number.isInteger(v.n) || v.n <= 0 || !Number.isInteger(v.z) || v.z < 0 || v.lo > v.hi) return null;
  // Checked before anything is added: a store is dense between its lowest
  // and highest key, so the span bounds its memory.
  let total = v.z;
  for (const pairs of [v.p, v.q] as unknown[][]) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < pairs.length; i += 2) {
      const key = pairs[i];
      const count = pairs[i + 1];
      if (typeof key !== 'number' || !Number.isInteger(key) || Math.abs(key) > MAX_WIRE_KEY || typeof count !== 'number' || !Number.isInteger(count) || count <= 0) return null;
      if (key < lo) lo = key;
      if (key > hi) hi = key;
      total += count;
    }
    if (hi - lo > MAX_WIRE_SPAN) return null;
  }
  if (total !== v.n) return null;
  const out = new Partial();
  const sk = out.sketch;
  for (const [pairs, store] of [[v.p as number[], sk.store], [v.q as number[], sk.negativeStore]] as const) {
    for (let i = 0; i < pairs.length; i += 2) store.add(pairs[i]!, pairs[i + 1]);
  }
  sk.zeroCount = v.z;
  sk.count = v.n;
  sk.sum = v.s;
  sk.min = v.lo;
  sk.max = v.hi;
  out.last = typeof v.l === 'number' ? v.l : NaN;
  out.newest = v.t;
  return out;
}
