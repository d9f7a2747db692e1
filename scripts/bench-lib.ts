// Shared by the benchmark scripts (and the tests that run a hub process):
// how to launch the compiled hub and simulator, free ports, waiting for a
// hub to be healthy, /metrics scraping, and quantiles from the hub's
// Prometheus histograms.
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SOURCE_CONDITION, compiledEnv, ensureBuilt, staleTargets, type TargetName } from './build.ts';

/** How to start one program: node's arguments (before the program's own) and its environment. */
export interface Launch { args: string[]; env: NodeJS.ProcessEnv; from: string }

/**
 * The compiled hub and simulator of this checkout, as users run them:
 * builds what is stale first (scripts/build.ts), then plain node on dist/.
 */
export async function compiled(root: string): Promise<{ hub: Launch; sim: Launch }> {
  const targets: TargetName[] = ['hub', 'device-sim'];
  const r = await ensureBuilt(root, targets, { log: (line) => console.error(`bench: ${line}`) });
  if (r.failed.length) throw new Error(`bench: ${r.failed.map((f) => f.error).join('; ')}`);
  const env = compiledEnv(process.env);
  return {
    hub: { args: [join(root, 'hub/dist/main.js')], env, from: 'hub/dist/main.js' },
    sim: { args: [join(root, 'device-sim/dist/cli.js')], env, from: 'device-sim/dist/cli.js' },
  };
}

/**
 * The hub of another checkout (bench:hostile --hub-root), which is never
 * built from here: its hub/dist when that is up to date, else its sources
 * through tsx (an older checkout, or one never built); `from` says which.
 */
export function otherHub(hubRoot: string): Launch {
  const main = join(hubRoot, 'hub/dist/main.js');
  const stale = existsSync(main) ? staleTargets(hubRoot, ['hub']) : [{ name: 'hub', reason: 'no hub/dist' }];
  if (stale.length === 0) return { args: [main], env: compiledEnv(process.env), from: 'compiled, hub/dist/main.js' };
  return {
    args: [`--conditions=${SOURCE_CONDITION}`, '--import', 'tsx', join(hubRoot, 'hub/src/main.ts')],
    env: process.env,
    from: `its sources through tsx, not compiled (${stale.map((s) => `${s.name}: ${s.reason}`).join(', ')})`,
  };
}

/** A free loopback port: the tests' own helper (test/support imports nothing of ours, so any script may use it). */
export { freePort } from '../test/support/net.ts';

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

/** Prometheus text as `name{labels}` -> value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** The hub's /metrics as `name{labels}` -> value. */
export async function scrape(port: number): Promise<Map<string, number>> {
  return parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${BENCH_METRICS_TOKEN}` } })).text());
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
