// sinks/influx/: the InfluxDB sink. Ships the spool to /api/v2/write with
// @influxdata/influxdb-client, several requests in flight, gzip for large
// bodies, and advances the spool checkpoint only for lines InfluxDB confirmed.
//
// The client's own retry buffer is not what stands between us and loss (it
// holds a bounded number of lines and drops the oldest when full): its
// retries are off (maxRetries 0, and writeFailed rejects), each chunk gets its
// own WriteApi whose flush() settles for exactly those lines, and retrying is
// done here, from the spool. Failures are sorted (failures.ts):
//   400/422  data error: pull out the lines the server names ("unable to
//            parse '<line>': <reason>"), else bisect to the offending lines;
//            dead-letter them with the server's reason, write the rest;
//   413      too large: split;
//   401/403  loud, retry slowly;
//   429/5xx/network: back off with full jitter, honouring Retry-After, and
//            end the backoff early once /ping answers again after an outage
//            (retry.ts).
// Imports: core, the spool's reader side (spool/reader.ts), the Sink
// interface, @influxdata/influxdb-client.
import { InfluxDB, setLogger, type WriteApi } from '@influxdata/influxdb-client';
import { LogLimiter, type Logger } from '../../core/log.ts';
import type { HubMetrics } from '../../core/metrics.ts';
import { comparePos, type Position, type SpoolReader } from '../../spool/reader.ts';
import type { Sink, SinkState, SinkStatus } from '../sink.ts';
import { DeadLetterFile, type DeadLetter } from './dead-letters.ts';
import { classify, linesNamedIn, type Outcome } from './failures.ts';
import { batchToLines, type RefusedLine } from './lines.ts';
import { Backoff, authRetryDelayMs, pingInflux, retryDelayMs } from './retry.ts';

export interface InfluxSinkOptions {
  url: string;
  token: string;
  org: string;
  bucket: string;
  /** The log to ship; the sink reads from its checkpoint and commits what InfluxDB confirmed. */
  spool: SpoolReader;
  log: Logger;
  metrics: HubMetrics;
  deadLetterFile: string;
  /** HUB_DEAD_LETTER_MAX_BYTES: the dead-letter file rotates at this size. */
  deadLetterMaxBytes?: number;
  /** Shared limiter for lines devices can cause; else one with `logLinesPerMinute`. */
  logLimiter?: LogLimiter;
  /** HUB_LOG_LINES_PER_MIN, used when no `logLimiter` is given. */
  logLinesPerMinute?: number;
  batchLines?: number;
  maxInFlight?: number;
  /** Request timeout. */
  timeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  authRetryMs?: number;
  /** While backing off from a failed write: how often /ping is tried. */
  probeIntervalMs?: number;
  random?: () => number;
}

type Settings = Required<Omit<InfluxSinkOptions, 'random' | 'logLimiter'>> & { random: () => number };

interface Chunk { end: Position; lines: string[]; refused: RefusedLine[]; done: boolean }

/** The widest spool read: a record is at most 2 segments (HUB_SPOOL_SEGMENT_BYTES, at most 1 GiB). */
const MAX_READ_BYTES = 2 ** 31;

/** Lines rejected in one request that are logged one by one; past it one summary line. */
const MAX_LOGGED_PER_REQUEST = 3;

export class InfluxSink implements Sink {
  readonly #settings: Settings;
  readonly #influx: InfluxDB;
  readonly #limiter: LogLimiter;
  readonly #deadLetters: DeadLetterFile;
  #cursor: Position;
  /** Read window while a record larger than the usual one is ahead; else null. */
  #readBytes: number | null = null;
  #inflight: Chunk[] = [];
  #state: SinkState = 'starting';
  #closing = false;
  #deadline = Infinity;
  /** Wakes the read loop (new durable data, close). */
  #wake: (() => void) | null = null;
  /** Backoff sleeps: cut short when a closing hub reaches its deadline, or by the /ping probe. */
  readonly #backoff: Backoff;
  #unsubscribe: (() => void) | null = null;
  #loop: Promise<void> | null = null;
  #linesWritten = 0;
  #deadLettered = 0;
  #errors = 0;
  #lastError: string | null = null;
  #lastAuthLog = 0;

  constructor(options: InfluxSinkOptions) {
    const { logLimiter, ...rest } = options;
    this.#settings = {
      batchLines: 5000, maxInFlight: 4, timeoutMs: 30_000, backoffBaseMs: 1000, backoffCapMs: 60_000, authRetryMs: 30_000,
      deadLetterMaxBytes: 32 << 20, logLinesPerMinute: 60, probeIntervalMs: 2000, random: Math.random, ...rest,
    };
    this.#influx = new InfluxDB({ url: options.url, token: options.token, timeout: this.#settings.timeoutMs });
    this.#cursor = options.spool.checkpoint;
    this.#limiter = logLimiter ?? new LogLimiter(options.log, {
      perMinute: this.#settings.logLinesPerMinute,
      onSuppressed: (kind, n) => options.metrics.logLinesSuppressed.labels(kind).inc(n),
    });
    this.#deadLetters = new DeadLetterFile({ path: options.deadLetterFile, maxBytes: this.#settings.deadLetterMaxBytes, metrics: options.metrics });
    this.#backoff = new Backoff({
      probeIntervalMs: this.#settings.probeIntervalMs,
      ping: () => pingInflux(this.#settings.url, this.#settings.token, this.#settings.timeoutMs),
      onBackUp: () => this.#limiter.info('influxdb_state', {}, 'influxdb: answering /ping again; retrying now'),
    });
    // The client logs through console by default; route it into ours. It logs
    // every failed request, and a device's bad data can fail many: limited.
    const limiter = this.#limiter;
    setLogger({
      error: (message: string, err?: unknown) => limiter.debug('influxdb_client', { err }, `influxdb-client: ${message}`),
      warn: (message: string, err?: unknown) => limiter.debug('influxdb_client', { err }, `influxdb-client: ${message}`),
    });
  }

  status(): SinkStatus {
    return { name: 'influxdb', state: this.#state, linesWritten: this.#linesWritten, linesDeadLettered: this.#deadLettered, errors: this.#errors, lastError: this.#lastError };
  }

  start(): void {
    this.#unsubscribe = this.#settings.spool.onDurable(() => this.#poke());
    this.#loop = this.#run();
  }

  async close(deadlineMs: number): Promise<void> {
    this.#deadline = deadlineMs;
    this.#closing = true;
    this.#backoff.stopProbing();
    this.#poke();
    const deadlineTimer = setTimeout(() => this.#backoff.wakeAll(), Math.max(0, deadlineMs - Date.now()));
    await this.#loop;
    clearTimeout(deadlineTimer);
    this.#backoff.dispose();
    this.#unsubscribe?.();
    this.#state = 'stopped';
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.#wake = null; resolve(); }, ms);
      this.#wake = () => { clearTimeout(timer); resolve(); };
    });
  }

  /** Reads chunks from the spool and keeps up to maxInFlight writes going. */
  async #run(): Promise<void> {
    const running = new Set<Promise<void>>();
    for (;;) {
      const caughtUp = this.#atHead();
      // Closing: ship what is there until the deadline, then stop.
      if (this.#closing && (caughtUp || Date.now() >= this.#deadline)) break;
      if (running.size >= this.#settings.maxInFlight || caughtUp) {
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
    const head = this.#settings.spool.head;
    return this.#cursor.segment === head.segment && this.#cursor.offset >= head.offset;
  }

  async #nextChunk(): Promise<Chunk | null> {
    // ~40 bytes of spool per reading; read about one chunk's worth.
    const budget = this.#readBytes ?? this.#settings.batchLines * 40;
    const { records, next } = await this.#settings.spool.readFrom(this.#cursor, budget);
    if (!records.length) {
      if (comparePos(next, this.#cursor) === 0 && !this.#atHead()) {
        // A record larger than the read window (a big batch, a small
        // HUB_SINK_BATCH_LINES): readFrom returns nothing until the window
        // holds it whole, so widen it instead of waiting forever.
        this.#readBytes = Math.min(MAX_READ_BYTES, Math.max(budget, 1 << 16) * 2);
      }
      // Past committed-but-empty segment tails (e.g. the segment a restart began).
      this.#cursor = next;
      return null;
    }
    this.#readBytes = null;
    const lines: string[] = [];
    const refused: RefusedLine[] = [];
    let end = this.#cursor;
    for (const record of records) {
      batchToLines(record.batch, lines, refused);
      end = record.end;
      if (lines.length + refused.length >= this.#settings.batchLines) break;
    }
    this.#cursor = end;
    return { end, lines, refused, done: false };
  }

  /** Writes a chunk until it is confirmed (or its bad lines are dead-lettered). */
  async #write(chunk: Chunk): Promise<void> {
    if (chunk.refused.length) await this.#deadLetter(chunk.refused.map((refusal) => ({ status: null, reason: refusal.reason, line: refusal.line })));
    if (chunk.lines.length) await this.#writeLines(chunk.lines);
    chunk.done = true;
    // protocol: the checkpoint moves only over a confirmed prefix, in order.
    for (let oldest = this.#inflight[0]; oldest?.done; oldest = this.#inflight[0]) {
      this.#inflight.shift();
      this.#settings.spool.commit(oldest.end);
    }
  }

  async #writeLines(lines: string[]): Promise<void> {
    let attempt = 0;
    for (;;) {
      const started = performance.now();
      const out = await this.#send(lines);
      this.#settings.metrics.sinkWriteSeconds.observe((performance.now() - started) / 1000);
      switch (out.kind) {
        case 'ok':
          this.#linesWritten += lines.length;
          this.#settings.metrics.sinkLinesWritten.inc(lines.length);
          if (this.#state !== 'ok') this.#limiter.info('influxdb_state', { lines: lines.length }, 'influxdb: writing');
          this.#state = 'ok';
          this.#lastError = null;
          this.#backoff.markAnswered();
          return;
        case 'data': {
          // The server named the lines it could not parse: take them out and
          // write the rest (two requests, where bisecting costs ~2 per bad line).
          // Points are idempotent: lines a partial write already stored are
          // simply written again.
          const named = linesNamedIn(out.message, lines);
          if (named.size) {
            const bad: DeadLetter[] = [];
            const rest: string[] = [];
            for (const line of lines) {
              const why = named.get(line);
              if (why === undefined) rest.push(line);
              else bad.push({ status: out.status, reason: `HTTP ${out.status}: unable to parse: ${why}`.slice(0, 500), line });
            }
            await this.#deadLetter(bad);
            if (!rest.length) return;
            lines = rest;
            continue;
          }
          if (lines.length === 1) {
            await this.#deadLetter([{ status: out.status, reason: out.reason, line: lines[0]! }]);
            return;
          }
          await this.#bisect(lines);
          return;
        }
        case 'split':
          if (lines.length === 1) {
            // 413 for a single line: nothing smaller to send.
            await this.#deadLetter([{ status: 413, reason: 'line too large for the server', line: lines[0]! }]);
            return;
          }
          await this.#bisect(lines);
          return;
        case 'auth': {
          this.#state = 'unauthorized';
          this.#lastError = out.reason;
          this.#settings.metrics.sinkErrors.labels('auth').inc();
          this.#errors++;
          if (Date.now() - this.#lastAuthLog > 60_000) {
            this.#lastAuthLog = Date.now();
            this.#settings.log.error({ reason: out.reason }, 'influxdb: unauthorized; check INFLUX_TOKEN / INFLUX_ORG / INFLUX_BUCKET. Data stays in the spool and is retried.');
          }
          if (this.#closing && Date.now() >= this.#deadline) return this.#giveUpForNow();
          await this.#backoff.sleep(authRetryDelayMs(this.#settings, this.#settings.random()), false);
          break;
        }
        case 'retry': {
          attempt++;
          if (this.#state !== 'retrying') this.#limiter.warn('influxdb_state', { reason: out.reason }, 'influxdb: write failed; backing off, data stays in the spool');
          this.#state = 'retrying';
          this.#lastError = out.reason;
          this.#settings.metrics.sinkErrors.labels('retry').inc();
          this.#errors++;
          if (out.unreachable) this.#backoff.markUnreachable();
          if (this.#closing && Date.now() >= this.#deadline) return this.#giveUpForNow();
          const delayMs = retryDelayMs(attempt, out.afterMs, this.#settings, this.#settings.random());
          this.#limiter.debug('influxdb_retry', { attempt, delayMs: Math.round(delayMs), retryAfterMs: out.afterMs, reason: out.reason }, 'influxdb: retry scheduled');
          await this.#backoff.sleep(delayMs, true, out.afterMs);
          break;
        }
      }
    }
  }

  /** Halves, in order, until the offending lines are isolated. */
  async #bisect(lines: string[]): Promise<void> {
    const mid = lines.length >> 1;
    await this.#writeLines(lines.slice(0, mid));
    await this.#writeLines(lines.slice(mid));
  }

  /** At shutdown past the deadline: leave the lines in the spool (not committed). */
  #giveUpForNow(): Promise<never> {
    return Promise.reject(new Error('shutdown deadline: left in the spool'));
  }

  async #send(lines: string[]): Promise<Outcome> {
    let api: WriteApi | null = null;
    try {
      api = this.#influx.getWriteApi(this.#settings.org, this.#settings.bucket, 'ms', {
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

  async #deadLetter(records: DeadLetter[]): Promise<void> {
    if (!records.length) return;
    this.#deadLettered += records.length;
    this.#settings.metrics.sinkLinesDeadLettered.inc(records.length);
    // Devices choose what is rejected: a few lines per request, then a count,
    // all through the limiter (HUB_LOG_LINES_PER_MIN).
    for (const record of records.slice(0, MAX_LOGGED_PER_REQUEST)) {
      this.#limiter.warn('dead_letter', { status: record.status, reason: record.reason.slice(0, 300), line: record.line.slice(0, 200) }, 'influxdb: line rejected as invalid; written to the dead-letter file');
    }
    if (records.length > MAX_LOGGED_PER_REQUEST) {
      this.#limiter.warn('dead_letter', { more: records.length - MAX_LOGGED_PER_REQUEST }, `influxdb: ${records.length - MAX_LOGGED_PER_REQUEST} more lines of the same write rejected; see the dead-letter file`);
    }
    try {
      await this.#deadLetters.append(records);
    } catch (err) {
      // The lines are invalid either way; a full disk must not stop the sink.
      this.#limiter.error('dead_letter_write', { err, lines: records.length }, `influxdb: dead-letter file ${this.#deadLetters.path} not written; the rejected lines are lost`);
    }
  }
}

