// Shared by the benchmark scripts (and the tests that run a hub process):
// free ports, waiting for a hub to be healthy, /metrics scraping, and
// quantiles from the hub's Prometheus histograms.
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
    s.on('error', rej);
  });
}

/** Polls `${base}/healthz` until it answers 200; throws after `ms` or when `proc` exits first. */
export async function waitHealthy(base: string, proc: ChildProcess, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try { if ((await fetch(`${base}/healthz`)).ok) return; } catch { /* starting */ }
    if (Date.now() > end || proc.exitCode !== null) throw new Error(`the hub at ${base} did not become healthy within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Benchmark hubs are started with HUB_METRICS_TOKEN set to this, so /metrics can be scraped without signing in. */
export const BENCH_METRICS_TOKEN = 'bench-metrics-token';

/** The hub's /metrics as `name{labels}` -> value. */
export async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${BENCH_METRICS_TOKEN}` } })).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/**
 * Quantile q of a seconds histogram between two scrapes, in milliseconds:
 * the upper bound of the bucket it falls in (so "p99 <= X ms").
 */
export function histQuantileMs(a: Map<string, number>, b: Map<string, number>, name: string, q: number): number {
  const buckets: [number, number][] = [];
  for (const [k, v] of b) {
    const m = new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}$`).exec(k);
    if (m) buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), v - (a.get(k) ?? 0)]);
  }
  buckets.sort((x, y) => x[0] - y[0]);
  const total = buckets.at(-1)?.[1] ?? 0;
  for (const [le, c] of buckets) if (c >= q * total) return le * 1000;
  return NaN;
}
