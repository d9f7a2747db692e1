// GET /api/v1/history: downsampled series (count/mean/min/max per step) for
// one metric over the fleet, a tag group or one device. Owns the query
// string, the answer's shape and the device page's time ranges.
import { ApiError, apiJson, isRecord } from './api.ts';

export interface HistoryPoint {
  readonly t: number;
  readonly count: number;
  readonly mean: number;
  readonly min: number;
  readonly max: number;
}

export interface HistoryQuery {
  metric: string;
  /** Relative ("-15m") or absolute Unix ms. */
  from: string;
  to?: string;
  step: string;
  /** One device, or a tag group as "key:value" (a colon), or neither for the fleet. */
  device?: string;
  group?: string;
}

export function historyUrl(q: HistoryQuery): string {
  const p = new URLSearchParams({ metric: q.metric, from: q.from, to: q.to ?? 'now', step: q.step });
  if (q.device !== undefined) p.set('device', q.device);
  if (q.group !== undefined) p.set('group', q.group);
  return `/api/v1/history?${p.toString()}`;
}

/** Points oldest first; points with a non-numeric field are dropped. */
export async function fetchHistory(q: HistoryQuery, signal?: AbortSignal): Promise<HistoryPoint[]> {
  const body = await apiJson(historyUrl(q), signal ? { signal } : {});
  if (!isRecord(body) || !Array.isArray(body['points'])) throw new ApiError(200, 'unexpected /api/v1/history answer');
  const out: HistoryPoint[] = [];
  for (const p of body['points'] as unknown[]) {
    if (!isRecord(p)) continue;
    const { t, count, mean, min, max } = p;
    if (typeof t === 'number' && typeof mean === 'number' && typeof min === 'number' && typeof max === 'number') {
      out.push({ t, count: typeof count === 'number' ? count : 0, mean, min, max });
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

/** Device page ranges. The embedded hub keeps device series at 1 min resolution. */
export const DEVICE_RANGES = [
  { key: '15m', label: '15 min', from: '-15m', step: '1m', ms: 15 * 60_000 },
  { key: '1h', label: '1 h', from: '-1h', step: '1m', ms: 60 * 60_000 },
  { key: '24h', label: '24 h', from: '-24h', step: '15m', ms: 24 * 60 * 60_000 },
] as const;
export type DeviceRange = (typeof DEVICE_RANGES)[number];
