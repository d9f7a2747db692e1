// Spooled batches -> InfluxDB line protocol.
// Schema (README "InfluxDB schema"): one measurement per metric name, tags
// `device` + the device's registry tags (+ `unit` when set), field `value`
// (float), plus integer field `device_time_ms` when the hub corrected the
// reading's time; timestamp in ms. A point is identified by measurement,
// tags and time, so replaying a batch rewrites the same points.
//
// Escaping is exactly what InfluxDB undoes, nothing more:
// https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters
// measurements escape comma and space (0x20 only); tag keys and values also
// the equals sign. Backslashes have no exact form: the docs read `\\` as one,
// influxd 1.6 stores both, and one before a comma or at the end breaks the
// line. Control characters neither: `\n` ends the line, and the `\t` `\n` `\r`
// that the client's `escape` helpers emit are stored as two characters. So
// the registry and ingest refuse both, and a reading that would carry one
// anyway (a spool from an older version) is refused here, not sent.
import type { AcceptedBatch } from '../../core/batch.ts';

const MEASUREMENT_SPECIAL = /[, ]/g;
const TAG_SPECIAL = /[,= ]/g;
const escMeasurement = (s: string) => s.replace(MEASUREMENT_SPECIAL, (c) => `\\${c}`);
const escTag = (s: string) => s.replace(TAG_SPECIAL, (c) => `\\${c}`);

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

/** Why `s` cannot be written exactly as a measurement, tag key or tag value; null if it can. */
export function unrepresentable(s: string): string | null {
  const m = UNREPRESENTABLE.exec(s);
  if (!m) return null;
  const c = m[0];
  if (c === '\\') return 'a backslash';
  return c.length === 1 && c.charCodeAt(0) >= 0xd800 && c.charCodeAt(0) <= 0xdfff ? 'a lone surrogate' : `control character U+${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** A reading that is not sent: the line as it would have been, and why. */
export interface RefusedLine { readonly line: string; readonly reason: string }

/** `device=<id>` then the registry tags, sorted; reserved keys and empty values left out. */
export function tagSet(deviceId: string, tags: Readonly<Record<string, string>>): string {
  let out = `device=${escTag(deviceId)}`;
  // Sorted keys: InfluxDB's preferred order, and stable series keys.
  for (const k of Object.keys(tags).sort()) {
    const v = tags[k]!;
    if (isReservedTagKey(k) || v === '') continue;
    out += `,${escTag(k)}=${escTag(v)}`;
  }
  return out;
}

function tagsProblem(deviceId: string, tags: Readonly<Record<string, string>>): string | null {
  const bad = unrepresentable(deviceId);
  if (bad) return `device id contains ${bad}`;
  for (const k of Object.keys(tags)) {
    if (isReservedTagKey(k) || tags[k] === '') continue;
    const why = unrepresentable(k) ?? unrepresentable(tags[k]!);
    if (why) return `tag ${JSON.stringify(k)} contains ${why}`;
  }
  return null;
}

/**
 * Appends the batch's lines to `out`; returns how many. Readings that cannot
 * be written exactly go to `refused` (with the reason) instead of being sent
 * as lines InfluxDB would reject or store altered.
 */
export function batchToLines(b: AcceptedBatch, out: string[], refused: RefusedLine[]): number {
  const tags = tagSet(b.deviceId, b.tags);
  const tagsBad = tagsProblem(b.deviceId, b.tags);
  const prefixes: string[] = [];
  const problems: (string | null)[] = [];
  for (let i = 0; i < b.metricNames.length; i++) {
    const name = b.metricNames[i]!;
    const unit = b.metricUnits[i] ?? '';
    prefixes.push(`${escMeasurement(name)},${tags}${unit ? `,unit=${escTag(unit)}` : ''} value=`);
    const nameBad = unrepresentable(name);
    const unitBad = unrepresentable(unit);
    problems.push(tagsBad ?? (nameBad ? `metric name contains ${nameBad}` : unitBad ? `unit contains ${unitBad}` : null));
  }
  const n = b.values.length;
  const dev = b.deviceTimesMs;
  let written = 0;
  for (let i = 0; i < n; i++) {
    const m = b.metricIndex[i]!;
    const t = b.timesMs[i]!;
    const v = b.values[i]!;
    // Line protocol integers are int64; a JS number is exact only up to 2^53,
    // and String() of a larger or fractional one is not an integer literal.
    const d = dev === null ? t : dev[i]!;
    const extra = d !== t && Number.isSafeInteger(d) ? `,device_time_ms=${d}i` : '';
    const line = `${prefixes[m]}${formatFloat(v)}${extra} ${t}`;
    const why = problems[m] ?? (!Number.isFinite(v) ? 'value is not a finite number' : !Number.isSafeInteger(t) ? 'timestamp is not a safe integer' : null);
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
function formatFloat(v: number): string {
  return Object.is(v, -0) ? '0' : String(v);
}
