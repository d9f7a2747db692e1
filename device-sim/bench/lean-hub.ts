// device-sim/: the lean generator against the real hub, both compiled and on
// this machine (loopback): CPU per batch of each, from /proc/PID/stat over
// the same steady window (every device connected, before the generator stops
// sending), and batches per second. With --null-hub the receiver is
// bench/null-hub.ts instead (acks at once, stores nothing): the most one
// generator process can offer when the receiver is nearly free.
//   npm run build   # hub/dist and device-sim/dist
//   node --conditions=@telemetry/source --import tsx device-sim/bench/lean-hub.ts [--devices 200] [--window 32] [--readings 20] [--duration 10] [--null-hub] [--json]
// The hub gets the limits lifted as scripts/bench-ingest.ts lifts them
// (HUB_MAX_CONN_PER_ADDRESS, HUB_ADMISSION_*, HUB_MAX_READINGS_PER_SEC,
// HUB_READINGS_BURST) and HUB_WINDOW = --window. Figures, not assertions: on
// a shared machine, run it more than once.
// Imports: node, and this package's lean-cli (types) and test/real-hub.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LeanSummary } from '../src/lean-cli.ts';
import { ROOT, UNLIMITED_ENV, compiledEnv, cpuSecondsOf, startRealHub, writeFleet, type RealHub } from '../test/real-hub.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '200' },
    window: { type: 'string', default: '32' },
    readings: { type: 'string', default: '20' },
    metrics: { type: 'string', default: '4' },
    duration: { type: 'string', default: '10' },
    rate: { type: 'string', default: '0' },
    'null-hub': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const devices = Number(values.devices);
const duration = Number(values.duration);
const nullHub = values['null-hub'] === true;

const cli = join(ROOT, 'device-sim/dist/cli.js');
for (const f of [cli, ...(nullHub ? [] : [join(ROOT, 'hub/dist/main.js')])]) {
  if (!existsSync(f)) { console.error(`bench: ${f} is missing: npm run build first`); process.exit(2); }
}
const tmp = mkdtempSync(join(tmpdir(), 'lean-bench-'));
const children: ChildProcess[] = [];
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); rmSync(tmp, { recursive: true, force: true }); });
process.on('SIGINT', () => process.exit(130));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The receiver: the real hub, or the null hub (its own process, accepting any token). */
async function receiver(registry: string): Promise<{ url: string; pid: number; what: string; batches: () => Promise<number>; stop: () => Promise<void>; hub?: RealHub }> {
  if (!nullHub) {
    const hub = await startRealHub({ dataDir: join(tmp, 'data'), registry, env: { ...UNLIMITED_ENV, HUB_WINDOW: values.window ?? '32' } });
    children.push(hub.proc);
    return {
      url: hub.url, pid: hub.pid, what: `the hub (${hub.from})`, hub,
      batches: async () => (await hub.scrape()).get('hub_batches_total{result="accepted"}') ?? 0,
      stop: () => hub.stop(),
    };
  }
  const proc = spawn(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', join(ROOT, 'device-sim/bench/null-hub.ts'), '0', values.window ?? '32'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  let out = '';
  proc.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  while (!/listening (\d+)/.test(out)) { if (proc.exitCode !== null) throw new Error('null hub exited'); await sleep(50); }
  const port = /listening (\d+)/.exec(out)?.[1];
  let asked = 0;
  const batches = async (): Promise<number> => {
    const n = ++asked;
    proc.kill('SIGUSR2');
    for (;;) {
      const counts = [...out.matchAll(/count (\d+)/g)];
      if (counts.length >= n) return Number(counts[n - 1]?.[1]);
      await sleep(5);
    }
  };
  return {
    url: `ws://127.0.0.1:${port}/v1/devices`, pid: proc.pid ?? 0, what: 'the null hub (bench/null-hub.ts)', batches,
    stop: async () => { proc.kill('SIGTERM'); await new Promise((r) => proc.once('exit', r)); },
  };
}

async function main(): Promise<void> {
  const fleet = writeFleet(tmp, devices, 'lean-');
  const rx = await receiver(fleet.registry);
  const gen = spawn(process.execPath, [cli, 'lean', '--url', rx.url, '--tokens', fleet.tokens, '--prefix', 'lean-', '--devices', String(devices),
    '--window', values.window ?? '32', '--readings', values.readings ?? '20', '--metrics', values.metrics ?? '4', '--rate', values.rate ?? '0',
    '--duration', String(duration), '--json'], { cwd: ROOT, env: compiledEnv(process.env), stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(gen);
  const started = performance.now();
  let out = '';
  gen.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const done = new Promise<LeanSummary>((resolve, reject) => gen.once('exit', (code) => {
    const line = out.trim().split('\n').reverse().find((l) => l.startsWith('{'));
    if (!line) reject(new Error(`the generator exited ${code} without a summary`));
    else resolve(JSON.parse(line) as LeanSummary);
  }));

  // The steady window: every device connected (the hub's session gauge), a second to settle, until 0.5 s before the end of sending.
  if (rx.hub) {
    const hub = rx.hub;
    while (((await hub.scrape()).get('hub_device_sessions') ?? 0) < devices && performance.now() - started < duration * 1000 / 2) await sleep(100);
  } else {
    await sleep(Math.min(2000, (duration * 1000) / 4));
  }
  await sleep(1000);
  const g0 = cpuSecondsOf(gen.pid ?? 0);
  const h0 = cpuSecondsOf(rx.pid);
  const b0 = await rx.batches();
  const t0 = performance.now();
  await sleep(Math.max(1000, duration * 1000 - (t0 - started) - 500));
  const g1 = cpuSecondsOf(gen.pid ?? 0);
  const h1 = cpuSecondsOf(rx.pid);
  const b1 = await rx.batches();
  const secs = (performance.now() - t0) / 1000;
  const s = await done;
  await rx.stop();
  // Batches in the window, as the receiver counted them.
  const windowBatches = b1 - b0;
  const result = {
    receiver: rx.what, devices, window: Number(values.window), readings: Number(values.readings), windowSeconds: secs,
    batchesPerSec: windowBatches / secs,
    generatorUsPerBatch: ((g1 - g0) * 1e6) / windowBatches, generatorCpuPercent: ((g1 - g0) / secs) * 100,
    receiverUsPerBatch: ((h1 - h0) * 1e6) / windowBatches, receiverCpuPercent: ((h1 - h0) / secs) * 100,
    generator: { sentPerSec: s.batchesSentPerSec, ackedPerSec: s.batchesAckedPerSec, steadyUsPerBatch: s.cpu.steady.usPerBatch, usPerBatch: s.cpu.usPerBatch, lost: s.batches.lost, errors: s.errors, clean: s.clean, latencyMs: s.latencyMs },
  };
  if (values.json) { console.log(JSON.stringify(result)); return; }
  const f = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(`lean generator vs ${rx.what}: ${devices} devices, window ${result.window}, ${result.readings} readings per batch, ${f(secs)} s steady window`);
  console.log(`  batches/s        ${f(result.batchesPerSec, 0)}`);
  console.log(`  generator CPU    ${f(result.generatorUsPerBatch, 2)} µs/batch (${f(result.generatorCpuPercent, 0)} % of one core); its own summary: steady ${f(s.cpu.steady.usPerBatch, 2)} µs/batch, whole run ${f(s.cpu.usPerBatch, 2)} µs/batch`);
  console.log(`  receiver CPU     ${f(result.receiverUsPerBatch, 2)} µs/batch (${f(result.receiverCpuPercent, 0)} % of one core)`);
  console.log(`  ratio            receiver / generator = ${f(result.receiverUsPerBatch / result.generatorUsPerBatch, 1)}`);
  console.log(`  run              sent ${s.batches.sent}, acked ${s.batches.acked}, lost ${s.batches.lost}, errors ${s.errors}, ${s.clean ? 'clean' : 'NOT clean'}; ack latency p50 ${f(s.latencyMs.p50)} ms, p99 ${f(s.latencyMs.p99)} ms`);
}

main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1); });
