// Spooled batches -> InfluxDB line protocol.
// Schema (README "InfluxDB schema"): one measurement per metric name, tags
// `device` + the device's registry tags (+ `unit` when set), field `value`
// (float), plus integer field `device_time_ms` when the hub corrected the
// reading's time; timestamp in ms. A point is identified by measurement,
// tags and time, so replaying a batch rewrites the same points.
import type { AcceptedBatch } from '../../spool/store.ts';

// https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters
const escMeasurement = (s: string) => s.replace(/[,\s\\]/g, (c) => `\\${c}`);
const escTag = (s: string) => s.replace(/[,=\s\\]/g, (c) => `\\${c}`);

/** Tag keys the hub sets itself; registry tags with these names are dropped. */
const RESERVED = new Set(['device', 'unit']);

export function tagSet(deviceId: string, tags: Readonly<Record<string, string>>): string {
  let out = `device=${escTag(deviceId)}`;
  // Sorted keys: InfluxDB's preferred order, and stable series keys.
  for (const k of Object.keys(tags).sort()) {
    const v = tags[k]!;
    if (RESERVED.has(k) || v === '') continue;
    out += `,${escTag(k)}=${escTag(v)}`;
  }
  return out;
}

/** Appends the batch's lines to `out`; returns how many. */
export function batchToLines(b: AcceptedBatch, out: string[]): number {
  const tags = tagSet(b.deviceId, b.tags);
  const prefixes = b.metricNames.map((name, i) => `${escMeasurement(name)},${tags}${b.metricUnits[i] ? `,unit=${escTag(b.metricUnits[i]!)}` : ''} value=`);
  const n = b.values.length;
  for (let i = 0; i < n; i++) {
    const dev = b.deviceTimesMs;
    const extra = dev !== null && dev[i] !== b.timesMs[i] ? `,device_time_ms=${dev[i]}i` : '';
    out.push(`${prefixes[b.metricIndex[i]!]}${formatFloat(b.values[i]!)}${extra} ${b.timesMs[i]}`);
  }
  return n;
}

/** Line protocol floats: a plain JS number string is valid (1.5, 21, 1e+21, -0). */
function formatFloat(v: number): string {
  return Object.is(v, -0) ? '0' : String(v);
}
