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
export type SessionState = 'upgrading' | 'awaiting-hello' | 'open' | 'closed';

export class Session {
  ws: DeviceSocket | null = null;
  state: SessionState = 'upgrading';
  openedAtMs = 0;
  readonly metricTable = new MetricTable();
  /** Ids of Commands sent in this session and not answered yet, oldest first (at most MAX_OUTSTANDING_COMMANDS). */
  readonly commandIds: number[] = [];
  readonly clock = new ClockOffsetEstimator();
  /** Seqs received in this session and not yet acked, with their receive times (two arrays: no object per batch). */
  readonly inflightSeq: number[] = [];
  readonly inflightAt: number[] = [];
  /** Reports of batches not acked yet, in seq order; each goes out with the Ack that covers it. */
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
  constructor(
    readonly id: string,
    readonly deviceId: string,
    readonly tags: Readonly<Record<string, string>>,
    readonly addr: string,
    /** The device's state that outlives sessions (its session is set to this one when the socket opens). */
    readonly device: DeviceState,
  ) {}
}

export interface DeviceState {
  /** The device's current session (protocol: one per device), or null between sessions. */
  session: Session | null;
  /** Readings per second (HUB_MAX_READINGS_PER_S), kept across sessions so reconnecting does not refill it. */
  readonly bucket: TokenBucket;
  /** Metric names the device has defined in any session while the hub runs (at most HUB_MAX_METRICS_PER_DEVICE), interned fleet-wide; null until its first definition. */
  metricNames: Set<string> | null;
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
  /** Open connections whose Hello has not arrived (the handshake timeout sweeps these). */
  readonly awaitingHello = new Set<Session>();
  /** Open connections per remote address. */
  readonly addresses = new AddressCounter();
  readonly #devices = new Map<string, DeviceState>();
  readonly #rate: ReadingsRate;

  constructor(rate: ReadingsRate) {
    this.#rate = rate;
  }

  /** A socket opened: counted from now on, awaiting its Hello. */
  add(session: Session): void {
    this.sockets.add(session);
    this.awaitingHello.add(session);
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
      device = { session: null, bucket: new TokenBucket(this.#rate.maxReadingsPerSecond, this.#rate.readingsBurst, nowMs), metricNames: null };
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
