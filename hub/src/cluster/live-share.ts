// cluster/: the live path across hubs. Every tick each hub publishes what its
// own batches added since the last one (LiveState.takeLocal(): per scope and
// metric a mergeable partial, per device its latest values) on
// `<prefix>.live.partials.<hub>`; every hub merges what the others published
// (LiveState.mergeRemote()), so a dashboard on any hub shows the whole fleet.
// Messages are JSON, split to stay under MAX_MESSAGE_BYTES, and every field
// of one that arrives is checked (types, lengths, finite numbers, sketch bins
// bounded) before it is merged: a bad one is dropped whole and counted.
// Imports: core (names), live (types, the partial codec).
import { METRIC_NAME_RE } from '../core/names.ts';
import { partialFromWire, partialToWire, type WirePartial } from '../live/aggregates.ts';
import type { DevicePartial, SeriesPartial } from '../live/state.ts';

/** Below NATS's default max_payload (1 MiB), with room. */
export const MAX_MESSAGE_BYTES = 256 << 10;
const MAX_ID = 128;
const MAX_TAG_KEY = 64;
const MAX_TAG_VALUE = 256;
const MAX_UNIT = 64;
const MAX_DEVICE_METRICS = 1024;

type WireSeries = [string | null, string | null, string, string, WirePartial];
type WireDevice = [string, string[], string[], number[], number[]];
interface WireMessage { v: 1; hub: string; series: WireSeries[]; devices: WireDevice[] }

export interface LiveShare { hub: string; series: SeriesPartial[]; devices: DevicePartial[] }

/** One or more messages holding `share` (none when it is empty). */
export function encodeLiveShare(hub: string, share: { series: readonly SeriesPartial[]; devices: readonly DevicePartial[] }): Buffer[] {
  const out: Buffer[] = [];
  let msg: WireMessage = { v: 1, hub, series: [], devices: [] };
  let bytes = 64;
  const flush = (): void => {
    if (msg.series.length || msg.devices.length) out.push(Buffer.from(JSON.stringify(msg)));
    msg = { v: 1, hub, series: [], devices: [] };
    bytes = 64;
  };
  for (const s of share.series) {
    const item: WireSeries = [s.tag?.key ?? null, s.tag?.value ?? null, s.metric, s.unit, partialToWire(s.partial)];
    const size = JSON.stringify(item).length + 1;
    if (bytes + size > MAX_MESSAGE_BYTES) flush();
    msg.series.push(item);
    bytes += size;
  }
  for (const d of share.devices) {
    const n = Math.min(d.metrics.length, MAX_DEVICE_METRICS);
    const item: WireDevice = [d.id, d.metrics.slice(0, n), d.units.slice(0, n), d.values.slice(0, n), d.times.slice(0, n)];
    const size = JSON.stringify(item).length + 1;
    if (bytes + size > MAX_MESSAGE_BYTES) flush();
    msg.devices.push(item);
    bytes += size;
  }
  flush();
  return out;
}

const str = (x: unknown, max: number): x is string => typeof x === 'string' && x.length > 0 && x.length <= max;
const fin = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** A message another hub published, or null when any part of it is not what encodeLiveShare() writes. */
export function decodeLiveShare(data: Uint8Array): LiveShare | null {
  if (data.length > MAX_MESSAGE_BYTES + 4096) return null;
  let raw: unknown;
  try { raw = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')); } catch { return null; }
  if (typeof raw !== 'object' || raw === null) return null;
  const m = raw as Partial<WireMessage>;
  if (m.v !== 1 || !str(m.hub, 64) || !Array.isArray(m.series) || !Array.isArray(m.devices)) return null;
  const series: SeriesPartial[] = [];
  for (const item of m.series as unknown[]) {
    if (!Array.isArray(item) || item.length !== 5) return null;
    const [key, value, metric, unit, wire] = item as unknown[];
    const grouped = key !== null || value !== null;
    if (grouped && (!str(key, MAX_TAG_KEY) || !str(value, MAX_TAG_VALUE))) return null;
    if (typeof metric !== 'string' || !METRIC_NAME_RE.test(metric) || typeof unit !== 'string' || unit.length > MAX_UNIT) return null;
    const partial = partialFromWire(wire);
    if (!partial) return null;
    series.push({ tag: grouped ? { key: key as string, value: value as string } : null, metric, unit, partial });
  }
  const devices: DevicePartial[] = [];
  for (const item of m.devices as unknown[]) {
    if (!Array.isArray(item) || item.length !== 5) return null;
    const [id, metrics, units, values, times] = item as unknown[];
    if (!str(id, MAX_ID) || !Array.isArray(metrics) || !Array.isArray(units) || !Array.isArray(values) || !Array.isArray(times)) return null;
    const n = metrics.length;
    if (n > MAX_DEVICE_METRICS || units.length !== n || values.length !== n || times.length !== n) return null;
    for (let i = 0; i < n; i++) {
      const name: unknown = metrics[i];
      const unit: unknown = units[i];
      if (typeof name !== 'string' || !METRIC_NAME_RE.test(name) || typeof unit !== 'string' || unit.length > MAX_UNIT || !fin(values[i]) || !fin(times[i])) return null;
    }
    devices.push({ id, metrics: metrics as string[], units: units as string[], values: values as number[], times: times as number[] });
  }
  return { hub: m.hub, series, devices };
}
