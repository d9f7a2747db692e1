// npm run bench:ingest -- [--devices 1000] [--rate 25] [--batch-ms 1000] [--duration 20] [--idle 10000] [--sim-processes 1] [--hub-cpu-prof DIR]
//
// Ingest benchmark: the hub in one process, the simulator in another (both
// on this machine, loopback). Prints, from the hub's own counters and /proc:
//   1. readings/s the hub accepted (and acked) under a fleet at full tilt,
//      hub CPU, simulator CPU, ack latency p50/p99 (hub histogram and sim);
//   2. wire bytes per reading (device message payload bytes / readings);
//   3. hub RSS with N idle device sessions (connected, Hello done, silent).
// Figures, not assertions: run it on a quiet machine and read them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_METRICS_TOKEN, compiled, freePort, histQuantileMs, scrape, waitHealthy } from './bench-lib.ts';
import { ensureSimFleet } from './sim-fleet.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '25' },
    'batch-ms': { type: 'string', default: '1000' },
    duration: { type: 'string', default: '20' },
    idle: { type: 'string', default: '10000' },
    'sim-processes': { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
    /** Writes a V8 CPU profile of the throughput hub into this folder (node --cpu-prof). */
    'hub-cpu-prof': { type: 'string' },
  },
});
const devices = Number(values.devices);
const rate = Number(values.rate);
const batchMs = Number(values['batch-ms']);
const duration = Number(values.duration);
const idle = Number(values.idle);
const simProcesses = Number(values['sim-processes']);

const root = resolve(import.meta.dirname, '..');
// The compiled hub and simulator (built first when stale): what users run.
const run = await compiled(root);
const tmp = mkdtempSync(join(tmpdir(), 'bench-ingest-'));
const registry = join(tmp, 'devices.json');
const tokens = join(tmp, 'tokens.json');
const children: ChildProcess[] = [];
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); rmSync(tmp, { recursive: true, force: true }); });
process.on('SIGINT', () => process.exit(130));

/** utime+stime of a process in seconds, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // clock ticks (USER_HZ = 100)
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Quantile from a Prometheus histogram's cumulative buckets (upper bound of the bucket). */
async function startHub(port: number, dataDir: string, profileDir?: string): Promise<ChildProcess> {
  const prof = profileDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(profileDir)] : [];
  const hub = spawn(process.execPath, [...prof, ...run.hub.args], {
    cwd: root,
    env: {
      ...run.hub.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN, HUB_DATA_DIR: dataDir, HUB_DEVICES_FILE: registry,
      HUB_LOG_LEVEL: 'warn', HUB_MAX_CONN_PER_ADDRESS: '1000000', HUB_ADMISSION_RATE: '100000', HUB_ADMISSION_BURST: '100000',
      HUB_MAX_READINGS_PER_SEC: '1000000', HUB_READINGS_BURST: '10000000',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(hub);
  await waitHealthy(`http://127.0.0.1:${port}`, hub);
  return hub;
}

function runSim(args: string[]): { child: ChildProcess; done: Promise<Record<string, unknown>> } {
  const child = spawn(process.execPath, [...run.sim.args, ...args, '--json'], {
    cwd: root, env: run.sim.env, stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const done = new Promise<Record<string, unknown>>((res, rej) => {
    child.once('exit', (code) => {
      const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
      if (!line) return rej(new Error(`simulator exited ${code} without a JSON summary`));
      res(JSON.parse(line) as Record<string, unknown>);
    });
  });
  return { child, done };
}

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

async function main(): Promise<void> {
  ensureSimFleet(registry, tokens, Math.max(devices, idle), 'bench-');
  const port = await freePort();
  const url = `ws://127.0.0.1:${port}/v1/devices`;

  // ---- 1 + 2: throughput and wire bytes ----
  const hub = await startHub(port, join(tmp, 'throughput'), values['hub-cpu-prof']);
  const sim = runSim(['--url', url, '--devices', String(devices), '--rate', String(rate), '--batch-ms', String(batchMs),
    '--tokens', tokens, '--prefix', 'bench-', '--duration', String(duration + 5), '--ramp-ms', '2000', '--processes', String(simProcesses)]);
  await new Promise((r) => setTimeout(r, 4000)); // ramp-up and first batches
  const m0 = await scrape(port);
  const c0 = cpuSeconds(hub.pid!);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, duration * 1000));
  const m1 = await scrape(port);
  const c1 = cpuSeconds(hub.pid!);
  const secs = (performance.now() - t0) / 1000;
  // Bounded wait: a saturated simulator may be slow to stop.
  const kill = setTimeout(() => sim.child.kill('SIGKILL'), 30_000);
  const simSummary = await sim.done.catch((err: unknown) => ({ error: String(err) }));
  clearTimeout(kill);
  const d = (k: string) => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
  const readings = d('hub_readings_total{result="accepted"}');
  const bytes = d('hub_ingest_bytes_total');
  const msgs = d('hub_ingest_messages_total');
  const batches = d('hub_batches_total{result="accepted"}');
  const throughput = {
    devices, ratePerMetric: rate, batchMs, seconds: secs,
    readingsPerSec: readings / secs, batchesPerSec: batches / secs,
    offeredReadingsPerSec: devices * rate * 4,
    hubCpuPercent: ((c1 - c0) / secs) * 100,
    ackLatencyHubP50Ms: histQuantileMs(m0, m1, 'hub_ack_latency_seconds', 0.5),
    ackLatencyHubP99Ms: histQuantileMs(m0, m1, 'hub_ack_latency_seconds', 0.99),
    liveTickP99Ms: histQuantileMs(m0, m1, 'hub_live_tick_seconds', 0.99),
    wireBytesPerReading: bytes / readings,
    wireBytesPerBatchMessage: bytes / msgs,
    hubRssMiB: rssMiB(hub.pid!),
    sim: simSummary,
  };
  hub.kill('SIGTERM');
  await new Promise((r) => hub.once('exit', r));

  // ---- 3: RSS with idle sessions ----
  let idleResult: Record<string, number> | null = null;
  if (idle > 0) {
    const port2 = await freePort();
    const hub2 = await startHub(port2, join(tmp, 'idle')); // fresh: no spool to recover
    await new Promise((r) => setTimeout(r, 3000)); // let startup garbage be collected
    const rss0 = rssMiB(hub2.pid!);
    const heap0 = ((await scrape(port2)).get('nodejs_heap_size_used_bytes') ?? NaN) / 2 ** 20;
    // Several processes: at most 20,000 open files per process here.
    const per = 5000;
    const procs = Math.ceil(idle / per);
    const sims = [];
    for (let p = 0; p < procs; p++) {
      const n = Math.min(per, idle - p * per);
      sims.push(runSim(['--url', `ws://127.0.0.1:${port2}/v1/devices`, '--devices', String(n), '--offset', String(p * per), '--rate', '0',
        '--tokens', tokens, '--prefix', 'bench-', '--duration', '40', '--ramp-ms', '5000']));
    }
    const end = Date.now() + 35_000;
    let sessions = 0;
    while (Date.now() < end) {
      sessions = (await scrape(port2)).get('hub_device_sessions') ?? 0;
      if (sessions >= idle) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await new Promise((r) => setTimeout(r, 3000)); // settle
    const rss1 = rssMiB(hub2.pid!);
    const heap1 = ((await scrape(port2)).get('nodejs_heap_size_used_bytes') ?? NaN) / 2 ** 20;
    idleResult = {
      sessions, rssBeforeMiB: rss0, rssWithSessionsMiB: rss1, kibPerSession: ((rss1 - rss0) * 1024) / Math.max(1, sessions),
      heapBeforeMiB: heap0, heapWithSessionsMiB: heap1,
    };
    for (const s of sims) s.child.kill('SIGTERM');
    await Promise.allSettled(sims.map((s) => s.done));
    hub2.kill('SIGTERM');
    await new Promise((r) => hub2.once('exit', r));
  }

  const result = { machine: { cpus: (await import('node:os')).cpus().length, node: process.version }, throughput, idle: idleResult };
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    const t = throughput;
    console.log(`\ningest benchmark (${result.machine.cpus} cores, Node ${result.machine.node}; hub and simulator on this machine, compiled: ${run.hub.from}, ${run.sim.from})`);
    console.log(`  fleet: ${fmt(devices)} devices x 4 metrics x ${rate}/s, batches every ${batchMs} ms (offered ${fmt(t.offeredReadingsPerSec)} readings/s)`);
    console.log(`  hub accepted:      ${fmt(t.readingsPerSec)} readings/s (${fmt(t.batchesPerSec)} batches/s) over ${fmt(t.seconds, 1)} s`);
    console.log(`  hub CPU:           ${fmt(t.hubCpuPercent)} % of one core; RSS ${fmt(t.hubRssMiB)} MiB`);
    console.log(`  simulator:         ${JSON.stringify(t.sim)}`);
    console.log(`  ack latency (hub): p50 <= ${t.ackLatencyHubP50Ms} ms, p99 <= ${t.ackLatencyHubP99Ms} ms (histogram bucket bounds)`);
    console.log(`  live tick (hub):   p99 <= ${t.liveTickP99Ms} ms (advancing the live state and sending frames, once a second)`);
    console.log(`  wire bytes:        ${fmt(t.wireBytesPerReading, 2)} bytes/reading (${fmt(t.wireBytesPerBatchMessage)} bytes/batch message, payload; +2..8 bytes WebSocket framing per message)`);
    if (idleResult) {
      console.log(`  idle sessions:     ${fmt(idleResult.sessions!)} -> hub RSS ${fmt(idleResult.rssBeforeMiB!)} MiB -> ${fmt(idleResult.rssWithSessionsMiB!)} MiB (${fmt(idleResult.kibPerSession!, 1)} KiB per session);`
        + ` JS heap used ${fmt(idleResult.heapBeforeMiB!, 1)} -> ${fmt(idleResult.heapWithSessionsMiB!, 1)} MiB`);
    }
  }
  process.exit(0);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
