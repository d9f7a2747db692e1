// scripts/bench/: the readings every comparison of `npm run bench` sends or
// encodes: the simulator's own four sensor models (@telemetry/device-sim:
// temperature, humidity, pressure, battery, with its per-device seeds and
// rounding), sampled N/4 times per message, the instants spread evenly over
// one second (the simulator's default batch interval): an 8-reading message
// is 2 instants 500 ms apart, a 1,000-reading one 250 instants 4 ms apart.
// Metric ids are the sensor index (0..3), as the simulator assigns them.
import { DEFAULT_METRICS, defaultSensors, hashId, type SensorModel } from '@telemetry/device-sim';
import { encodeDeviceMessage, type MetricDef } from '@telemetry/proto';

export const METRICS = DEFAULT_METRICS;

/** A fixed, realistic start (device clock) so that the wire table is the same on every run. */
export const START_MS = Date.UTC(2026, 10, 25, 12, 0, 0);

/** The readings of one message, in the Batch's column form (proto/README.md §5.6). */
export interface Readings {
  baseTimeMs: number;
  ids: number[];
  offsets: number[];
  values: number[];
}

/** Consecutive messages of `readingsPerMessage` readings from one simulated device. */
export class ReadingSource {
  readonly deviceId: string;
  readonly readingsPerMessage: number;
  readonly #sensors: SensorModel[];
  readonly #stepMs: number;
  #t: number;

  constructor(deviceId: string, readingsPerMessage: number, startMs = START_MS) {
    const k = METRICS.length;
    if (!Number.isInteger(readingsPerMessage) || readingsPerMessage < k || readingsPerMessage % k !== 0) {
      throw new Error(`bench: readings per message must be a multiple of ${k} (one per metric per instant); got ${readingsPerMessage}`);
    }
    this.deviceId = deviceId;
    this.readingsPerMessage = readingsPerMessage;
    this.#sensors = defaultSensors(hashId(deviceId));
    this.#stepMs = 1000 / (readingsPerMessage / k);
    this.#t = startMs;
  }

  next(): Readings {
    const instants = this.readingsPerMessage / this.#sensors.length;
    const r: Readings = { baseTimeMs: Math.round(this.#t), ids: [], offsets: [], values: [] };
    for (let i = 0; i < instants; i++) {
      const t = Math.round(this.#t);
      for (let m = 0; m < this.#sensors.length; m++) {
        r.ids.push(m);
        r.offsets.push(t - r.baseTimeMs);
        r.values.push(this.#sensors[m]!.sample(t));
      }
      this.#t += this.#stepMs;
    }
    return r;
  }
}

export function metricDefs(): MetricDef[] {
  return METRICS.map((m, id) => ({ id, name: m.name, unit: m.unit }));
}

/**
 * The DeviceMessage{batch} a device sends for these readings: steady state
 * (no metric definitions: they go in the first batch of a session) unless
 * `withDefs`.
 */
export function batchMessage(r: Readings, seq: number, sentTimeMs: number, withDefs = false): Uint8Array {
  return encodeDeviceMessage({
    batch: {
      seq, baseTimeMs: r.baseTimeMs, metricDefs: withDefs ? metricDefs() : undefined,
      metricIds: r.ids, timeOffsetsMs: r.offsets, values: r.values, sentTimeMs,
    },
  });
}

/**
 * `count` consecutive encoded messages of one device, seq 1001.. and
 * sent_time_ms 200 ms after each message's last reading: the pool the MQTT
 * load generator cycles through (the payload bytes the hub's clients send).
 */
export function messagePool(deviceId: string, readingsPerMessage: number, count: number): Buffer[] {
  const src = new ReadingSource(deviceId, readingsPerMessage);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const r = src.next();
    const last = r.baseTimeMs + (r.offsets.at(-1) ?? 0);
    out.push(Buffer.from(batchMessage(r, 1001 + i, last + 200)));
  }
  return out;
}
