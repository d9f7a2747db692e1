// sinks/influx/: history from InfluxDB's /query (InfluxQL), which InfluxDB
// 1.x, 2.x (v1 compatibility API, bucket mapped as database) and 3.x serve. The query is
// built from a validated HistoryQuery only, and quoted and escaped as well,
// so nothing in a request can change it. Imports: core (the history port).
import type { HistoryPoint, HistoryQuery, HistorySource } from '../../core/history.ts';

// InfluxQL quoting (https://docs.influxdata.com/influxdb/v1/query_language/spec/#identifiers)
const ident = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
const literal = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

export function influxQL(q: HistoryQuery): string {
  let where = `time >= ${Math.floor(q.fromMs)}ms AND time < ${Math.ceil(q.toMs)}ms`;
  if (q.scope.kind === 'device') where += ` AND "device" = ${literal(q.scope.id)}`;
  if (q.scope.kind === 'group') where += ` AND ${ident(q.scope.key)} = ${literal(q.scope.value)}`;
  return `SELECT count("value"), mean("value"), min("value"), max("value") FROM ${ident(q.metric)} WHERE ${where} GROUP BY time(${q.stepMs}ms) fill(none)`;
}

export interface InfluxHistoryOptions { url: string; token: string; database: string; timeoutMs?: number }

/**
 * History from InfluxDB's /query (InfluxQL), which InfluxDB 1.x, 2.x (v1
 * compatibility API, bucket mapped as database) and 3.x serve.
 */
export class InfluxHistory implements HistorySource {
  readonly name = 'influxdb';
  readonly #options: InfluxHistoryOptions;
  constructor(options: InfluxHistoryOptions) { this.#options = options; }

  async query(query: HistoryQuery): Promise<HistoryPoint[]> {
    const body = new URLSearchParams({ db: this.#options.database, q: influxQL(query), epoch: 'ms' });
    const res = await fetch(new URL('/query', this.#options.url), {
      method: 'POST', body, headers: { authorization: `Token ${this.#options.token}` }, signal: AbortSignal.timeout(this.#options.timeoutMs ?? 15_000),
    });
    const json = await res.json().catch(() => ({})) as { results?: { series?: { values: [number, number, number, number, number][] }[]; error?: string }[]; error?: string };
    const err = json.error ?? json.results?.[0]?.error;
    if (!res.ok || err) throw new Error(`InfluxDB /query: HTTP ${res.status}${err ? `: ${err}` : ''}`);
    const values = json.results?.[0]?.series?.[0]?.values ?? [];
    return values.map(([t, count, mean, min, max]) => ({ t, count, mean, min, max }));
  }
}
