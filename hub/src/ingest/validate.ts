// ingest/: validation of device input that needs no socket: metric
// definitions (per session, per device, fleet-wide names) and batches. Turns
// a decoded Batch into a self-contained AcceptedBatch plus a report of what
// was done to readings that could not be stored as sent. Everything accepted
// here must make a valid InfluxDB line once the sink escapes it (line
// protocol escapes commas, equals signs and spaces, but has no way to write a
// backslash before one of them or at the end of a value).
// Imports: proto, core (batch type, name rules).
import { CloseCode, columns, type MetricDef } from '@telemetry/proto';
import type { AcceptedBatch } from '../core/batch.ts';
import { METRIC_NAME_RE } from '../core/names.ts';

const MAX_UNIT_BYTES = 16;
// C0/C1 controls and DEL; units are labels, not a channel for escapes.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

export interface ValidationLimits {
  readonly maxBatchReadings: number;
  readonly maxMetricsPerSession: number;
  readonly maxMetricNameBytes: number;
  /** Distinct names one device may use across its sessions (HUB_MAX_METRICS_PER_DEVICE). */
  readonly maxMetricsPerDevice: number;
  readonly maxFutureSkewMs: number;
  readonly maxPastSkewMs: number;
  readonly skewPolicy: 'correct' | 'drop';
}

interface MetricEntry {
  readonly name: string;
  readonly unit: string;
  /** The batch (a generation of the table) that last used it, and its index in that batch's metricNames. */
  generation: number;
  batchIndex: number;
}

/** The names and units of the batch being validated, in order of first use: one pair for every table (validation is synchronous). */
const SCRATCH_NAMES: string[] = [];
const SCRATCH_UNITS: string[] = [];
const NONE: readonly string[] = Object.freeze([]);

/** Metric names interned for one session (protocol: ids are per session). */
export class MetricTable {
  // Allocated with the first definition: an idle session (most of a big
  // fleet, most of the time) holds no Map and no arrays for it.
  #byId: Map<number, MetricEntry> | null = null;
  #generation = 0;
  get size(): number { return this.#byId?.size ?? 0; }
  get(id: number): MetricEntry | undefined { return this.#byId?.get(id); }
  set(id: number, name: string, unit: string): void { (this.#byId ??= new Map()).set(id, { name, unit, generation: -1, batchIndex: 0 }); }
  /** A new batch: every entry counts as unused in it until it is seen. */
  nextGeneration(): number { return ++this.#generation; }

  #lastNames: readonly string[] = NONE;
  #lastUnits: readonly string[] = NONE;
  /**
   * The batch's metric names and units as arrays that stay as they are: the
   * previous batch's when they are the same (a device sends the same metrics
   * batch after batch, so the store and the live path see one array per
   * session, not one per batch), else copies of the scratch arrays.
   */
  settle(): { names: readonly string[]; units: readonly string[] } {
    const names = SCRATCH_NAMES, units = SCRATCH_UNITS;
    const lastNames = this.#lastNames, lastUnits = this.#lastUnits;
    let same = names.length === lastNames.length;
    for (let i = 0; same && i < names.length; i++) same = names[i] === lastNames[i] && units[i] === lastUnits[i];
    if (!same) {
      this.#lastNames = names.slice();
      this.#lastUnits = units.slice();
    }
    names.length = 0;
    units.length = 0;
    return { names: this.#lastNames, units: this.#lastUnits };
  }
}

/**
 * Every metric name defined fleet-wide since the hub started, interned: all
 * sessions and devices that use a name share one string (the live path,
 * history and batches keep it, not a copy per message). At most `max` names
 * (HUB_MAX_METRIC_NAMES); names are never forgotten while the hub runs, since
 * live state and history keep series under them.
 */
export class MetricNames {
  readonly #names = new Map<string, string>();
  readonly #onGrow: ((size: number) => void) | undefined;
  constructor(readonly max: number, onGrow?: (size: number) => void) {
    this.#onGrow = onGrow;
  }

  get size(): number { return this.#names.size; }

  /** The shared copy of `name`; a new name is added unless the cap is reached (then null). */
  intern(name: string): string | null {
    const held = this.#names.get(name);
    if (held !== undefined) return held;
    if (this.#names.size >= this.max) return null;
    this.#names.set(name, name);
    this.#onGrow?.(this.#names.size);
    return name;
  }
}

/**
 * A decoded Batch: from decodeDeviceMessage (arrays; a field that is 0 or
 * absent is undefined) or from decodeBatchMessage (typed arrays, 0s).
 */
export interface BatchInput {
  readonly seq?: number | null;
  readonly baseTimeMs?: number | null;
  readonly sentTimeMs?: number | null;
  readonly metricDefs?: readonly MetricDef[] | null;
  readonly metricIds?: ArrayLike<number> | null;
  readonly timeOffsetsMs?: ArrayLike<number> | null;
  readonly values?: ArrayLike<number> | null;
}

export type Violation = { code: CloseCode; reason: string; limit: string };

export interface BatchReportCounts {
  nonFiniteDropped: number;
  skewDropped: number;
  skewCorrected: number;
}

export type BatchOutcome =
  | { ok: true; batch: AcceptedBatch; report: BatchReportCounts }
  | ({ ok: false } & Violation);

/**
 * Applies a batch's definitions to the session's table. A new id costs a
 * lookup in the device's names and the fleet's: a name the device already
 * has is always accepted; a new one counts against HUB_MAX_METRICS_PER_DEVICE
 * (`deviceNames` outlives sessions) and HUB_MAX_METRIC_NAMES (`fleet`). A name
 * counts from its first definition, even in a batch that is then refused.
 */
export function defineMetrics(
  table: MetricTable, defs: readonly MetricDef[], limits: ValidationLimits, deviceNames: Set<string>, fleet: MetricNames,
): Violation | null {
  for (const def of defs) {
    const id = def.id ?? 0;
    const name = def.name ?? '';
    const unit = def.unit ?? '';
    if (name.length > limits.maxMetricNameBytes || !METRIC_NAME_RE.test(name)) {
      return { code: CloseCode.INVALID_METRIC, limit: 'metric_name', reason: `metric id ${id}: name ${JSON.stringify(name.slice(0, 40))} must be 1-${limits.maxMetricNameBytes} of [A-Za-z0-9_.:-] starting with a letter` };
    }
    if (Buffer.byteLength(unit) > MAX_UNIT_BYTES || CONTROL_RE.test(unit)) {
      return { code: CloseCode.INVALID_METRIC, limit: 'metric_unit', reason: `metric ${name}: unit must be at most ${MAX_UNIT_BYTES} bytes without control characters` };
    }
    // InfluxDB line protocol cannot express a backslash before an escaped
    // character or at the end of a tag value: such a line would be rejected.
    if (unit.includes('\\')) {
      return { code: CloseCode.INVALID_METRIC, limit: 'metric_unit', reason: `metric ${name}: unit must not contain a backslash` };
    }
    const existing = table.get(id);
    if (existing) {
      // Resent batches repeat their definitions; only a change is an error.
      if (existing.name !== name || existing.unit !== unit) {
        return { code: CloseCode.INVALID_METRIC, limit: 'metric_redefined', reason: `metric id ${id} is already ${existing.name} in this session` };
      }
      continue;
    }
    if (table.size >= limits.maxMetricsPerSession) {
      return { code: CloseCode.INVALID_METRIC, limit: 'metrics_per_session', reason: `more than ${limits.maxMetricsPerSession} metrics in one session` };
    }
    const known = deviceNames.has(name);
    if (!known && deviceNames.size >= limits.maxMetricsPerDevice) {
      return { code: CloseCode.INVALID_METRIC, limit: 'metrics_per_device', reason: `metric ${name}: this device already uses ${limits.maxMetricsPerDevice} metric names (HUB_MAX_METRICS_PER_DEVICE); reuse one of them` };
    }
    const shared = fleet.intern(name);
    if (shared === null) {
      return { code: CloseCode.INVALID_METRIC, limit: 'metric_names', reason: `metric ${name}: the hub already holds ${fleet.max} metric names fleet-wide (HUB_MAX_METRIC_NAMES); use an existing name` };
    }
    if (!known) deviceNames.add(shared);
    table.set(id, shared, unit);
  }
  return null;
}

/**
 * Validates a batch whose metric definitions are already in `table`.
 * Readings with NaN/Infinity are dropped; readings outside the skew bounds
 * are corrected by the clock offset (policy `correct`, when that brings them
 * in bounds) or dropped. Both are reported, never silent.
 */
export function validateBatch(
  deviceId: string,
  tags: Readonly<Record<string, string>>,
  batch: BatchInput,
  table: MetricTable,
  limits: ValidationLimits,
  hubNowMs: number,
  clock: { known: boolean; offsetMs: number },
): BatchOutcome {
  const ids = batch.metricIds ?? [];
  const offsets = batch.timeOffsetsMs ?? [];
  const sentValues = batch.values ?? [];
  const readings = ids.length;
  if (readings > limits.maxBatchReadings) {
    return { ok: false, code: CloseCode.BATCH_TOO_LARGE, limit: 'batch_readings', reason: `batch has ${readings} readings; the limit is ${limits.maxBatchReadings}` };
  }
  if (offsets.length !== readings || sentValues.length !== readings) {
    return { ok: false, code: CloseCode.PROTOCOL_ERROR, limit: 'protocol', reason: `batch columns differ in length (${readings} metric ids, ${offsets.length} time offsets, ${sentValues.length} values)` };
  }
  const base = batch.baseTimeMs ?? 0;
  const minT = hubNowMs - limits.maxPastSkewMs;
  const maxT = hubNowMs + limits.maxFutureSkewMs;
  const canCorrect = limits.skewPolicy === 'correct' && clock.known;
  const offset = clock.offsetMs;

  const generation = table.nextGeneration();
  const names = SCRATCH_NAMES;
  const units = SCRATCH_UNITS;
  names.length = 0;
  units.length = 0;
  const index = columns.uint16(readings);
  // decodeBatchMessage's columns are this call's to keep: times and values
  // are compacted into them in place (reading i is read before slot kept <= i
  // is written), so an accepted batch costs no copy of them.
  const times = offsets instanceof Float64Array ? offsets : columns.float64(readings);
  const values = sentValues instanceof Float64Array ? sentValues : columns.float64(readings);
  let deviceTimes: Float64Array | null = null;
  let kept = 0;
  const report: BatchReportCounts = { nonFiniteDropped: 0, skewDropped: 0, skewCorrected: 0 };

  for (let i = 0; i < readings; i++) {
    const metric = table.get(ids[i]!);
    if (metric === undefined) {
      return { ok: false, code: CloseCode.PROTOCOL_ERROR, limit: 'protocol', reason: `reading ${i} uses metric id ${ids[i]} that this session has not defined` };
    }
    const value = sentValues[i]!;
    if (!Number.isFinite(value)) { report.nonFiniteDropped++; continue; }
    const deviceTime = base + offsets[i]!;
    // 64-bit times decode as doubles: past 2^53 they are no longer exact
    // integers, so neither the time nor a correction of it could be stored as sent.
    if (!Number.isSafeInteger(deviceTime)) { report.skewDropped++; continue; }
    let stored = deviceTime;
    if (!(deviceTime >= minT && deviceTime <= maxT)) {
      // An integer (the time and the rounded offset are), and in bounds only if safe.
      const corrected = deviceTime - offset;
      if (canCorrect && corrected >= minT && corrected <= maxT) {
        stored = corrected;
        report.skewCorrected++;
      } else {
        report.skewDropped++;
        continue;
      }
    }
    if (metric.generation !== generation) {
      metric.generation = generation;
      metric.batchIndex = names.length;
      names.push(metric.name);
      units.push(metric.unit);
    }
    if (stored !== deviceTime) {
      if (deviceTimes === null) {
        // Keep the device's own time beside every reading once one is corrected.
        deviceTimes = columns.float64(readings);
        deviceTimes.set(times.subarray(0, kept));
      }
    }
    index[kept] = metric.batchIndex;
    times[kept] = stored;
    if (deviceTimes !== null) deviceTimes[kept] = deviceTime;
    values[kept] = value;
    kept++;
  }

  const settled = table.settle();
  const accepted: AcceptedBatch = {
    deviceId,
    tags,
    seq: batch.seq ?? 0,
    receivedAtMs: hubNowMs,
    clockOffsetMs: offset,
    metricNames: settled.names,
    metricUnits: settled.units,
    // Views, not copies: nothing else ever writes these arrays.
    metricIndex: kept === readings ? index : index.subarray(0, kept),
    timesMs: kept === readings ? times : times.subarray(0, kept),
    deviceTimesMs: deviceTimes === null ? null : kept === readings ? deviceTimes : deviceTimes.subarray(0, kept),
    values: kept === readings ? values : values.subarray(0, kept),
  };
  return { ok: true, batch: accepted, report };
}
