// npm run soak -- [--minutes 30] [--devices 500] [--rate 5] [--json]
//
// The soak: a fleet at steady load for --minutes through the compiled hub
// into a real InfluxDB (Debian's influxd 1.6.7 behind the test-only
// /api/v2/write adapter), with faults on a schedule scaled to the length:
// the hub stopped with SIGTERM (at 25 % of the run) and killed with SIGKILL
// (at 50 %), each time started again at once by this script as a
// supervisor would; InfluxDB stopped for 1/15 of the run (from 60 %); and a
// reconnect storm (the simulator's own phase, at 80 %). Every minute it
// samples the hub's RSS, V8 heap and event-loop lag (/metrics). The
// simulator's --verify-influx counts every device's readings in InfluxDB at
// the end. Verdict: zero readings lost and zero doubled in InfluxDB, and
// memory flat: within each hub process's life, RSS at its last sample at
// most 10 % + 32 MiB above its first sample after two minutes (a process
// younger than that is not judged). Exit status 0 on a pass, 1 otherwise.
// Never part of npm test. Everything on 127.0.0.1; every child stops with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Influxd, startV2WriteAdapter } from '../hub/test/influxd.ts';
import { BENCH_METRICS_TOKEN, compiled, freePort, scrape, waitHealthy } from './bench-lib.ts';
import { ensureSimFleet } from './sim-fleet.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '30' }, devices: { type: 'string', default: '500' }, rate: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log('usage: npm run soak -- [--minutes 30] [--devices 500] [--rate 5] [--json]');
  process.exit(0);
}
const num = (name: string, v: string, min: number, max: number): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) { console.error(`soak: --${name} must be a number in ${min}..${max} (got ${v})`); process.exit(2); }
  return n;
};
const minutes = num('minutes', values.minutes, 1, 24 * 60);
const devices = Math.round(num('devices', values.devices, 1, 19_000));
const rate = num('rate', values.rate, 0.1, 1000);
const totalMs = minutes * 60_000;

const root = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'soak-'));
const log = (s: string): void => { console.error(`soak ${((Date.now() - started) / 60_000).toFixed(1).padStart(5)} min: ${s}`); };
const started = Date.now();

const children = new Set<ChildProcess>();
let influx: Influxd | null = null;
const cleanup = (): void => {
  for (const c of children) { try { process.kill(-(c.pid ?? 0), 'SIGKILL'); } catch { /* gone */ } }
  try { influx?.proc?.kill('SIGKILL'); } catch { /* gone */ }
  rmSync(tmp, { recursive: true, force: true });
  if (influx) rmSync(influx.dir, { recursive: true, force: true });
};
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

interface Sample { minute: number; pid: number; rssMiB: number; heapMiB: number; heapTotalMiB: number; externalMiB: number; lagP99Ms: number; lagMaxMs: number; spoolMiB: number }
interface Fault { atMin: number; what: string; downSeconds?: number }

async function main(): Promise<void> {
  const { hub: hubLaunch, sim } = await compiled(root);
  influx = await Influxd.start('telemetry');
  const adapter = await startV2WriteAdapter(() => influx!.url);
  const registry = join(tmp, 'devices.json');
  const tokens = join(tmp, 'tokens.json');
  ensureSimFleet(registry, tokens, devices, 'soak-');
  const port = await freePort();
  const dataDir = join(tmp, 'hub');

  // ---- the hub, supervised: started again whenever it exits, until the end
  let hub: ChildProcess | null = null;
  const restarts: { atMin: number; signal: string; downMs: number }[] = [];
  const startHub = async (): Promise<void> => {
    const c = spawn(process.execPath, hubLaunch.args, {
      cwd: root, detached: true, stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...hubLaunch.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: dataDir, HUB_DEVICES_FILE: registry, HUB_LOG_LEVEL: 'warn',
        HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN, INFLUX_URL: adapter.url, INFLUX_TOKEN: 'soak', INFLUX_ORG: 'soak', INFLUX_BUCKET: 'telemetry',
        // One source address, and the storm returns at once: the soak tests durability, not the admission control.
        HUB_MAX_CONN_PER_ADDRESS: '100000', HUB_ADMISSION_RATE: '100000', HUB_ADMISSION_BURST: '100000',
      },
    });
    let err = '';
    c.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-4000); });
    children.add(c);
    c.once('exit', () => children.delete(c));
    hub = c;
    await waitHealthy(`http://127.0.0.1:${port}`, c, 60_000).catch((e: unknown) => { throw new Error(`hub did not start: ${(e as Error).message} ${err}`); });
  };
  const restartHub = async (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    const c = hub;
    if (!c || c.exitCode !== null) return;
    const t0 = Date.now();
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    log(`hub ${signal}`);
    c.kill(signal);
    await exited;
    await startHub();
    restarts.push({ atMin: (t0 - started) / 60_000, signal, downMs: Date.now() - t0 });
    log(`hub back after ${Date.now() - t0} ms`);
  };
  await startHub();

  // ---- the fleet: the simulator with one plan, a reconnect storm at 80 %
  const plan = {
    name: 'soak', devices, rate, batchMs: 1000,
    phases: [
      { kind: 'steady', name: 'steady', duration: `${Math.round(totalMs * 0.8)}ms` },
      { kind: 'reconnect-storm', name: 'storm', duration: `${Math.max(1000, Math.round(totalMs * 0.05))}ms` },
      { kind: 'steady', name: 'recovery', duration: `${Math.max(1000, totalMs - Math.round(totalMs * 0.8) - Math.max(1000, Math.round(totalMs * 0.05)))}ms` },
    ],
  };
  const planFile = join(tmp, 'soak.json');
  writeFileSync(planFile, JSON.stringify(plan));
  const simProc = spawn(process.execPath, [...sim.args, '--config', planFile, '--url', `ws://127.0.0.1:${port}/v1/devices`, '--tokens', tokens, '--prefix', 'soak-',
    '--devices', String(devices), '--drain-ms', '60000', '--verify-influx', influx.url, '--influx-db', 'telemetry', '--settle-ms', '180000', '--json', '--quiet'], {
    cwd: root, env: sim.env, detached: true, stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(simProc);
  let simOut = '';
  simProc.stdout?.on('data', (b: Buffer) => { simOut += b.toString(); });
  const simDone = new Promise<number | null>((r) => simProc.once('exit', (code) => { children.delete(simProc); r(code); }));

  // ---- faults on the schedule, samples every minute
  const faults: Fault[] = [];
  const at = (share: number, f: () => Promise<void>): NodeJS.Timeout => setTimeout(() => { void f().catch((e: unknown) => log(`fault failed: ${(e as Error).message}`)); }, totalMs * share);
  const timers = [
    at(0.25, async () => { faults.push({ atMin: minutes * 0.25, what: 'hub SIGTERM' }); await restartHub('SIGTERM'); }),
    at(0.5, async () => { faults.push({ atMin: minutes * 0.5, what: 'hub SIGKILL' }); await restartHub('SIGKILL'); }),
    at(0.6, async () => {
      const downMs = Math.max(5000, totalMs / 15);
      faults.push({ atMin: minutes * 0.6, what: 'InfluxDB stopped', downSeconds: downMs / 1000 });
      log(`InfluxDB stopped for ${(downMs / 1000).toFixed(0)} s`);
      await influx!.stop();
      await new Promise((r) => setTimeout(r, downMs));
      await influx!.run();
      log('InfluxDB back');
    }),
  ];
  faults.push({ atMin: minutes * 0.8, what: 'reconnect storm (every device at once)' });
  const samples: Sample[] = [];
  const sample = async (): Promise<void> => {
    const c = hub;
    if (!c?.pid || c.exitCode !== null) return;
    try {
      const m = await scrape(port);
      samples.push({
        minute: (Date.now() - started) / 60_000, pid: c.pid, rssMiB: (m.get('process_resident_memory_bytes') ?? NaN) / 2 ** 20,
        heapMiB: (m.get('nodejs_heap_size_used_bytes') ?? NaN) / 2 ** 20, heapTotalMiB: (m.get('nodejs_heap_size_total_bytes') ?? NaN) / 2 ** 20,
        externalMiB: (m.get('nodejs_external_memory_bytes') ?? NaN) / 2 ** 20, lagP99Ms: (m.get('nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000,
        lagMaxMs: (m.get('nodejs_eventloop_lag_max_seconds') ?? NaN) * 1000, spoolMiB: (m.get('hub_spool_bytes') ?? NaN) / 2 ** 20,
      });
      const s = samples.at(-1)!;
      log(`hub pid ${s.pid}: RSS ${s.rssMiB.toFixed(1)} MiB, heap ${s.heapMiB.toFixed(1)} of ${s.heapTotalMiB.toFixed(1)} MiB, external ${s.externalMiB.toFixed(1)} MiB, lag p99 ${s.lagP99Ms.toFixed(1)} ms (max ${s.lagMaxMs.toFixed(0)}), spool ${s.spoolMiB.toFixed(1)} MiB`);
    } catch (e) {
      log(`sample failed: ${(e as Error).message}`);
    }
  };
  const sampler = setInterval(() => void sample(), Math.min(60_000, totalMs / 10));
  await sample();

  const simCode = await simDone;
  clearInterval(sampler);
  for (const t of timers) clearTimeout(t);
  await sample();

  // ---- verdict
  type Summary = { storage?: { expected: number; stored: number; missing: number; doubled: number; settled: boolean; error?: string }; loss?: { readings: number }; dup?: number | null; counters?: { readingsGenerated: number; readingsAcked: number; sessions: number }; errors?: number; phases?: { name: string; allBackMs: number | null }[] };
  let s: Summary = {};
  try { s = JSON.parse(simOut.trim().split('\n').at(-1) ?? '{}') as Summary; } catch { /* reported below */ }
  const byPid = new Map<number, Sample[]>();
  for (const x of samples) (byPid.get(x.pid) ?? byPid.set(x.pid, []).get(x.pid)!).push(x);
  const memory: { pid: number; fromMin: number; toMin: number; firstMiB: number; lastMiB: number; maxMiB: number; judged: boolean; flat: boolean }[] = [];
  for (const [pid, xs] of byPid) {
    const startMin = xs[0]!.minute;
    const judged = xs.filter((x) => x.minute - startMin >= 2);
    const first = judged[0] ?? xs[0]!;
    const last = xs.at(-1)!;
    const flat = judged.length < 2 || last.rssMiB <= first.rssMiB * 1.1 + 32;
    memory.push({ pid, fromMin: startMin, toMin: last.minute, firstMiB: first.rssMiB, lastMiB: last.rssMiB, maxMiB: Math.max(...xs.map((x) => x.rssMiB)), judged: judged.length >= 2, flat });
  }
  const stored = s.storage;
  faults.sort((a, b) => a.atMin - b.atMin);
  const pass = simCode === 0 && !!stored && !stored.error && stored.missing === 0 && stored.doubled === 0 && (s.loss?.readings ?? 1) === 0 && memory.every((m) => m.flat);
  const result = { minutes, devices, rate, faults, restarts, samples, memory, storage: stored, loss: s.loss, counters: s.counters, storm: s.phases?.find((p) => p.name === 'storm') ?? null, pass };
  if (values.json) { console.log(JSON.stringify(result)); process.exit(pass ? 0 : 1); }
  const lines = [
    '',
    `soak: ${minutes} min, ${devices} devices x 4 metrics x ${rate}/s (${devices * 4 * rate} readings/s), hub -> InfluxDB 1.6.7 (via the test-only /api/v2/write adapter)`,
    ...faults.map((f) => `  fault     at ${f.atMin.toFixed(1)} min: ${f.what}${f.downSeconds ? ` for ${f.downSeconds.toFixed(0)} s` : ''}`),
    ...restarts.map((r) => `  restart   ${r.signal} at ${r.atMin.toFixed(1)} min: hub healthy again after ${r.downMs} ms`),
    `  storm     every device back after ${result.storm?.allBackMs ?? '-'} ms`,
    `  readings  generated ${s.counters?.readingsGenerated ?? '-'}, acked ${s.counters?.readingsAcked ?? '-'}, lost ${s.loss?.readings ?? '-'}; sessions ${s.counters?.sessions ?? '-'}`,
    stored?.error ? `  storage   NOT VERIFIED: ${stored.error}` : `  storage   InfluxDB holds ${stored?.stored ?? '-'} of ${stored?.expected ?? '-'} acked: missing ${stored?.missing ?? '-'}, doubled ${stored?.doubled ?? '-'}`,
    '  minute  hub pid   RSS MiB  heap MiB  heap total  external  lag p99 ms  lag max ms  spool MiB',
    ...samples.map((x) => `  ${x.minute.toFixed(1).padStart(6)}  ${String(x.pid).padStart(7)}  ${x.rssMiB.toFixed(1).padStart(8)}  ${x.heapMiB.toFixed(1).padStart(8)}  ${x.heapTotalMiB.toFixed(1).padStart(10)}  ${x.externalMiB.toFixed(1).padStart(8)}  ${x.lagP99Ms.toFixed(1).padStart(10)}  ${x.lagMaxMs.toFixed(0).padStart(10)}  ${x.spoolMiB.toFixed(1).padStart(9)}`),
    ...memory.map((m) => `  memory    hub pid ${m.pid} (${m.fromMin.toFixed(1)}-${m.toMin.toFixed(1)} min): RSS ${m.firstMiB.toFixed(1)} -> ${m.lastMiB.toFixed(1)} MiB (max ${m.maxMiB.toFixed(1)})`
      + `${m.judged ? (m.flat ? ': flat (within 10 % + 32 MiB)' : ': GREW past 10 % + 32 MiB') : ': too short to judge'}`),
    `  verdict   ${pass ? `PASS: nothing lost, nothing doubled, ${memory.some((m) => m.judged) ? 'memory flat' : 'memory not judged (no hub process lived 2 min past its first sample)'}` : 'FAIL'}`,
  ];
  console.log(lines.join('\n'));
  process.exit(pass ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`soak: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
