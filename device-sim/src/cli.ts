// npm run sim -- --url ws://127.0.0.1:8080/v1/devices --devices 200 --rate 1 --tokens data/sim-tokens.json
// Runs a simulated fleet; prints a status line every second and a summary
// at the end (--duration, SIGINT or SIGTERM). --json prints the summary as
// one JSON line. --processes N splits the fleet over N child processes
// (a process may hold at most ~20,000 open files).
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Fleet } from './fleet.ts';
import { Reservoir, addCounters, emptyCounters, type SimCounters } from './stats.ts';
import { expandAddresses, loadTokens } from './tokens.ts';

const USAGE = `usage: npm run sim -- --url URL --tokens FILE [--devices N] [--rate R] [--batch-ms MS] [--duration S]
  [--prefix sim-] [--offset K] [--ramp-ms MS] [--churn F] [--bad-actors F] [--auth header|subprotocol]
  [--ca FILE] [--source-addresses 127.0.0.2-127.0.0.40] [--processes N] [--json] [--quiet]`;

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'ws://127.0.0.1:8080/v1/devices' },
    devices: { type: 'string', default: '200' },
    rate: { type: 'string', default: '1' },
    'batch-ms': { type: 'string', default: '1000' },
    duration: { type: 'string', default: '0' },
    tokens: { type: 'string' },
    prefix: { type: 'string', default: 'sim-' },
    offset: { type: 'string', default: '0' },
    'ramp-ms': { type: 'string', default: '0' },
    churn: { type: 'string', default: '0' },
    'bad-actors': { type: 'string', default: '0' },
    auth: { type: 'string', default: 'header' },
    ca: { type: 'string' },
    'source-addresses': { type: 'string' },
    processes: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});

function num(name: string, min: number, max: number): number {
  const v = Number(values[name as keyof typeof values]);
  if (!Number.isFinite(v) || v < min || v > max) {
    console.error(`sim: --${name} must be a number in ${min}..${max} (got ${JSON.stringify(values[name as keyof typeof values])})\n${USAGE}`);
    process.exit(2);
  }
  return v;
}

if (values.help) { console.log(USAGE); process.exit(0); }
const devices = num('devices', 1, 1_000_000);
const rate = num('rate', 0, 100_000);
const batchMs = num('batch-ms', 10, 3_600_000);
const duration = num('duration', 0, 365 * 86_400);
const offset = num('offset', 0, 10_000_000);
const rampMs = num('ramp-ms', 0, 3_600_000);
const churn = num('churn', 0, 60);
const badActors = num('bad-actors', 0, 1);
const processes = num('processes', 1, 64);
if (values.auth !== 'header' && values.auth !== 'subprotocol') { console.error(`sim: --auth must be header or subprotocol\n${USAGE}`); process.exit(2); }
const isChild = typeof process.send === 'function' && process.env.SIM_CHILD === '1';

interface Summary {
  devices: number;
  seconds: number;
  counters: SimCounters;
  latencyMs: { p50: number; p95: number; p99: number; samples: number };
  readingsAckedPerSec: number;
  cpu: { userSeconds: number; systemSeconds: number; percentOfOneCore: number };
}

function summarize(c: SimCounters, lat: Reservoir, seconds: number, cpuMicros: { user: number; system: number }, n: number): Summary {
  return {
    devices: n, seconds, counters: c,
    latencyMs: { p50: lat.percentile(50), p95: lat.percentile(95), p99: lat.percentile(99), samples: lat.count },
    readingsAckedPerSec: c.readingsAcked / seconds,
    cpu: { userSeconds: cpuMicros.user / 1e6, systemSeconds: cpuMicros.system / 1e6, percentOfOneCore: ((cpuMicros.user + cpuMicros.system) / 1e6 / seconds) * 100 },
  };
}

function printSummary(s: Summary): void {
  if (values.json) { console.log(JSON.stringify(s)); return; }
  const c = s.counters;
  const f = (n: number) => Math.round(n).toLocaleString('en-US');
  console.log(`\nsim summary: ${f(s.devices)} devices, ${s.seconds.toFixed(1)} s`);
  console.log(`  batches   sent ${f(c.batchesSent)} (resent ${f(c.batchesResent)}), acked ${f(c.batchesAcked)}, dropped by full outbox ${f(c.batchesDropped)}`);
  if (c.readingsSkipped) console.log(`  SATURATED: ${f(c.readingsSkipped)} readings not generated in time (the simulator, not the hub, is the limit)`);
  console.log(`  readings  generated ${f(c.readingsGenerated)}, acked ${f(c.readingsAcked)} (${f(s.readingsAckedPerSec)}/s); hub dropped NaN ${f(c.hubNonFiniteDropped)}, skew ${f(c.hubSkewDropped)}, corrected ${f(c.hubSkewCorrected)}`);
  console.log(`  sessions  ${f(c.sessions)}, reconnects ${f(c.reconnects)}, closes/refusals ${JSON.stringify(c.closes)}`);
  console.log(`  ack latency p50 ${s.latencyMs.p50} ms, p95 ${s.latencyMs.p95} ms, p99 ${s.latencyMs.p99} ms (${f(s.latencyMs.samples)} acks)`);
  console.log(`  simulator CPU ${s.cpu.userSeconds.toFixed(1)} s user + ${s.cpu.systemSeconds.toFixed(1)} s system = ${s.cpu.percentOfOneCore.toFixed(0)} % of one core`);
}

async function runFleet(): Promise<void> {
  const tokens = loadTokens(values.tokens);
  const list: { id: string; token: string }[] = [];
  for (let i = offset; i < offset + devices; i++) {
    const id = `${values.prefix}${String(i).padStart(4, '0')}`;
    const token = tokens.get(id);
    if (!token) {
      console.error(`sim: no token for ${id} in ${values.tokens ?? 'SIM_TOKEN'} (register the fleet: npx tsx scripts/sim-fleet.ts --devices ${offset + devices})`);
      process.exit(2);
    }
    list.push({ id, token });
  }
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  const fleet = new Fleet({
    url: values.url!, devices: list, rate, batchIntervalMs: batchMs, rampMs, churn, badActors,
    authVia: values.auth as 'header' | 'subprotocol', ca: values.ca ? readFileSync(values.ca) : undefined,
    sourceAddresses: values['source-addresses'] ? expandAddresses(values['source-addresses']) : undefined,
  });
  let last = fleet.counters();
  const status = setInterval(() => {
    const c = fleet.counters();
    const line = { connected: fleet.connected, devices: list.length, batches: c.batchesAcked - last.batchesAcked, readings: c.readingsAcked - last.readingsAcked, pending: fleet.pending, reconnects: c.reconnects };
    last = c;
    if (isChild) process.send!({ type: 'status', line });
    else if (!values.quiet && !values.json) printStatus(line, c.closes);
  }, 1000);

  const finish = async () => {
    clearInterval(status);
    await fleet.stop();
    const seconds = (performance.now() - started) / 1000;
    const s = summarize(fleet.counters(), fleet.latency, seconds, process.cpuUsage(cpu0), list.length);
    if (isChild) process.send!({ type: 'summary', summary: s, samples: fleet.latency.samples }, () => process.exit(0));
    else { printSummary(s); process.exit(0); }
  };
  if (duration > 0) setTimeout(() => void finish(), duration * 1000);
  process.once('SIGINT', () => void finish());
  process.once('SIGTERM', () => void finish());
  if (isChild) process.once('disconnect', () => void finish());
}

function printStatus(l: { connected: number; devices: number; batches: number; readings: number; pending: number; reconnects: number }, closes: Record<string, number>): void {
  const errs = Object.entries(closes).filter(([k]) => k !== '1000').map(([k, v]) => `${k}:${v}`).join(' ') || '-';
  console.log(`[sim] ${l.connected}/${l.devices} connected | ${l.batches} batches/s | ${l.readings} readings/s acked | ${l.pending} pending | ${l.reconnects} reconnects | closes ${errs}`);
}

async function runParent(): Promise<void> {
  const started = performance.now();
  const per = Math.ceil(devices / processes);
  const self = fileURLToPath(import.meta.url);
  const lines = new Map<number, { connected: number; devices: number; batches: number; readings: number; pending: number; reconnects: number }>();
  const done: Promise<{ summary: Summary; samples: number[] }>[] = [];
  const children: ChildProcess[] = [];
  for (let p = 0; p < processes; p++) {
    const n = Math.min(per, devices - p * per);
    if (n <= 0) break;
    const args = process.argv.slice(2).filter((a, i, all) => !['--processes', '--devices', '--offset'].includes(a) && !['--processes', '--devices', '--offset'].includes(all[i - 1]!));
    const child = fork(self, [...args, '--devices', String(n), '--offset', String(offset + p * per)], { env: { ...process.env, SIM_CHILD: '1' }, execArgv: process.execArgv });
    children.push(child);
    done.push(new Promise((resolve, reject) => {
      child.on('message', (m: { type: string; line?: never; summary?: Summary; samples?: number[] }) => {
        if (m.type === 'status') lines.set(p, m.line!);
        if (m.type === 'summary') resolve({ summary: m.summary!, samples: m.samples! });
      });
      child.once('exit', (code) => reject(new Error(`simulator process ${p} exited ${code} without a summary`)));
    }));
  }
  const status = setInterval(() => {
    if (values.quiet || values.json) return;
    const sum = { connected: 0, devices: 0, batches: 0, readings: 0, pending: 0, reconnects: 0 };
    for (const l of lines.values()) for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += l[k];
    printStatus(sum, {});
  }, 1000);
  const stopAll = () => { for (const c of children) c.kill('SIGTERM'); };
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  const results = await Promise.all(done);
  clearInterval(status);
  const counters = emptyCounters();
  const lat = new Reservoir(100_000);
  let user = 0; let system = 0;
  for (const r of results) {
    addCounters(counters, r.summary.counters);
    lat.merge(r.samples);
    user += r.summary.cpu.userSeconds * 1e6;
    system += r.summary.cpu.systemSeconds * 1e6;
  }
  const own = process.cpuUsage();
  printSummary(summarize(counters, lat, (performance.now() - started) / 1000, { user: user + own.user, system: system + own.system }, devices));
  process.exit(0);
}

if (processes > 1 && !isChild) void runParent();
else void runFleet();
