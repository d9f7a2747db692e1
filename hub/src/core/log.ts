// core/: the hub's logger: pino, JSON lines. Tests pass a silent one.
// Imports: nothing of ours.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return destination ? pino({ level, base: undefined }, destination as unknown as pino.DestinationStream) : pino({ level, base: undefined });
}

type Level = 'error' | 'warn' | 'info' | 'debug';

interface KindState { windowStart: number; lines: number; suppressed: number }

export interface LogLimiterOptions {
  /** Lines per kind per minute (HUB_LOG_LINES_PER_MIN). */
  perMinute: number;
  now?: () => number;
  /** Told how many lines of a kind were dropped (a metric). */
  onSuppressed?: (kind: string, n: number) => void;
}

/**
 * Log lines that a device or an anonymous client can cause (a bad frame, a
 * full spool, a rejected line, a command result) go through here: each kind
 * gets at most `perMinute` lines a minute; the rest are counted, and one line
 * per kind and minute says how many were suppressed. Kinds are fixed strings
 * chosen by the caller, never input (their number is bounded by the code).
 */
export class LogLimiter {
  readonly #log: Logger;
  readonly #o: LogLimiterOptions;
  readonly #now: () => number;
  readonly #kinds = new Map<string, KindState>();
  #timer: NodeJS.Timeout | null = null;
  /** Lines dropped so far, all kinds. */
  suppressed = 0;

  constructor(log: Logger, o: LogLimiterOptions) {
    this.#log = log;
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  error(kind: string, obj: object, msg: string): void { this.#write('error', kind, obj, msg); }
  warn(kind: string, obj: object, msg: string): void { this.#write('warn', kind, obj, msg); }
  info(kind: string, obj: object, msg: string): void { this.#write('info', kind, obj, msg); }
  debug(kind: string, obj: object, msg: string): void { this.#write('debug', kind, obj, msg); }

  #write(level: Level, kind: string, obj: object, msg: string): void {
    if (!this.#log.isLevelEnabled(level)) return;
    const now = this.#now();
    let k = this.#kinds.get(kind);
    if (!k) {
      k = { windowStart: now, lines: 0, suppressed: 0 };
      this.#kinds.set(kind, k);
    }
    if (now - k.windowStart >= 60_000) {
      this.#report(kind, k);
      k.windowStart = now;
      k.lines = 0;
    }
    if (k.lines < this.#o.perMinute) {
      k.lines++;
      this.#log[level]({ ...obj, kind }, msg);
      return;
    }
    k.suppressed++;
    this.suppressed++;
    this.#o.onSuppressed?.(kind, 1);
    // Say so even if the flood stops and no later line of this kind comes.
    if (this.#timer === null) {
      this.#timer = setTimeout(() => this.flush(), 60_000 - (now - k.windowStart) + 10);
      this.#timer.unref();
    }
  }

  #report(kind: string, k: KindState): void {
    if (k.suppressed === 0) return;
    this.#log.warn({ kind, suppressed: k.suppressed, perMinute: this.#o.perMinute }, `${k.suppressed} log lines of kind ${kind} suppressed in the last minute (HUB_LOG_LINES_PER_MIN=${this.#o.perMinute})`);
    k.suppressed = 0;
  }

  /** Writes the pending "suppressed" summaries (also on a timer, and at shutdown). */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const now = this.#now();
    for (const [kind, k] of this.#kinds) {
      this.#report(kind, k);
      if (now - k.windowStart >= 60_000) { k.windowStart = now; k.lines = 0; }
    }
  }
}
