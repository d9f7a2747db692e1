// device-sim/: a fleet of simulated devices driven by one shared ticker
// (one timer for thousands of devices, not one each): staggered start over
// rampMs, churn (devices that lose their link and come back), a share of bad
// actors, and the fleet-wide counters and ack-latency percentiles.
// Imports: this package's behaviours, device, device-options, sensors, stats and tokens.
import { BAD_BEHAVIOURS, type Behaviour } from './behaviours.ts';
import { SimDevice } from './device.ts';
import { SYSTEM_CLOCK, type DeviceClock, type DeviceTimings, type SimDeviceOptions } from './device-options.ts';
import { mulberry32 } from './sensors.ts';
import { LatencyHistogram, addCounters, emptyCounters, type Percentiles, type SimCounters } from './stats.ts';
import type { DeviceCredentials } from './tokens.ts';

export interface FleetOptions {
  url: string;
  /** Device ids with their tokens, in order (see fleetCredentials()). */
  devices: DeviceCredentials[];
  /** Readings per second per metric. */
  rate: number;
  batchIntervalMs?: number;
  /** Device i starts at rampMs * i / n. Default 0: all at once. */
  rampMs?: number;
  /** Fraction of the devices per minute that drop their link (no close frame) and reconnect. */
  churn?: number;
  /** Fraction of the devices that misbehave, spread evenly; behaviours assigned round-robin. */
  badActors?: number;
  /** How long a bad actor waits after a fatal close before trying again. Default 30,000. */
  badActorBackoffMs?: number;
  authVia?: 'header' | 'subprotocol';
  ca?: Buffer | string;
  /** Source addresses, assigned round-robin (the hub limits connections per address). */
  sourceAddresses?: readonly string[];
  /** Seeds churn choices; device seeds come from their ids. */
  seed?: number;
  /** false: no device starts by itself; setActive() starts them (a scenario drives the fleet). Default true. */
  autoStart?: boolean;
  /**
   * Plain v1 devices: Hello lists no features and they never send the newer
   * messages (ConfigReport, Invoke results), as devices written before them.
   * Default false: every device lists 'config' and 'invoke' (proto/README.md §5.14).
   */
  v1?: boolean;
  /** Options applied to every device (after the fleet's own). */
  device?: Partial<SimDeviceOptions>;
}

export interface FleetStats {
  devices: number;
  started: number;
  connected: number;
  /** Batches kept by devices (unacked). */
  pending: number;
  /** Batches in flight (sent in the current sessions, unacked). */
  inflight: number;
  counters: SimCounters;
  latencyMs: Percentiles;
}

/** Which behaviour device i gets when `fraction` of a fleet misbehaves: evenly spread, round-robin. */
export function behaviourFor(i: number, fraction: number): Behaviour {
  if (!(fraction > 0)) return 'good';
  const f = Math.min(1, fraction);
  // Device i is bad where the running count floor(n*f) steps up: round(n*f) of n, evenly spaced.
  const before = Math.floor(i * f + 1e-9);
  if (Math.floor((i + 1) * f + 1e-9) === before) return 'good';
  return BAD_BEHAVIOURS[before % BAD_BEHAVIOURS.length]!;
}

export class Fleet {
  readonly devices: SimDevice[] = [];
  readonly latency = new LatencyHistogram();
  /** Connect, first-ack and reading -> ack latencies of every device (DeviceTimings). */
  readonly timings: DeviceTimings = { connect: new LatencyHistogram(), firstAck: new LatencyHistogram(), readingAck: new LatencyHistogram() };
  /** Links dropped by churn. */
  churned = 0;
  readonly #ticker: NodeJS.Timeout;
  readonly #random: () => number;
  readonly #churn: number;
  readonly #clock: DeviceClock;
  readonly #startAt: number[] = [];
  readonly #t0: number;
  #nextStart = 0;
  /** Devices in use (setActive); the rest are offline and silent. */
  #active: number;
  #rate: number;
  #batchMs: number;
  #lastChurn: number;
  #stopped = false;

  constructor(options: FleetOptions) {
    if (!(options.rate >= 0)) throw new RangeError(`fleet: rate must be >= 0 (got ${options.rate})`);
    this.#random = mulberry32(options.seed ?? 42);
    this.#churn = options.churn ?? 0;
    this.#clock = options.device?.clock ?? SYSTEM_CLOCK;
    this.#t0 = this.#lastChurn = this.#clock.wallMs();
    const n = options.devices.length;
    this.#active = n;
    this.#rate = options.rate;
    this.#batchMs = options.batchIntervalMs ?? 1000;
    const ramp = options.rampMs ?? 0;
    const addresses = options.sourceAddresses;
    options.devices.forEach(({ id, token }, i) => {
      const behaviour = behaviourFor(i, options.badActors ?? 0);
      const bad = behaviour !== 'good';
      this.devices.push(new SimDevice({
        id, token, url: options.url, rate: options.rate, batchIntervalMs: options.batchIntervalMs, authVia: options.authVia, ca: options.ca,
        localAddress: addresses?.length ? addresses[i % addresses.length] : undefined,
        behaviour, latency: this.latency, timings: this.timings, autoTick: false, features: options.v1 ? [] : undefined,
        // Bad actors keep coming back (slowly), so a long run keeps exercising the hub's defences.
        reconnectOnFatal: bad, fatalBackoffMs: bad ? (options.badActorBackoffMs ?? 30_000) : undefined,
        ...options.device,
      }));
      this.#startAt.push(options.autoStart === false ? Infinity : n > 1 ? (ramp * i) / n : 0);
    });
    if (options.autoStart === false) this.#active = 0;
    this.#startDue(this.#t0);
    const tickMs = Math.max(20, Math.min(100, Math.floor((options.batchIntervalMs ?? 1000) / 4)));
    this.#ticker = setInterval(() => this.#tick(), tickMs);
  }

  #startDue(now: number): void {
    while (this.#nextStart < this.devices.length && this.#startAt[this.#nextStart]! <= now - this.#t0) {
      this.devices[this.#nextStart++]!.start();
    }
  }

  #tick(): void {
    const now = this.#clock.wallMs();
    // One clock read per tick for the whole fleet: the devices' timeouts need no finer.
    const monotonicNow = this.#clock.monotonicMs();
    this.#startDue(now);
    for (let i = 0; i < this.#nextStart; i++) this.devices[i]!.tick(now, monotonicNow);
    if (this.#churn > 0 && this.#nextStart > 0) {
      const expected = (this.#churn * this.#nextStart * (now - this.#lastChurn)) / 60_000;
      this.#lastChurn = now;
      let k = Math.floor(expected) + (this.#random() < expected % 1 ? 1 : 0);
      while (k-- > 0) {
        const d = this.devices[Math.floor(this.#random() * this.#nextStart)]!;
        if (d.connected) { d.dropConnection(); this.churned++; }
      }
    }
  }

  /** Devices in use: the first `active` of the fleet. */
  get active(): number { return this.#active; }

  /**
   * Uses the first `n` devices (clamped to the fleet): those not started yet
   * start, those offline come back (delivering what they kept) at the
   * fleet's rates; devices past `n` go offline and stop sampling.
   */
  setActive(n: number): void {
    const target = Math.max(0, Math.min(this.devices.length, Math.round(n)));
    // Started before and offline since a smaller setActive: back at the fleet's rates.
    for (let i = this.#active; i < Math.min(target, this.#nextStart); i++) {
      const d = this.devices[i]!;
      d.setRates(this.#rate, this.#batchMs);
      d.setOffline(false);
    }
    for (let i = target; i < Math.min(this.#active, this.#nextStart); i++) {
      const d = this.devices[i]!;
      d.setRates(0, this.#batchMs);
      d.setOffline(true);
    }
    while (this.#nextStart < target) {
      const d = this.devices[this.#nextStart++]!;
      d.setRates(this.#rate, this.#batchMs);
      d.start();
    }
    this.#active = target;
  }

  /** Readings per second per metric and the batch interval of every device in use (and of those activated later). */
  setRates(rate: number, batchIntervalMs: number): void {
    if (rate === this.#rate && batchIntervalMs === this.#batchMs) return;
    this.#rate = rate;
    this.#batchMs = batchIntervalMs;
    for (let i = 0; i < Math.min(this.#active, this.#nextStart); i++) this.devices[i]!.setRates(rate, batchIntervalMs);
  }

  /** Every device stops producing but keeps delivering what it holds. */
  stopSampling(): void {
    for (const d of this.devices) d.stopSampling();
  }

  get connected(): number {
    let n = 0;
    for (const d of this.devices) if (d.connected) n++;
    return n;
  }

  /** Batches kept by all devices (unacked). */
  get pending(): number {
    let n = 0;
    for (const d of this.devices) n += d.outboxSize;
    return n;
  }

  get inflight(): number {
    let n = 0;
    for (const d of this.devices) n += d.inflight;
    return n;
  }

  counters(): SimCounters {
    const c = emptyCounters();
    for (const d of this.devices) addCounters(c, d.counters);
    return c;
  }

  stats(): FleetStats {
    return {
      devices: this.devices.length, started: this.#nextStart, connected: this.connected, pending: this.pending, inflight: this.inflight,
      counters: this.counters(), latencyMs: this.latency.percentiles(),
    };
  }

  /** Stops every device (clean 1000 closes) and resolves when their sockets have closed (bounded per device). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#ticker);
    await Promise.all(this.devices.map((d) => d.stop()));
  }
}
