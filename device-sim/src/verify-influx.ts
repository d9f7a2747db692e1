// device-sim/: the load test's proof of storage (--verify-influx URL): after
// a run, count what InfluxDB holds for each device of the run and compare it
// with what the hub acked, until the counts settle or a timeout. InfluxQL
// over `/query`, which InfluxDB 1.x serves, 2.x serves for every bucket
// (`db` = the bucket; `Authorization: Token`), and 3.x serves too. A reading
// is one point (measurement = metric, tag `device`, field `value`, the
// reading's time; the hub's schema in the README), so a device's stored
// points are its readings: fewer than it was acked are missing, more are
// doubled (InfluxDB overwrites an identical point, so a batch written twice
// with the same times stays one; doubles mean the same reading stored under
// two times or two series).
// Imports: node only.

export interface InfluxTarget {
  /** http(s)://host:port of InfluxDB (its /query). */
  url: string;
  /** The 1.x database, or the 2.x/3.x bucket. */
  db: string;
  /** Sent as `Authorization: Token <token>` (2.x, 3.x); absent for an open 1.x. */
  token?: string;
}

/** Most devices listed by name in a report (the totals cover all). */
export const WORST_DEVICES = 20;
/** A query's response is read up to this size (20,000 devices x a few metrics fit easily). */
export const MAX_RESPONSE_BYTES = 64 << 20;

export class InfluxVerifyError extends Error {
  override name = 'InfluxVerifyError';
}

/** A regular expression literal for InfluxQL matching names that start with `prefix`. */
export function prefixRegex(prefix: string): string {
  return `/^${prefix.replace(/[\\/^$.*+?()[\]{}|]/g, '\\$&')}/`;
}

interface QueryResponse { results?: { series?: { name: string; tags?: Record<string, string>; values?: unknown[][] }[]; error?: string }[]; error?: string }

/**
 * Points per device in [fromMs, toMs] for devices whose id starts with
 * `prefix`, over every measurement, from one InfluxQL query.
 */
export async function countStored(t: InfluxTarget, o: { prefix: string; fromMs: number; toMs: number; timeoutMs?: number }): Promise<Map<string, number>> {
  const q = `SELECT count("value") FROM /.*/ WHERE time >= ${Math.floor(o.fromMs)}ms AND time <= ${Math.ceil(o.toMs)}ms AND "device" =~ ${prefixRegex(o.prefix)} GROUP BY "device"`;
  const url = `${t.url.replace(/\/+$/, '')}/query?${new URLSearchParams({ db: t.db, q, epoch: 'ms' }).toString()}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: t.token ? { authorization: `Token ${t.token}` } : {}, signal: AbortSignal.timeout(o.timeoutMs ?? 30_000) });
  } catch (err) {
    throw new InfluxVerifyError(`InfluxDB at ${t.url} did not answer: ${(err as Error).message}`);
  }
  const text = await boundedText(res, MAX_RESPONSE_BYTES);
  if (!res.ok) throw new InfluxVerifyError(`InfluxDB answered ${res.status}: ${text.slice(0, 300)}`);
  let body: QueryResponse;
  try { body = JSON.parse(text) as QueryResponse; } catch { throw new InfluxVerifyError(`InfluxDB's answer is not JSON: ${text.slice(0, 200)}`); }
  const err = body.error ?? body.results?.find((r) => r.error)?.error;
  if (err) throw new InfluxVerifyError(`InfluxDB: ${err}`);
  const out = new Map<string, number>();
  for (const s of body.results?.[0]?.series ?? []) {
    const device = s.tags?.device;
    if (!device) continue;
    const n = Number(s.values?.[0]?.[1] ?? 0);
    out.set(device, (out.get(device) ?? 0) + (Number.isFinite(n) ? n : 0));
  }
  return out;
}

/** The body as text, read at most `max` bytes (a chunked answer has no length to check first). */
async function boundedText(res: Response, max: number): Promise<string> {
  const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array> | undefined;
  if (!reader) return '';
  const parts: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > max) {
      await reader.cancel();
      throw new InfluxVerifyError(`InfluxDB's answer is over ${max} bytes`);
    }
    parts.push(value);
  }
  return Buffer.concat(parts).toString('utf8');
}

export interface DeviceStored { id: string; expected: number; stored: number }

export interface StoredReport {
  /** Devices the run expected readings from (acked). */
  devices: number;
  expected: number;
  stored: number;
  /** Readings acked and not in the database, summed over devices. */
  missing: number;
  /** Readings in the database beyond what was acked, summed over devices. */
  doubled: number;
  /** The worst devices (most missing, then most doubled). */
  worst: DeviceStored[];
  /** Devices of the run's prefix stored in the database though the run expected nothing from them. */
  unexpectedDevices: number;
}

/** Per device: expected (acked) against stored; devices in `ignore` (a run's bad actors, whose readings are meant to be refused) count on neither side. */
export function compareStored(expected: ReadonlyMap<string, number>, stored: ReadonlyMap<string, number>, ignore: ReadonlySet<string> = new Set()): StoredReport {
  let missing = 0, doubled = 0, exp = 0, sto = 0, unexpectedDevices = 0;
  const off: DeviceStored[] = [];
  for (const [id, e] of expected) {
    const s = stored.get(id) ?? 0;
    exp += e;
    sto += s;
    if (s < e) missing += e - s;
    if (s > e) doubled += s - e;
    if (s !== e) off.push({ id, expected: e, stored: s });
  }
  for (const [id, s] of stored) {
    if (expected.has(id) || ignore.has(id)) continue;
    unexpectedDevices++;
    sto += s;
    doubled += s;
    off.push({ id, expected: 0, stored: s });
  }
  off.sort((a, b) => (Math.max(0, b.expected - b.stored) - Math.max(0, a.expected - a.stored)) || (Math.max(0, b.stored - b.expected) - Math.max(0, a.stored - a.expected)) || a.id.localeCompare(b.id));
  return { devices: expected.size, expected: exp, stored: sto, missing, doubled, worst: off.slice(0, WORST_DEVICES), unexpectedDevices };
}

export interface VerifyResult extends StoredReport {
  /** How long the counts took to match, or the settle timeout. */
  settledMs: number;
  /** Every device's count matched before the timeout. */
  settled: boolean;
  queries: number;
}

/**
 * Polls InfluxDB until every device's count matches what was acked, or
 * settleMs has passed (the sink may still be shipping): the last comparison.
 */
export async function verifyStored(t: InfluxTarget, expected: ReadonlyMap<string, number>, o: { prefix: string; fromMs: number; toMs: number; settleMs: number; pollMs?: number; ignore?: ReadonlySet<string> }): Promise<VerifyResult> {
  const started = Date.now();
  let queries = 0;
  for (;;) {
    queries++;
    const report = compareStored(expected, await countStored(t, o), o.ignore);
    const elapsed = Date.now() - started;
    if ((report.missing === 0 && report.doubled === 0) || elapsed >= o.settleMs) {
      return { ...report, settledMs: elapsed, settled: report.missing === 0 && report.doubled === 0, queries };
    }
    await new Promise((r) => setTimeout(r, Math.min(o.pollMs ?? 1000, Math.max(0, o.settleMs - elapsed))));
  }
}
