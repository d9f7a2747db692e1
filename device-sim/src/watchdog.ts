// device-sim/: the device's own session timeouts (proto/README.md §1, §7,
// §11): a handshake with no Welcome, batches in flight with no Ack, and a
// link that has gone silent. Times are performance.now() values the caller
// passes in, so the rules are tested without sockets or real time.
// Imports: nothing.

export interface WatchdogOptions {
  /** Close a connection whose Welcome has not come this long after the upgrade (§11). */
  welcomeTimeoutMs: number;
  /** Treat this long without an Ack while batches are in flight as a dead session (§7). */
  ackTimeoutMs: number;
}

/** Margin past Welcome's idle_timeout_ms before a silent link counts as dead. */
export const IDLE_MARGIN_MS = 10_000;

export class SessionWatchdog {
  readonly #options: WatchdogOptions;
  /** When the upgrade completed. */
  #openedAt = 0;
  /** When acks last made progress (or the first batch went into an empty pipe). */
  #progressAt = 0;
  /** When a frame from the hub was last seen, to a tick. */
  #heardAt = 0;
  /** A frame arrived since the last stamp: heard() costs no clock read on the per-message path. */
  #heardSinceStamp = false;

  constructor(options: WatchdogOptions) {
    this.#options = options;
  }

  opened(now: number): void { this.#openedAt = now; }
  /** Welcome, an Ack that removed batches, or a send into an empty pipe. */
  progressed(now: number): void { this.#progressAt = now; }
  /** Any frame from the hub, data or ping. */
  heard(): void { this.#heardSinceStamp = true; }

  /** Once per tick, before the checks: dates what heard() saw to this tick. */
  stamp(now: number): void {
    if (this.#heardSinceStamp) { this.#heardAt = now; this.#heardSinceStamp = false; }
  }

  /** No Welcome welcomeTimeoutMs after the upgrade. Stays true until the connection is replaced. */
  welcomeOverdue(now: number): boolean {
    return now - this.#openedAt >= this.#options.welcomeTimeoutMs;
  }

  /** Batches in flight and no ack progress for ackTimeoutMs; restarts the wait when it fires. */
  ackOverdue(now: number, inflight: number): boolean {
    if (inflight === 0 || now - this.#progressAt < this.#options.ackTimeoutMs) return false;
    this.#progressAt = now;
    return true;
  }

  /**
   * Nothing heard for idle_timeout_ms + margin: the hub pings a silent
   * session before idle_timeout_ms (§1), so the link is dead without a close
   * (a half-open TCP connection). 0 = the hub named no idle timeout. Restarts
   * the wait when it fires.
   */
  silent(now: number, idleTimeoutMs: number): boolean {
    if (!idleTimeoutMs || now - this.#heardAt < idleTimeoutMs + IDLE_MARGIN_MS) return false;
    this.#heardAt = now;
    return true;
  }
}
