// GET /api/v1/history: a downsampled series for one metric and one scope
// (a device, a tag group, or the whole fleet) over a time range.
//   ?metric=temperature&device=dev-1&from=-15m&to=now&step=10s
//   ?metric=temperature&group=site:north&from=1764000000000&to=1764003600000&step=1m
// Parameters are validated against strict patterns (400 with a message);
// the sources (sinks/influx/history.ts, live/rollups.ts) get validated values
// only. Imports: core (errors, names, the history port).
import { BadRequestError } from '../core/errors.ts';
import type { HistoryQuery } from '../core/history.ts';
import { DEVICE_ID_RE, METRIC_NAME_RE, TAG_KEY_RE } from '../core/names.ts';

export type { HistoryPoint, HistoryQuery, HistorySource } from '../core/history.ts';

const MAX_RANGE_MS = 31 * 86_400_000;
const MAX_POINTS = 10_000;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function duration(v: string, key: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(v);
  if (!m) throw new BadRequestError(`${key}=${JSON.stringify(v.slice(0, 40))}: expected a duration such as 10s, 5m, 1h`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

function time(v: string | null, key: string, now: number, dflt: number): number {
  if (v === null || v === '') return dflt;
  if (v === 'now') return now;
  if (v.startsWith('-')) return now - duration(v.slice(1), key);
  if (/^\d{1,15}$/.test(v)) return Number(v);
  const t = Date.parse(v);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}T/.test(v)) throw new BadRequestError(`${key}=${JSON.stringify(v.slice(0, 40))}: expected Unix ms, an ISO 8601 time, "now" or -<duration>`);
  return t;
}

/** Parses and validates query parameters; throws BadRequestError with a message for the client. */
export function parseHistoryQuery(params: URLSearchParams, now: number): HistoryQuery {
  const metric = params.get('metric') ?? '';
  if (!METRIC_NAME_RE.test(metric) || metric.length > 255) throw new BadRequestError('metric: required, a metric name such as temperature');
  const device = params.get('device');
  const group = params.get('group');
  if (device !== null && group !== null) throw new BadRequestError('give device or group, not both');
  let scope: HistoryQuery['scope'] = { kind: 'fleet' };
  if (device !== null) {
    if (!DEVICE_ID_RE.test(device)) throw new BadRequestError(`device=${JSON.stringify(device.slice(0, 40))}: not a device id`);
    scope = { kind: 'device', id: device };
  } else if (group !== null) {
    const i = group.indexOf(':');
    const key = group.slice(0, i);
    const value = group.slice(i + 1);
    if (i <= 0 || !TAG_KEY_RE.test(key) || key === 'device' || value === '' || Buffer.byteLength(value) > 256) {
      throw new BadRequestError(`group=${JSON.stringify(group.slice(0, 40))}: expected tag:value, e.g. site:north`);
    }
    scope = { kind: 'group', key, value };
  }
  const toMs = time(params.get('to'), 'to', now, now);
  const fromMs = time(params.get('from'), 'from', now, toMs - 15 * 60_000);
  if (!(fromMs < toMs)) throw new BadRequestError('from must be before to');
  if (toMs - fromMs > MAX_RANGE_MS) throw new BadRequestError('the range may be at most 31 days');
  const stepParam = params.get('step');
  const stepMs = stepParam ? duration(stepParam, 'step') : Math.max(1000, Math.ceil((toMs - fromMs) / 300 / 1000) * 1000);
  if (stepMs < 1000) throw new BadRequestError('step must be at least 1s');
  if ((toMs - fromMs) / stepMs > MAX_POINTS) throw new BadRequestError(`at most ${MAX_POINTS} points: use a larger step`);
  return { metric, scope, fromMs, toMs, stepMs };
}
