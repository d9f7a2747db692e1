// ingest/: acks and credit. Sessions with something to ack are marked dirty;
// once per tick every dirty session gets one corked Ack (cumulative seq,
// credit, the reports of what it covers). Credit follows the store's
// pressure and is re-sent when it changes without any ack to carry it.
// Imports: proto, spool (the BatchStore seam, types), ingest/live-feed (the guarded live path),
// core (metrics types), ingest/session, send.
import { NoticeCode, encodeAckMessage, encodeHubMessage, type BatchReport } from '@telemetry/proto';
import type { HubMetrics } from '../core/metrics.ts';
import type { GuardedLiveFeed } from './live-feed.ts';
import type { BatchStore } from '../spool/store.ts';
import { sendToDevice } from './send.ts';
import type { Session } from './session.ts';

/** The reports of an Ack that carries none: shared, never written to (most Acks). */
const NO_REPORTS: BatchReport[] = [];

/** protocol: the hub re-evaluates credit every 250 ms (proto/README.md §7, credit-only acks). */
export const CREDIT_REFRESH_MS = 250;

/**
 * protocol: credit from the store's fill level p (proto/README.md §7): the
 * full window up to p = 0.5, none at p >= 1, at least 1 in between.
 */
export function creditFor(pressure: number, window: number): number {
  if (pressure <= 0.5) return window;
  if (pressure >= 1) return 0;
  return Math.max(1, Math.floor(window * (1 - pressure) * 2));
}

export interface AckDeps {
  readonly window: number;
  readonly store: Pick<BatchStore, 'durableSeq' | 'pressure'>;
  readonly metrics: HubMetrics;
  readonly now: () => number;
  /** Told every ack latency, unguarded: see flush(). */
  /** The live path, guarded: a failure there never escapes the ack flush. */
  readonly live: GuardedLiveFeed | undefined;
  /** The open sessions (SessionTable.sockets), for credit-only acks. */
  readonly sessions: ReadonlySet<Session>;
}

export class AckFlusher {
  readonly #deps: AckDeps;
  readonly #window: number;
  readonly #dirty = new Set<Session>();
  #flushScheduled = false;
  readonly #flushNow = (): void => this.flush();

  constructor(deps: AckDeps) {
    this.#deps = deps;
    this.#window = deps.window;
  }

  /** 0..window for every session alike. */
  credit(): number {
    return creditFor(this.#deps.store.pressure(), this.#window);
  }

  /** The session has something to ack (or new credit); it goes out with this tick's flush. */
  markDirty(session: Session): void {
    this.#dirty.add(session);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // Group acks: everything that became durable in this tick goes out together.
      setImmediate(this.#flushNow);
    }
  }

  /** A closed session has nothing more to ack. */
  forget(session: Session): void {
    this.#dirty.delete(session);
  }

  /**
   * Acks every dirty session up to the highest seq the store holds durably
   * (protocol: ack implies durable), with the current credit. A session
   * gets an Ack only when a batch of its became durable or its credit changed.
   */
  flush(): void {
    this.#flushScheduled = false;
    const { store, metrics } = this.#deps;
    const now = this.#deps.now();
    const credit = this.credit();
    const window = this.#window;
    const latency = metrics.ackLatency;
    const live = this.#deps.live;
    for (const session of this.#dirty) {
      const ws = session.ws;
      if (session.state !== 'open' || !ws) continue;
      const durable = store.durableSeq(session.deviceId);
      let acked = session.lastAckSeq;
      let removed = 0;
      const inflight = session.inflight;
      if (inflight !== null) {
        // Compacts the (seq, receive time) pairs in place: what is durable leaves, the rest keeps its order.
        let kept = 0;
        for (let i = 0; i < inflight.length; i += 2) {
          const seq = inflight[i]!;
          if (seq <= durable) {
            if (seq > acked) acked = seq;
            const ms = now - inflight[i + 1]!;
            latency.observe(ms / 1000);
            if (live) live.ackLatency(ms);
          } else {
            inflight[kept] = seq;
            inflight[kept + 1] = inflight[i + 1]!;
            kept += 2;
          }
        }
        removed = (inflight.length - kept) >> 1;
        inflight.length = kept;
      }
      if (removed === 0 && credit === session.lastCredit) continue;
      let reports = NO_REPORTS;
      const pending = session.reports;
      if (pending !== null && pending.length) {
        reports = pending.filter((report) => (report.seq ?? 0) <= acked);
        if (reports.length) pending.splice(0, reports.length);
      }
      session.lastAckSeq = acked;
      session.lastCredit = credit;
      // Most Acks carry no reports: written by hand (proto's encodeAckMessage), else by the generated encoder.
      const bytes = reports.length === 0 ? encodeAckMessage(acked, credit) : encodeHubMessage({ ack: { seq: acked, credit, reports } });
      const notice = credit < window && !session.toldBackpressure;
      if (notice) session.toldBackpressure = true;
      else if (credit === window) session.toldBackpressure = false;
      ws.cork(() => {
        sendToDevice(ws, bytes, metrics);
        if (notice) sendToDevice(ws, encodeHubMessage({ notice: { code: NoticeCode.BACKPRESSURE, reason: `storage is behind: credit ${credit} of ${window}` } }), metrics);
      });
    }
    this.#dirty.clear();
  }

  /** Tells devices when credit changed without any ack to carry it (store filling or draining). */
  refreshCredit(): void {
    const credit = this.credit();
    for (const session of this.#deps.sessions) {
      if (session.state === 'open' && session.lastCredit !== credit) this.markDirty(session);
    }
  }
}
