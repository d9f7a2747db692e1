// The InfluxDB sink: ships the spool to /api/v2/write with
// @influxdata/influxdb-client, several requests in flight, gzip for large
// bodies, and advances the spool checkpoint only for lines InfluxDB confirmed.
//
// The client's own retry buffer is not what stands between us and loss (it
// holds a bounded number of lines and drops the oldest when full): its
// retries are off (maxRetries 0, and writeFailed rejects), each chunk gets its
// own WriteApi whose flush() settles for exactly those lines, and retrying is
// done here, from the spool. Failures are sorted (telegraf influxdb_v2 style):
//   400/422  data error: bisect to the offending lines, dead-letter them with
//            the server's reason, write the rest;
//   413      too large: split;
//   401/403  loud, retry slowly;
//   429/5xx/network: back off with full jitter, honouring Retry-After.
import { appendFile } from 'node:fs/promises';
import { HttpError, InfluxDB, setLogger, type WriteApi } from '@influxdata/influxdb-client';
import type { Logger } from '../../log.ts';
import type { HubMetrics } from '../../metrics.ts';
import type { Position, Spool } from '../../spool/spool.ts';
import type { Sink, SinkState, SinkStatus } from '../sink.ts';
import { batchToLines } from './lines.ts';

export interface InfluxSinkOptions {
  url: string;
  token: string;
  org: string;
  bucket: string;
  spool: Spool;
  log: Logger;
  metrics: HubMetrics;
  deadLetterFile: string;
  batchLines?: number;
  maxInFlight?: number;
  /** Request timeout. */
  timeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  authRetryMs?: number;
  random?: () => number;
}

interface Chunk { end: Position; lines: string[]; done: boolean }

type Outcome = { kind: 'ok' } | { kind: 'data'; reason: string; status: number } | { kind: 'split' } | { kind: 'auth'; reason: string } | { kind: 'retry'; reason: string; afterMs: number };

export class InfluxSink implements Sink {
  readonly #o: Required<Omit<InfluxSinkOptions, 'random'>> & { random: () => number };
  readonly #influx: InfluxDB;
  #cursor: Position;
  #inflight: Chunk[] = [];
  #state: SinkState = 'starting';
  #closing = false;
  #deadline = Infinity;
  /** Wakes the read loop (new durable data, close). */
  #wake: (() => void) | null = null;
  /** Backoff sleeps, cut short only when a closing hub reaches its deadline. */
  readonly #backoffs = new Set<() => void>();
  #unsubscribe: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #linesWritten = 0;
  #deadLettered = 0;
  #errors = 0;
  #lastError: string | null = null;
  #lastAuthLog = 0;

  constructor(o: InfluxSinkOptions) {
    this.#o = {
      batchLines: 5000, maxInFlight: 4, timeoutMs: 30_000, backoffBaseMs: 1000, backoffCapMs: 60_000, authRetryMs: 30_000,
      random: Math.random, ...o,
    };
    this.#influx = new InfluxDB({ url: o.url, token: o.token, timeout: this.#o.timeoutMs });
    this.#cursor = o.spool.checkpoint;
    // The client logs through console by default; route it into ours.
    setLogger({
      error: (message, err) => o.log.debug({ err }, `influxdb-client: ${message}`),
      warn: (message, err) => o.log.debug({ err }, `influxdb-client: ${message}`),
    });
  }

  status(): SinkStatus {
    return { name: 'influxdb', state: this.#state, linesWritten: this.#linesWritten, linesDeadLettered: this.#deadLettered, errors: this.#errors, lastError: this.#lastError };
  }

  start(): void {
    this.#unsubscribe = this.#o.spool.onDurable(() => this.#poke());
    this.#loop = this.#run();
  }

  async close(deadlineMs: number): Promise<void> {
    this.#deadline = deadlineMs;
    this.#closing = true;
    this.#poke();
    const t = setTimeout(() => { for (const f of this.#backoffs) f(); }, Math.max(0, deadlineMs - Date.now()));
    await this.#loop;
    clearTimeout(t);
    this.#unsubscribe?.();
    this.#state = 'stopped';
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  #backoff(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => { clearTimeout(t); this.#backoffs.delete(done); resolve(); };
      const t = setTimeout(done, ms);
      this.#backoffs.add(done);
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.#wake = null; resolve(); }, ms);
      this.#wake = () => { clearTimeout(t); resolve(); };
    });
  }

  /** Reads chunks from the spool and keeps up to maxInFlight writes going. */
  async #run(): Promise<void> {
    const running = new Set<Promise<void>>();
    for (;;) {
      const caughtUp = this.#atHead();
      // Closing: ship what is there until the deadline, then stop.
      if (this.#closing && (caughtUp || Date.now() >= this.#deadline)) break;
      if (running.size >= this.#o.maxInFlight || caughtUp) {
        await Promise.race([...running, this.#sleep(caughtUp ? 1000 : 50)]);
        continue;
      }
      const chunk = await this.#nextChunk();
      if (!chunk) {
        await this.#sleep(50); // never spin: nothing readable yet
        continue;
      }
      this.#inflight.push(chunk);
      // A chunk left unconfirmed at the shutdown deadline stays in the spool.
      const p: Promise<void> = this.#write(chunk).catch(() => undefined).finally(() => running.delete(p));
      running.add(p);
    }
    await Promise.allSettled(running);
  }

  #atHead(): boolean {
    const head = this.#o.spool.head;
    return this.#cursor.segment === head.segment && this.#cursor.offset >= head.offset;
  }

  async #nextChunk(): Promise<Chunk | null> {
    // ~40 bytes of spool per reading; read about one chunk's worth.
    const { records, next } = await this.#o.spool.readFrom(this.#cursor, this.#o.batchLines * 40);
    if (!records.length) {
      // Past committed-but-empty segment tails (e.g. the segment a restart began).
      this.#cursor = next;
      return null;
    }
    const lines: string[] = [];
    let end = this.#cursor;
    for (const r of records) {
      batchToLines(r.batch, lines);
      end = r.end;
      if (lines.length >= this.#o.batchLines) break;
    }
    this.#cursor = end;
    return { end, lines, done: false };
  }

  /** Writes a chunk until it is confirmed (or its bad lines are dead-lettered). */
  async #write(chunk: Chunk): Promise<void> {
    await this.#writeLines(chunk.lines);
    chunk.done = true;
    // protocol: the checkpoint moves only over a confirmed prefix, in order.
    while (this.#inflight[0]?.done) this.#o.spool.commit(this.#inflight.shift()!.end);
  }

  async #writeLines(lines: string[]): Promise<void> {
    let attempt = 0;
    for (;;) {
      const started = performance.now();
      const out = await this.#send(lines);
      this.#o.metrics.sinkWriteSeconds.observe((performance.now() - started) / 1000);
      switch (out.kind) {
        case 'ok':
          this.#linesWritten += lines.length;
          this.#o.metrics.sinkLinesWritten.inc(lines.length);
          if (this.#state !== 'ok') this.#o.log.info({ lines: lines.length }, 'influxdb: writing');
          this.#state = 'ok';
          this.#lastError = null;
          return;
        case 'split':
        case 'data': {
          if (out.kind === 'data' && lines.length === 1) {
            await this.#deadLetter(lines[0]!, out.status, out.reason);
            return;
          }
          if (lines.length === 1) {
            // 413 for a single line: nothing smaller to send.
            await this.#deadLetter(lines[0]!, 413, 'line too large for the server');
            return;
          }
          // Halves, in order. Points are idempotent: lines the server already
          // took from a partial write are simply written again.
          const mid = lines.length >> 1;
          await this.#writeLines(lines.slice(0, mid));
          await this.#writeLines(lines.slice(mid));
          return;
        }
        case 'auth': {
          this.#state = 'unauthorized';
          this.#lastError = out.reason;
          this.#o.metrics.sinkErrors.labels('auth').inc();
          this.#errors++;
          if (Date.now() - this.#lastAuthLog > 60_000) {
            this.#lastAuthLog = Date.now();
            this.#o.log.error({ reason: out.reason }, 'influxdb: unauthorized; check INFLUX_TOKEN / INFLUX_ORG / INFLUX_BUCKET. Data stays in the spool and is retried.');
          }
          if (this.#closing && Date.now() >= this.#deadline) return this.#giveUpForNow();
          await this.#backoff(this.#o.authRetryMs * (0.5 + this.#o.random()));
          break;
        }
        case 'retry': {
          attempt++;
          if (this.#state !== 'retrying') this.#o.log.warn({ reason: out.reason }, 'influxdb: write failed; backing off, data stays in the spool');
          this.#state = 'retrying';
          this.#lastError = out.reason;
          this.#o.metrics.sinkErrors.labels('retry').inc();
          this.#errors++;
          if (this.#closing && Date.now() >= this.#deadline) return this.#giveUpForNow();
          // Full jitter, at least what the server asked for.
          const cap = Math.min(this.#o.backoffCapMs, this.#o.backoffBaseMs * 2 ** Math.min(16, attempt - 1));
          await this.#backoff(Math.max(out.afterMs, this.#o.random() * cap));
          break;
        }
      }
    }
  }

  /** At shutdown past the deadline: leave the lines in the spool (not committed). */
  #giveUpForNow(): Promise<never> {
    return Promise.reject(new Error('shutdown deadline: left in the spool'));
  }

  async #send(lines: string[]): Promise<Outcome> {
    let api: WriteApi | null = null;
    try {
      api = this.#influx.getWriteApi(this.#o.org, this.#o.bucket, 'ms', {
        batchSize: lines.length + 1, flushInterval: 0, maxBufferLines: lines.length + 1, maxRetries: 0,
        gzipThreshold: 64 * 1024,
        writeFailed: (err: Error) => Promise.reject(err),
      });
      api.writeRecords(lines);
      await api.flush();
      return { kind: 'ok' };
    } catch (err) {
      return classify(err);
    } finally {
      api?.close().catch(() => undefined);
    }
  }

  async #deadLetter(line: string, status: number, reason: string): Promise<void> {
    this.#deadLettered++;
    this.#o.metrics.sinkLinesDeadLettered.inc();
    this.#o.log.warn({ status, reason, line: line.slice(0, 200) }, 'influxdb: line rejected as invalid; written to the dead-letter file');
    await appendFile(this.#o.deadLetterFile, JSON.stringify({ time: new Date().toISOString(), status, reason, line }) + '\n');
  }
}

function classify(err: unknown): Outcome {
  if (err instanceof HttpError) {
    const reason = `HTTP ${err.statusCode}: ${(err.body ?? err.message).slice(0, 500)}`;
    if (err.statusCode === 400 || err.statusCode === 422) return { kind: 'data', reason, status: err.statusCode };
    if (err.statusCode === 413) return { kind: 'split' };
    if (err.statusCode === 401 || err.statusCode === 403) return { kind: 'auth', reason };
    // 429, 5xx and anything unexpected: keep the data, back off.
    return { kind: 'retry', reason, afterMs: err.statusCode === 429 || err.statusCode === 503 ? Math.max(0, err.retryAfter()) : 0 };
  }
  return { kind: 'retry', reason: (err as Error).message ?? String(err), afterMs: 0 };
}
