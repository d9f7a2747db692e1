// sinks/influx/: spooled batches -> InfluxDB line protocol.
// Schema (README "InfluxDB schema"): one measurement per metric name, tags
// `device` + the device's registry tags (+ `unit` when set), field `value`
// (float), plus integer field `device_time_ms` when the hub corrected the
// reading's time; timestamp in ms. A point is identified by measurement,
// tags and time, so replaying a batch rewrites the same points.
//
// Escaping is exactly what InfluxDB undoes, nothing more:
// https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters
// measurements escape comma and space (0x20 only); tag keys and values also
// the equals sign. That is what the client's `escape.measurement` and
// `escape.tag` do, used here, except for `\t` `\n` `\r`, which they write as
// `\t` `\n` `\r` and InfluxDB stores as two characters. Backslashes have no
// exact form either: the docs read `\\` as one, influxd 1.6 stores both, and
// one before a comma or at the end breaks the line. So the registry and
// ingest refuse backslashes and control characters, and a reading that would
// carry one anyway (a spool from an older version) is refused here
// (unrepresentable) and never sent; its dead-letter copy is the line as the
// escapers write it. Imports: core, @influxdata/influxdb-client.
import { escape } from '@influxdata/influxdb-client';
import type { AcceptedBatch } from '../../core/batch.ts';

const escMeasurement = escape.measurement;
const escTag = escape.tag;

/** Backslash, C0/C1 controls and DEL, lone surrogates (not valid UTF-8). */
const UNREPRESENTABLE = /[\\\p{Cc}\p{Cs}]/u;

/**
 * Tag keys the hub sets itself (`device`, `unit`), that InfluxDB refuses
 * (`time`) or reserves (`_field`, `_measurement`, any `_` prefix in 2.x/3.x),
 * and the field keys (a tag and a field of one name collide in 3.x). The
 * registry refuses them; a spool from an older version may still hold them.
 */
export function isReservedTagKey(key: string): boolean {
  return key === 'device' || key === 'unit' || key === 'value' || key === 'device_time_ms' || key.toLowerCase() === 'time' || key.startsWith('_');
}

/** Why `text` cannot be written exactly as a measurement, tag key or tag value; null if it can. */
export function unrepresentable(text: string): string | null {
  const match = UNREPRESENTABLE.exec(text);
  if (!match) return null;
  const char = match[0];
  if (char === '\\') return 'a backslash';
  return char.length === 1 && char.charCodeAt(0) >= 0xd800 && char.charCodeAt(0) <= 0xdfff ? 'a lone surrogate' : `control character U+${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** A reading that is not sent: the line as it would have been, and why. */
export interface RefusedLine { readonly line: string; readonly reason: string }

/** `device=<id>` then the registry tags, sorted; reserved keys and empty values left out. */
export function tagSet(deviceId: string, tags: Readonly<Record<string, string>>): string {
  let out = `device=${escTag(deviceId)}`;
  // Sorted keys: InfluxDB's preferred order, and stable series keys.
  for (const key of Object.keys(tags).sort()) {
    const value = tags[key]!;
    if (isReservedTagKey(key) || value === '') continue;
    out += `,${escTag(key)}=${escTag(value)}`;
  }
  return out;
}

function tagsProblem(deviceId: string, tags: Readonly<Record<string, string>>): string | null {
  const bad = unrepresentable(deviceId);
  if (bad) return `device id contains ${bad}`;
  for (const key of Object.keys(tags)) {
    if (isReservedTagKey(key) || tags[key] === '') continue;
    const why = unrepresentable(key) ?? unrepresentable(tags[key]!);
    if (why) return `tag ${JSON.stringify(key)} contains ${why}`;
  }
  return null;
}

/**
 * Appends the batch's lines to `out`; returns how many. Readings that cannot
 * be written exactly go to `refused` (with the reason) instead of being sent
 * as lines InfluxDB would reject or store altered.
 */
export function batchToLines(batch: AcceptedBatch, out: string[], refused: RefusedLine[]): number {
  const tags = tagSet(batch.deviceId, batch.tags);
  const tagsBad = tagsProblem(batch.deviceId, batch.tags);
  const prefixes: string[] = [];
  const problems: (string | null)[] = [];
  for (let i = 0; i < batch.metricNames.length; i++) {
    const name = batch.metricNames[i]!;
    const unit = batch.metricUnits[i] ?? '';
    prefixes.push(`${escMeasurement(name)},${tags}${unit ? `,unit=${escTag(unit)}` : ''} value=`);
    const nameBad = unrepresentable(name);
    const unitBad = unrepresentable(unit);
    problems.push(tagsBad ?? (nameBad ? `metric name contains ${nameBad}` : unitBad ? `unit contains ${unitBad}` : null));
  }
  const n = batch.values.length;
  const deviceTimes = batch.deviceTimesMs;
  let written = 0;
  for (let i = 0; i < n; i++) {
    const metric = batch.metricIndex[i]!;
    const timeMs = batch.timesMs[i]!;
    const value = batch.values[i]!;
    // Line protocol integers are int64; a JS number is exact only up to 2^53,
    // and String() of a larger or fractional one is not an integer literal.
    const deviceTimeMs = deviceTimes === null ? timeMs : deviceTimes[i]!;
    const extra = deviceTimeMs !== timeMs && Number.isSafeInteger(deviceTimeMs) ? `,device_time_ms=${deviceTimeMs}i` : '';
    const line = `${prefixes[metric]}${formatFloat(value)}${extra} ${timeMs}`;
    const why = problems[metric] ?? (!Number.isFinite(value) ? 'value is not a finite number' : !Number.isSafeInteger(timeMs) ? 'timestamp is not a safe integer' : null);
    if (why !== null) {
      refused.push({ line, reason: `not representable in line protocol: ${why}` });
      continue;
    }
    out.push(line);
    written++;
  }
  return written;
}

/** Line protocol floats: a plain JS number string is valid (1.5, 21, 1e+21, -0). */
function formatFloat(value: number): string {
  return Object.is(value, -0) ? '0' : String(value);
}
