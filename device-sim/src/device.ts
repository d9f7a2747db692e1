// A simulated device: the device side of protocol v1 (proto/README.md) over
// `ws`. Owns one device's session state machine, sampling, outbox, credit,
// resends and reconnect policy, plus the bad-actor behaviours that let the
// simulator load-test the hub's defences.
// Imports: @telemetry/proto, ws, and this package's sensors/outbox/stats.
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import {
  CloseCode, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, TOKEN_SUBPROTOCOL_PREFIX, decodeHubMessage, encodeDeviceMessage,
  parseRetryAfterMs, type Ack, type HubMessage, type MetricDef, type Notice, type Welcome,
} from '@telemetry/proto';
import { Outbox, type KeptBatch } from './outbox.ts';
import { defaultSensors, mulberry32, type SensorModel } from './sensors.ts';
import { Reservoir, emptyCounters, type SimCounters } from './stats.ts';

export type Behaviour = 'good' | 'ignore-window' | 'text-frames' | 'garbage' | 'oversize' | 'nan' | 'skewed-clock' | 'flood' | 'no-hello';
/** Every behaviour but 'good', in the order a fleet hands them out. */
export const BAD_BEHAVIOURS: readonly Behaviour[] = ['ignore-window', 'text-frames', 'garbage', 'oversize', 'nan', 'skewed-clock', 'flood', 'no-hello'];

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

export const FIRMWARE = 'device-sim/0.1';

export interface SimDeviceOptions {
  id: string;
  token: string;
  /** ws://host:port/v1/devices or wss://... */
  url: string;
  /** Readings per second per metric; 0 = an idle device (a session, no readings). Default 1. */
  rate?: number;
  /** A batch closes this long after its first reading (or earlier when full). Default 1000. */
  batchIntervalMs?: number;
  /** Token in `Authorization: Bearer` (default) or as a `bearer.<token>` subprotocol. */
  authVia?: 'header' | 'subprotocol';
  /** Extra CA (PEM) to trust for wss, e.g. the dev certificate's. */
  ca?: Buffer | string;
  /** Source IP for the connection (spreads a fleet over 127.0.0.x). */
  localAddress?: string;
  /** Seeds the sensors and the jitter. Default: a hash of the id. */
  seed?: number;
  /** Added to the device clock (a wrong RTC). 'skewed-clock' defaults it to +1 h. */
  clockOffsetMs?: number;
  behaviour?: Behaviour;
  /** Batches kept at most; beyond, the oldest unsent one is dropped (and counted). Default 10,000. */
  outboxCap?: number;
  /** Backoff: attempt n waits random(0, min(cap, base * 2^(n-1))). Defaults 1000 and 30,000. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Keep reconnecting after a fatal close or refusal (a fleet's bad actors). Default false. */
  reconnectOnFatal?: boolean;
  /** With reconnectOnFatal: the least wait after a fatal close. Default backoffCapMs. */
  fatalBackoffMs?: number;
  /** Close a connection whose Welcome has not come this long after the upgrade (§11). Default 15,000. */
  welcomeTimeoutMs?: number;
  /** Treat this long without an Ack while batches are in flight as a dead session (§7). Default 60,000. */
  ackTimeoutMs?: number;
  /** Run an own sampling timer. A Fleet turns this off and drives tick() from one shared ticker. Default true. */
  autoTick?: boolean;
  sensors?: SensorModel[];
  /** Ack latency samples go here (a fleet shares one). */
  latency?: Reservoir;
  /** Randomness for jitter and bad behaviours (default: seeded from `seed`). */
  random?: () => number;
}

export interface SimDeviceStats extends SimCounters {
  connected: boolean;
  /** Batches kept (unacked), in flight or not. */
  pending: number;
  /** Batches sent in this session and not yet acked. */
  inflight: number;
  credit: number;
  /** Ack latency samples taken (send -> ack, ms). */
  latencySamples: number;
}

export interface SimDeviceEvents {
  welcome: [Welcome];
  ack: [Ack];
  notice: [Notice];
  /** A session or connection attempt ended (code 1006 when there was no close frame; 0 for an HTTP refusal). */
  close: [{ code: number; reason: string; status?: number }];
  /** A reconnect was scheduled. */
  reconnecting: [{ attempt: number; delayMs: number }];
  /** The device gave up (fatal close or refusal) or stop() was called. */
  stopped: [];
}

type State = 'idle' | 'connecting' | 'awaiting-welcome' | 'open' | 'closed' | 'stopped';

/** Bytes per reading assumed when capping a batch by max_message_bytes (id + offset + double, with room). */
const BYTES_PER_READING = 16;

export class SimDevice extends EventEmitter<SimDeviceEvents> {
  readonly id: string;
  readonly counters: SimCounters = emptyCounters();
  readonly latency: Reservoir;
  lastClose: { code: number; reason: string } | null = null;
  lastNotice: Notice | null = null;
  welcome: Welcome | null = null;

  readonly #o: SimDeviceOptions;
  readonly #behaviour: Behaviour;
  readonly #clockOffsetMs: number;
  readonly #sensors: SensorModel[];
  readonly #random: () => number;
  readonly #outbox: Outbox;
  #rate: number;
  #batchIntervalMs: number;

  #ws: WebSocket | null = null;
  #state: State = 'idle';
  #started = false;
  #ownTicker: NodeJS.Timeout | null = null;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #seq = 0;
  #credit = 0;
  #window = 0;
  /** Metric ids defined in this session (protocol: ids are interned per session, §5.7). */
  #defined: boolean[] = [];
  #definedCount = 0;
  #attempt = 0;
  #retryHintMs = 0;
  #fatal = false;
  #reconnectDelayMs = 0;
  /** Latency samples this device took (the reservoir may be a fleet's, shared). */
  #latencyCount = 0;
  /** performance.now() of the upgrade, and of the last ack progress (for the timeouts). */
  #openedAt = 0;
  #progressAt = 0;
  /** performance.now() of the last frame from the hub (data or ping). */
  #heardAt = 0;
  /** Readings-per-second token bucket mirroring the hub's (§10), so catch-up stays under the limit. */
  #tokens = 0;
  #tokensAt = 0;

  // The open batch, in growable columns: no allocation per reading.
  #lastSampleAt = 0;
  #n = 0;
  #pMetrics = new Uint16Array(64);
  #pTimes = new Float64Array(64);
  #pValues = new Float64Array(64);

  constructor(opts: SimDeviceOptions) {
    super();
    this.id = opts.id;
    this.#o = opts;
    this.#behaviour = opts.behaviour ?? 'good';
    this.#rate = opts.rate ?? 1;
    this.#batchIntervalMs = opts.batchIntervalMs ?? 1000;
    if (!(this.#rate >= 0)) throw new RangeError(`${this.id}: rate must be >= 0 (got ${this.#rate})`);
    if (!(this.#batchIntervalMs > 0)) throw new RangeError(`${this.id}: batchIntervalMs must be > 0 (got ${this.#batchIntervalMs})`);
    this.#clockOffsetMs = opts.clockOffsetMs ?? (this.#behaviour === 'skewed-clock' ? 3_600_000 : 0);
    const seed = opts.seed ?? hashId(opts.id);
    this.#random = opts.random ?? mulberry32(seed ^ 0x9e3779b9);
    this.#sensors = opts.sensors ?? defaultSensors(seed);
    if (this.#sensors.length > 65_535) throw new RangeError(`${this.id}: at most 65,535 sensors`);
    this.#outbox = new Outbox(opts.outboxCap ?? 10_000);
    this.latency = opts.latency ?? new Reservoir(10_000, this.#random);
  }

  /** Welcome received and the session not yet closed. */
  get connected(): boolean { return this.#state === 'open'; }
  /** Stopped for good: stop() was called, or a fatal close without reconnectOnFatal. */
  get stopped(): boolean { return this.#state === 'stopped'; }
  /** The last close or refusal was fatal. */
  get fatal(): boolean { return this.#fatal; }
  get behaviour(): Behaviour { return this.#behaviour; }
  /** Batches kept (unacked). */
  get outboxSize(): number { return this.#outbox.length; }
  /** Batches sent in this session awaiting an ack. */
  get inflight(): number { return this.#outbox.inflight; }
  get credit(): number { return this.#credit; }
  /** The last seq this device used (0 = none yet). */
  get lastSeq(): number { return this.#seq; }
  /** Delay of the most recently scheduled reconnect, ms. */
  get reconnectDelayMs(): number { return this.#reconnectDelayMs; }
  /** Device clock, Unix ms. */
  now(): number { return Date.now() + this.#clockOffsetMs; }

  get stats(): SimDeviceStats {
    return {
      ...this.counters, closes: { ...this.counters.closes }, notices: { ...this.counters.notices },
      connected: this.connected, pending: this.#outbox.length, inflight: this.#outbox.inflight, credit: this.#credit,
      latencySamples: this.#latencyCount,
    };
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#lastSampleAt = this.now();
    if (this.#o.autoTick ?? true) {
      const tickMs = Math.max(10, Math.min(100, Math.floor(this.#batchIntervalMs / 4)));
      this.#ownTicker = setInterval(() => this.tick(), tickMs);
    }
    this.#connect();
  }

  /**
   * Closes cleanly (1000) and stops sampling, timers and reconnects. Kept
   * batches stay kept. Resolves once the socket has closed (at most ~1 s).
   */
  stop(): Promise<void> {
    if (this.#ownTicker) clearInterval(this.#ownTicker);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#ownTicker = this.#reconnectTimer = null;
    const wasStopped = this.#state === 'stopped';
    this.#state = 'stopped';
    if (!wasStopped) this.emit('stopped');
    const ws = this.#ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      // Bounded: a hub that never answers the close frame must not hold us.
      const timer = setTimeout(() => { ws.terminate(); resolve(); }, 1000);
      timer.unref();
      ws.once('close', () => { clearTimeout(timer); resolve(); });
      // Mid-handshake: let the upgrade finish (the 'open' handler closes it) rather than
      // aborting the request, which can leave a half-open socket behind.
      if (ws.readyState === WebSocket.OPEN) ws.close(CloseCode.NORMAL, 'device stopping');
      else if (ws.readyState !== WebSocket.CONNECTING) ws.terminate();
    });
  }

  /** Stops producing readings (the open batch is closed); kept batches are still delivered. */
  stopSampling(): void {
    this.#closeBatch();
    this.#rate = 0;
    this.#pump();
  }

  /** Drops the connection without a close frame (a lost link); reconnects as usual. */
  dropConnection(): void {
    this.#ws?.terminate();
  }

  /**
   * Samples the sensors up to now, closes the batch when it is due or full,
   * sends what credit allows and checks the session timeouts. Driven by the
   * device's own timer or by a Fleet's shared ticker; cheap when nothing is due.
   * @param wallNow Date.now(), when the caller already has it.
   */
  tick(wallNow = Date.now()): void {
    if (!this.#started || this.#state === 'stopped') return;
    if (this.#rate > 0) this.#sample(wallNow + this.#clockOffsetMs);
    if (this.#state === 'open') {
      this.#pump();
      this.#checkIdle();
    } else if (this.#state === 'awaiting-welcome') this.#checkWelcomeTimeout();
  }

  // ---- sampling ---------------------------------------------------------------

  #sample(now: number): void {
    // A flooder goes far past the hub's default 1000 readings/s per device.
    const rate = this.#behaviour === 'flood' ? Math.max(this.#rate * 10, 500) : this.#rate;
    const step = 1000 / rate;
    const batchMs = this.#batchIntervalMs;
    // A saturated simulator skips what it cannot generate (and says so)
    // rather than building an unbounded backlog.
    const behind = now - this.#lastSampleAt;
    if (behind > 5 * batchMs && behind > 5 * step) {
      const skip = Math.floor((behind - batchMs) / step);
      this.#lastSampleAt += skip * step;
      this.counters.readingsSkipped += skip * this.#sensors.length;
    }
    const max = this.#maxBatchReadings();
    while (this.#lastSampleAt + step <= now) {
      if (this.#n + this.#sensors.length > max) this.#closeBatch();
      this.#lastSampleAt += step;
      this.#sampleInstant(Math.round(this.#lastSampleAt));
    }
    if (this.#n > 0 && now - this.#pTimes[0]! >= batchMs) this.#closeBatch();
  }

  /** Readings per batch that keep within Welcome's limits (defaults before the first Welcome). */
  #maxBatchReadings(): number {
    const lim = this.welcome?.limits;
    const byBytes = Math.floor((lim?.maxMessageBytes || 262_144) / BYTES_PER_READING);
    return Math.max(this.#sensors.length, Math.min(lim?.maxBatchReadings || 10_000, byBytes));
  }

  #sampleInstant(t: number): void {
    const k = this.#sensors.length;
    if (this.#n + k > this.#pTimes.length) this.#grow(this.#n + k);
    const nan = this.#behaviour === 'nan';
    for (let i = 0; i < k; i++) {
      let v = this.#sensors[i]!.sample(t);
      if (nan && this.#random() < 0.1) v = this.#random() < 0.5 ? Number.NaN : (this.#random() < 0.5 ? Infinity : -Infinity);
      this.#pMetrics[this.#n] = i;
      this.#pTimes[this.#n] = t;
      this.#pValues[this.#n] = v;
      this.#n++;
    }
    this.counters.readingsGenerated += k;
  }

  #grow(need: number): void {
    let cap = this.#pTimes.length * 2;
    while (cap < need) cap *= 2;
    const m = new Uint16Array(cap); m.set(this.#pMetrics); this.#pMetrics = m;
    const t = new Float64Array(cap); t.set(this.#pTimes); this.#pTimes = t;
    const v = new Float64Array(cap); v.set(this.#pValues); this.#pValues = v;
  }

  #closeBatch(): void {
    const n = this.#n;
    if (n === 0) return;
    const base = this.#pTimes[0]!;
    const offsets = new Int32Array(n);
    for (let i = 0; i < n; i++) offsets[i] = this.#pTimes[i]! - base;
    const kept: KeptBatch = {
      seq: ++this.#seq, baseTimeMs: base, metrics: this.#pMetrics.slice(0, n), offsets, values: this.#pValues.slice(0, n),
      sentAt: 0, everSent: false,
    };
    this.#n = 0;
    const dropped = this.#outbox.push(kept);
    if (dropped) {
      // Finite device memory: the oldest batch not in flight goes (§11).
      this.counters.batchesDropped++;
      this.counters.readingsDropped += dropped.values.length;
    }
  }

  // ---- sending ----------------------------------------------------------------

  #pump(): void {
    const ws = this.#ws;
    if (this.#state !== 'open' || !ws) return;
    const ignoreWindow = this.#behaviour === 'ignore-window';
    // protocol §7: never more in flight than the latest credit (which is <= window).
    const limit = ignoreWindow ? this.#window * 4 : Math.min(this.#credit, this.#window);
    const paced = !ignoreWindow && this.#behaviour !== 'flood';
    const wall = performance.now();
    if (paced) this.#refill(wall);
    let b: KeptBatch | undefined;
    while (this.#outbox.inflight < limit && (b = this.#outbox.nextUnsent)) {
      const cost = b.values.length;
      // A batch bigger than the whole bucket goes when the bucket is full, or it would never go.
      if (paced && cost > this.#tokens && this.#tokens < this.#bucketSize()) break;
      if (paced) this.#tokens -= cost;
      if (this.#outbox.inflight === 0) this.#progressAt = wall;
      ws.send(this.#encode(b, this.now()));
      this.#outbox.markSent(wall);
      this.counters.batchesSent++;
      if (b.everSent) this.counters.batchesResent++;
    }
    this.#checkAckTimeout(wall);
  }

  #bucketSize(): number {
    return this.welcome?.limits?.readingsBurst || Number.POSITIVE_INFINITY;
  }

  #refill(wall: number): void {
    const rate = this.welcome?.limits?.maxReadingsPerSecond;
    if (!rate) { this.#tokens = Number.POSITIVE_INFINITY; return; }
    this.#tokens = Math.min(this.#bucketSize(), this.#tokens + ((wall - this.#tokensAt) * rate) / 1000);
    this.#tokensAt = wall;
  }

  #encode(b: KeptBatch, sentTimeMs: number): Uint8Array {
    let defs: MetricDef[] | undefined;
    if (this.#definedCount < this.#sensors.length) {
      // protocol §5.7: the first batch of a session that uses an id carries its definition.
      for (let i = 0; i < b.metrics.length; i++) {
        const m = b.metrics[i]!;
        if (this.#defined[m]) continue;
        this.#defined[m] = true;
        this.#definedCount++;
        (defs ??= []).push({ id: m, name: this.#sensors[m]!.name, unit: this.#sensors[m]!.unit });
      }
    }
    // protobufjs writes packed columns by index, so the typed arrays go in as they are.
    return encodeDeviceMessage({
      batch: {
        seq: b.seq, baseTimeMs: b.baseTimeMs, metricDefs: defs, metricIds: b.metrics as unknown as number[],
        timeOffsetsMs: b.offsets as unknown as number[], values: b.values as unknown as number[],
        sentTimeMs, // §8: the time of this send, resends included
      },
    });
  }

  // ---- connection -------------------------------------------------------------

  #connect(): void {
    if (this.#state === 'stopped') return;
    this.#state = 'connecting';
    this.#fatal = false;
    const protocols = [DEVICE_SUBPROTOCOL];
    const headers: Record<string, string> = {};
    if (this.#o.authVia === 'subprotocol') protocols.push(TOKEN_SUBPROTOCOL_PREFIX + this.#o.token);
    else headers.authorization = `Bearer ${this.#o.token}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.#o.url, protocols, {
        headers, ca: this.#o.ca, localAddress: this.#o.localAddress,
        perMessageDeflate: false, // the hub never negotiates it (§1)
        handshakeTimeout: this.#o.welcomeTimeoutMs ?? 15_000,
      });
    } catch (err) {
      // A URL ws rejects synchronously is a configuration bug: retrying will not fix it.
      this.#count(`error:${(err as Error).name}`);
      this.#fatal = true;
      this.#afterClose();
      return;
    }
    ws.binaryType = 'nodebuffer';
    this.#ws = ws;
    let opened = false;
    let refusal: number | undefined;
    let error: string | undefined;

    ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      refusal = status;
      this.#count(`http-${status}`);
      const hint = retryAfterHeaderMs(res.headers['retry-after']);
      if (hint !== undefined && (status === 429 || status === 503)) this.#retryHintMs = Math.max(this.#retryHintMs, hint);
      if (FATAL_HTTP_STATUSES.has(status)) this.#fatal = true;
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      opened = true;
      if (this.#state === 'stopped') { ws.close(CloseCode.NORMAL); return; }
      this.#state = 'awaiting-welcome';
      this.#openedAt = performance.now();
      this.#defined = [];
      this.#definedCount = 0;
      if (this.#behaviour === 'no-hello') return; // opens and stays silent: the hub's handshake timeout
      // protocol §4: Hello first, exactly once.
      ws.send(encodeDeviceMessage({ hello: { deviceId: this.id, protocolVersion: PROTOCOL_VERSION, firmware: FIRMWARE, deviceTimeMs: this.now() } }));
    });
    ws.on('ping', () => { this.#heardAt = performance.now(); });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.#heardAt = performance.now();
      // After stop() a Welcome may still arrive while the close handshake runs: it must not reopen the session.
      if (this.#state === 'stopped' || this.#ws !== ws) return;
      if (!isBinary) return; // the hub sends only binary frames; ignore anything else
      let m: HubMessage;
      try { m = decodeHubMessage(data); } catch { ws.terminate(); return; }
      this.#onMessage(ws, m);
    });
    ws.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.name; });
    ws.on('close', (code, reasonBuf) => {
      if (this.#ws !== ws) return;
      this.#ws = null;
      const reason = reasonBuf.toString();
      if (refusal !== undefined) {
        this.emit('close', { code: 0, reason: `http ${refusal}`, status: refusal });
      } else if (!opened) {
        if (this.#state === 'stopped') return; // stop() aborted the attempt: nothing to count
        // Refused TCP, DNS, TLS or a handshake timeout: no session existed.
        this.#count(`error:${error ?? 'handshake'}`);
        this.emit('close', { code, reason: error ?? reason });
      } else {
        this.lastClose = { code, reason };
        this.#count(String(code));
        const hint = parseRetryAfterMs(reason);
        if (hint !== undefined) this.#retryHintMs = Math.max(this.#retryHintMs, hint);
        if (FATAL_CLOSE_CODES.has(code)) this.#fatal = true;
        this.emit('close', { code, reason });
      }
      this.#afterClose();
    });
  }

  #afterClose(): void {
    this.#outbox.endSession(); // a close never means unacked data was stored (§11)
    if (this.#state === 'stopped') return;
    this.#state = 'closed';
    this.#scheduleReconnect();
  }

  #onMessage(ws: WebSocket, m: HubMessage): void {
    if (m.welcome) {
      const w = m.welcome;
      this.welcome = w;
      this.#window = w.window ?? 0;
      this.#credit = w.credit ?? 0;
      const lastSeq = Number(w.lastSeq ?? 0);
      // protocol §6: what the hub stored needs no resend; and never reuse a seq it holds.
      this.#outbox.ackThrough(lastSeq, (b) => this.#countAcked(b));
      if (this.#seq < lastSeq) this.#seq = lastSeq;
      if (this.counters.sessions === 0) { this.#tokens = this.#bucketSize(); this.#tokensAt = performance.now(); }
      this.#state = 'open';
      this.#attempt = 0; // §11: reset after each Welcome, not on a bare 101
      this.#retryHintMs = 0;
      this.#progressAt = performance.now();
      this.counters.sessions++;
      this.emit('welcome', w);
      this.#misbehave(ws);
      this.#pump();
    } else if (m.ack) {
      const a = m.ack;
      this.#credit = a.credit ?? 0;
      if (this.#credit < this.#window) this.counters.reducedCreditAcks++;
      for (const r of a.reports ?? []) {
        this.counters.hubNonFiniteDropped += r.nonFiniteDropped ?? 0;
        this.counters.hubSkewDropped += r.skewDropped ?? 0;
        this.counters.hubSkewCorrected += r.skewCorrected ?? 0;
      }
      const now = performance.now();
      // Cumulative (§5.8): a credit-only ack repeats an old seq and removes nothing.
      const n = this.#outbox.ackThrough(Number(a.seq ?? 0), (b) => {
        if (b.sentAt) { this.latency.add(now - b.sentAt); this.#latencyCount++; }
        this.#countAcked(b);
      });
      if (n > 0) this.#progressAt = now;
      this.emit('ack', a);
      this.#pump();
    } else if (m.notice) {
      const nt = m.notice;
      this.lastNotice = nt;
      const key = String(nt.code ?? 0);
      this.counters.notices[key] = (this.counters.notices[key] ?? 0) + 1;
      if (nt.retryAfterMs) this.#retryHintMs = Math.max(this.#retryHintMs, nt.retryAfterMs);
      this.emit('notice', nt);
    } else if (m.command) {
      const c = m.command;
      let ok = false;
      let message = 'unknown command';
      if (c.config) {
        // The open batch keeps the old settings; sampling restarts now (no backlog from the old rate).
        this.#closeBatch();
        this.#lastSampleAt = this.now();
        if (c.config.sampleIntervalMs) this.#rate = 1000 / c.config.sampleIntervalMs;
        if (c.config.batchIntervalMs) this.#batchIntervalMs = c.config.batchIntervalMs;
        ok = true;
        message = 'applied';
      }
      // §12: answer every command; an unknown member gets ok = false.
      ws.send(encodeDeviceMessage({ commandResult: { id: c.id ?? 0, ok, message } }));
    }
    // §13: any other HubMessage member is ignored.
  }

  #countAcked(b: KeptBatch): void {
    this.counters.batchesAcked++;
    this.counters.readingsAcked += b.values.length;
  }

  #checkWelcomeTimeout(): void {
    if (this.#behaviour === 'no-hello') return; // silent on purpose: the hub's 4001 ends it
    if (performance.now() - this.#openedAt < (this.#o.welcomeTimeoutMs ?? 15_000)) return;
    this.#count('welcome-timeout');
    this.#ws?.terminate();
  }

  /**
   * The hub pings a silent session before idle_timeout_ms (§1), so hearing
   * nothing for longer means the link is dead without a close (a half-open
   * TCP connection): drop it and reconnect.
   */
  #checkIdle(): void {
    const idle = this.welcome?.limits?.idleTimeoutMs;
    if (!idle || performance.now() - this.#heardAt < idle + 10_000) return;
    this.#count('idle-timeout');
    this.#heardAt = performance.now();
    this.#ws?.terminate();
  }

  #checkAckTimeout(wall: number): void {
    if (this.#outbox.inflight === 0 || wall - this.#progressAt < (this.#o.ackTimeoutMs ?? 60_000)) return;
    this.#count('ack-timeout');
    this.#progressAt = wall;
    this.#ws?.terminate();
  }

  /** The bad actors, right after Welcome. */
  #misbehave(ws: WebSocket): void {
    switch (this.#behaviour) {
      case 'text-frames':
        ws.send('{"hello":"I am JSON"}');
        break;
      case 'garbage': {
        const bytes = Buffer.alloc(64);
        for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(this.#random() * 256);
        bytes[0] = (bytes[0]! & 0xf8) | 7; // wire type 7 does not exist: never a valid envelope by accident
        ws.send(bytes);
        break;
      }
      case 'oversize':
        ws.send(Buffer.alloc((this.welcome?.limits?.maxMessageBytes || 262_144) + 1));
        break;
      case 'ignore-window': {
        // Enough one-instant batches to go 4x past the window at once.
        this.#closeBatch();
        const t = Math.round(this.now());
        for (let i = 0; i < this.#window * 4; i++) {
          this.#sampleInstant(t);
          this.#closeBatch();
        }
        break;
      }
      default:
        break;
    }
  }

  #scheduleReconnect(): void {
    if (this.#fatal && !this.#o.reconnectOnFatal) {
      this.#state = 'stopped';
      if (this.#ownTicker) clearInterval(this.#ownTicker);
      this.#ownTicker = null;
      this.emit('stopped');
      return;
    }
    this.counters.reconnects++;
    this.#attempt++;
    const base = this.#o.backoffBaseMs ?? 1000;
    const cap = this.#o.backoffCapMs ?? 30_000;
    // Full jitter (§11; AWS "Exponential Backoff And Jitter").
    let delay = this.#random() * Math.min(cap, base * 2 ** Math.min(30, this.#attempt - 1));
    // A "fix your device" close: no faster than the long backoff (§9). Retry hints: at least the hint.
    const floor = Math.max(this.#fatal ? (this.#o.fatalBackoffMs ?? cap) : 0, this.#retryHintMs);
    // Hints already carry the hub's jitter; add a little of our own so a fleet refused together spreads out.
    if (floor > 0) delay = Math.max(delay, floor + this.#random() * Math.min(1000, floor));
    this.#retryHintMs = 0;
    this.#reconnectDelayMs = delay;
    this.#reconnectTimer = setTimeout(() => { this.#reconnectTimer = null; this.#connect(); }, delay);
    this.emit('reconnecting', { attempt: this.#attempt, delayMs: delay });
  }

  #count(key: string): void {
    this.counters.closes[key] = (this.counters.closes[key] ?? 0) + 1;
  }
}

/** HTTP Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; ms, or undefined. */
export function retryAfterHeaderMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** FNV-1a of the id: a stable per-device seed. */
export function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
