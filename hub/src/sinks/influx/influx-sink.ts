// sinks/influx/: the InfluxDB sink. Ships the spool to /api/v2/write,
// several requests in flight, and advances the spool checkpoint only for
// lines InfluxDB confirmed, in spool order.
//
// Each chunk's lines are written straight into one Buffer (LineBody,
// lines.ts) and POSTed as it is over kept-alive connections (node:http, one
// agent, HUB_SINK_MAX_IN_FLIGHT sockets), not through the client's WriteApi:
// that one re-measures every line's UTF-8 length, joins the lines into a
// string and encodes it again, gzips what is larger than a threshold, and
// buffers and retries on its own (a bounded buffer that drops the oldest
// lines when full, which had to be switched off anyway). Answers become the
// client's own error types (HttpError, RequestTimedOutError), built as its
// transport builds them, so failures.ts reads them as before; retrying is
// done here, from the spool, which is the buffer. Records are read from the
// spool once: what one read brings beyond a chunk waits for the next chunk.
// Failures are sorted (failures.ts):
//   400/422  data error: pull out the lines the server names ("unable to
//            parse '<line>': <reason>"), else bisect to the offending lines;
//            dead-letter them with the server's reason, write the rest;
//   413      too large: split;
//   401/403  loud, retry slowly;
//   429/5xx/network: back off with full jitter, honouring Retry-After, and
//            end the backoff early once /ping answers again after an outage
//            (retry.ts).
// Imports: core, the spool's reader side (spool/reader.ts), the Sink
// interface, @influxdata/influxdb-client (its error types), node:http(s).
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { constants as zlibConstants, gzip as gzipCallback } from 'node:zlib';
import { HttpError, RequestTimedOutError } from '@influxdata/influxdb-client';
import { LogLimiter, type Logger } from '../../core/log.ts';
import type { HubMetrics } from '../../core/metrics.ts';
import { comparePos, type Position, type SpoolReader, type SpoolRecord } from '../../spool/reader.ts';
import type { Sink, SinkState, SinkStatus } from '../sink.ts';
import { DeadLetterFile, type DeadLetter } from './dead-letters.ts';
import { classify, linesNamedIn, type Outcome } from './failures.ts';
import { LineBody, SeriesPrefixes, type RefusedLine } from './lines.ts';
import { Backoff, authRetryDelayMs, pingInflux, retryDelayMs } from './retry.ts';

const gzip = promisify(gzipCallback);

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
  /** HUB_SINK_BATCH_LINES: lines per write request (whole spool records: a chunk may end a record past it). */
  batchLines?: number;
  /** HUB_SINK_MAX_IN_FLIGHT: write requests at once. */
  maxInFlight?: number;
  /**
   * Gzip request bodies of 64 KiB and more (level 1): for an InfluxDB at the
   * end of a slow link. Off by default: on loopback or a LAN it only costs
   * CPU on both ends (~0.3 us a line here, as much as building the line).
   */
  gzip?: boolean;
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

interface Chunk { end: Position; body: LineBody; refused: RefusedLine[]; done: boolean }

/** What a read of the spool brought: records, only a new position (an empty segment tail, a wider window), or nothing. */
type ReadResult = 'records' | 'moved' | 'none';

/** The widest spool read: a record is at most 2 segments (HUB_SPOOL_SEGMENT_BYTES, at most 1 GiB). */
const MAX_READ_BYTES = 2 ** 31;

/** Lines rejected in one request that are logged one by one; past it one summary line. */
const MAX_LOGGED_PER_REQUEST = 3;

/** Bodies smaller than this are sent as they are even with gzip on. */
const GZIP_MIN_BYTES = 64 * 1024;

/** Spool bytes per line assumed for a first read; then what the spool's records actually take (a few bytes a reading to ~30). */
const READ_BYTES_PER_LINE = 40;

export class InfluxSink implements Sink {
  readonly #settings: Settings;
  readonly #limiter: LogLimiter;
  readonly #deadLetters: DeadLetterFile;
  /** Kept-alive connections to InfluxDB, one per write in flight. */
  readonly #agent: HttpAgent;
  readonly #request: (options: RequestOptions, onResponse: (res: IncomingMessage) => void) => ClientRequest;
  readonly #target: RequestOptions;
  readonly #prefixes = new SeriesPrefixes();
  /** Where the next spool read starts: past every record read so far. */
  #readPos: Position;
  /** Records read and not yet put in a chunk (from #pendingAt on), and their readings. */
  #pending: SpoolRecord[] = [];
  #pendingAt = 0;
  #pendingLines = 0;
  /** Read window while a record larger than the usual one is ahead; else null. */
  #readBytes: number | null = null;
  /** Spool bytes a line took in the last read: reads are sized to bring about one chunk. */
  #bytesPerLine = READ_BYTES_PER_LINE;
  /** Bytes the last chunk's body took: the next one starts that large. */
  #bodyBytes = 1 << 16;
  /** Chunks dispatched and not yet committed, in spool order. */
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
      batchLines: 10_000, maxInFlight: 8, gzip: false, timeoutMs: 30_000, backoffBaseMs: 1000, backoffCapMs: 60_000, authRetryMs: 30_000,
      deadLetterMaxBytes: 32 << 20, logLinesPerMinute: 60, probeIntervalMs: 2000, random: Math.random, ...rest,
    };
    const url = new URL(options.url);
    const https = url.protocol === 'https:';
    if (!https && url.protocol !== 'http:') throw new Error(`influxdb: unsupported protocol ${url.protocol} in ${options.url}`);
    this.#agent = https
      ? new HttpsAgent({ keepAlive: true, maxSockets: this.#settings.maxInFlight })
      : new HttpAgent({ keepAlive: true, maxSockets: this.#settings.maxInFlight });
    this.#request = https ? httpsRequest : httpRequest;
    // A path in the URL is kept (a proxy's prefix); a trailing /api/v2 is not (the client did the same).
    let path = url.pathname.replace(/\/+$/, '');
    if (path.endsWith('/api/v2')) path = path.slice(0, -'/api/v2'.length);
    this.#target = {
      protocol: url.protocol, hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port || undefined, method: 'POST', agent: this.#agent,
      path: `${path}/api/v2/write?org=${encodeURIComponent(options.org)}&bucket=${encodeURIComponent(options.bucket)}&precision=ms`,
      headers: { authorization: `Token ${options.token}`, 'content-type': 'text/plain; charset=utf-8', 'user-agent': 'telemetry-hub' },
    };
    this.#readPos = options.spool.checkpoint;
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
    this.#agent.destroy();
    this.#backoff.dispose();
    this.#unsubscribe?.();
    this.#state = 'stopped';
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Sleeps `ms`, or until poked (new durable data, close). */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  /** Reads chunks from the spool and keeps up to maxInFlight writes going. */
  async #run(): Promise<void> {
    const running = new Set<Promise<void>>();
    for (;;) {
      const caughtUp = this.#caughtUp();
      // Closing: ship what is there until the deadline, then stop.
      if (this.#closing && (caughtUp || Date.now() >= this.#deadline)) break;
      if (running.size >= this.#settings.maxInFlight) {
        // Every write settles (answered, timed out, or given up at the deadline).
        await Promise.race(running);
        continue;
      }
      if (caughtUp) {
        await this.#sleep(1000); // poked when more is durable, or by close()
        continue;
      }
      const chunk = await this.#nextChunk();
      if (chunk === 'moved') continue;
      if (chunk === 'none') {
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

  /** Everything durable is in a chunk. */
  #caughtUp(): boolean {
    return this.#pendingAt >= this.#pending.length && this.#readAtHead();
  }

  #readAtHead(): boolean {
    const head = this.#settings.spool.head;
    return this.#readPos.segment === head.segment && this.#readPos.offset >= head.offset;
  }

  /** One spool read from #readPos, for about `lines` more lines; its records join #pending. */
  async #read(lines: number): Promise<ReadResult> {
    const from = this.#readPos;
    const budget = this.#readBytes ?? Math.ceil(Math.max(1, lines) * this.#bytesPerLine * 1.1);
    const { records, next } = await this.#settings.spool.readFrom(from, budget);
    // Past committed-but-empty segment tails (e.g. the segment a restart began).
    this.#readPos = next;
    if (!records.length) {
      if (comparePos(next, from) !== 0) return 'moved';
      if (this.#readAtHead() || budget >= MAX_READ_BYTES) return 'none';
      // A record larger than the read window (a big batch, a small
      // HUB_SINK_BATCH_LINES): readFrom returns nothing until the window
      // holds it whole, so widen it instead of waiting forever.
      this.#readBytes = Math.min(MAX_READ_BYTES, Math.max(budget, 1 << 16) * 2);
      return 'moved';
    }
    this.#readBytes = null;
    const pending = this.#pendingAt > 0 ? this.#pending.slice(this.#pendingAt) : this.#pending;
    let read = 0;
    for (const record of records) {
      pending.push(record);
      read += record.batch.values.length;
    }
    this.#pendingLines += read;
    const last = records[records.length - 1]!.end;
    if (last.segment === from.segment && read > 0) this.#bytesPerLine = Math.min(READ_BYTES_PER_LINE, Math.max(1, (last.offset - from.offset) / read));
    this.#pending = pending;
    this.#pendingAt = 0;
    return 'records';
  }

  /**
   * The next chunk: whole records, about batchLines lines, from what was read
   * before and at most one more read (records are read once: what the read
   * brings beyond the chunk waits for the next one).
   */
  async #nextChunk(): Promise<Chunk | 'moved' | 'none'> {
    const want = this.#settings.batchLines;
    if (this.#pendingLines < want && !this.#readAtHead()) {
      const read = await this.#read(want - this.#pendingLines);
      if (read !== 'records' && this.#pendingAt >= this.#pending.length) return read;
    }
    const body = new LineBody(this.#bodyBytes);
    const refused: RefusedLine[] = [];
    let end: Position | null = null;
    while (this.#pendingAt < this.#pending.length && body.count + refused.length < want) {
      const record = this.#pending[this.#pendingAt++]!;
      body.appendBatch(record.batch, refused, this.#prefixes);
      this.#pendingLines -= record.batch.values.length;
      end = record.end;
    }
    if (this.#pendingAt >= this.#pending.length) {
      this.#pending = [];
      this.#pendingAt = 0;
    }
    if (end === null) return 'none';
    this.#bodyBytes = Math.max(1 << 12, Math.ceil(body.byteLength * 1.05));
    return { end, body, refused, done: false };
  }

  /** Writes a chunk until it is confirmed (or its bad lines are dead-lettered). */
  async #write(chunk: Chunk): Promise<void> {
    if (chunk.refused.length) await this.#deadLetter(chunk.refused.map((refusal) => ({ status: null, reason: refusal.reason, line: refusal.line })));
    if (chunk.body.count) await this.#writeLines(chunk.body);
    chunk.done = true;
    // protocol: the checkpoint moves only over a confirmed prefix, in order:
    // chunks confirmed while an older one is still in flight wait for it.
    let upTo: Position | null = null;
    for (let oldest = this.#inflight[0]; oldest?.done; oldest = this.#inflight[0]) {
      this.#inflight.shift();
      upTo = oldest.end;
    }
    if (upTo !== null) this.#settings.spool.commit(upTo);
  }

  async #writeLines(body: LineBody): Promise<void> {
    let attempt = 0;
    for (;;) {
      const started = performance.now();
      const out = await this.#send(body);
      this.#settings.metrics.sinkWriteSeconds.observe((performance.now() - started) / 1000);
      switch (out.kind) {
        case 'ok':
          this.#linesWritten += body.count;
          this.#settings.metrics.sinkLinesWritten.inc(body.count);
          if (this.#state !== 'ok') this.#limiter.info('influxdb_state', { lines: body.count }, 'influxdb: writing');
          this.#state = 'ok';
          this.#lastError = null;
          this.#backoff.markAnswered();
          return;
        case 'data': {
          // The server named the lines it could not parse: take them out and
          // write the rest (two requests, where bisecting costs ~2 per bad line).
          // Points are idempotent: lines a partial write already stored are
          // simply written again.
          const lines = body.lines();
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
            body = LineBody.of(rest);
            continue;
          }
          if (lines.length === 1) {
            await this.#deadLetter([{ status: out.status, reason: out.reason, line: lines[0]! }]);
            return;
          }
          await this.#bisect(body);
          return;
        }
        case 'split':
          if (body.count === 1) {
            // 413 for a single line: nothing smaller to send.
            await this.#deadLetter([{ status: 413, reason: 'line too large for the server', line: body.lines()[0]! }]);
            return;
          }
          await this.#bisect(body);
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
  async #bisect(body: LineBody): Promise<void> {
    const mid = body.count >> 1;
    await this.#writeLines(body.slice(0, mid));
    await this.#writeLines(body.slice(mid, body.count));
  }

  /** At shutdown past the deadline: leave the lines in the spool (not committed). */
  #giveUpForNow(): Promise<never> {
    return Promise.reject(new Error('shutdown deadline: left in the spool'));
  }

  async #send(body: LineBody): Promise<Outcome> {
    try {
      let payload = body.bytes();
      let gzipped = false;
      if (this.#settings.gzip && payload.length >= GZIP_MIN_BYTES) {
        // The fastest level: ~9x smaller line protocol for a fraction of level 6's CPU.
        payload = await gzip(payload, { level: zlibConstants.Z_BEST_SPEED });
        gzipped = true;
      }
      await this.#post(payload, gzipped, false);
      return { kind: 'ok' };
    } catch (err) {
      return classify(err);
    }
  }

  /**
   * One POST to /api/v2/write. Resolves on 204 (and 201: InfluxDB 3's
   * partial success); rejects with what the client's transport and WriteApi
   * would have: HttpError (status, body, headers), RequestTimedOutError, or
   * the network error.
   */
  #post(payload: Buffer, gzipped: boolean, retried: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const headers: Record<string, string | number> = { ...(this.#target.headers as Record<string, string>), 'content-length': payload.length };
      if (gzipped) headers['content-encoding'] = 'gzip';
      const req = this.#request({ ...this.#target, headers }, (res) => readAnswer(res, resolve, reject));
      req.setTimeout(this.#settings.timeoutMs, () => req.destroy(new RequestTimedOutError()));
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive connection the server closed just as it was reused:
        // send once more on a new one (writes are idempotent).
        if (!retried && req.reusedSocket && err.code === 'ECONNRESET') {
          this.#post(payload, gzipped, true).then(resolve, reject);
          return;
        }
        reject(err);
      });
      req.end(payload);
    });
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

/** Settles a write from InfluxDB's answer, as the client's NodeHttpTransport and WriteApi did. */
function readAnswer(res: IncomingMessage, resolve: () => void, reject: (err: Error) => void): void {
  const status = res.statusCode ?? 600;
  res.on('aborted', () => reject(new Error('Response aborted')));
  res.on('error', reject);
  if (status < 300) {
    res.resume();
    if (status === 204 || status === 201) {
      resolve();
      return;
    }
    const message = `204 HTTP response status code expected, but ${status} returned`;
    const err = new HttpError(status, message, undefined, '0', undefined, undefined, res.headers);
    err.message = message;
    reject(err);
    return;
  }
  const json = String(res.headers['content-type']).startsWith('application/json');
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (text: string) => {
    body += text;
    if (!json && body.length > 1000) {
      body = body.slice(0, 1000);
      res.resume();
    }
  });
  res.on('end', () => {
    const header = res.headers['x-influxdb-error'];
    if (body === '' && header) body = String(header);
    reject(new HttpError(status, res.statusMessage, body, res.headers['retry-after'], res.headers['content-type'], undefined, res.headers));
  });
}
