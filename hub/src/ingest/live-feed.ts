// ingest/: the guard between ingest and the live path. A failure there is
// logged (once) and never thrown into ingest: dashboards must not be able to
// stop acks. One method per LiveFeed call, so no call allocates a closure.
// Imports: live (the LiveFeed interface), core (batch type, log limiter).
import type { AcceptedBatch } from '../core/batch.ts';
import type { LogLimiter } from '../core/log.ts';
import type { LiveFeed } from '../live/state.ts';

export class GuardedLiveFeed {
  readonly #live: LiveFeed | undefined;
  readonly #log: LogLimiter;
  #failed = false;

  /** `live` undefined: no live path, every call is a no-op. */
  constructor(live: LiveFeed | undefined, log: LogLimiter) {
    this.#live = live;
    this.#log = log;
  }

  /** Per batch: the hot one. */
  durable(batch: AcceptedBatch): void {
    const live = this.#live;
    if (!live) return;
    try {
      live.durable(batch);
    } catch (err) {
      this.#failure(err);
    }
  }

  sessionOpened(deviceId: string, tags: Readonly<Record<string, string>>, firmware: string, address: string): void {
    const live = this.#live;
    if (!live) return;
    try {
      live.sessionOpened(deviceId, tags, firmware, address);
    } catch (err) {
      this.#failure(err);
    }
  }

  sessionClosed(deviceId: string, code: number, byHub: boolean): void {
    const live = this.#live;
    if (!live) return;
    try {
      live.sessionClosed(deviceId, code, byHub);
    } catch (err) {
      this.#failure(err);
    }
  }

  /** The device endpoint's open connections, each time that number changes (live health). */
  connectionCount(n: number): void {
    const live = this.#live;
    if (!live) return;
    try {
      live.connectionCount(n);
    } catch (err) {
      this.#failure(err);
    }
  }

  /** Per acked batch: send -> ack latency for the live health figures. */
  ackLatency(ms: number): void {
    const live = this.#live;
    if (!live) return;
    try {
      live.ackLatency(ms);
    } catch (err) {
      this.#failure(err);
    }
  }

  #failure(err: unknown): void {
    if (!this.#failed) this.#log.error('live_failure', { err }, 'live path failed (ingest unaffected; logged once)');
    this.#failed = true;
  }
}
