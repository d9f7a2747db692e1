// device-sim/: sensor models for simulated devices, plausible values,
// deterministic for a seed. Owns the seeded PRNG, per-device seeds and the
// four default metrics. Each model is sampled at a device-clock time;
// models with state (pressure walk, battery) evolve with elapsed time, not
// with the number of samples, so a device sampled at 1 Hz and one at 100 Hz
// follow the same curves.
// Imports: nothing.

/** mulberry32: a small, fast, seeded PRNG (enough for simulation, not crypto). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of the id: a stable per-device seed. */
export function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The seeded PRNG every model uses (mulberry32). */
export const prng = mulberry32;

/** Standard normal sample (Box-Muller). */
export function gaussian(random: () => number): number {
  const u = 1 - random(); // (0, 1]: log(0) would be -Infinity
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export interface SensorModel {
  /** Metric name on the wire (MetricDef.name). */
  readonly name: string;
  /** Unit on the wire (MetricDef.unit), at most 16 bytes. */
  readonly unit: string;
  /** The reading at device-clock time tMs (Unix ms). Call with non-decreasing times. */
  sample(tMs: number): number;
}

/** The default metrics, in the order defaultSensors() returns them. */
export const DEFAULT_METRICS: readonly { name: string; unit: string }[] = [
  { name: 'temperature', unit: 'degC' },
  { name: 'humidity', unit: '%' },
  { name: 'pressure', unit: 'hPa' },
  { name: 'battery', unit: 'V' },
];

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

export interface TemperatureOptions {
  /** Mean of the daily cycle before the device offset, degC. */
  mean?: number;
  /** Half the day-night swing, degC. */
  amplitude?: number;
  /** Standard deviation of the per-device offset (placement, calibration), degC. */
  offsetSd?: number;
  /** Measurement noise, degC. */
  noiseSd?: number;
  /** Chance per sample of a spike (a glitch, a heat source nearby). */
  spikeProbability?: number;
}

/** Daily sinusoid (coldest ~05:00 UTC, warmest ~17:00) + per-device offset + noise + rare spikes. */
export class Temperature implements SensorModel {
  readonly name = 'temperature';
  readonly unit = 'degC';
  /** This device's mean (the option's mean plus its offset). */
  readonly mean: number;
  readonly amplitude: number;
  readonly #noiseSd: number;
  readonly #spikeProbability: number;
  /** Per-device phase shift (a device a bit east or west), ms. */
  readonly #phaseMs: number;
  readonly #random: () => number;

  constructor(random: () => number, options: TemperatureOptions = {}) {
    this.#random = random;
    this.mean = (options.mean ?? 18) + gaussian(random) * (options.offsetSd ?? 3);
    this.amplitude = options.amplitude ?? 6;
    this.#noiseSd = options.noiseSd ?? 0.2;
    this.#spikeProbability = options.spikeProbability ?? 0.001;
    this.#phaseMs = (random() - 0.5) * HOUR_MS;
  }

  /** The noise-free daily curve; humidity follows it. */
  baseline(tMs: number): number {
    // sin peaks a quarter day after its zero crossing: zero at 11:00 -> peak at 17:00.
    const phase = (((tMs + this.#phaseMs) % DAY_MS) / DAY_MS) * 2 * Math.PI;
    return this.mean + this.amplitude * Math.sin(phase - (11 / 24) * 2 * Math.PI);
  }

  sample(tMs: number): number {
    let v = this.baseline(tMs) + gaussian(this.#random) * this.#noiseSd;
    if (this.#random() < this.#spikeProbability) v += 15 + this.#random() * 20;
    return round(v, 2);
  }
}

/** Relative humidity: falls as the air warms (anti-correlated with temperature), clamped to 0..100. */
export class Humidity implements SensorModel {
  readonly name = 'humidity';
  readonly unit = '%';
  /** Percentage points per degC away from the temperature's mean. */
  static readonly SLOPE = 2.5;
  readonly #mean: number;
  readonly #random: () => number;

  constructor(random: () => number, readonly temperature: Temperature) {
    this.#random = random;
    this.#mean = 55 + gaussian(random) * 8;
  }

  sample(tMs: number): number {
    const dT = this.temperature.baseline(tMs) - this.temperature.mean;
    const v = this.#mean - Humidity.SLOPE * dT + gaussian(this.#random) * 1.5;
    return round(Math.min(100, Math.max(0, v)), 1);
  }
}

/**
 * Barometric pressure: a mean-reverting random walk (Ornstein-Uhlenbeck)
 * around 1013 hPa, sampled exactly for the elapsed time: about 1 hPa per
 * hour, weather systems that fade over days.
 */
export class Pressure implements SensorModel {
  readonly name = 'pressure';
  readonly unit = 'hPa';
  static readonly MEAN = 1013;
  /** Long-run standard deviation, hPa. */
  static readonly SD = 7;
  /** How long a departure from the mean takes to fade (1/e), ms. */
  static readonly TAU_MS = 3 * DAY_MS;
  #pressureHpa: number;
  #lastSampleAt = Number.NaN;
  readonly #random: () => number;

  constructor(random: () => number) {
    this.#random = random;
    this.#pressureHpa = Pressure.MEAN + gaussian(random) * Pressure.SD;
  }

  sample(tMs: number): number {
    const dt = Number.isNaN(this.#lastSampleAt) ? 0 : Math.max(0, tMs - this.#lastSampleAt);
    this.#lastSampleAt = tMs;
    if (dt > 0) {
      const e = Math.exp(-dt / Pressure.TAU_MS);
      this.#pressureHpa = Pressure.MEAN + (this.#pressureHpa - Pressure.MEAN) * e + Pressure.SD * Math.sqrt(1 - e * e) * gaussian(this.#random);
    }
    return round(Math.min(1085, Math.max(940, this.#pressureHpa)), 1);
  }
}

export interface BatteryOptions {
  /** Time from the first sample to an empty battery (3.3 V), ms. Default 30 days. */
  lifetimeMs?: number;
  /** Measurement noise, V. */
  noiseSd?: number;
}

/**
 * Battery voltage: a Li-ion discharge curve from ~4.2 V (a quick early drop,
 * a long plateau, a knee near empty) down to 3.3 V, plus noise. Time counts
 * from the first sample.
 */
export class Battery implements SensorModel {
  readonly name = 'battery';
  readonly unit = 'V';
  static readonly EMPTY_V = 3.3;
  readonly #fullVolts: number;
  readonly #lifetimeMs: number;
  readonly #noiseSd: number;
  #firstSampleAt = Number.NaN;
  readonly #random: () => number;

  constructor(random: () => number, options: BatteryOptions = {}) {
    this.#random = random;
    this.#fullVolts = 4.1 + random() * 0.1;
    this.#lifetimeMs = options.lifetimeMs ?? 30 * DAY_MS;
    this.#noiseSd = options.noiseSd ?? 0.005;
  }

  sample(tMs: number): number {
    if (Number.isNaN(this.#firstSampleAt)) this.#firstSampleAt = tMs;
    const used = Math.min(1, Math.max(0, (tMs - this.#firstSampleAt) / this.#lifetimeMs));
    const v = Battery.EMPTY_V + (this.#fullVolts - Battery.EMPTY_V) * (1 - used) ** 0.35;
    return round(Math.max(Battery.EMPTY_V - 0.02, v + gaussian(this.#random) * this.#noiseSd), 3);
  }
}

export interface SensorSetOptions {
  temperature?: TemperatureOptions;
  battery?: BatteryOptions;
}

/** The default sensor set of a simulated device (DEFAULT_METRICS order), deterministic for the seed. */
export function defaultSensors(seed: number, options: SensorSetOptions = {}): SensorModel[] {
  const random = mulberry32(seed);
  const temperature = new Temperature(random, options.temperature);
  return [temperature, new Humidity(random, temperature), new Pressure(random), new Battery(random, options.battery)];
}
