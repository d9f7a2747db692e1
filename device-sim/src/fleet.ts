// A fleet of simulated devices driven by one shared ticker (one timer for
// thousands of devices), with a staggered start, churn (devices that drop
// their link and come back) and a share of bad actors.
import { BAD_BEHAVIOURS, SimDevice, type Behaviour, type SimDeviceOptions } from './device.ts';
import { Reservoir, addCounters, emptyCounters, type SimCounters } from './stats.ts';
import { prng } from './sensors.ts';

export interface FleetOptions {
  url: string;
  /** Device ids with their tokens, in order. */
  devices: { id: string; token: string }[];
  rate: number;
  batchIntervalMs?: number;
  rampMs?: number;
  /** Fraction of devices per minute that drop their link (and reconnect). */
  churn?: number;
  /** Fraction of devices that misbehave (behaviours assigned round-robin). */
  badActors?: number;
  authVia?: 'header' | 'subprotocol';
  ca?: Buffer;
  /** Source addresses to spread connections over (per-address limits). */
  sourceAddresses?: string[];
  seed?: number;
  device?: Partial<SimDeviceOptions>;
}

export class Fleet {
  readonly devices: SimDevice[] = [];
  readonly latency = new Reservoir(100_000);
  readonly #ticker: NodeJS.Timeout;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #random: () => number;
  readonly #churn: number;
  #lastChurn = Date.now();

  constructor(o: FleetOptions) {
    this.#random = prng(o.seed ?? 42);
    this.#churn = o.churn ?? 0;
    // Every step-th device misbehaves, cycling through the bad behaviours.
    const step = (o.badActors ?? 0) > 0 ? Math.max(1, Math.round(1 / o.badActors!)) : 0;
    o.devices.forEach(({ id, token }, i) => {
      const isBad = step > 0 && i % step === step - 1;
      const behaviour: Behaviour = isBad ? BAD_BEHAVIOURS[Math.floor(i / step) % BAD_BEHAVIOURS.length]! : 'good';
      this.devices.push(new SimDevice({
        id, token, url: o.url, rate: o.rate, batchIntervalMs: o.batchIntervalMs, authVia: o.authVia, ca: o.ca,
        localAddress: o.sourceAddresses?.length ? o.sourceAddresses[i % o.sourceAddresses.length] : undefined,
        behaviour, reconnectOnFatal: isBad, latency: this.latency, ...o.device,
      }));
    });
    const ramp = o.rampMs ?? 0;
    this.devices.forEach((d, i) => {
      const delay = this.devices.length > 1 ? (ramp * i) / this.devices.length : 0;
      if (delay <= 0) d.start();
      else this.#timers.push(setTimeout(() => d.start(), delay));
    });
    const tickMs = Math.max(20, Math.min(100, Math.floor((o.batchIntervalMs ?? 1000) / 4)));
    this.#ticker = setInterval(() => this.#tick(), tickMs);
  }

  #tick(): void {
    for (const d of this.devices) d.tick();
    if (this.#churn > 0) {
      const now = Date.now();
      const expected = (this.#churn * this.devices.length * (now - this.#lastChurn)) / 60_000;
      this.#lastChurn = now;
      let n = Math.floor(expected) + (this.#random() < expected % 1 ? 1 : 0);
      while (n-- > 0) this.devices[Math.floor(this.#random() * this.devices.length)]!.dropConnection();
    }
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

  get pending(): number {
    let n = 0;
    for (const d of this.devices) n += d.outboxSize;
    return n;
  }

  counters(): SimCounters {
    const c = emptyCounters();
    for (const d of this.devices) addCounters(c, d.counters);
    return c;
  }

  /** Stops every device (clean 1000 closes) and waits briefly for the closes to go out. */
  async stop(): Promise<void> {
    clearInterval(this.#ticker);
    for (const t of this.#timers) clearTimeout(t);
    for (const d of this.devices) d.stop();
    await new Promise((r) => setTimeout(r, 200));
  }
}
