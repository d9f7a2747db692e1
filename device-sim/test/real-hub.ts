// device-sim/ test support (not a test file): the real hub as a separate
// process, for the tests and benchmarks that run the simulator against it.
// device-sim never imports the hub: the hub is started as users start it
// (node hub/dist/main.js, or its sources through tsx when it has not been
// built), its devices file is written in the registry format the hub's
// device-token tool and scripts/sim-fleet.ts write ({"version": 1,
// "devices": {id: {"tokenHash": "sha256:" + base64url(sha256(token))}}},
// proto/README.md §2.1), and it is observed from outside: /healthz, /metrics
// (HUB_METRICS_TOKEN) and /proc/<pid>/stat.
// Imports: node, and the shared test/support.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { freePort } from '../../test/support/net.ts';
import { deviceId } from '../src/tokens.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const METRICS_TOKEN = 'device-sim-test-metrics';

/** Environment that lifts the per-address, admission and readings limits (as scripts/bench-ingest.ts does). */
export const UNLIMITED_ENV = {
  HUB_MAX_CONN_PER_ADDRESS: '1000000', HUB_ADMISSION_RATE: '100000', HUB_ADMISSION_BURST: '100000',
  HUB_MAX_READINGS_PER_SEC: '1000000', HUB_READINGS_BURST: '10000000',
} as const;

/** Registers `count` devices `${prefix}0000`..: the hub's devices file and the simulator's tokens file ({id: token}). */
export function writeFleet(dir: string, count: number, prefix: string): { registry: string; tokens: string } {
  const devices: Record<string, { tokenHash: string; tags: Record<string, string> }> = {};
  const tokens: Record<string, string> = {};
  for (let i = 0; i < count; i++) {
    const id = deviceId(prefix, i);
    const token = `${id}.${randomBytes(32).toString('base64url')}`;
    tokens[id] = token;
    devices[id] = { tokenHash: `sha256:${createHash('sha256').update(token).digest('base64url')}`, tags: { site: `s${i % 3}` } };
  }
  const registry = join(dir, 'devices.json');
  const tokensFile = join(dir, 'tokens.json');
  writeFileSync(registry, JSON.stringify({ version: 1, devices }, null, 2));
  writeFileSync(tokensFile, JSON.stringify(tokens));
  return { registry, tokens: tokensFile };
}

/** NODE_OPTIONS without the source condition, for compiled programs (scripts/build.ts compiledEnv does the same). */
export function compiledEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  const kept = (env.NODE_OPTIONS ?? '').split(/\s+/).filter((t) => t && t !== '--conditions=@telemetry/source' && t !== '-C=@telemetry/source');
  if (kept.length) out.NODE_OPTIONS = kept.join(' ');
  else delete out.NODE_OPTIONS;
  return out;
}

export interface RealHub {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly port: number;
  /** ws://127.0.0.1:PORT/v1/devices */
  readonly url: string;
  /** What was started: "hub/dist/main.js" or "hub/src/main.ts (tsx)". */
  readonly from: string;
  /** Its stdout and stderr so far. */
  out(): string;
  /** /metrics as `name{labels}` -> value. */
  scrape(): Promise<Map<string, number>>;
  /** utime + stime so far, seconds (/proc/PID/stat, USER_HZ = 100). */
  cpuSeconds(): number;
  /** SIGTERM, then SIGKILL after `ms`; resolves when it has exited. */
  stop(ms?: number): Promise<void>;
}

/** utime + stime of a process, seconds. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Starts the hub on a free port with its data in `dataDir`, and waits until /healthz answers. */
export async function startRealHub(o: { dataDir: string; registry: string; env?: Record<string, string>; readyMs?: number }): Promise<RealHub> {
  const port = await freePort();
  const dist = join(ROOT, 'hub/dist/main.js');
  const compiled = existsSync(dist);
  const args = compiled ? [dist] : ['--conditions=@telemetry/source', '--import', 'tsx', join(ROOT, 'hub/src/main.ts')];
  const env: NodeJS.ProcessEnv = {
    ...(compiled ? compiledEnv(process.env) : process.env),
    HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: o.dataDir, HUB_DEVICES_FILE: o.registry,
    HUB_METRICS_TOKEN: METRICS_TOKEN, HUB_LOG_LEVEL: 'warn', HUB_DASHBOARD_DIR: join(o.dataDir, 'no-dashboard'),
    ...o.env,
  };
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const base = `http://127.0.0.1:${port}`;
  const end = Date.now() + (o.readyMs ?? 60_000);
  for (;;) {
    try { if ((await fetch(`${base}/healthz`)).ok) break; } catch { /* starting */ }
    if (proc.exitCode !== null || Date.now() > end) {
      proc.kill('SIGKILL');
      throw new Error(`the hub did not become healthy (exit ${proc.exitCode}); output:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = proc.pid ?? 0;
  return {
    proc, pid, port, url: `ws://127.0.0.1:${port}/v1/devices`, from: compiled ? 'hub/dist/main.js' : 'hub/src/main.ts (tsx)',
    out: () => out,
    async scrape() {
      const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
      const m = new Map<string, number>();
      for (const line of text.split('\n')) {
        if (!line || line.startsWith('#')) continue;
        const i = line.lastIndexOf(' ');
        m.set(line.slice(0, i), Number(line.slice(i + 1)));
      }
      return m;
    },
    cpuSeconds: () => cpuSecondsOf(pid),
    async stop(ms = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
      await exited;
      clearTimeout(timer);
    },
  };
}
