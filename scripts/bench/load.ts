// scripts/bench/: the client of the hub and ws-baseline columns of the
// ingest comparison: the simulator's lean load generator
// (`node device-sim/dist/cli.js lean ...`, device-sim/README.md "Lean load
// generator"), which speaks the real protocol (token, Hello/Welcome, credit,
// seq), checks every Ack, counts loss by seq and reports one JSON line. This
// file is the one place that knows its command line and its report.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { compiledEnv } from '../build.ts';
import type { LoadHandle, LoadOptions, LoadResult } from './load-types.ts';
import { running, sleep, spawnTracked, stopChild } from './proc.ts';

export interface LeanOptions extends LoadOptions {
  /** Sessions the server holds now (hub_device_sessions, the baseline's /stats): when every client is in. */
  serverSessions: () => Promise<number>;
}

type Json = Record<string, unknown>;
const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);
const obj = (v: unknown): Json => (v && typeof v === 'object' ? v as Json : {});

/**
 * The lean generator's --json summary as a LoadResult: counts over its whole
 * run (it is not told when the measured interval starts), latency over its
 * steady window (every client connected, to the end of sending) when it
 * reports one, else over the whole run.
 */
export function parseLeanSummary(j: Json): LoadResult {
  const batches = obj(j.batches);
  const steady = obj(j.steadyLatencyMs);
  const latency = num(steady.samples) > 0 ? steady : obj(j.latencyMs);
  const notes: string[] = [];
  const violations = Object.entries(obj(j.violations)).filter(([, v]) => num(v) > 0);
  if (violations.length) notes.push(`protocol violations seen by the client: ${violations.map(([k, v]) => `${k} ${String(v)}`).join(', ')}`);
  if (j.drained === false) notes.push('the client did not drain every outstanding ack before stopping');
  return {
    acked: num(batches.acked),
    readingsAcked: num(j.readingsAcked),
    lost: Number.isNaN(num(batches.lost)) ? null : num(batches.lost),
    errors: Number.isNaN(num(j.errors)) ? 0 : num(j.errors),
    latency: { p50Ms: num(latency.p50), p99Ms: num(latency.p99), maxMs: num(latency.max), samples: num(latency.samples) },
    behindSchedule: num(batches.behindSchedule),
    notes,
    raw: j,
  };
}

/** Seconds the clients have to get their sessions before the warm-up starts anyway. */
export const CONNECT_ALLOWANCE_S = 30;

/**
 * Starts the lean generator, stopping by itself after opts.maxSeconds at the
 * latest (--duration); finish() stops it earlier with SIGTERM to its main
 * process, which drains, stops its --processes children and prints the summary.
 */
export function startLeanLoad(opts: LeanOptions): LoadHandle {
  const duration = Math.ceil(opts.maxSeconds);
  const args = [
    join(opts.root, 'device-sim/dist/cli.js'), 'lean',
    '--url', opts.url, '--tokens', opts.tokensFile, '--prefix', opts.prefix, '--devices', String(opts.clients),
    '--window', String(opts.window), '--readings', String(opts.readingsPerMessage), '--metrics', '4',
    '--duration', String(duration), '--processes', String(Math.max(1, Math.min(opts.processes, opts.clients))), '--json', '--quiet',
  ];
  if (opts.sourceAddresses.length) args.push('--source-addresses', opts.sourceAddresses.join(','));
  if (opts.ratePerClient) args.push('--rate', String(opts.ratePerClient));
  const child: ChildProcess = spawnTracked(process.execPath, args, { cwd: opts.root, env: compiledEnv(process.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4096); });
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

  // Every client in, or as many as made it within the connect allowance (a busy server admits new sessions slowly).
  const notes: string[] = [];
  const ready = (async () => {
    const end = Date.now() + CONNECT_ALLOWANCE_S * 1000;
    for (;;) {
      if (!running(child)) throw new Error(`the lean load generator exited (${child.exitCode}) before its clients connected: ${err.trim() || out.trim()}`);
      let n = 0;
      try { n = await opts.serverSessions(); } catch { /* not answering yet */ }
      if (n >= opts.clients) return;
      if (Date.now() > end) {
        if (n === 0) throw new Error(`no lean client had a session after ${CONNECT_ALLOWANCE_S} s: ${err.trim()}`);
        notes.push(`only ${n} of ${opts.clients} clients had a session when the warm-up started (${CONNECT_ALLOWANCE_S} s after the start)`);
        return;
      }
      await sleep(100);
    }
  })();
  ready.catch(() => { /* reported by whoever awaits it */ });

  return {
    client: `device-sim lean (node device-sim/dist/cli.js lean, ${Math.max(1, Math.min(opts.processes, opts.clients))} process${opts.processes > 1 ? 'es' : ''})`,
    windowed: false,
    ready,
    // SIGUSR2: the generator's steady window (its CPU and steadyLatencyMs) starts here, after the warm-up.
    markStart: () => { if (running(child) && child.pid !== undefined) { try { process.kill(child.pid, 'SIGUSR2'); } catch { /* gone */ } } },
    markEnd: () => {},
    pids: () => [child.pid ?? -1],
    async finish(): Promise<LoadResult> {
      // SIGTERM to its main process only: it drains (--drain-ms, 5 s) and reports; the group is killed only if it hangs.
      if (running(child) && child.pid !== undefined) { try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ } }
      const t = setTimeout(() => { void stopChild(child, 5000); }, 30_000);
      const code = await exit;
      clearTimeout(t);
      const line = out.trim().split('\n').reverse().find((l) => l.trimStart().startsWith('{'));
      if (!line) throw new Error(`the lean load generator exited (${code}) without a JSON summary: ${err.trim() || out.trim()}`);
      const r = parseLeanSummary(JSON.parse(line) as Json);
      r.notes.push(...notes);
      return r;
    },
  };
}
