// ingest/: what a device session is, and who is connected. A Session is one
// WebSocket's protocol state (lifecycle.ts moves it from state to state); a
// DeviceState is what a device keeps across its sessions; the SessionTable
// indexes the open connections by socket, device and address. Data only: no
// sends, no timers, no metrics.
// Imports: proto (types), core (token bucket, uws types), ingest/clock, limits, validate.
import type { BatchReport } from '@telemetry/proto';
import { TokenBucket } from '../core/token-bucket.ts';
import type { UwsTypes } from '../core/uws.ts';
import { ClockOffsetEstimator } from './clock.ts';
import { AddressCounter } from './limits.ts';
import { MetricTable } from './validate.ts';

/** What uWS keeps on each device socket (set at the upgrade). */
export interface SocketData { session: Session }

export type DeviceSocket = UwsTypes.WebSocket<SocketData>;

/**
 * proto/README.md §4. `upgrading`: authenticated, the socket not open yet;
 * `awaiting-hello`: open, before Hello; `open`: Welcome sent; `closed`: by
 * either side, for good.
 */
/** 'claiming': Hello checked, the cluster is making this hub the device's owner (cluster mode) before Welcome. */
export type SessionState = 'upgrading' | 'awaiting-hello' | 'claiming' | 'open' | 'closed';

// Memory: a big fleet is mostly idle sessions, so a Session is one object
// with no sub-objects until it needs them: the clock estimate's fields are
// its own (it extends the estimator), the flags share one small integer,
// the id is built when asked for, and the metric table, in-flight pairs,
// reports and command ids are allocated with their first use. A DeviceState
// is its own readings bucket. docs/BENCHMARKS.md §2 measures the result.

/** Session flags, bits of Session.#flags. */
const WELCOMED = 1, TOLD_SKEW = 2, TOLD_BACKPRESSURE = 4, GONE = 8, CLOSED_BY_HUB = 16;
/** Features in use (both Hello and Welcome list them, proto/README.md §5.14), and the config exchange's state (§15.3). */
const USES_CONFIG = 32, USES_INVOKE = 64, CONFIG_REPORTED = 128, DESIRED_IN_FLIGHT = 256;

export class Session extends ClockOffsetEstimator {
  ws: DeviceSocket | null = null;
  state: SessionState = 'upgrading';
  /** The session's metric definitions; null until the first. */
  metricTable: MetricTable | null = null;
  /** Ids of Commands sent in this session and not answered yet, oldest first (at most MAX_OUTSTANDING_COMMANDS); null until the first Command. */
  commandIds: number[] | null = null;
  /**
   * Batches received in this session and not yet acked, as pairs: seq, then
   * receive time (one flat array: no object per batch); null until the first batch.
   */
  inflight: number[] | null = null;
  /** Reports of batches not acked yet, in seq order; each goes out with the Ack that covers it; null until the first. */
  reports: BatchReport[] | null = null;
  lastAckSeq = 0;
  lastCredit = 0;
  firmware = '';
  #flags = 0;
  constructor(
    /** Prefix shared by this hub instance's session ids; the id is `${idPrefix}-${serial in base 36}`. */
    readonly idPrefix: string,
    readonly serial: number,
    readonly deviceId: string,
    readonly tags: Readonly<Record<string, string>>,
    readonly addr: string,
    /** The device's state that outlives sessions (its session is set to this one when the socket opens). */
    readonly device: DeviceState,
  ) {
    super();
  }

  /** The session id Welcome carries and logs name. */
  get id(): string { return `${this.idPrefix}-${this.serial.toString(36)}`; }

  /** Batches in flight (received, not acked). */
  get inflightCount(): number { return this.inflight === null ? 0 : this.inflight.length >> 1; }

  /** Records a batch in flight, received at `atMs`. */
  addInflight(seq: number, atMs: number): void {
    (this.inflight ??= []).push(seq, atMs);
  }

  /** The metric table, created with the session's first definition or batch. */
  metrics(): MetricTable {
    return this.metricTable ??= new MetricTable();
  }

  /** Welcome sent. */
  get welcomed(): boolean { return (this.#flags & WELCOMED) !== 0; }
  set welcomed(v: boolean) { this.#set(WELCOMED, v); }
  /** Notices already sent this session (each once). */
  get toldSkew(): boolean { return (this.#flags & TOLD_SKEW) !== 0; }
  set toldSkew(v: boolean) { this.#set(TOLD_SKEW, v); }
  get toldBackpressure(): boolean { return (this.#flags & TOLD_BACKPRESSURE) !== 0; }
  set toldBackpressure(v: boolean) { this.#set(TOLD_BACKPRESSURE, v); }
  /** Close accounting done (exactly once, whoever closed). */
  get gone(): boolean { return (this.#flags & GONE) !== 0; }
  set gone(v: boolean) { this.#set(GONE, v); }
  /** The hub ended the session (not the device or the network). */
  get closedByHub(): boolean { return (this.#flags & CLOSED_BY_HUB) !== 0; }
  set closedByHub(v: boolean) { this.#set(CLOSED_BY_HUB, v); }

  /** `config` is in use on this session: DesiredConfig and ConfigReport. */
  get usesConfig(): boolean { return (this.#flags & USES_CONFIG) !== 0; }
  set usesConfig(v: boolean) { this.#set(USES_CONFIG, v); }
  /** `invoke` is in use on this session: Command.invoke. */
  get usesInvoke(): boolean { return (this.#flags & USES_INVOKE) !== 0; }
  set usesInvoke(v: boolean) { this.#set(USES_INVOKE, v); }
  /** The session's first ConfigReport has arrived. */
  get configReported(): boolean { return (this.#flags & CONFIG_REPORTED) !== 0; }
  set configReported(v: boolean) { this.#set(CONFIG_REPORTED, v); }
  /** A DesiredConfig was sent and no ConfigReport has arrived since. */
  get desiredInFlight(): boolean { return (this.#flags & DESIRED_IN_FLIGHT) !== 0; }
  set desiredInFlight(v: boolean) { this.#set(DESIRED_IN_FLIGHT, v); }

  #set(bit: number, v: boolean): void {
    this.#flags = v ? this.#flags | bit : this.#flags & ~bit;
  }
}

/**
 * What a device keeps across its sessions. It is its own readings bucket
 * (HUB_MAX_READINGS_PER_S), kept across sessions so reconnecting does not
 * refill it.
 */
export class DeviceState extends TokenBucket {
  /** The device's current session (protocol: one per device), or null between sessions. */
  session: Session | null = null;
  /** Metric names the device has defined in any session while the hub runs (at most HUB_MAX_METRICS_PER_DEVICE), interned fleet-wide; null until its first definition. */
  metricNames: Set<string> | null = null;
}

export interface ReadingsRate {
  readonly maxReadingsPerSecond: number;
  readonly readingsBurst: number;
}

/**
 * The open connections, including those still waiting for Hello (the
 * connection counts of the upgrade checks count them too), and every device
 * seen since the hub started.
 */
export class SessionTable {
  /** Every open connection. */
  readonly sockets = new Set<Session>();
  /** Open connections whose Hello has not arrived, with the time each opened (the handshake timeout sweeps these). */
  readonly awaitingHello = new Map<Session, number>();
  /** Open connections per remote address. */
  readonly addresses = new AddressCounter();
  readonly #devices = new Map<string, DeviceState>();
  readonly #rate: ReadingsRate;

  constructor(rate: ReadingsRate) {
    this.#rate = rate;
  }

  /** A socket opened at `nowMs`: counted from now on, awaiting its Hello. */
  add(session: Session, nowMs: number): void {
    this.sockets.add(session);
    this.awaitingHello.set(session, nowMs);
    this.addresses.inc(session.addr);
  }

  /** A socket closed. Call once per session. */
  remove(session: Session): void {
    this.sockets.delete(session);
    this.awaitingHello.delete(session);
    this.addresses.dec(session.addr);
    const device = this.#devices.get(session.deviceId);
    if (device && device.session === session) device.session = null;
  }

  /** The device's state, created (with a full readings bucket) the first time the device is admitted. */
  device(deviceId: string, nowMs: number): DeviceState {
    let device = this.#devices.get(deviceId);
    if (!device) {
      device = new DeviceState(this.#rate.maxReadingsPerSecond, this.#rate.readingsBurst, nowMs);
      this.#devices.set(deviceId, device);
    }
    return device;
  }

  /** The device's session now (it may have reconnected since a batch arrived), if any. */
  current(deviceId: string): Session | null | undefined {
    return this.#devices.get(deviceId)?.session;
  }

  /** Connections past Hello/Welcome. */
  get openSessions(): number {
    let open = 0;
    for (const session of this.sockets) if (session.state === 'open') open++;
    return open;
  }
}
