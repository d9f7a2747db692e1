// device-sim/: batch building. BatchBuilder samples the sensors on the
// device clock into an OpenBatch (growable columns, no allocation per
// reading) and closes it into a numbered KeptBatch in the outbox, the
// session-independent form a batch is kept in; BatchEncoder encodes a kept
// batch for the current session, with the metric definitions that session
// still needs (proto/README.md §5.6, §5.7, §6).
// Imports: @telemetry/proto, and this package's outbox, and behaviours, sensors and stats (types).
import { encodeDeviceMessage, type Command, type Limits, type MetricDef } from '@telemetry/proto';
import type { BehaviourStrategy } from './behaviours.ts';
import type { KeptBatch, Outbox } from './outbox.ts';
import type { SensorModel } from './sensors.ts';
import type { SimCounters } from './stats.ts';

/** Bytes per reading assumed when capping a batch by max_message_bytes (id + offset + double, with room). */
const BYTES_PER_READING = 16;

export interface BatchBuilderParts {
  readonly sensors: readonly SensorModel[];
  readonly behaviour: BehaviourStrategy;
  /** The device's random stream (a behaviour's onSample draws on it). */
  readonly random: () => number;
  /** Where closed batches go. */
  readonly outbox: Outbox;
  /** readingsGenerated, readingsSkipped, batchesDropped and readingsDropped are counted here. */
  readonly counters: SimCounters;
}

/**
 * Turns readings into numbered batches in the outbox: samples every sensor
 * `rate` times a second on the device clock, and closes a batch
 * batchIntervalMs after its first reading, or earlier when one more instant
 * would exceed Welcome's limits (§5.5).
 */
export class BatchBuilder {
  /** Readings per second per metric; 0 = none. */
  rate: number;
  batchIntervalMs: number;
  /** The last seq used, 0 = none yet. The device's counter, kept across sessions (§6). */
  seq = 0;
  readonly #parts: BatchBuilderParts;
  readonly #open = new OpenBatch();
  /** Device time of the last sample instant. */
  #lastSampleAt = 0;

  constructor(parts: BatchBuilderParts, rate: number, batchIntervalMs: number) {
    this.#parts = parts;
    this.rate = rate;
    this.batchIntervalMs = batchIntervalMs;
  }

  /** Sampling (re)starts at device time `now`: nothing is owed for the time before. */
  restartAt(now: number): void {
    this.#lastSampleAt = now;
  }

  /**
   * A ConfigUpdate (§12): the open batch closes with the old settings and
   * sampling restarts at device time `now` (no backlog from the old rate).
   */
  reconfigure(config: NonNullable<Command['config']>, now: number): void {
    this.closeBatch();
    this.restartAt(now);
    if (config.sampleIntervalMs) this.rate = 1000 / config.sampleIntervalMs;
    if (config.batchIntervalMs) this.batchIntervalMs = config.batchIntervalMs;
  }

  /** Samples every instant due up to device time `now` and closes the batch when due or full. */
  sampleUntil(now: number, limits: Limits | null | undefined): void {
    const { sensors, counters } = this.#parts;
    const step = 1000 / this.#parts.behaviour.sampleRate(this.rate);
    const batchMs = this.batchIntervalMs;
    // A saturated simulator skips what it cannot generate (and says so)
    // rather than building an unbounded backlog.
    const behind = now - this.#lastSampleAt;
    if (behind > 5 * batchMs && behind > 5 * step) {
      const skip = Math.floor((behind - batchMs) / step);
      this.#lastSampleAt += skip * step;
      counters.readingsSkipped += skip * sensors.length;
    }
    if (this.#lastSampleAt + step <= now) {
      const max = maxBatchReadings(limits, sensors.length);
      do {
        if (this.#open.length + sensors.length > max) this.closeBatch();
        this.#lastSampleAt += step;
        this.sampleInstant(Math.round(this.#lastSampleAt));
      } while (this.#lastSampleAt + step <= now);
    }
    if (this.#open.length > 0 && now - this.#open.firstTime >= batchMs) this.closeBatch();
  }

  /** One reading per sensor at device time t into the open batch. */
  sampleInstant(t: number): void {
    const { sensors, behaviour, random, counters } = this.#parts;
    counters.readingsGenerated += this.#open.addInstant(t, sensors, behaviour, random);
  }

  /** The open batch, if it holds readings, gets the next seq and goes to the outbox. */
  closeBatch(): void {
    if (this.#open.length === 0) return;
    const dropped = this.#parts.outbox.push(this.#open.close(++this.seq));
    if (dropped) {
      // Finite device memory: the oldest batch not in flight goes (§11).
      this.#parts.counters.batchesDropped++;
      this.#parts.counters.readingsDropped += dropped.values.length;
    }
  }
}

/** Readings per batch that keep within Welcome's limits (defaults before the first Welcome). */
function maxBatchReadings(limits: Limits | null | undefined, sensorCount: number): number {
  const byBytes = Math.floor((limits?.maxMessageBytes || 262_144) / BYTES_PER_READING);
  return Math.max(sensorCount, Math.min(limits?.maxBatchReadings || 10_000, byBytes));
}

/** The batch being filled: parallel columns of metric index, device time and value. */
export class OpenBatch {
  #length = 0;
  #metrics = new Uint16Array(64);
  #times = new Float64Array(64);
  #values = new Float64Array(64);

  /** Readings in the batch. */
  get length(): number { return this.#length; }
  /** Device time of the first reading (the batch's base); only while length > 0. */
  get firstTime(): number { return this.#times[0]!; }

  /**
   * Samples every sensor at device time t (metric index = sensor index) and
   * returns how many readings that added. The behaviour's onSample, if any,
   * sees each value in sensor order, drawing on `random`.
   */
  addInstant(t: number, sensors: readonly SensorModel[], behaviour: BehaviourStrategy, random: () => number): number {
    const k = sensors.length;
    if (this.#length + k > this.#times.length) this.#grow(this.#length + k);
    const onSample = behaviour.onSample;
    let n = this.#length;
    for (let i = 0; i < k; i++) {
      let v = sensors[i]!.sample(t);
      if (onSample !== undefined) v = onSample(v, random);
      this.#metrics[n] = i;
      this.#times[n] = t;
      this.#values[n] = v;
      n++;
    }
    this.#length = n;
    return k;
  }

  /** The readings as a KeptBatch with this seq (times become offsets from the first); the batch is empty after. */
  close(seq: number): KeptBatch {
    const n = this.#length;
    const base = this.#times[0]!;
    const offsets = new Int32Array(n);
    for (let i = 0; i < n; i++) offsets[i] = this.#times[i]! - base;
    this.#length = 0;
    return {
      seq, baseTimeMs: base, metrics: this.#metrics.slice(0, n), offsets, values: this.#values.slice(0, n),
      sentAt: 0, everSent: false,
    };
  }

  #grow(need: number): void {
    let capacity = this.#times.length * 2;
    while (capacity < need) capacity *= 2;
    const metrics = new Uint16Array(capacity); metrics.set(this.#metrics); this.#metrics = metrics;
    const times = new Float64Array(capacity); times.set(this.#times); this.#times = times;
    const values = new Float64Array(capacity); values.set(this.#values); this.#values = values;
  }
}

/**
 * Encodes kept batches for one session at a time. Metric ids are interned per
 * session (§5.7), so a batch carries a definition for each id it uses that
 * this session has not defined yet; a resend in a new session defines them
 * again (§6 "Resending after a reconnect", step 3).
 */
export class BatchEncoder {
  readonly #sensors: readonly SensorModel[];
  /** By metric id: defined in this session. */
  #defined: boolean[] = [];
  #definedCount = 0;

  constructor(sensors: readonly SensorModel[]) {
    this.#sensors = sensors;
  }

  /** A new session: no id is defined in it yet. */
  startSession(): void {
    this.#defined = [];
    this.#definedCount = 0;
  }

  /** The DeviceMessage carrying b, stamped with the time of this send (§8: resends included). */
  encode(b: KeptBatch, sentTimeMs: number): Uint8Array {
    let defs: MetricDef[] | undefined;
    if (this.#definedCount < this.#sensors.length) {
      for (let i = 0; i < b.metrics.length; i++) {
        const m = b.metrics[i]!;
        if (this.#defined[m]) continue;
        this.#defined[m] = true;
        this.#definedCount++;
        (defs ??= []).push({ id: m, name: this.#sensors[m]!.name, unit: this.#sensors[m]!.unit });
      }
    }
    // protobufjs writes packed columns by index, so the typed arrays go in as they are.
    return encodeDeviceMessage({
      batch: {
        seq: b.seq, baseTimeMs: b.baseTimeMs, metricDefs: defs, metricIds: b.metrics as unknown as number[],
        timeOffsetsMs: b.offsets as unknown as number[], values: b.values as unknown as number[],
        sentTimeMs,
      },
    });
  }
}
