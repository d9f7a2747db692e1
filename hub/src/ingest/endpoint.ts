// ingest/: the device endpoint /v1/devices. Owns the upgrade (auth, address
// and admission limits), sessions (Hello/Welcome, metric interning, clock
// offset), per-device state that outlives sessions (readings bucket, metric
// names), per-batch validation and limits, duplicate detection, and the ack
// path (acks only after the store says durable, many per tick, corked).
// Every log line a device can cause goes through a LogLimiter.
// Imports: proto, auth, spool (the BatchStore seam), metrics, uws types.
// It never imports a concrete store, main.ts or http/.
import {
  CloseCode, NoticeCode, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, TOKEN_SUBPROTOCOL_PREFIX, closeReason,
  decodeDeviceMessage, encodeHubMessage, type BatchReport, type Command, type CommandResult, type DeviceMessage, type Hello,
} from '@telemetry/proto';
import type { DeviceAuthenticator } from '../auth/registry.ts';
import type { HubConfig } from '../core/config.ts';
import { LogLimiter, type Logger } from '../core/log.ts';
import type { HubMetrics, LimitName, RefusalReason } from '../core/metrics.ts';
import type { AcceptedBatch } from '../core/batch.ts';
import type { BatchStore } from '../spool/store.ts';
import type { LiveFeed } from '../live/state.ts';
import type { UwsTypes } from '../core/uws.ts';
import { ClockOffsetEstimator } from './clock.ts';
import { TokenBucket } from '../core/token-bucket.ts';
import { AddressCounter, jitteredRetryMs } from './limits.ts';
import { MetricNames, MetricTable, defineMetrics, validateBatch, type ValidationLimits } from './validate.ts';

type WebSocket = UwsTypes.WebSocket<SocketData>;
type TemplatedApp = UwsTypes.TemplatedApp;
type HttpResponse = UwsTypes.HttpResponse;

interface SocketData { session: Session }

const MAX_FIRMWARE_BYTES = 128;
/**
 * Command ids a session remembers as sent and not yet answered; past it the
 * oldest is forgotten (its late result counts as unknown), so a device that
 * never answers cannot block newer commands nor grow the list.
 */
export const MAX_OUTSTANDING_COMMANDS = 16;
/** A CommandResult message is logged up to this many characters. */
export const MAX_LOGGED_MESSAGE_CHARS = 200;
/** Close codes reported as metric labels; anything else is "other" (bounded cardinality). */
const KNOWN_CODES: ReadonlySet<number> = new Set<number>([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013, ...(Object.values(CloseCode) as number[])]);

/** Frames larger than this are dropped by uWS without a close frame. */
export function hardMessageCap(maxMessageBytes: number): number {
  return Math.max(2 * maxMessageBytes, maxMessageBytes + 4096);
}

export interface IngestDeps {
  readonly config: HubConfig;
  readonly store: BatchStore;
  readonly auth: DeviceAuthenticator;
  readonly metrics: HubMetrics;
  readonly log: Logger;
  readonly uws: typeof UwsTypes;
  readonly now: () => number;
  /** Called once per batch when it is durable (not for duplicates). */
  readonly onDurable?: (batch: AcceptedBatch) => void;
  /** The live path (dashboards): told about durable batches, sessions and ack latency. */
  readonly live?: LiveFeed;
  /** Rate limit for the log lines devices can cause (default: HUB_LOG_LINES_PER_MIN on `log`). */
  readonly logLimiter?: LogLimiter;
}

class Session {
  ws: WebSocket | null = null;
  state: 'upgrading' | 'awaiting-hello' | 'open' | 'closed' = 'upgrading';
  openedAtMs = 0;
  /** The device's state that outlives sessions (set when the socket opens). */
  device: DeviceState | null = null;
  readonly metricTable = new MetricTable();
  /** Ids of Commands sent in this session and not answered yet, oldest first (at most MAX_OUTSTANDING_COMMANDS). */
  readonly commandIds: number[] = [];
  readonly clock = new ClockOffsetEstimator();
  /** Seqs received in this session and not yet acked, with their receive times. */
  readonly inflightSeq: number[] = [];
  readonly inflightAt: number[] = [];
  readonly reports: BatchReport[] = [];
  lastAckSeq = 0;
  lastCredit = 0;
  firmware = '';
  welcomed = false;
  /** Notices already sent this session (each once). */
  toldSkew = false;
  toldBackpressure = false;
  /** Close accounting done (exactly once, whoever closed). */
  gone = false;
  /** The hub ended the session (not the device or the network). */
  closedByHub = false;
  constructor(readonly id: string, readonly deviceId: string, readonly tags: Readonly<Record<string, string>>, readonly addr: string) {}
}

interface DeviceState {
  session: Session | null;
  readonly bucket: TokenBucket;
  /** Metric names the device has defined in any session while the hub runs (at most HUB_MAX_METRICS_PER_DEVICE), interned fleet-wide. */
  readonly metricNames: Set<string>;
}

export interface IngestStats {
  connections: number;
  sessions: number;
  addresses: number;
  pendingAppends: number;
}

export class DeviceEndpoint {
  readonly #config: HubConfig;
  readonly #deps: IngestDeps;
  readonly #limits: ValidationLimits;
  readonly #devices = new Map<string, DeviceState>();
  readonly #sockets = new Set<Session>();
  readonly #awaitingHello = new Set<Session>();
  readonly #addresses = new AddressCounter();
  readonly #admission: TokenBucket;
  readonly #dirty = new Set<Session>();
  #flushScheduled = false;
  #pendingAppends = 0;
  #appendsSettled: (() => void)[] = [];
  #sessionCounter = 0;
  readonly #instance = Math.random().toString(36).slice(2, 8);
  #shuttingDown = false;
  #timers: NodeJS.Timeout[] = [];
  #unsubscribeRevoked: () => void;
  #nextCommandId = 1;
  #liveFailed = false;
  /** Every metric name in use fleet-wide (HUB_MAX_METRIC_NAMES), shared by all devices. */
  readonly #metricNames: MetricNames;
  /** Log lines devices can cause go through here (HUB_LOG_LINES_PER_MIN per kind). */
  readonly #deviceLog: LogLimiter;
  readonly #commandResultOk: { inc(): void };
  readonly #commandResultFailed: { inc(): void };
  readonly #commandResultUnknown: { inc(): void };

  constructor(deps: IngestDeps) {
    this.#deps = deps;
    this.#config = deps.config;
    const c = this.#config;
    this.#limits = {
      maxBatchReadings: c.maxBatchReadings, maxMetricsPerSession: c.maxMetricsPerSession,
      maxMetricNameBytes: c.maxMetricNameBytes, maxMetricsPerDevice: c.maxMetricsPerDevice,
      maxFutureSkewMs: c.maxFutureSkewMs, maxPastSkewMs: c.maxPastSkewMs, skewPolicy: c.skewPolicy,
    };
    const m = deps.metrics;
    this.#metricNames = new MetricNames(c.maxMetricNames, (n) => m.metricNames.set(n));
    this.#deviceLog = deps.logLimiter ?? new LogLimiter(deps.log, {
      perMinute: c.logLinesPerMinute, now: deps.now, onSuppressed: (kind, n) => m.logLinesSuppressed.labels(kind).inc(n),
    });
    this.#commandResultOk = m.commandResults.labels('ok');
    this.#commandResultFailed = m.commandResults.labels('failed');
    this.#commandResultUnknown = m.commandResults.labels('unknown');
    this.#admission = new TokenBucket(c.admissionRate, c.admissionBurst, deps.now());
    this.#unsubscribeRevoked = deps.auth.onRevoked((ids) => {
      for (const id of ids) {
        const s = this.#devices.get(id)?.session;
        if (s) this.#close(s, CloseCode.DEVICE_REVOKED, 'device registration revoked', undefined, null);
      }
    });
  }

  /** Registers the /v1/devices route on a uWS app and starts the session timers. */
  attach(app: TemplatedApp, path: string): void {
    const c = this.#config;
    app.ws<SocketData>(path, {
      // protocol: no permessage-deflate on the device endpoint (no decompression bombs).
      compression: this.#deps.uws.DISABLED,
      // The hub enforces maxMessageBytes itself to answer with a proper 1009;
      // uWS only cuts off (no close frame) what is over twice that, from the
      // frame header, before buffering it.
      maxPayloadLength: hardMessageCap(c.maxMessageBytes),
      idleTimeout: c.idleTimeoutS,
      sendPingsAutomatically: true,
      // Acks are small; a device that stops reading them is dropped, not buffered for.
      maxBackpressure: 256 * 1024,
      closeOnBackpressureLimit: 1,
      upgrade: (res, req, context) => this.#upgrade(res, req, context),
      open: (ws) => this.#open(ws),
      message: (ws, msg, isBinary) => this.#message(ws, msg, isBinary),
      close: (ws, code) => this.#closed(ws.getUserData().session, code),
    });
    const sweep = setInterval(() => this.#sweep(), Math.max(50, Math.min(1000, Math.floor(c.handshakeTimeoutMs / 4))));
    sweep.unref();
    const credit = setInterval(() => this.#refreshCredit(), 250);
    credit.unref();
    this.#timers.push(sweep, credit);
  }

  stats(): IngestStats {
    let sessions = 0;
    for (const s of this.#sockets) if (s.state === 'open') sessions++;
    return { connections: this.#sockets.size, sessions, addresses: this.#addresses.addresses, pendingAppends: this.#pendingAppends };
  }

  /**
   * Sends a downlink command to a connected device; returns its id, or null
   * when offline. The session remembers the last MAX_OUTSTANDING_COMMANDS ids
   * it was sent: only results for those are counted as ok/failed and logged.
   */
  sendCommand(deviceId: string, cmd: Omit<Command, 'id'>): number | null {
    const s = this.#devices.get(deviceId)?.session;
    if (!s || s.state !== 'open' || !s.ws) return null;
    const id = this.#nextCommandId++;
    if (s.commandIds.push(id) > MAX_OUTSTANDING_COMMANDS) s.commandIds.shift();
    const ws = s.ws;
    ws.cork(() => ws.send(encodeHubMessage({ command: { ...cmd, id } }), true));
    return id;
  }

  // ---- upgrade --------------------------------------------------------------

  #upgrade(res: HttpResponse, req: UwsTypes.HttpRequest, context: UwsTypes.us_socket_context_t): void {
    // Everything is read from req synchronously: req is invalid after return.
    const key = req.getHeader('sec-websocket-key');
    const offered = req.getHeader('sec-websocket-protocol');
    const authz = req.getHeader('authorization');
    const addr = Buffer.from(res.getRemoteAddressAsText()).toString();
    const c = this.#config;
    const m = this.#deps.metrics;

    if (this.#shuttingDown) return this.#refuse(res, 503, 'shutting_down', 'hub is shutting down', c.retryAfterMs);
    if (!this.#deps.store.healthy) return this.#refuse(res, 503, 'store_unavailable', 'storage unavailable', c.retryAfterMs);
    if (this.#sockets.size >= c.maxConnections) {
      m.limit('max_connections');
      return this.#refuse(res, 503, 'max_connections', 'hub at its connection limit', c.retryAfterMs);
    }
    if (this.#addresses.get(addr) >= c.maxConnectionsPerAddress) {
      m.limit('per_address');
      return this.#refuse(res, 429, 'per_address', `more than ${c.maxConnectionsPerAddress} connections from this address`, c.retryAfterMs);
    }

    let token = '';
    let selected = '';
    for (const p of offered.split(',')) {
      const v = p.trim();
      if (v === DEVICE_SUBPROTOCOL) selected = v;
      else if (v.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) token = v.slice(TOKEN_SUBPROTOCOL_PREFIX.length);
    }
    if (authz) {
      const mm = /^Bearer\s+(\S+)\s*$/i.exec(authz);
      if (mm) token = mm[1]!;
    }
    if (!token) return this.#refuse(res, 401, 'no_token', 'missing bearer token (Authorization header or bearer.<token> subprotocol)');
    const auth = this.#deps.auth.authenticate(token);
    if (!auth.ok) return this.#refuse(res, auth.status, auth.status === 403 ? 'disabled' : 'bad_token', auth.reason);

    // Admission control last, so junk without a valid token cannot use up
    // the budget that keeps reconnect storms from starving the hub.
    const now = this.#deps.now();
    if (!this.#admission.take(1, now)) {
      m.limit('admission');
      return this.#refuse(res, 503, 'admission', 'too many new sessions right now', Math.max(c.retryAfterMs, this.#admission.waitMs(1, now)));
    }

    const session = new Session(`${this.#instance}-${(++this.#sessionCounter).toString(36)}`, auth.deviceId, auth.tags, addr);
    // protocol: never echo the token subprotocol; select ours or none.
    res.cork(() => res.upgrade<SocketData>({ session }, key, selected, '', context));
  }

  #refuse(res: HttpResponse, status: 401 | 403 | 429 | 503, reason: RefusalReason, text: string, retryAfterMs?: number): void {
    this.#deps.metrics.refusal(status, reason);
    const statusText = { 401: '401 Unauthorized', 403: '403 Forbidden', 429: '429 Too Many Requests', 503: '503 Service Unavailable' }[status];
    res.cork(() => {
      res.writeStatus(statusText).writeHeader('Content-Type', 'text/plain; charset=utf-8');
      if (status === 401) res.writeHeader('WWW-Authenticate', 'Bearer realm="devices"');
      // RFC 9110 §10.2.3: delay-seconds.
      if (retryAfterMs !== undefined) res.writeHeader('Retry-After', String(Math.ceil(jitteredRetryMs(retryAfterMs) / 1000)));
      res.end(text + '\n', true);
    });
  }

  // ---- session lifecycle ----------------------------------------------------

  #open(ws: WebSocket): void {
    const s = ws.getUserData().session;
    s.ws = ws;
    s.state = 'awaiting-hello';
    s.openedAtMs = this.#deps.now();
    this.#sockets.add(s);
    this.#awaitingHello.add(s);
    this.#addresses.inc(s.addr);
    this.#deps.metrics.connections.inc();

    let dev = this.#devices.get(s.deviceId);
    if (!dev) {
      dev = { session: null, bucket: new TokenBucket(this.#config.maxReadingsPerSecond, this.#config.readingsBurst, s.openedAtMs), metricNames: new Set() };
      this.#devices.set(s.deviceId, dev);
    }
    s.device = dev;
    const old = dev.session;
    dev.session = s;
    // protocol: one session per device; the newer one wins.
    if (old) this.#close(old, CloseCode.SESSION_REPLACED, 'replaced by a newer session of this device', undefined, null);
  }

  #closed(s: Session, code: number): void {
    if (s.gone) return;
    s.gone = true;
    s.state = 'closed';
    s.ws = null;
    this.#sockets.delete(s);
    this.#awaitingHello.delete(s);
    this.#dirty.delete(s);
    this.#addresses.dec(s.addr);
    const m = this.#deps.metrics;
    m.connections.dec();
    if (s.welcomed) m.sessions.dec();
    m.closes.labels(KNOWN_CODES.has(code) ? String(code) : 'other').inc();
    const dev = this.#devices.get(s.deviceId);
    if (dev && dev.session === s) dev.session = null;
    if (s.welcomed) this.#feed((l) => l.sessionClosed(s.deviceId, code, s.closedByHub));
    this.#deviceLog.debug('device_session_closed', { device: s.deviceId, session: s.id, code }, 'device session closed');
  }

  /** Calls the live path; a failure there is logged, never thrown into ingest. */
  #feed(f: (live: LiveFeed) => void): void {
    const live = this.#deps.live;
    if (!live) return;
    try {
      f(live);
    } catch (err) {
      this.#liveFailure(err);
    }
  }

  /** The per-batch live call, without a closure per batch. */
  #feedDurable(batch: AcceptedBatch): void {
    const live = this.#deps.live;
    if (!live) return;
    try {
      live.durable(batch);
    } catch (err) {
      this.#liveFailure(err);
    }
  }

  #liveFailure(err: unknown): void {
    if (!this.#liveFailed) this.#deviceLog.error('live_failure', { err }, 'live path failed (ingest unaffected; logged once)');
    this.#liveFailed = true;
  }

  /**
   * Ends a session with a Notice and a close frame carrying the same code.
   * `limit` names the metric to count (null: not a violation).
   */
  #close(s: Session, code: number, reason: string, retryAfterMs: number | undefined, limit: LimitName | null): void {
    if (s.state === 'closed' || !s.ws) return;
    if (limit) this.#deps.metrics.limit(limit);
    const ws = s.ws;
    s.state = 'closed';
    s.ws = null;
    s.closedByHub = true;
    this.#deviceLog.debug('device_session_closing', { device: s.deviceId, session: s.id, code, reason }, 'closing device session');
    ws.send(encodeHubMessage({ notice: { code, reason, retryAfterMs: retryAfterMs ?? 0 } }), true);
    // Not inside ws.cork(): uWS sends the TCP FIN from end() only when the
    // socket is not corked (or, inside a message handler, when uWS uncorks
    // it after the handler). Corked by us, the connection would stay open
    // until uWS's end timeout, 16 s at the default idle timeout.
    ws.end(code, closeReason(reason, retryAfterMs));
    // uWS runs the close handler inside end(); account here too in case a
    // binding defers it (the `gone` flag makes this happen once).
    this.#closed(s, code);
  }

  // ---- messages ---------------------------------------------------------------

  #message(ws: WebSocket, data: ArrayBuffer, isBinary: boolean): void {
    const s = ws.getUserData().session;
    if (s.state === 'closed') return;
    this.#deps.metrics.ingestMessages.inc();
    this.#deps.metrics.ingestBytes.inc(data.byteLength);
    if (data.byteLength > this.#config.maxMessageBytes) {
      return this.#close(s, CloseCode.MESSAGE_TOO_BIG, `message of ${data.byteLength} bytes; the limit is ${this.#config.maxMessageBytes}`, undefined, 'message_size');
    }
    if (!isBinary) return this.#close(s, CloseCode.UNSUPPORTED_DATA, 'text frames are not part of the protocol; send binary protobuf', undefined, 'text_frame');
    let msg: DeviceMessage;
    try {
      // Decoding copies everything out of `data`, which uWS neuters on return.
      msg = decodeDeviceMessage(new Uint8Array(data));
    } catch (err) {
      return this.#close(s, CloseCode.INVALID_PAYLOAD, `not a valid DeviceMessage: ${(err as Error).message}`, undefined, 'malformed');
    }
    switch (msg.msg) {
      case 'hello': return this.#hello(s, msg.hello!);
      case 'batch': return this.#batch(s, msg);
      case 'commandResult': return this.#commandResult(s, msg.commandResult!);
      default:
        return this.#close(s, CloseCode.PROTOCOL_ERROR, 'empty or unknown DeviceMessage', undefined, 'protocol');
    }
  }

  /**
   * Counts and logs a result for a command this session was sent; a result
   * for any other id (never sent, already answered, forgotten) is only
   * counted, so a device cannot fill the log with results.
   */
  #commandResult(s: Session, r: CommandResult): void {
    if (s.state !== 'open') return this.#close(s, CloseCode.PROTOCOL_ERROR, 'CommandResult before Hello', undefined, 'protocol');
    const id = r.id ?? 0;
    const at = s.commandIds.indexOf(id);
    if (at < 0) {
      this.#commandResultUnknown.inc();
      return;
    }
    s.commandIds.splice(at, 1);
    const ok = r.ok === true;
    (ok ? this.#commandResultOk : this.#commandResultFailed).inc();
    const text = r.message ?? '';
    const message = text.length > MAX_LOGGED_MESSAGE_CHARS ? `${text.slice(0, MAX_LOGGED_MESSAGE_CHARS)}…` : text;
    this.#deviceLog.info('command_result', { device: s.deviceId, session: s.id, command: id, ok, message, messageChars: text.length }, 'command result');
  }

  #hello(s: Session, h: Hello): void {
    if (s.state !== 'awaiting-hello') return this.#close(s, CloseCode.PROTOCOL_ERROR, 'Hello sent twice', undefined, 'protocol');
    if (h.protocolVersion !== PROTOCOL_VERSION) {
      return this.#close(s, CloseCode.UNSUPPORTED_VERSION, `protocol version ${h.protocolVersion ?? 0} not supported; this hub speaks ${PROTOCOL_VERSION}`, undefined, 'version');
    }
    if (h.deviceId !== s.deviceId) {
      return this.#close(s, CloseCode.PROTOCOL_ERROR, `Hello.device_id ${JSON.stringify((h.deviceId ?? '').slice(0, 40))} does not match the token's device`, undefined, 'protocol');
    }
    const firmware = h.firmware ?? '';
    if (Buffer.byteLength(firmware) > MAX_FIRMWARE_BYTES) {
      return this.#close(s, CloseCode.PROTOCOL_ERROR, `Hello.firmware longer than ${MAX_FIRMWARE_BYTES} bytes`, undefined, 'protocol');
    }
    const now = this.#deps.now();
    s.firmware = firmware;
    s.clock.sample(h.deviceTimeMs ?? 0, now);
    s.state = 'open';
    s.welcomed = true;
    this.#awaitingHello.delete(s);
    this.#deps.metrics.sessions.inc();
    const c = this.#config;
    s.lastCredit = this.#credit();
    s.lastAckSeq = this.#deps.store.durableSeq(s.deviceId);
    s.ws!.send(encodeHubMessage({
      welcome: {
        sessionId: s.id,
        protocolVersion: PROTOCOL_VERSION,
        serverTimeMs: now,
        echoDeviceTimeMs: h.deviceTimeMs ?? 0,
        window: c.window,
        credit: s.lastCredit,
        lastSeq: s.lastAckSeq,
        limits: {
          maxMessageBytes: c.maxMessageBytes, maxBatchReadings: c.maxBatchReadings,
          maxReadingsPerSecond: c.maxReadingsPerSecond, readingsBurst: c.readingsBurst,
          maxMetricsPerSession: c.maxMetricsPerSession, maxMetricNameBytes: c.maxMetricNameBytes,
          maxFutureSkewMs: c.maxFutureSkewMs, maxPastSkewMs: c.maxPastSkewMs, idleTimeoutMs: c.idleTimeoutS * 1000,
        },
      },
    }), true);
    this.#feed((l) => l.sessionOpened(s.deviceId, s.tags, firmware, s.addr));
    this.#deviceLog.debug('device_session_open', { device: s.deviceId, session: s.id, firmware, offsetMs: s.clock.offsetMs }, 'device session open');
  }

  #batch(s: Session, msg: DeviceMessage): void {
    if (s.state !== 'open') return this.#close(s, CloseCode.PROTOCOL_ERROR, 'Batch before Hello', undefined, 'protocol');
    const b = msg.batch!;
    const c = this.#config;
    const m = this.#deps.metrics;
    // protocol: at most `window` unacked batches in flight.
    if (s.inflightSeq.length >= c.window) {
      return this.#close(s, CloseCode.WINDOW_EXCEEDED, `more than ${c.window} unacked batches in flight`, undefined, 'window');
    }
    const seq = b.seq ?? 0;
    // protocol: 1 <= seq <= 2^53 - 1; the hub holds 64-bit integers as doubles.
    if (!(seq >= 1) || !Number.isSafeInteger(seq)) return this.#close(s, CloseCode.PROTOCOL_ERROR, `Batch.seq must be 1..2^53-1 (9007199254740991); got ${seq}`, undefined, 'protocol');
    const now = this.#deps.now();
    s.clock.sample(b.sentTimeMs ?? 0, now);

    const dev = s.device!;
    const defErr = defineMetrics(s.metricTable, b.metricDefs ?? [], this.#limits, dev.metricNames, this.#metricNames);
    if (defErr) return this.#close(s, defErr.code, defErr.reason, undefined, defErr.limit as LimitName);

    const store = this.#deps.store;
    if (seq <= store.acceptedSeq(s.deviceId)) {
      // protocol: a resend of a batch the hub holds is acked, not stored twice.
      m.batchDuplicate.inc();
      s.inflightSeq.push(seq);
      s.inflightAt.push(now);
      if (seq <= store.durableSeq(s.deviceId)) this.#markDirty(s);
      return;
    }

    const out = validateBatch(s.deviceId, s.tags, b, s.metricTable, this.#limits, now, s.clock);
    if (!out.ok) return this.#close(s, out.code, out.reason, undefined, out.limit as LimitName);

    const n = b.metricIds?.length ?? 0;
    const bucket = dev.bucket;
    if (!bucket.take(n, now)) {
      const wait = Math.max(1000, bucket.waitMs(n, now));
      return this.#close(s, CloseCode.RATE_LIMITED, `over ${c.maxReadingsPerSecond} readings/s`, wait, 'readings_rate');
    }

    const r = out.report;
    if ((r.skewDropped || r.skewCorrected) && !s.toldSkew) {
      s.toldSkew = true;
      s.ws!.send(encodeHubMessage({ notice: { code: NoticeCode.CLOCK_SKEW,
        reason: `readings out of the skew bounds (${r.skewCorrected} corrected, ${r.skewDropped} dropped in batch ${seq}); estimated device clock offset ${s.clock.offsetMs} ms; see Ack reports` } }), true);
    }
    if (r.nonFiniteDropped || r.skewDropped || r.skewCorrected) {
      s.reports.push({ seq, nonFiniteDropped: r.nonFiniteDropped, skewDropped: r.skewDropped, skewCorrected: r.skewCorrected, clockOffsetMs: s.clock.offsetMs });
      if (r.nonFiniteDropped) { m.readingsNonFinite.inc(r.nonFiniteDropped); m.limit('non_finite'); }
      if (r.skewDropped) { m.readingsSkewDropped.inc(r.skewDropped); m.limit('skew'); }
      if (r.skewCorrected) m.readingsSkewCorrected.inc(r.skewCorrected);
    }
    m.batchAccepted.inc();
    m.readingsAccepted.inc(out.batch.values.length);
    s.inflightSeq.push(seq);
    s.inflightAt.push(now);
    const deviceId = s.deviceId;
    this.#pendingAppends++;
    store.append(out.batch).then(
      () => {
        this.#deps.onDurable?.(out.batch);
        this.#feedDurable(out.batch);
        // Ack on whichever session the device has now (it may have reconnected).
        const cur = this.#devices.get(deviceId)?.session;
        if (cur) this.#markDirty(cur);
        this.#appendSettled();
      },
      (err: unknown) => {
        m.storeErrors.inc();
        const full = (err as { code?: string }).code === 'HUB_ERR_STORE_FULL';
        if (full) this.#deviceLog.warn('spool_full', { device: deviceId, seq }, 'spool full; device told to come back later');
        else this.#deviceLog.error('store_append_failed', { err, device: deviceId, seq }, 'store append failed; the device will resend');
        // protocol: never ack what is not durable; the device resends after reconnecting.
        const cur = this.#devices.get(deviceId)?.session;
        if (cur) {
          this.#close(cur, full ? CloseCode.TRY_AGAIN_LATER : CloseCode.INTERNAL_ERROR, full ? 'storage full' : 'storage error',
            jitteredRetryMs(this.#config.retryAfterMs), null);
        }
        this.#appendSettled();
      },
    );
  }

  #appendSettled(): void {
    if (--this.#pendingAppends === 0) for (const f of this.#appendsSettled.splice(0)) f();
  }

  // ---- acks and credit ----------------------------------------------------------

  #markDirty(s: Session): void {
    this.#dirty.add(s);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // Group acks: everything that became durable in this tick goes out together.
      setImmediate(() => this.#flushAcks());
    }
  }

  /** 0..window: full window while the store has room, shrinking as it fills. */
  #credit(): number {
    const p = this.#deps.store.pressure();
    const w = this.#config.window;
    if (p <= 0.5) return w;
    if (p >= 1) return 0;
    return Math.max(1, Math.floor(w * (1 - p) * 2));
  }

  #flushAcks(): void {
    this.#flushScheduled = false;
    const store = this.#deps.store;
    const now = this.#deps.now();
    const credit = this.#credit();
    const lat = this.#deps.metrics.ackLatency;
    const live = this.#deps.live;
    for (const s of this.#dirty) {
      const ws = s.ws;
      if (s.state !== 'open' || !ws) continue;
      const durable = store.durableSeq(s.deviceId);
      let acked = s.lastAckSeq;
      let w = 0;
      for (let i = 0; i < s.inflightSeq.length; i++) {
        const seq = s.inflightSeq[i]!;
        if (seq <= durable) {
          if (seq > acked) acked = seq;
          const ms = now - s.inflightAt[i]!;
          lat.observe(ms / 1000);
          if (live) live.ackLatency(ms);
        } else {
          s.inflightSeq[w] = seq;
          s.inflightAt[w] = s.inflightAt[i]!;
          w++;
        }
      }
      const removed = s.inflightSeq.length - w;
      s.inflightSeq.length = w;
      s.inflightAt.length = w;
      if (removed === 0 && credit === s.lastCredit) continue;
      let reports: BatchReport[] = [];
      if (s.reports.length) {
        reports = s.reports.filter((r) => (r.seq ?? 0) <= acked);
        if (reports.length) s.reports.splice(0, reports.length);
      }
      s.lastAckSeq = acked;
      s.lastCredit = credit;
      const bytes = encodeHubMessage({ ack: { seq: acked, credit, reports } });
      const notice = credit < this.#config.window && !s.toldBackpressure;
      if (notice) s.toldBackpressure = true;
      else if (credit === this.#config.window) s.toldBackpressure = false;
      ws.cork(() => {
        ws.send(bytes, true);
        if (notice) ws.send(encodeHubMessage({ notice: { code: NoticeCode.BACKPRESSURE, reason: `storage is behind: credit ${credit} of ${this.#config.window}` } }), true);
      });
    }
    this.#dirty.clear();
  }

  /** Tells devices when credit changed without any ack to carry it (store filling or draining). */
  #refreshCredit(): void {
    const credit = this.#credit();
    for (const s of this.#sockets) {
      if (s.state === 'open' && s.lastCredit !== credit) this.#markDirty(s);
    }
  }

  #sweep(): void {
    const now = this.#deps.now();
    for (const s of this.#awaitingHello) {
      if (now - s.openedAtMs >= this.#config.handshakeTimeoutMs) {
        this.#close(s, CloseCode.HANDSHAKE_TIMEOUT, `no Hello within ${this.#config.handshakeTimeoutMs} ms`, undefined, 'handshake_timeout');
      }
    }
  }

  // ---- shutdown -----------------------------------------------------------------

  /**
   * Graceful end: refuse new upgrades (503), let pending appends settle and
   * send their acks, then close every device with 1001 and a retry hint.
   */
  async shutdown(deadlineMs: number): Promise<void> {
    this.#shuttingDown = true;
    if (this.#pendingAppends > 0) {
      await Promise.race([
        new Promise<void>((r) => this.#appendsSettled.push(r)),
        new Promise<void>((r) => setTimeout(r, Math.max(0, deadlineMs - this.#deps.now())).unref()),
      ]);
    }
    this.#flushAcks();
    for (const s of [...this.#sockets]) {
      this.#close(s, CloseCode.GOING_AWAY, 'hub shutting down', jitteredRetryMs(this.#config.retryAfterMs), null);
    }
    for (const t of this.#timers) clearInterval(t);
    this.#unsubscribeRevoked();
    this.#deviceLog.flush();
  }
}
