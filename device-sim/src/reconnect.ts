// device-sim/: the reconnect policy (proto/README.md §9, §11): which closes
// and refusals are fatal, the hub's retry hints, the backoff delay as a pure
// function of the attempt, the hints and randomness, and ReconnectState, what
// a device remembers between attempts.
// Imports: @telemetry/proto.
import { CloseCode, parseRetryAfterMs } from '@telemetry/proto';

/** Close codes that mean "fix the device", not "try again" (proto/README.md §9). */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set<number>([
  CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_PAYLOAD, CloseCode.MESSAGE_TOO_BIG, CloseCode.PROTOCOL_ERROR,
  // 4002: something else uses this device's token; two clones would replace each other forever.
  CloseCode.SESSION_REPLACED,
  CloseCode.WINDOW_EXCEEDED, CloseCode.BATCH_TOO_LARGE, CloseCode.INVALID_METRIC, CloseCode.UNSUPPORTED_VERSION,
  CloseCode.DEVICE_REVOKED,
]);
/** HTTP refusals that retrying cannot fix (§3): bad token, disabled device, wrong path. */
export const FATAL_HTTP_STATUSES: ReadonlySet<number> = new Set([401, 403, 404]);

export interface BackoffOptions {
  /** Attempt 1 waits up to this long. */
  baseMs: number;
  /** No attempt waits longer (before hints). */
  capMs: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = { baseMs: 1000, capMs: 30_000 };

export interface RetryHints {
  /** The largest hint since the last attempt (Retry-After, close reason, Notice.retry_after_ms), ms; 0 = none. */
  retryAfterMs: number;
  /** After a fatal close that is retried anyway (a bad actor): the least wait, ms; 0 = not fatal. */
  fatalFloorMs: number;
}

/**
 * The wait before reconnect attempt `attempt` (1 = the first retry after a
 * failure): full jitter over min(cap, base * 2^(attempt-1)) (§11; AWS
 * "Exponential Backoff And Jitter"), and at least the largest hint plus up to
 * 1 s of our own jitter. Draws random() once, and once more only when there
 * is a hint: the device shares its random stream with the bad actors.
 */
export function backoffDelayMs(attempt: number, hints: RetryHints, random: () => number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  let delay = random() * Math.min(options.capMs, options.baseMs * 2 ** Math.min(30, attempt - 1));
  const floor = Math.max(hints.fatalFloorMs, hints.retryAfterMs);
  // Hints already carry the hub's jitter; add a little of our own so a fleet refused together spreads out.
  if (floor > 0) delay = Math.max(delay, floor + random() * Math.min(1000, floor));
  return delay;
}

/** HTTP Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; ms, or undefined. */
export function retryAfterHeaderMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** What a device remembers between connection attempts (§11). */
export class ReconnectState {
  /** Attempts since the last Welcome. */
  attempt = 0;
  /** The last close or refusal was fatal. */
  fatal = false;
  /** The largest retry hint since the last scheduled attempt, ms. */
  #retryHintMs = 0;

  /** An attempt starts: how it will end is not known yet. */
  attemptStarted(): void { this.fatal = false; }

  /** A retry hint from anywhere (refusal, close reason, Notice): the largest one counts. */
  hint(ms: number | undefined): void {
    if (ms !== undefined) this.#retryHintMs = Math.max(this.#retryHintMs, ms);
  }

  /** The upgrade was refused (§3): Retry-After counts on 429 and 503. */
  refused(status: number, retryAfterHeader: string | string[] | undefined): void {
    if (status === 429 || status === 503) this.hint(retryAfterHeaderMs(retryAfterHeader));
    if (FATAL_HTTP_STATUSES.has(status)) this.fatal = true;
  }

  /** A session closed (§9): a retry-after=<ms> in the reason counts. */
  closed(code: number, reason: string): void {
    this.hint(parseRetryAfterMs(reason));
    if (FATAL_CLOSE_CODES.has(code)) this.fatal = true;
  }

  /** §11: reset after each Welcome, not on a bare 101. */
  welcomed(): void {
    this.attempt = 0;
    this.#retryHintMs = 0;
  }

  /**
   * Counts the next attempt and returns its wait; the hints are used up.
   * `fatalFloorMs` is the least wait after a fatal close (when it is retried at all).
   */
  nextDelayMs(random: () => number, options: BackoffOptions, fatalFloorMs: number): number {
    this.attempt++;
    const delay = backoffDelayMs(this.attempt, { retryAfterMs: this.#retryHintMs, fatalFloorMs: this.fatal ? fatalFloorMs : 0 }, random, options);
    this.#retryHintMs = 0;
    return delay;
  }
}
