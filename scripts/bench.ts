// npm run bench -- [--only ingest,density,wire,e2e,cluster] [--quick] [--json] [options]
//
// Comparisons, each printed as one table with its ratio against a baseline
// measured in the same run (docs/BENCHMARKS.md explains each one):
//   ingest   server CPU per message and per reading, msgs/s acked, ack
//            latency p50/p99, at 8/20/100/1000 readings per message, closed
//            loop: the hub vs Debian's mosquitto (QoS 1, same bytes) vs a
//            minimal `ws` + protobuf server (scripts/bench/ws-baseline.ts);
//            then the hub open loop at shares of its closed-loop rate (20
//            readings): ack latency below saturation, main-thread CPU;
//            then every server at the many-devices shape (2,000 x 10 msgs/s)
//   density  server RSS per idle session at 10,000 and 50,000 sessions
//   wire     bytes per reading: protobuf Batch vs line protocol vs JSON
//   e2e      bench:storage and bench:live, run as children, folded in
//            (`storage` or `live` alone also work with --only)
//   cluster  the hub in cluster mode (JetStream, scripts/bench/cluster.ts)
//            vs the local spool, 20 readings/msg: msgs/s and hub and
//            nats-server CPU per message closed loop for 1 hub on one
//            nats-server (R1) and HUB_WORKERS=2 on it; ack latency open loop
//            at a share of the R1 rate for the spool, R1 and R3 (3 servers)
// Everything runs on this machine over 127.0.0.0/8, every child stops by
// itself, and the run prints the machine and its own command first.
// Never part of npm test.
//
// Options (defaults; --quick shortens durations):
//   --sizes 8,20,100,1000  --servers hub,mosquitto,ws  --clients 200  --window 32
//   --warmup 5 (quick 2)  --duration 15 (quick 4): seconds per ingest point
//   --client-processes 2  --open-loop 0.5,0.8 (quick 0.7; none: no open-loop points)
//   --many-devices 2000x10 (DEVICESxRATE, or none)
//   --sessions 10000,50000 (quick 10000)  --sessions-per-process 10000  --per-address 1000
//   --settle 5 (quick 2): seconds before each RSS reading
//   --storage-args "..."  --live-args "...": replace bench:storage / bench:live arguments
//   --cluster-share 0.5: the cluster open-loop rate, a share of the R1 closed-loop msgs/s
//   --cluster-cpu-prof DIR: the hub of the closed-loop spool and R1 points runs with --cpu-prof, profiles in DIR
//   --markdown: the tables also as markdown
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { compiled } from './bench-lib.ts';
import { ensureSimFleet } from './sim-fleet.ts';
import { densityTable, runDensity, sessionCap, type DensityOptions, type DensityPoint } from './bench/density.ts';
import { openFileLimit } from './bench/proc.ts';
import { clusterClosedTable, clusterOpenTable, runCluster, type ClusterOptions, type ClusterRun } from './bench/cluster.ts';
import { e2eTable, E2E_NAMES, runE2e, type E2eResult } from './bench/e2e.ts';
import { ingestTable, manyDevicesTable, openLoopTable, runIngest, type IngestOptions, type IngestRun } from './bench/ingest.ts';
import { machine, machineLines } from './bench/machine.ts';
import { SERVER_KINDS, type ServerContext, type ServerKind } from './bench/servers.ts';
import { fmt, markdownTable, ratio, renderTable, type Table } from './bench/table.ts';
import { wireCost, type WireRow } from './bench/wire.ts';

const COMPARISONS = ['ingest', 'density', 'wire', 'storage', 'live', 'cluster'] as const;
type Comparison = typeof COMPARISONS[number];

function usage(msg: string, code = 2): never {
  (code === 0 ? console.log : console.error)(`${msg ? `bench: ${msg}\n` : ''}usage: npm run bench -- [--only ingest,density,wire,e2e|storage|live,cluster] [--quick] [--json] [--markdown] [--sizes 8,20,100,1000] [--servers hub,mosquitto,ws] [--clients N] [--window N] [--warmup S] [--duration S] [--client-processes N] [--open-loop 0.5,0.8|none] [--many-devices 2000x10|none] [--sessions 10000,50000] [--sessions-per-process N] [--per-address N] [--settle S] [--storage-args "..."] [--live-args "..."] [--cluster-share 0.5] [--cluster-cpu-prof DIR]`);
  process.exit(code);
}

let parsed;
try {
  parsed = parseArgs({
    options: {
      only: { type: 'string' }, quick: { type: 'boolean', default: false }, json: { type: 'boolean', default: false },
      markdown: { type: 'boolean', default: false },
      sizes: { type: 'string' }, servers: { type: 'string' }, clients: { type: 'string' }, window: { type: 'string' },
      warmup: { type: 'string' }, duration: { type: 'string' }, 'client-processes': { type: 'string' }, 'open-loop': { type: 'string' }, 'many-devices': { type: 'string' },
      sessions: { type: 'string' }, 'sessions-per-process': { type: 'string' }, 'per-address': { type: 'string' }, settle: { type: 'string' },
      'storage-args': { type: 'string' }, 'live-args': { type: 'string' },
      'cluster-share': { type: 'string' }, 'cluster-cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (err) {
  usage((err as Error).message);
}
const { values } = parsed;
if (values.help) usage('', 0);
const quick = values.quick;

const positive = (name: string, raw: string | undefined, def: number, integer = true): number => {
  if (raw === undefined) return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) usage(`--${name} must be a positive ${integer ? 'integer' : 'number'} (got ${raw})`);
  return v;
};
const list = (name: string, raw: string | undefined, def: number[]): number[] => (raw === undefined ? def : raw.split(',').map((x) => positive(name, x.trim(), 0)));

const only = new Set<Comparison>();
for (const w of (values.only ?? COMPARISONS.join(',')).split(',').map((s) => s.trim()).filter(Boolean)) {
  if (w === 'e2e') { only.add('storage'); only.add('live'); continue; }
  if (!(COMPARISONS as readonly string[]).includes(w)) usage(`--only: unknown comparison ${w} (ingest, density, wire, e2e, storage, live, cluster)`);
  only.add(w as Comparison);
}
const servers = (values.servers ?? SERVER_KINDS.join(',')).split(',').map((s) => s.trim()) as ServerKind[];
for (const s of servers) if (!SERVER_KINDS.includes(s)) usage(`--servers: unknown server ${s} (hub, mosquitto, ws)`);
const sizes = list('sizes', values.sizes, [8, 20, 100, 1000]);
for (const n of sizes) if (n % 4 !== 0) usage(`--sizes: ${n} is not a multiple of 4 (one reading per metric per instant, 4 metrics)`);
const window = positive('window', values.window, 32);
const manyDevices = ((): IngestOptions['manyDevices'] => {
  const raw = values['many-devices'] ?? '2000x10';
  if (raw === 'none') return null;
  const m = /^(\d+)x(\d+(?:\.\d+)?)$/.exec(raw);
  if (!m || !(Number(m[1]) > 0 && Number(m[2]) > 0)) usage(`--many-devices: ${raw} is not DEVICESxRATE (e.g. 2000x10) or none`);
  return { devices: Number(m[1]), rate: Number(m[2]) };
})();
const openLoop = values['open-loop'] === 'none' ? [] : (values['open-loop'] ?? (quick ? '0.7' : '0.5,0.8')).split(',').map((x) => {
  const v = Number(x.trim());
  if (!(v > 0 && v < 1)) usage(`--open-loop: ${x} is not a share between 0 and 1 (or: none)`);
  return v;
});
const clients = positive('clients', values.clients, 200);
const warmupSeconds = positive('warmup', values.warmup, quick ? 2 : 5, false);
const measureSeconds = positive('duration', values.duration, quick ? 4 : 15, false);
const clientProcesses = positive('client-processes', values['client-processes'], 2);
const sessions = list('sessions', values.sessions, quick ? [10_000] : [10_000, 50_000]);
const perProcess = positive('sessions-per-process', values['sessions-per-process'], 10_000);
if (perProcess > 19_000) usage('--sessions-per-process: at most 19000 (one process may hold 20,000 open files)');
const perAddress = positive('per-address', values['per-address'], 1000);
const settleSeconds = positive('settle', values.settle, quick ? 2 : 5, false);
const clusterShare = ((): number => {
  const v = Number(values['cluster-share'] ?? '0.5');
  if (!(v > 0 && v < 1)) usage(`--cluster-share: ${values['cluster-share']} is not a share between 0 and 1`);
  return v;
})();
const clusterCpuProf = values['cluster-cpu-prof'] === undefined ? null : resolve(values['cluster-cpu-prof']);
const splitArgs = (s: string | undefined): string[] | undefined => (s === undefined ? undefined : s.split(/\s+/).filter(Boolean));

// Progress goes to stderr; stdout carries the tables (or, with --json, one JSON object).
const log = (s: string): void => { console.error(`bench: ${s}`); };
const out: string[] = [];
const print = (s: string): void => { if (!values.json) console.log(s); out.push(s); };

const root = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'bench-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
const m = machine(root);
print(`npm run bench, ${new Date().toISOString()}${quick ? ' (--quick: short durations, figures are indicative only)' : ''}`);
print(`command:   ${command}`);
for (const l of machineLines(m)) print(l);
print('');

const tables: Table[] = [];
const show = (t: Table): void => { tables.push(t); print(renderTable(t)); if (values.markdown) print(`\n${markdownTable(t)}`); print(''); };

const report: {
  command: string; startedAt: string; quick: boolean; machine: typeof m; options: Record<string, unknown>;
  wire?: WireRow[]; ingest?: IngestRun; density?: DensityPoint[]; e2e?: E2eResult[]; cluster?: ClusterRun;
} = {
  command, startedAt: new Date().toISOString(), quick, machine: m,
  options: { only: [...only], sizes, servers, clients, window, warmupSeconds, measureSeconds, clientProcesses, sessions, perProcess, perAddress, settleSeconds, clusterShare, clusterCpuProf },
};

async function main(): Promise<void> {
  // ---- 3. wire: pure computation, first (it needs nothing built) ----
  if (only.has('wire')) {
    const rows = wireCost(sizes);
    report.wire = rows;
    show({
      title: 'wire cost: bytes per reading, device -> server, same readings',
      subtitle: [
        'The simulator\'s sensor models (4 metrics; N/4 instants per message spread over 1 s), averaged over 50 consecutive messages.',
        'Framing included: WebSocket client frame (header + 4-byte mask), MQTT PUBLISH header, HTTP request head. Not included: TCP/IP, TLS, acks.',
      ],
      columns: ['readings/msg', 'format', 'carried in', 'payload B', 'framing B', 'B/msg', 'B/reading', '÷ protobuf'],
      rows: rows.map((r) => [String(r.readingsPerMessage), r.format, r.transport, fmt(r.payloadBytes, 1), fmt(r.framingBytes, 1), fmt(r.bytesPerMessage, 1), fmt(r.bytesPerReading, 2), ratio(r.vsProtobuf)]),
      notes: [
        'protobuf Batch: steady state (metric ids defined earlier in the session); "first of a session" adds the 4 MetricDefs (proto/README.md §5.7).',
        'line protocol: `metric,device=ID value=V T` per reading, ms precision, no unit and no registry tags (what a stateless device must name itself).',
        'JSON objects: {"seq","readings":[{"metric","ts","value"}]}; JSON compact: {"seq","t0","metrics":[4 names],"readings":[[index,offsetMs,value]]}.',
        '÷ protobuf: B/reading over that of the protobuf Batch in a WebSocket frame (the hub\'s wire), same readings/msg.',
      ],
    });
  }

  const needsServers = only.has('ingest') || only.has('density') || only.has('cluster');
  if (needsServers) {
    // The compiled hub (and simulator) of this checkout, built first when stale: what `npm start` runs.
    const run = await compiled(root);
    const registry = join(tmp, 'devices.json');
    const tokensFile = join(tmp, 'tokens.json');
    const prefix = 'bench-';
    // As many devices as the largest hub density point can hold (a server holds at most its open-file limit, as this process).
    const fleet = Math.max(only.has('ingest') ? Math.max(clients, manyDevices?.devices ?? 0) : 0, only.has('cluster') ? clients : 0, only.has('density') && servers.includes('hub') ? Math.min(Math.max(...sessions), sessionCap(openFileLimit(process.pid, 'hard'))) : 0);
    log(`registering ${fmt(fleet)} bench devices (registry and tokens in ${tmp})`);
    ensureSimFleet(registry, tokensFile, fleet, prefix);
    const ctx: ServerContext = { root, tmp, hub: run.hub, registry, mosquittoPath: m.mosquittoPath, window };

    // ---- 1. ingest cost ----
    if (only.has('ingest')) {
      const o: IngestOptions = { sizes, servers, clients, window, warmupSeconds, measureSeconds, clientProcesses, tokensFile, prefix, root, openLoop, manyDevices };
      const r = await runIngest(ctx, o, log);
      report.ingest = r;
      show(ingestTable(r, o));
      if (r.openLoop.length) show(openLoopTable(r, o));
      if (r.manyDevices.length) show(manyDevicesTable(r, o));
    }

    // ---- 2. connection density ----
    if (only.has('density')) {
      let densityServers = servers;
      const skipped: string[] = [];
      if (servers.includes('mosquitto') && !m.mosquittoPath) {
        skipped.push('skipped: mosquitto: not installed; sudo apt-get install mosquitto, then run again');
        densityServers = servers.filter((s) => s !== 'mosquitto');
      }
      const o: DensityOptions = {
        sessions, servers: densityServers, perProcess, perAddress, settleSeconds, connectSeconds: quick ? 90 : 240, tokensFile, prefix, root,
      };
      const points = await runDensity(ctx, o, log);
      report.density = points;
      const t = densityTable(points, o);
      t.notes = [...skipped, ...(t.notes ?? [])];
      show(t);
    }

    // ---- 5. cluster mode (JetStream) vs the local spool ----
    if (only.has('cluster')) {
      const o: ClusterOptions = { clients, window, warmupSeconds, measureSeconds, clientProcesses, tokensFile, prefix, root, share: clusterShare, cpuProfDir: clusterCpuProf };
      const r = await runCluster(ctx, o, log);
      report.cluster = r;
      show(clusterClosedTable(r, o));
      if (r.open.length) show(clusterOpenTable(r, o));
    }
  }

  // ---- 4. end to end and live path ----
  const e2eNames = E2E_NAMES.filter((n) => only.has(n));
  if (e2eNames.length) {
    const results = await runE2e({
      names: e2eNames, quick, root,
      args: { storage: splitArgs(values['storage-args']), live: splitArgs(values['live-args']) },
    }, log);
    report.e2e = results;
    show(e2eTable(results));
  }

  if (values.json) console.log(JSON.stringify(report));
  process.exit(0);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
