// Sensor models for simulated devices: plausible, deterministic for a seed.
// Each model is sampled at a device-clock time and keeps its own state
// (random walks, battery drain), so values evolve like a real sensor's.

/** mulberry32: a small, fast, seeded PRNG (enough for simulation, not crypto). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sample (Box-Muller). */
export function gaussian(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export interface SensorModel {
  readonly name: string;
  readonly unit: string;
  sample(tMs: number): number;
}

const DAY_MS = 86_400_000;

/** Daily sinusoid (coldest ~05:00, warmest ~17:00) + device offset + noise + rare spikes. */
export class Temperature implements SensorModel {
  readonly name = 'temperature';
  readonly unit = 'degC';
  readonly #offset: number;
  constructor(readonly random: () => number, readonly spikeProbability = 0.001) {
    this.#offset = gaussian(random) * 3;
  }
  sample(tMs: number): number {
    const phase = ((tMs % DAY_MS) / DAY_MS) * 2 * Math.PI;
    let v = 18 + this.#offset + 6 * Math.sin(phase - (11 / 24) * 2 * Math.PI) + gaussian(this.random) * 0.2;
    if (this.random() < this.spikeProbability) v += 15 + this.random() * 20; // a sensor glitch or a heat source
    return Math.round(v * 100) / 100;
  }
}

/** Relative humidity, anti-correlated with temperature, clamped to 0..100. */
export class Humidity implements SensorModel {
  readonly name = 'humidity';
  readonly unit = '%';
  constructor(readonly random: () => number, readonly temperature: Temperature) {}
  sample(tMs: number): number {
    const phase = ((tMs % DAY_MS) / DAY_MS) * 2 * Math.PI;
    const v = 55 - 15 * Math.sin(phase - (11 / 24) * 2 * Math.PI) + gaussian(this.random) * 1.5;
    return Math.round(Math.min(100, Math.max(0, v)) * 10) / 10;
  }
}

/** Barometric pressure: a slow mean-reverting random walk around 1013 hPa. */
export class Pressure implements SensorModel {
  readonly name = 'pressure';
  readonly unit = 'hPa';
  #v: number;
  constructor(readonly random: () => number) {
    this.#v = 1013 + gaussian(random) * 5;
  }
  sample(): number {
    this.#v += (1013 - this.#v) * 0.001 + gaussian(this.random) * 0.05;
    return Math.round(this.#v * 10) / 10;
  }
}

/** Battery voltage: drains from ~4.2 V towards 3.3 V, with measurement noise. */
export class Battery implements SensorModel {
  readonly name = 'battery';
  readonly unit = 'V';
  #v: number;
  constructor(readonly random: () => number, readonly drainPerSample = 0.00002) {
    this.#v = 4.05 + random() * 0.15;
  }
  sample(): number {
    this.#v = Math.max(3.3, this.#v - this.drainPerSample * (0.5 + this.random()));
    return Math.round((this.#v + gaussian(this.random) * 0.005) * 1000) / 1000;
  }
}

/** The default sensor set of a simulated device. */
export function defaultSensors(seed: number, opts: { spikeProbability?: number } = {}): SensorModel[] {
  const random = prng(seed);
  const temperature = new Temperature(random, opts.spikeProbability);
  return [temperature, new Humidity(random, temperature), new Pressure(random), new Battery(random)];
}
