// device-sim/: the public shapes of a SimDevice: what it is built from
// (options, the clock it reads), the stats it reports and the events it
// emits (device.ts implements them).
// Imports: @telemetry/proto (types), node, and this package's behaviours, sensors, socket and stats (types).
// The global `performance` is a lazy getter in Node 20: the import skips it on the hot path.
import { performance } from 'node:perf_hooks';
import type { Ack, Notice, Welcome } from '@telemetry/proto';
import type { Behaviour } from './behaviours.ts';
import type { SensorModel } from './sensors.ts';
import type { SocketConnector } from './socket.ts';
import type { LatencyHistogram, SimCounters } from './stats.ts';

/** The time a device reads. Tests pass a hand-driven one. */
export interface DeviceClock {
  /** Unix ms, like Date.now(): the device clock before its offset. */
  wallMs(): number;
  /** Monotonic ms, like performance.now(): send -> ack latency, pacing and the timeouts. */
  monotonicMs(): number;
}

export const SYSTEM_CLOCK: DeviceClock = { wallMs: Date.now, monotonicMs: () => performance.now() };

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
  /**
   * What Hello.features lists (proto/README.md §5.14). Default ['config',
   * 'invoke']: the device applies DesiredConfig, sends ConfigReport and
   * answers Command.invoke, each only when Welcome lists it too. [] is a plain
   * v1 device: no features, never any of the newer messages.
   */
  features?: readonly string[];
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
  latency?: LatencyHistogram;
  /** More latencies, for load tests (a fleet shares them): see DeviceTimings. */
  timings?: DeviceTimings;
  /** Randomness for jitter and bad behaviours (default: seeded from `seed`). */
  random?: () => number;
  /** Opens the connection. Default: the `ws` client (wsConnector); tests pass an in-memory one. */
  connect?: SocketConnector;
  /** Default: SYSTEM_CLOCK. */
  clock?: DeviceClock;
}

/**
 * Latencies a load test reports besides send -> ack, ms, each in an HDR
 * histogram: `connect`, a connection attempt's start to its Welcome;
 * `firstAck`, the attempt's start to the session's first Ack that covers a
 * batch; `readingAck`, a batch's first reading's intended sampling time (on
 * the device clock, on schedule whatever the hub did) to the Ack or Welcome
 * that covers it: a stalled hub shows in it, however few batches were sent
 * meanwhile (no coordinated omission).
 */
export interface DeviceTimings {
  readonly connect: LatencyHistogram;
  readonly firstAck: LatencyHistogram;
  readonly readingAck: LatencyHistogram;
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
