// npm run bench:storage -- [--devices 500] [--rate 25] [--duration 20] [--outage 60] [--drain 6] [--hub-cpu-prof DIR]
//
// Storage benchmark, all on this machine: a real influxd (Debian's 1.6.7
// behind the test-only /api/v2/write adapter from hub/test; point INFLUX_URL
// & co at a real 2.x/3.x to measure that instead), the hub with its spool and
// sink, and the simulator in another process. Prints one table:
//   1. InfluxDB's own ingest rate (the ceiling): the fleet's schema (its
//      series, tags, units, value formats, ms timestamps) posted through the
//      same adapter by a client that costs next to nothing (bodies patched
//      from templates), both at the hub's request shape (HUB_SINK_BATCH_LINES
//      lines per request, HUB_SINK_MAX_IN_FLIGHT at once) and at 5,000 x 4;
//      measured again after the run (the machine is shared and its load
//      drifts); the best of these is the ceiling;
//   2. readings/s end to end (simulator -> hub -> InfluxDB confirmed) and
//      the ratio to the ceiling, with the CPU of every process (/proc);
//   3. the sink alone: InfluxDB held (SIGSTOP) for --drain seconds while the
//      fleet streams, the fleet stopped, InfluxDB resumed: the backlog drains
//      with nothing else running in the hub, so the hub's CPU per line there
//      is the sink path's (spool read, decode, line protocol, HTTP);
//   4. an InfluxDB outage of --outage seconds under the same load, and how
//      fast the backlog drains afterwards.
// --hub-cpu-prof DIR: the hub runs with node --cpu-prof; its profile is
// summarised (top self time, and the sink path by stage).
// --hub-root DIR: run the hub of another checkout instead (A/B comparisons:
// run both, alternately, and compare the ratios).
// Figures, not assertions: the machine is shared; compare within one run.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '@telemetry/hub';
import { Influxd, startV2WriteAdapter } from '../hub/test/influxd.ts';
import { BENCH_METRICS_TOKEN, compiled, freePort, histQuantileMs, otherHub, scrape, waitHealthy } from './bench-lib.ts';
import { ensureSimFleet } from './sim-fleet.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '500' },
    rate: { type: 'string', default: '25' },
    duration: { type: 'string', default: '20' },
    outage: { type: 'string', default: '60' },
    /** Seconds InfluxDB is held before the sink-alone drain (0: no drain phase). */
    drain: { type: 'string', default: '6' },
    /** Seconds for each ceiling measurement. */
    'ceiling-seconds': { type: 'string', default: '10' },
    /** Writes a V8 CPU profile of the hub into this folder (node --cpu-prof) and summarises it. */
    'hub-cpu-prof': { type: 'string' },
    /** The hub of another checkout (an A/B comparison): its hub/dist when up to date, else its sources (bench-lib otherHub). */
    'hub-root': { type: 'string' },
  },
});
const devices = Number(values.devices);
const rate = Number(values.rate);
const duration = Number(values.duration);
const outage = Number(values.outage);
const drainHold = Number(values.drain);
const ceilingSeconds = Number(values['ceiling-seconds']);
const profileDir = values['hub-cpu-prof'] === undefined ? undefined : resolve(values['hub-cpu-prof']);
const root = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'bench-storage-'));
const children: ChildProcess[] = [];
let influx: Influxd | null = null;
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); influx?.proc?.kill('SIGKILL'); rmSync(tmp, { recursive: true, force: true }); });
process.on('SIGINT', () => process.exit(130));

// What the hub will use (its config parser, this environment): the ceiling is measured at the same shape.
const hubConfig = loadConfig(process.env);
const SINK_LINES = hubConfig.sinkBatchLines;
const SINK_IN_FLIGHT = hubConfig.sinkMaxInFlight;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, d = 0) => Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : '-';

/** utime+stime of a process in seconds, from /proc (clock ticks, USER_HZ = 100). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** This process (the adapter, and the ceiling's client): user+system seconds. */
const selfCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

/** CPU seconds of several processes, read together. */
type CpuSnap = Record<string, number>;
function snap(pids: Record<string, number | undefined>): CpuSnap {
  const out: CpuSnap = { bench: selfCpu() };
  for (const [k, pid] of Object.entries(pids)) out[k] = cpuSeconds(pid);
  return out;
}
const cpuDelta = (a: CpuSnap, b: CpuSnap): CpuSnap => Object.fromEntries(Object.keys(b).map((k) => [k, b[k]! - (a[k] ?? NaN)]));

// ---- the fleet's schema, as the hub writes it ---------------------------------

const SITES = ['north', 'south', 'east', 'west', 'lab']; // scripts/sim-fleet.ts
/** The simulator's four metrics (device-sim/src/sensors.ts): name, unit, a typical value and its decimals. */
const METRICS = [
  { name: 'temperature', unit: 'degC', base: 18, spread: 8, digits: 2 },
  { name: 'humidity', unit: '%', base: 55, spread: 20, digits: 1 },
  { name: 'pressure', unit: 'hPa', base: 1013, spread: 10, digits: 1 },
  { name: 'battery', unit: 'V', base: 3.7, spread: 0.4, digits: 3 },
];

/**
 * Request bodies of the fleet's lines, with 13-digit ms timestamps patched in
 * per request: one fleet-second (every device, `rate` samples of 4 metrics,
 * a device's readings together as one spool record has them) cut into
 * requests of `linesPerRequest` lines.
 */
class FleetBodies {
  readonly #templates: { body: Buffer; at: Int32Array; dt: Float64Array }[] = [];
  #next = 0;
  #round = 0;
  readonly #t0: number;
  readonly lines: number[] = [];
  /** `t0`: the first fleet-second's time (each measurement its own: no point written twice). */
  constructor(fleet: number, perSecond: number, linesPerRequest: number, t0: number) {
    this.#t0 = t0;
    let random = 12345;
    const rnd = () => { random = (random * 1103515245 + 12345) % 2 ** 31; return random / 2 ** 31; };
    const step = 1000 / perSecond;
    let parts: string[] = [];
    let offsets: number[] = [];
    let dts: number[] = [];
    let bytes = 0;
    const flush = () => {
      if (!parts.length) return;
      this.#templates.push({ body: Buffer.from(parts.join(''), 'latin1'), at: Int32Array.from(offsets), dt: Float64Array.from(dts) });
      this.lines.push(parts.length);
      parts = []; offsets = []; dts = []; bytes = 0;
    };
    for (let d = 0; d < fleet; d++) {
      const id = `bs-${String(d).padStart(4, '0')}`;
      const tags = `device=${id},model=${d % 3 === 0 ? 'th-2' : 'thp-1'},site=${SITES[d % SITES.length]}`;
      for (let k = 0; k < perSecond; k++) {
        for (const m of METRICS) {
          const v = Math.round((m.base + (rnd() - 0.5) * m.spread) * 10 ** m.digits) / 10 ** m.digits;
          const head = `${m.name},${tags},unit=${m.unit} value=${v} `;
          offsets.push(bytes + head.length);
          dts.push(Math.round(k * step));
          const line = `${head}0000000000000\n`;
          parts.push(line);
          bytes += line.length;
          if (parts.length >= linesPerRequest) flush();
        }
      }
    }
    flush();
  }

  /** The next request's body, with fresh timestamps (a fleet-second later each time round). */
  next(): { body: Buffer; lines: number } {
    const i = this.#next;
    const t = this.#templates[i]!;
    const t0 = this.#t0 + this.#round * 1000;
    if (++this.#next === this.#templates.length) { this.#next = 0; this.#round++; }
    const body = Buffer.from(t.body);
    for (let j = 0; j < t.at.length; j++) body.write(String(t0 + t.dt[j]!), t.at[j]!, 'latin1');
    return { body, lines: this.lines[i]! };
  }
}

let ceilingRuns = 0;

/** InfluxDB's own rate for the fleet's schema: `inFlight` clients posting `linesPerRequest`-line bodies through the adapter. */
type Adapter = Awaited<ReturnType<typeof startV2WriteAdapter>>;

/** Mean milliseconds influxd took per write request (through the adapter) since `from`. */
const meanWriteMs = (adapter: Adapter, from: { requests: number; writeMs: number }) => (adapter.writeMs - from.writeMs) / Math.max(1, adapter.requests - from.requests);
const adapterMark = (adapter: Adapter) => ({ requests: adapter.requests, writeMs: adapter.writeMs });

async function ceiling(adapter: Adapter, db: Influxd, linesPerRequest: number, inFlight: number, seconds: number): Promise<{ rate: number; cpu: CpuSnap; secs: number; writeMs: number }> {
  const adapterUrl = adapter.url;
  // A day of its own for each measurement, from 2020 on.
  const bodies = new FleetBodies(devices, rate, linesPerRequest, Date.UTC(2020, 0, 1) + ceilingRuns++ * 86_400_000);
  const url = `${adapterUrl}/api/v2/write?org=bench&bucket=raw&precision=ms`;
  const end = Date.now() + seconds * 1000;
  let lines = 0;
  const worker = async () => {
    while (Date.now() < end) {
      const { body, lines: n } = bodies.next();
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain; charset=utf-8', authorization: 'Token bench' } });
      if (res.status !== 204) throw new Error(`ceiling write: HTTP ${res.status} ${await res.text()}`);
      lines += n;
    }
  };
  const c0 = snap({ influxd: db.proc?.pid });
  const a0 = adapterMark(adapter);
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const secs = (performance.now() - started) / 1000;
  return { rate: lines / secs, cpu: cpuDelta(c0, snap({ influxd: db.proc?.pid })), secs, writeMs: meanWriteMs(adapter, a0) };
}

// ---- the hub's CPU profile --------------------------------------------------

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

/** Where a frame belongs on the sink path (null: elsewhere). */
function stage(fn: string, url: string): string | null {
  if (/sinks\/influx\/lines\./.test(url)) return 'line protocol (lines.ts)';
  if (/sinks\/influx\//.test(url)) return 'sink loop, send, failures (influx-sink.ts)';
  if (/spool\/codec\./.test(url) && fn === 'decodeRecord') return 'decodeRecord';
  if (/spool\/spool\./.test(url) && fn === 'readFrom') return 'spool readFrom (file read, framing)';
  if (/influxdb-client/.test(url)) return '@influxdata/influxdb-client';
  if (/^node:(_http_|http$|net$|stream|internal\/streams|internal\/http|zlib)/.test(url) || /^node:internal\/(stream_base_commons|net)/.test(url)) return 'node http/net/zlib (the sink is the hub\'s only HTTP client)';
  return null;
}

/** Top self time, and the sink path by stage (a sample counts for the innermost sink-path frame on its stack). */
function summariseProfile(file: string): string[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + dt);
    total += dt;
  }
  const idle = [...self].filter(([id]) => /^\((idle|program)\)$/.test(byId.get(id)!.callFrame.functionName)).reduce((s, [, t]) => s + t, 0);
  const busy = total - idle;
  const fnSelf = new Map<string, number>();
  const stages = new Map<string, number>();
  for (const [id, t] of self) {
    const f = byId.get(id)!.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(hub\/dist|node_modules)\//, '')}:${f.lineNumber + 1}`;
    fnSelf.set(key, (fnSelf.get(key) ?? 0) + t);
    let s: string | null = null;
    for (let at: number | undefined = id; at !== undefined && s === null; at = parent.get(at)) {
      const cf = byId.get(at)!.callFrame;
      s = stage(cf.functionName, cf.url);
    }
    if (s === null && f.functionName === '(garbage collector)') s = '(garbage collector, all of the hub)';
    if (s !== null) stages.set(s, (stages.get(s) ?? 0) + t);
  }
  const pct = (t: number) => `${fmt((100 * t) / busy, 1).padStart(5)} %`;
  const out = [`hub CPU profile (main thread) ${file}: ${fmt(busy / 1e6, 1)} s busy (of ${fmt(total / 1e6, 1)} s); zlib and fs run in the thread pool and are not in it`];
  out.push('  top self time (% of busy):');
  for (const [k, t] of [...fnSelf].filter(([k]) => !/^\((idle|program)\)/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, 20)) out.push(`    ${pct(t)}  ${k}`);
  out.push('  sink path by stage (innermost sink-path frame on the stack):');
  let sink = 0;
  for (const [k, t] of [...stages].sort((a, b) => b[1] - a[1])) { out.push(`    ${pct(t)}  ${k}`); if (!k.startsWith('(garbage')) sink += t; }
  out.push(`    ${pct(sink)}  sink path in all (without GC)`);
  return out;
}

// ---- the run ------------------------------------------------------------------

async function main(): Promise<void> {
  // The compiled hub and simulator (built first when stale): what users run.
  const run = await compiled(root);
  const hubLaunch = values['hub-root'] === undefined ? run.hub : otherHub(resolve(values['hub-root']));
  influx = await Influxd.start('telemetry');
  await influx.query('CREATE DATABASE "raw"');
  const adapter = await startV2WriteAdapter(() => influx!.url);
  console.log(`influxd 1.6.7 at ${influx.url} (via the test-only /api/v2/write adapter at ${adapter.url}); hub ${values['hub-root'] ?? root} (${hubLaunch.from}); this checkout's sink shape ${fmt(SINK_LINES)} lines x ${SINK_IN_FLIGHT} in flight`);

  // ---- 1: InfluxDB's own rate ----
  const shapes: [number, number][] = [[SINK_LINES, SINK_IN_FLIGHT]];
  if (SINK_LINES !== 5000 || SINK_IN_FLIGHT !== 4) shapes.push([5000, 4]);
  const ceilings = [];
  for (const [lines, inFlight] of shapes) {
    const c = await ceiling(adapter, influx, lines, inFlight, ceilingSeconds);
    ceilings.push({ lines, inFlight, ...c });
    console.log(`  InfluxDB own rate, ${fmt(lines)} lines x ${inFlight} in flight: ${fmt(c.rate)} lines/s; influxd ${fmt(c.cpu.influxd! / c.secs, 2)} cores, adapter+client ${fmt(c.cpu.bench! / c.secs, 2)} cores; influxd answered a write in ${fmt(c.writeMs)} ms on average`);
  }
  const best = ceilings.reduce((a, b) => (b.rate > a.rate ? b : a));

  const registry = join(tmp, 'devices.json');
  const tokens = join(tmp, 'tokens.json');
  ensureSimFleet(registry, tokens, devices, 'bs-');
  const port = await freePort();
  const prof = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const profilesBefore = new Set(profileDir ? readdirSafe(profileDir) : []);
  const hub = spawn(process.execPath, [...prof, ...hubLaunch.args], {
    cwd: root,
    env: {
      ...hubLaunch.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN, HUB_DATA_DIR: join(tmp, 'hub'), HUB_DEVICES_FILE: registry, HUB_LOG_LEVEL: 'warn',
      HUB_MAX_CONN_PER_ADDRESS: '100000', HUB_ADMISSION_RATE: '100000', HUB_ADMISSION_BURST: '100000',
      INFLUX_URL: adapter.url, INFLUX_TOKEN: 'bench', INFLUX_ORG: 'bench', INFLUX_BUCKET: 'telemetry',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(hub);
  await waitHealthy(`http://127.0.0.1:${port}`, hub);
  const total = duration + outage + drainHold + 120;
  const sim = spawn(process.execPath, [...run.sim.args, '--url', `ws://127.0.0.1:${port}/v1/devices`,
    '--devices', String(devices), '--rate', String(rate), '--tokens', tokens, '--prefix', 'bs-', '--duration', String(total), '--ramp-ms', '2000', '--json', '--quiet'],
  { cwd: root, env: run.sim.env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(sim);
  sim.stdout.resume();
  const pids = () => ({ hub: hub.pid, sim: sim.exitCode === null ? sim.pid : undefined, influxd: influx?.proc?.pid });
  await sleep(5000);

  // ---- 2: steady state ----
  const m0 = await scrape(port);
  const req0 = adapter.requests;
  const aw0 = adapterMark(adapter);
  const c0 = snap(pids());
  const t0 = performance.now();
  await sleep(duration * 1000);
  const m1 = await scrape(port);
  const requests = adapter.requests - req0;
  const steadyWriteMs = meanWriteMs(adapter, aw0);
  const c1 = snap(pids());
  const secs = (performance.now() - t0) / 1000;
  const cpu = cpuDelta(c0, c1);
  const d = (k: string) => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
  const landed = d('hub_sink_lines_written_total') / secs;
  const accepted = d('hub_readings_total{result="accepted"}') / secs;
  const offered = devices * rate * 4;
  const backlogGrowth = d('hub_spool_bytes');
  const ack = `p50 <= ${histQuantileMs(m0, m1, 'hub_ack_latency_seconds', 0.5)} ms, p99 <= ${histQuantileMs(m0, m1, 'hub_ack_latency_seconds', 0.99)} ms`;
  const writeP50 = histQuantileMs(m0, m1, 'hub_sink_write_seconds', 0.5);

  // ---- 4 (before 3, which stops the fleet): outage and drain under load ----
  const outageLines: string[] = [];
  if (outage > 0) {
    await influx.stop();
    const o0 = performance.now();
    await sleep(outage * 1000);
    const before = await scrape(port);
    const backlogBytes = before.get('hub_spool_bytes') ?? 0;
    const written0 = before.get('hub_sink_lines_written_total') ?? 0;
    const acceptedDuring = (before.get('hub_readings_total{result="accepted"}') ?? 0) - (m1.get('hub_readings_total{result="accepted"}') ?? 0);
    outageLines.push(`InfluxDB down ${fmt((performance.now() - o0) / 1000, 1)} s: the hub kept accepting (${fmt(acceptedDuring)} readings), spool backlog ${fmt(backlogBytes / 2 ** 20, 1)} MiB, credit pressure ${fmt(before.get('hub_spool_pressure') ?? 0, 3)}`);
    await influx.run();
    const r0 = performance.now();
    let after: Awaited<ReturnType<typeof scrape>>;
    for (;;) {
      await sleep(250);
      after = await scrape(port);
      if ((after.get('hub_spool_bytes') ?? Infinity) < 1 << 20) break;
      if (performance.now() - r0 > 600_000) { outageLines.push('backlog did not drain within 10 min'); break; }
    }
    const drainSecs = (performance.now() - r0) / 1000;
    const drainedLines = (after.get('hub_sink_lines_written_total') ?? 0) - written0;
    outageLines.push(`backlog drained in ${fmt(drainSecs, 1)} s while the fleet kept streaming: ${fmt(drainedLines)} lines, ${fmt(drainedLines / drainSecs)} lines/s (${fmt(drainedLines / drainSecs / Math.max(1, landed), 1)}x the steady rate)`);
  }

  // ---- 3: the sink alone ----
  let alone: { rate: number; cpu: CpuSnap; secs: number; lines: number; writeMs: number } | null = null;
  if (drainHold > 0) {
    const held = influx.proc!;
    held.kill('SIGSTOP'); // requests in flight wait (well within the sink's 30 s timeout)
    await sleep(drainHold * 1000);
    sim.kill('SIGTERM');
    await new Promise((r) => sim.once('exit', r));
    await sleep(500); // the hub closes the sessions
    const s0 = await scrape(port);
    const a0 = snap(pids());
    const aw = adapterMark(adapter);
    const r0 = performance.now();
    held.kill('SIGCONT');
    let s1 = s0;
    // At most 20 s of it: enough for a rate; the rest drains after.
    while (performance.now() - r0 < 20_000) {
      await sleep(1000); // scraping /metrics costs the hub CPU too: not too often
      s1 = await scrape(port);
      if ((s1.get('hub_spool_bytes') ?? Infinity) < 64 << 10) break;
    }
    const a1 = snap(pids());
    const lines = (s1.get('hub_sink_lines_written_total') ?? 0) - (s0.get('hub_sink_lines_written_total') ?? 0);
    const aSecs = (performance.now() - r0) / 1000;
    alone = { rate: lines / aSecs, cpu: cpuDelta(a0, a1), secs: aSecs, lines, writeMs: meanWriteMs(adapter, aw) };
  }
  if (sim.exitCode === null) { sim.kill('SIGTERM'); await new Promise((r) => sim.once('exit', r)); }
  // ---- 1 again, now that the hub is idle: the machine is shared, its load drifts ----
  for (let end = Date.now() + 120_000; Date.now() < end && ((await scrape(port)).get('hub_spool_bytes') ?? 0) > 64 << 10;) await sleep(250);
  {
    const [lines, inFlight] = [best.lines, best.inFlight];
    const c = await ceiling(adapter, influx, lines, inFlight, ceilingSeconds);
    ceilings.push({ lines, inFlight, ...c });
    console.log(`  InfluxDB own rate again, after the run: ${fmt(c.rate)} lines/s; influxd ${fmt(c.cpu.influxd! / c.secs, 2)} cores; a write in ${fmt(c.writeMs)} ms on average`);
  }
  const top = ceilings.reduce((a, b) => (b.rate > a.rate ? b : a));
  hub.kill('SIGTERM');
  await new Promise((r) => hub.once('exit', r));
  await adapter.close();
  await influx.destroy();

  // ---- the table ----
  const us = (cpuS: number, n: number) => fmt((cpuS / n) * 1e6, 2);
  const cores = (cpuS: number, s: number) => fmt(cpuS / s, 2);
  const readingsN = landed * secs;
  const rows: string[][] = [
    ['', 'rate', 'influxd CPU', 'hub CPU', 'adapter CPU', 'simulator CPU'],
    [`InfluxDB own rate (fleet schema, same adapter, ${fmt(top.lines)} x ${top.inFlight}; best of ${ceilings.length})`, `${fmt(top.rate)} lines/s`,
      `${cores(top.cpu.influxd!, top.secs)} cores, ${us(top.cpu.influxd!, top.rate * top.secs)} us/line`, '-',
      `${cores(top.cpu.bench!, top.secs)} cores (with the client)`, '-'],
    ['hub end to end, confirmed by InfluxDB', `${fmt(landed)} readings/s`,
      `${cores(cpu.influxd!, secs)} cores, ${us(cpu.influxd!, readingsN)} us/line`,
      `${cores(cpu.hub!, secs)} cores, ${us(cpu.hub!, readingsN)} us/confirmed reading (ingest + spool + sink)`,
      `${cores(cpu.bench!, secs)} cores`, `${cores(cpu.sim!, secs)} cores`],
  ];
  if (alone) {
    rows.push(['sink alone (backlog drain after InfluxDB was held, no ingest)', `${fmt(alone.rate)} lines/s`,
      `${cores(alone.cpu.influxd!, alone.secs)} cores, ${us(alone.cpu.influxd!, alone.lines)} us/line`,
      `${cores(alone.cpu.hub!, alone.secs)} cores, ${us(alone.cpu.hub!, alone.lines)} us/line (sink path)`,
      `${cores(alone.cpu.bench!, alone.secs)} cores`, '-']);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log('');
  for (const [i, r] of rows.entries()) {
    console.log(`  ${r.map((c, j) => c.padEnd(widths[j]!)).join(' | ')}`);
    if (i === 0) console.log(`  ${widths.map((w) => '-'.repeat(w)).join('-|-')}`);
  }
  console.log('');
  console.log(`  RATIO end to end / InfluxDB own rate: ${fmt(landed / top.rate, 3)}   (target >= 0.9; InfluxDB's own rate ranged ${fmt(Math.min(...ceilings.map((c) => c.rate)))}..${fmt(top.rate)} lines/s over the run)`);
  console.log(`  fleet: ${fmt(devices)} devices x 4 metrics x ${rate}/s: offered ${fmt(offered)} readings/s, accepted by the hub ${fmt(accepted)}/s, confirmed ${fmt(landed)}/s over ${fmt(secs, 1)} s`);
  console.log(`  spool backlog ${backlogGrowth >= 0 ? 'grew' : 'shrank'} by ${fmt(Math.abs(backlogGrowth) / 2 ** 20, 1)} MiB over the window; ${fmt(requests / secs, 1)} write requests/s of ${fmt(d('hub_sink_lines_written_total') / Math.max(1, requests))} lines on average, p50 <= ${writeP50} ms at the hub, ${fmt(steadyWriteMs)} ms on average at influxd (${alone ? `${fmt(alone.writeMs)} ms for the sink alone, ` : ''}${fmt(top.writeMs)} ms for InfluxDB's own rate); ack latency ${ack} (bucket bounds)`);
  if (alone) {
    // Hub CPU = ingest (per accepted reading) + sink (per confirmed line, as the drain measured it).
    const sinkCores = (alone.cpu.hub! / alone.lines) * landed;
    const restCores = cpu.hub! / secs - sinkCores;
    console.log(`  hub CPU split (approximate: the sink-alone cost per line applied to the steady state): sink path ~${fmt(sinkCores, 2)} cores (${us(alone.cpu.hub!, alone.lines)} us/line x ${fmt(landed)}/s), ingest + spool + live ~${fmt(restCores, 2)} cores (${fmt((restCores / Math.max(1, accepted)) * 1e6, 2)} us per accepted reading)`);
  }
  const machine = (cpu.hub! + cpu.sim! + cpu.influxd! + cpu.bench!) / secs;
  console.log(`  all four processes: ${fmt(machine, 2)} cores of this machine's 2 (shared: others' load not counted)`);
  // What bounds it, from the figures above.
  const limits: string[] = [];
  if (accepted < offered * 0.97) limits.push(`the hub accepted only ${fmt(accepted / offered, 2)} of what was offered${cpu.sim! / secs > 0.9 ? ' and the simulator used a full core: the simulator is the limit at this shape' : ''}`);
  if (landed < accepted * 0.97 && backlogGrowth > 1 << 20) limits.push('the sink fell behind ingest (the spool backlog grew)');
  if (machine > 1.8) limits.push('the machine\'s CPU: the processes together used nearly both cores');
  if (landed >= accepted * 0.97 && backlogGrowth <= 1 << 20) {
    limits.push(`the fleet's offered load: the hub confirmed all it accepted (the spool kept no backlog), so the ratio cannot exceed offered / InfluxDB's own rate = ${fmt(offered / top.rate, 3)}; offer more (--devices, --rate) to measure the pipeline's own limit`);
  }
  if (limits.length) console.log(`  bounded by: ${limits.join('; ')}`);
  for (const l of outageLines) console.log(`  ${l}`);
  if (profileDir) {
    // One profile per thread: the main thread's is the largest (the others are workers, e.g. password hashing).
    const fresh = readdirSafe(profileDir).filter((f) => f.endsWith('.cpuprofile') && !profilesBefore.has(f))
      .map((f) => ({ f, size: statSync(join(profileDir, f)).size })).sort((a, b) => b.size - a.size);
    if (fresh[0]) for (const l of summariseProfile(join(profileDir, fresh[0].f))) console.log(l);
    if (fresh.length > 1) console.log(`  (${fresh.length - 1} more profile(s) in ${profileDir}: worker threads)`);
  }
  process.exit(0);
}

function readdirSafe(dir: string): string[] {
  try { return readdirSync(dir); } catch { return []; }
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
