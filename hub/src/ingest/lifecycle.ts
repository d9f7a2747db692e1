// ingest/: the session state machine (proto/README.md §4): a socket opens
// (awaiting Hello, replacing the device's older session), Hello is checked
// and answered with Welcome, and a session ends either by the hub (a Notice,
// then a close frame with the same code) or by the device or the network;
// the close is accounted for exactly once. Also the handshake timeout and
// revocation. Every log line a device can cause goes through the LogLimiter.
// Imports: proto, spool (the BatchStore seam, types), core (config, log,
// metrics types), ingest/session, acks, live-feed, send.
import { CloseCode, FEATURE_CONFIG, FEATURE_INVOKE, MAX_FEATURES, MAX_FEATURE_BYTES, PROTOCOL_VERSION, closeReason, encodeHubMessage, type Hello } from '@telemetry/proto';
import type { HubConfig } from '../core/config.ts';
import type { LogLimiter } from '../core/log.ts';
import type { HubMetrics, LimitName } from '../core/metrics.ts';
import type { BatchStore } from '../spool/store.ts';
import type { AckFlusher } from './acks.ts';
import type { GuardedLiveFeed } from './live-feed.ts';
import { sendToDevice } from './send.ts';
import type { DeviceSocket, Session, SessionTable } from './session.ts';

/** protocol: Hello.firmware is at most 128 bytes (§4). */
export const MAX_FIRMWARE_BYTES = 128;

/** Distinct firmware strings shared between sessions (a fleet runs a few versions); past this many, each session keeps its own. */
export const INTERNED_FIRMWARES = 1024;

/** Close codes reported as metric labels; anything else is "other" (bounded cardinality). */
const KNOWN_CODES: ReadonlySet<number> = new Set<number>([1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1013, ...(Object.values(CloseCode) as number[])]);

/** The `code` label of hub_device_closes_total: a known close code, or "other". */
export function closeCodeLabel(code: number): string {
  return KNOWN_CODES.has(code) ? String(code) : 'other';
}

/**
 * protocol: how often the handshake timeout is checked, max(50, min(1000,
 * timeout/4)) ms (§4), so the 4001 comes at most a quarter late (1 s at most).
 */
export function handshakeSweepMs(handshakeTimeoutMs: number): number {
  return Math.max(50, Math.min(1000, Math.floor(handshakeTimeoutMs / 4)));
}

/**
 * Cluster mode: one session per device across hubs. The lifecycle claims the
 * device before Welcome (so Welcome.last_seq covers what any hub stored) and
 * releases it when the welcomed session ends. Absent in the embedded mode.
 */
export interface SessionOwnership {
  /** Makes this hub the device's owner; the store then knows the device's cluster-wide seqs. Rejects when that cannot be done now. */
  claim(deviceId: string): Promise<void>;
  /** The device's welcomed session here ended, with this close code (byHub: the hub closed it). */
  release(deviceId: string, code: number, byHub: boolean): void;
}

export interface LifecycleDeps {
  readonly config: HubConfig;
  readonly store: Pick<BatchStore, 'durableSeq'>;
  readonly metrics: HubMetrics;
  readonly now: () => number;
  readonly table: SessionTable;
  readonly acks: AckFlusher;
  readonly live: GuardedLiveFeed;
  readonly deviceLog: LogLimiter;
  readonly ownership?: SessionOwnership | undefined;
  /**
   * Management is wired in: Welcome lists `config` and `invoke`, and this is
   * told of every welcomed session (after its Welcome). Absent: Welcome
   * lists no features and no session uses any.
   */
  readonly welcomed?: ((session: Session, ws: DeviceSocket) => void) | undefined;
}

/** What Welcome.features lists when management is wired in (proto/README.md §5.14). */
export const HUB_FEATURES: readonly string[] = Object.freeze([FEATURE_CONFIG, FEATURE_INVOKE]);

/** protocol: why Hello.features is refused (4000): more than 16 entries, an empty one or one over 32 bytes (§4); null when fine. */
export function featuresProblem(features: readonly string[] | null | undefined): string | null {
  if (!features || features.length === 0) return null;
  if (features.length > MAX_FEATURES) return `Hello.features has ${features.length} entries; at most ${MAX_FEATURES}`;
  for (const f of features) {
    if (f.length === 0) return 'Hello.features has an empty entry';
    if (f.length > MAX_FEATURE_BYTES || Buffer.byteLength(f) > MAX_FEATURE_BYTES) return `Hello.features has an entry longer than ${MAX_FEATURE_BYTES} bytes`;
  }
  return null;
}

export class SessionLifecycle {
  readonly #deps: LifecycleDeps;
  readonly #config: HubConfig;
  readonly #metrics: HubMetrics;
  readonly #table: SessionTable;
  readonly #live: GuardedLiveFeed;
  readonly #deviceLog: LogLimiter;
  /** Firmware strings seen in Hellos, so that sessions share one copy each. */
  readonly #firmwares = new Map<string, string>();

  constructor(deps: LifecycleDeps) {
    this.#deps = deps;
    this.#config = deps.config;
    this.#metrics = deps.metrics;
    this.#table = deps.table;
    this.#live = deps.live;
    this.#deviceLog = deps.deviceLog;
  }

  /** uWS open: the socket counts from now on and waits for Hello. */
  open(ws: DeviceSocket): void {
    const session = ws.getUserData().session;
    session.ws = ws;
    session.state = 'awaiting-hello';
    this.#table.add(session, this.#deps.now());
    this.#metrics.connections.inc();
    this.#live.connectionCount(this.#table.sockets.size);

    const device = session.device;
    const older = device.session;
    device.session = session;
    // protocol: one session per device; the newer one wins.
    if (older) this.close(older, CloseCode.SESSION_REPLACED, 'replaced by a newer session of this device', undefined, null);
  }

  /**
   * Close accounting, exactly once per session whoever closed it: the uWS
   * close handler, and close() in case a binding defers that handler.
   */
  closed(session: Session, code: number): void {
    if (session.gone) return;
    session.gone = true;
    session.state = 'closed';
    session.ws = null;
    // Only the device's current session releases it: a replaced one hands over.
    const current = session.device.session === session;
    this.#table.remove(session);
    this.#deps.acks.forget(session);
    const metrics = this.#metrics;
    metrics.connections.dec();
    if (session.welcomed) metrics.sessions.dec();
    metrics.closes.labels(closeCodeLabel(code)).inc();
    this.#live.connectionCount(this.#table.sockets.size);
    if (session.welcomed) {
      this.#live.sessionClosed(session.deviceId, code, session.closedByHub);
      if (current) this.#deps.ownership?.release(session.deviceId, code, session.closedByHub);
    }
    this.#deviceLog.debug('device_session_closed', { device: session.deviceId, session: session.id, code }, 'device session closed');
  }

  /**
   * Ends a session with a Notice and a close frame carrying the same code
   * (protocol: §9). `limit` names the metric to count (null: not a violation).
   */
  close(session: Session, code: number, reason: string, retryAfterMs: number | undefined, limit: LimitName | null): void {
    if (session.state === 'closed' || !session.ws) return;
    if (limit) this.#metrics.limit(limit);
    const ws = session.ws;
    session.state = 'closed';
    session.ws = null;
    session.closedByHub = true;
    this.#deviceLog.debug('device_session_closing', { device: session.deviceId, session: session.id, code, reason }, 'closing device session');
    // protocol: the retry hint is Notice.retry_after_ms here, and the end of the close reason below.
    sendToDevice(ws, encodeHubMessage({ notice: { code, reason, retryAfterMs: retryAfterMs ?? 0 } }), this.#metrics);
    // Not inside ws.cork(): uWS sends the TCP FIN from end() only when the
    // socket is not corked (or, inside a message handler, when uWS uncorks
    // it after the handler). Corked by us, the connection would stay open
    // until uWS's end timeout, 16 s at the default idle timeout.
    ws.end(code, closeReason(reason, retryAfterMs));
    // uWS runs the close handler inside end(); account here too in case a
    // binding defers it (the `gone` flag makes this happen once).
    this.closed(session, code);
  }

  /** A Hello that arrived on `ws`, the session's socket. protocol: checked in this order: version, device id, firmware length (§4); then Welcome. */
  hello(session: Session, ws: DeviceSocket, hello: Hello): void {
    if (session.state !== 'awaiting-hello') return this.close(session, CloseCode.PROTOCOL_ERROR, 'Hello sent twice', undefined, 'protocol');
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return this.close(session, CloseCode.UNSUPPORTED_VERSION, `protocol version ${hello.protocolVersion ?? 0} not supported; this hub speaks ${PROTOCOL_VERSION}`, undefined, 'version');
    }
    if (hello.deviceId !== session.deviceId) {
      return this.close(session, CloseCode.PROTOCOL_ERROR, `Hello.device_id ${JSON.stringify((hello.deviceId ?? '').slice(0, 40))} does not match the token's device`, undefined, 'protocol');
    }
    const firmware = hello.firmware ?? '';
    if (Buffer.byteLength(firmware) > MAX_FIRMWARE_BYTES) {
      return this.close(session, CloseCode.PROTOCOL_ERROR, `Hello.firmware longer than ${MAX_FIRMWARE_BYTES} bytes`, undefined, 'protocol');
    }
    const features = hello.features;
    const featureProblem = featuresProblem(features);
    if (featureProblem) return this.close(session, CloseCode.PROTOCOL_ERROR, featureProblem, undefined, 'protocol');
    // A feature is in use when both sides list it; the hub lists them only with management wired in.
    if (this.#deps.welcomed && features && features.length > 0) {
      session.usesConfig = features.includes(FEATURE_CONFIG);
      session.usesInvoke = features.includes(FEATURE_INVOKE);
    }
    const ownership = this.#deps.ownership;
    if (!ownership) return this.#welcome(session, ws, hello, firmware);
    // Cluster mode: Welcome once this hub owns the device. The handshake
    // timeout still runs (the session stays in awaitingHello until Welcome).
    session.state = 'claiming';
    ownership.claim(session.deviceId).then(
      () => {
        if (session.state === 'claiming' && session.ws === ws) return this.#welcome(session, ws, hello, firmware);
        // Gone while claiming (handshake timeout, the device left): the claim
        // is handed back unless a newer session of the device is here now.
        const now = session.device.session;
        if (now === null || now === session) ownership.release(session.deviceId, 1006, false);
      },
      (err: unknown) => {
        this.#deviceLog.warn('device_claim_failed', { device: session.deviceId, err: (err as Error).message }, 'cannot make this hub the device\'s owner; device told to come back later');
        if (session.state === 'claiming') this.close(session, CloseCode.TRY_AGAIN_LATER, 'cluster unavailable', this.#config.retryAfterMs, null);
      },
    );
  }

  /** Another hub of the cluster took the device over: its session here ends (4002) and gets no more acks. */
  moved(deviceId: string, toHub: string): void {
    const session = this.#table.current(deviceId);
    if (session && session.state !== 'closed') this.close(session, CloseCode.SESSION_REPLACED, `replaced by a newer session of this device on hub ${toHub.slice(0, 64)}`, undefined, null);
  }

  #welcome(session: Session, ws: DeviceSocket, hello: Hello, firmware: string): void {
    const now = this.#deps.now();
    session.firmware = this.#intern(firmware);
    session.sample(hello.deviceTimeMs ?? 0, now);
    session.state = 'open';
    session.welcomed = true;
    this.#table.awaitingHello.delete(session);
    this.#metrics.sessions.inc();
    const config = this.#config;
    session.lastCredit = this.#deps.acks.credit();
    // protocol: Welcome.last_seq is what the store holds durably, not what it received (§6).
    session.lastAckSeq = this.#deps.store.durableSeq(session.deviceId);
    sendToDevice(ws, encodeHubMessage({
      welcome: {
        sessionId: session.id,
        protocolVersion: PROTOCOL_VERSION,
        serverTimeMs: now,
        echoDeviceTimeMs: hello.deviceTimeMs ?? 0,
        window: config.window,
        credit: session.lastCredit,
        lastSeq: session.lastAckSeq,
        limits: {
          maxMessageBytes: config.maxMessageBytes, maxBatchReadings: config.maxBatchReadings,
          maxReadingsPerSecond: config.maxReadingsPerSecond, readingsBurst: config.readingsBurst,
          maxMetricsPerSession: config.maxMetricsPerSession, maxMetricNameBytes: config.maxMetricNameBytes,
          maxFutureSkewMs: config.maxFutureSkewMs, maxPastSkewMs: config.maxPastSkewMs, idleTimeoutMs: config.idleTimeoutS * 1000,
        },
        features: this.#deps.welcomed ? HUB_FEATURES as string[] : null,
      },
    }), this.#metrics);
    this.#live.sessionOpened(session.deviceId, session.tags, session.firmware, session.addr);
    this.#deviceLog.debug('device_session_open', { device: session.deviceId, session: session.id, firmware, offsetMs: session.offsetMs }, 'device session open');
    const welcomed = this.#deps.welcomed;
    if (welcomed) {
      try {
        welcomed(session, ws);
      } catch (err) {
        this.#deviceLog.warn('device_welcomed_hook_failed', { device: session.deviceId, err: (err as Error).message }, 'management hook failed after Welcome');
      }
    }
  }

  #intern(firmware: string): string {
    const known = this.#firmwares.get(firmware);
    if (known !== undefined) return known;
    if (this.#firmwares.size < INTERNED_FIRMWARES) this.#firmwares.set(firmware, firmware);
    return firmware;
  }

  /** protocol: no Hello within HUB_HANDSHAKE_TIMEOUT_MS of the upgrade closes with 4001 (§4). */
  sweep(): void {
    const now = this.#deps.now();
    const timeoutMs = this.#config.handshakeTimeoutMs;
    for (const [session, openedAtMs] of this.#table.awaitingHello) {
      if (now - openedAtMs >= timeoutMs) {
        this.close(session, CloseCode.HANDSHAKE_TIMEOUT, `no Hello within ${timeoutMs} ms`, undefined, 'handshake_timeout');
      }
    }
  }

  /** Devices removed, disabled or given a new token: their sessions end with 4008. */
  revoked(deviceIds: Iterable<string>): void {
    for (const deviceId of deviceIds) {
      const session = this.#table.current(deviceId);
      if (session) this.close(session, CloseCode.DEVICE_REVOKED, 'device registration revoked', undefined, null);
    }
  }
}
