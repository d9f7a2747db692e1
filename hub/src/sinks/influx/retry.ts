// sinks/influx/: when a failed write is tried again. The delays (full
// jitter, never before Retry-After; auth failures slowly), and the backoff
// sleeps with the /ping probe that ends them early once an outage is over.
// Imports: nothing of the hub (the sink injects the clock-free parts).

export interface RetryDelays {
  backoffBaseMs: number;
  backoffCapMs: number;
  authRetryMs: number;
}

/**
 * Delay before retry number `attempt` (1, 2, ...) of a 429/5xx/network
 * failure: full jitter (`random` in [0, 1)) under a cap doubling from
 * backoffBaseMs to backoffCapMs, and at least what the server asked for.
 */
export function retryDelayMs(attempt: number, retryAfterMs: number, delays: RetryDelays, random: number): number {
  const cap = Math.min(delays.backoffCapMs, delays.backoffBaseMs * 2 ** Math.min(16, attempt - 1));
  return Math.max(retryAfterMs, random * cap);
}

/** Delay before an unauthorized write is tried again: authRetryMs, ±50 % so hubs do not retry in step. */
export function authRetryDelayMs(delays: RetryDelays, random: number): number {
  return delays.authRetryMs * (0.5 + random);
}

/**
 * GET /ping (served by InfluxDB 1.x, 2.x and 3.x): true when InfluxDB
 * answers at all. 401/403 count (3.x guards /ping); a proxy's 5xx or 404 is
 * not InfluxDB answering.
 */
export async function pingInflux(url: string, token: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`${url.replace(/\/+$/, '')}/ping`, {
      headers: { authorization: `Token ${token}` },
      signal: AbortSignal.timeout(Math.min(5000, timeoutMs)),
    });
    await res.arrayBuffer().catch(() => undefined);
    return res.ok || res.status === 401 || res.status === 403;
  } catch {
    return false;
  }
}

export interface BackoffOptions {
  /** While a probing sleep runs: how often `ping` is tried. */
  probeIntervalMs: number;
  ping: () => Promise<boolean>;
  /** The probe saw InfluxDB answer again after an outage (probing sleeps are about to end). */
  onBackUp: () => void;
}

/** A backoff sleep; `probe` ones end early when /ping answers again, never before `notBefore`. */
interface Wait { wake: () => void; timer: NodeJS.Timeout; notBefore: number; probe: boolean }

/**
 * The sink's backoff sleeps. While one from a 5xx/network failure runs,
 * `ping` is tried every probeIntervalMs; when it answers after having failed
 * (or after a write found the server unreachable, markUnreachable), the
 * outage is over: those sleeps end now (or at their Retry-After), instead of
 * up to backoffCapMs later. A server that answers /ping but fails writes
 * keeps the plain exponential backoff.
 */
export class Backoff {
  readonly #options: BackoffOptions;
  /** Sleeps in progress: cut short by the probe or by wakeAll(). */
  readonly #waits = new Set<Wait>();
  #probeTimer: NodeJS.Timeout | null = null;
  /** Seen unreachable (a write or /ping got no answer) since it last answered. */
  #down = false;
  #stopping = false;

  constructor(options: BackoffOptions) {
    this.#options = options;
  }

  /** A write got no answer at all. */
  markUnreachable(): void { this.#down = true; }
  /** A write succeeded: InfluxDB is up. */
  markAnswered(): void { this.#down = false; }

  /** Sleeps `ms`; a `probe` sleep may end early once /ping answers again, but not within `notBeforeMs`. */
  sleep(ms: number, probe: boolean, notBeforeMs = 0): Promise<void> {
    return new Promise((resolve) => {
      const wait: Wait = {
        wake: () => { clearTimeout(wait.timer); this.#waits.delete(wait); resolve(); },
        timer: setTimeout(() => wait.wake(), ms),
        notBefore: Date.now() + notBeforeMs,
        probe,
      };
      this.#waits.add(wait);
      if (probe) this.#startProbing();
    });
  }

  /** Ends every sleep now (a closing hub at its deadline). */
  wakeAll(): void {
    for (const wait of this.#waits) wait.wake();
  }

  /** No probe is started or repeated from now on (the sink is closing). */
  stopProbing(): void {
    this.#stopping = true;
  }

  /** Cancels a scheduled probe (the sink has closed). */
  dispose(): void {
    if (this.#probeTimer) clearTimeout(this.#probeTimer);
    this.#probeTimer = null;
  }

  #startProbing(): void {
    if (this.#probeTimer !== null) return;
    const tick = async () => {
      if (this.#stopping || ![...this.#waits].some((wait) => wait.probe)) {
        this.#probeTimer = null;
        return;
      }
      const answered = await this.#options.ping();
      if (!answered) {
        this.#down = true;
      } else if (this.#down) {
        this.#down = false;
        this.#options.onBackUp();
        const now = Date.now();
        for (const wait of this.#waits) {
          if (!wait.probe) continue;
          clearTimeout(wait.timer);
          // Never before the server's Retry-After.
          wait.timer = setTimeout(() => wait.wake(), Math.max(0, wait.notBefore - now));
        }
      }
      if (this.#probeTimer !== null) this.#probeTimer = setTimeout(() => void tick(), this.#options.probeIntervalMs);
    };
    this.#probeTimer = setTimeout(() => void tick(), this.#options.probeIntervalMs);
  }
}
