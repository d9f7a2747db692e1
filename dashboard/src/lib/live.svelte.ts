// LiveClient: the one WebSocket to the hub's live endpoint (/v1/live).
// Owns the connection lifecycle (connect, subscribe, reconnect with backoff,
// session-ended and refused-upgrade redirects to /login), the frame sequence
// check (a gap means resubscribe for a fresh snapshot), and the benchmark
// counters on window.__live. The data itself lives in a plain LiveStore;
// Svelte sees it through version counters bumped once per applied frame, so
// 10,000 devices never become 10,000 reactive objects.
import {
  decodeLiveFrame, encodeLiveRequest, LIVE_PATH, LIVE_SUBPROTOCOL, LiveCloseCode, type LiveFrame,
} from '@telemetry/proto';
import { fetchMe, goToLogin } from './api.ts';
import { SeqGuard } from './seq-guard.ts';
import { LiveStore, type Applied } from './store.ts';
import { parseTopics, type Topics } from './topics.ts';

export type ConnState = 'connecting' | 'live' | 'reconnecting';

export type FrameListener = (applied: Applied, frame: LiveFrame) => void;

/** Benchmark instrumentation (window.__live). */
export interface LiveBench {
  frames: number;
  bytes: number;
  /** ms from a reading's device timestamp to the animation frame after it was applied; the last MAX_LATENCIES. */
  latencies: number[];
  reset(): void;
}

declare global {
  interface Window {
    __live: LiveBench;
  }
}

export const MAX_LATENCIES = 200_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15_000;
/** Deltas dropped while waiting for a snapshot before the subscription is sent again. */
const MAX_FRAMES_AWAITING_SNAPSHOT = 20;

export class LiveClient {
  /** 'connecting' until the first socket opens; 'reconnecting' after any close. */
  conn = $state<ConnState>('connecting');
  /** The hub sends this socket coarse updates (last frame's `degraded`). */
  degraded = $state(false);
  /** The last frame skipped ticks for this socket. */
  throttled = $state(false);
  /** Bumped once per applied frame: read it to re-render per frame. */
  frame = $state(0);
  devicesVersion = $state(0);
  structureVersion = $state(0);
  alarmsVersion = $state(0);
  /** A snapshot for the current subscription has been applied. */
  synced = $state(false);
  /** The hub closed the socket over a bad subscription (close reason). */
  refused = $state<string | null>(null);

  readonly store = new LiveStore();
  readonly bench: LiveBench;

  #topics: Topics = parseTopics(['fleet']);
  #ws: WebSocket | null = null;
  #seq = new SeqGuard();
  #awaitingSnapshot = true;
  #framesAwaiting = 0;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #clockOffsetMs = 0;
  #listeners = new Set<FrameListener>();
  #pendingTimes: number[] = [];
  #latencyRaf = 0;
  #stopped = false;

  constructor() {
    const bench: LiveBench = {
      frames: 0,
      bytes: 0,
      latencies: [],
      reset() {
        bench.frames = 0;
        bench.bytes = 0;
        bench.latencies.length = 0;
      },
    };
    this.bench = bench;
  }

  /** Publishes window.__live and opens the socket. */
  start(): void {
    window.__live = this.bench;
    this.#connect();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#ws?.close(1000);
    this.#ws = null;
  }

  get topics(): readonly string[] {
    return this.#topics.list;
  }

  /** Replaces the subscription (the hub answers with a snapshot). Same set: no-op. */
  subscribe(topics: readonly string[]): void {
    const next = parseTopics(topics);
    if (sameTopics(next.list, this.#topics.list)) return;
    this.#topics = next;
    this.refused = null;
    this.store.retain(next);
    this.#bump({ snapshot: false, devicesChanged: true, structureChanged: true, alarmsChanged: true, detailsChanged: true, fresh: [] });
    this.#sendSubscribe();
  }

  /** Called after every applied frame; returns the unsubscribe function. */
  onFrame(fn: FrameListener): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Now on the hub's clock (offset learned from hub_time_ms). */
  hubNow(): number {
    return Date.now() + this.#clockOffsetMs;
  }

  // ---- reactive views of the store (read `frame` so callers re-run per frame)

  /** hubNow(), re-read every frame (for "3 s ago" texts). */
  get now(): number {
    void this.frame;
    return this.hubNow();
  }

  get health() {
    void this.frame;
    return this.store.health;
  }

  get fleet() {
    void this.frame;
    return this.store.scopes.get('fleet') ?? null;
  }

  get activeAlarms() {
    void this.alarmsVersion;
    return this.store.activeAlarms();
  }

  get clearedAlarms() {
    void this.alarmsVersion;
    return this.store.clearedAlarms();
  }

  detail(id: string) {
    void this.frame;
    return this.store.details.get(id) ?? null;
  }

  // ---- socket

  #connect(): void {
    if (this.#stopped) return;
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + LIVE_PATH;
    const ws = new WebSocket(url, [LIVE_SUBPROTOCOL]);
    ws.binaryType = 'arraybuffer';
    this.#ws = ws;
    let opened = false;

    ws.onopen = () => {
      if (this.#ws !== ws) return;
      opened = true;
      this.conn = 'live';
      this.#seq.reset();
      this.#sendSubscribe();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (this.#ws !== ws || !(ev.data instanceof ArrayBuffer)) return;
      this.#receive(ev.data);
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      this.#onClose(ev, opened);
    };
    // An error is always followed by close; the close handler decides.
    ws.onerror = () => {};
  }

  #onClose(ev: CloseEvent, opened: boolean): void {
    if (ev.code === LiveCloseCode.SESSION_ENDED) {
      goToLogin();
      return;
    }
    if (ev.code === LiveCloseCode.BAD_REQUEST) {
      // Retrying the same subscription would be refused again: keep the fleet.
      this.refused = ev.reason || 'the hub refused the subscription';
      this.#topics = parseTopics(this.#topics.list.filter((t) => t === 'fleet' || t === 'devices'));
    }
    this.conn = 'reconnecting';
    this.synced = false;
    this.degraded = false;
    this.throttled = false;
    if (!opened) {
      // Refused before opening: maybe the session is gone (fetchMe redirects on 401).
      fetchMe().catch(() => {});
    }
    if (this.#stopped) return;
    const delay = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  #sendSubscribe(): void {
    this.#awaitingSnapshot = true;
    this.#framesAwaiting = 0;
    this.synced = false;
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return; // sent on open
    ws.send(encodeLiveRequest({ subscribe: { topics: [...this.#topics.list] } }));
  }

  #receive(buf: ArrayBuffer): void {
    this.bench.frames++;
    this.bench.bytes += buf.byteLength;
    let f: LiveFrame;
    try {
      f = decodeLiveFrame(new Uint8Array(buf));
    } catch (err) {
      console.error('live: undecodable frame; resubscribing', err);
      this.#sendSubscribe();
      return;
    }
    const seq = Number(f.seq);
    if (!this.#seq.accept(seq) && !f.snapshot) {
      // A gap: what we hold may be wrong. Never continue silently.
      if (!this.#awaitingSnapshot) {
        console.warn(`live: frame ${seq} after a gap; resubscribing`);
        this.#sendSubscribe();
      }
      return;
    }
    if (this.#awaitingSnapshot && !f.snapshot) {
      // Deltas still in flight from before the (re)subscription.
      if (++this.#framesAwaiting >= MAX_FRAMES_AWAITING_SNAPSHOT) this.#sendSubscribe();
      return;
    }
    if (f.snapshot) {
      this.#awaitingSnapshot = false;
      this.#attempt = 0;
      this.synced = true;
    }
    if (f.hubTimeMs) this.#clockOffsetMs = Number(f.hubTimeMs) - Date.now();
    this.degraded = f.degraded === true;
    this.throttled = (f.skippedTicks ?? 0) > 0;

    const applied = this.store.apply(f, this.#topics);
    this.#bump(applied);
    for (const fn of this.#listeners) {
      try {
        fn(applied, f);
      } catch (err) {
        console.error('live: frame listener failed', err);
      }
    }
    if (applied.fresh.length > 0) {
      const p = this.#pendingTimes;
      for (const t of applied.fresh) p.push(t);
      // A hidden tab runs no animation frames: keep only what could be reported.
      if (p.length > 2 * MAX_LATENCIES) p.splice(0, p.length - MAX_LATENCIES);
      if (this.#latencyRaf === 0) this.#latencyRaf = requestAnimationFrame(this.#measure);
    }
  }

  #bump(a: Applied): void {
    this.frame++;
    if (a.devicesChanged) this.devicesVersion++;
    if (a.structureChanged) this.structureVersion++;
    if (a.alarmsChanged) this.alarmsVersion++;
  }

  /** In the animation frame after the values were applied: they are about to be painted. */
  #measure = (): void => {
    this.#latencyRaf = 0;
    const now = Date.now();
    const out = this.bench.latencies;
    for (const t of this.#pendingTimes) out.push(now - t);
    this.#pendingTimes.length = 0;
    if (out.length > MAX_LATENCIES) out.splice(0, out.length - MAX_LATENCIES);
  };
}

function sameTopics(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}
