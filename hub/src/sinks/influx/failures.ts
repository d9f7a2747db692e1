// sinks/influx/: what a failed write means, sorted (telegraf influxdb_v2
// style) into drop, split, auth and retry, and which lines a 400 names.
// Pure functions of the client's error and the server's message. Imports:
// @influxdata/influxdb-client (its error classes) only.
import { HttpError, RequestTimedOutError } from '@influxdata/influxdb-client';

/** What to do about one write. */
export type Outcome =
  | { kind: 'ok' }
  /** 400/422: the data is bad; `message` is the server's, for linesNamedIn. */
  | { kind: 'data'; reason: string; message: string; status: number }
  /** 413: too large, send halves. */
  | { kind: 'split' }
  /** 401/403: loud, retry slowly. */
  | { kind: 'auth'; reason: string }
  /** `unreachable`: no HTTP answer at all (refused, reset): InfluxDB is down, not just failing. */
  | { kind: 'retry'; reason: string; afterMs: number; unreachable: boolean };

/** A server may not park the sink for longer than this (a bogus or hostile Retry-After). */
export const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date, in ms from
 * `nowMs`, clamped to 0..MAX_RETRY_AFTER_MS; 0 when absent or unreadable.
 * (The client's `retryAfter()` gives the seconds as they are, and 0 for a date.)
 */
export function retryAfterMs(err: HttpError, nowMs = Date.now()): number {
  const raw = err.headers?.['retry-after'];
  const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  if (!value) return 0;
  const ms = /^\d+$/.test(value) ? Number(value) * 1000 : Date.parse(value) - nowMs;
  return Number.isFinite(ms) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) : 0;
}

/** Sorts what a write rejected with (telegraf influxdb_v2/http.go: 400/422 drop, 413 split, 429/5xx throttle). */
export function classify(err: unknown): Outcome {
  if (err instanceof HttpError) {
    const json = err.json as { message?: unknown } | undefined;
    const message = typeof json?.message === 'string' ? json.message : (err.body ?? err.message);
    const reason = `HTTP ${err.statusCode}: ${message.slice(0, 500)}`;
    if (err.statusCode === 400 || err.statusCode === 422) return { kind: 'data', reason, message, status: err.statusCode };
    if (err.statusCode === 413) return { kind: 'split' };
    if (err.statusCode === 401 || err.statusCode === 403) return { kind: 'auth', reason };
    // 429, 5xx and anything unexpected: keep the data, back off.
    return { kind: 'retry', reason, afterMs: err.statusCode === 429 || err.statusCode === 503 ? retryAfterMs(err) : 0, unreachable: false };
  }
  // A timeout is an answer too slow, not an absent server.
  return { kind: 'retry', reason: (err as Error).message ?? String(err), afterMs: 0, unreachable: !(err instanceof RequestTimedOutError) };
}

const UNABLE = "unable to parse '";

/**
 * The lines of `lines` that InfluxDB's message names as unparseable (1.x and
 * 2.x: `unable to parse '<line>': <reason>`, one per line, newline-separated;
 * 1.x prefixes "partial write: " and ends with " dropped=N"), with their
 * reasons. A line may itself contain `': `, so every such split is tried
 * against the lines actually sent; what matches nothing is ignored.
 */
export function linesNamedIn(message: string, lines: readonly string[]): Map<string, string> {
  const named = new Map<string, string>();
  const lower = message.toLowerCase();
  let at = lower.indexOf(UNABLE);
  if (at < 0) return named;
  const sent = new Set(lines);
  while (at >= 0) {
    const start = at + UNABLE.length;
    const next = lower.indexOf(UNABLE, start);
    const end = next < 0 ? message.length : next;
    for (let quote = message.indexOf("': ", start); quote >= 0 && quote < end; quote = message.indexOf("': ", quote + 1)) {
      const line = message.slice(start, quote);
      if (sent.has(line)) {
        named.set(line, message.slice(quote + 3, end).replace(/\s+dropped=\d+\s*$/, '').trim());
        break;
      }
    }
    at = next;
  }
  return named;
}
