// scripts/bench/: the cluster comparison: the hub in cluster mode
// (HUB_NATS_URL: every batch published to a JetStream stream and acked to
// the device only once JetStream acknowledged the publish) against the
// local spool (embedded mode, fdatasync before every ack) measured in the
// same run, with the ingest comparison's load: the lean generator, 200
// closed-loop clients x 32 unacked, 20 readings per message.
//
// Closed loop (throughput and CPU per message):
//   spool      one hub, embedded (the baseline)
//   R1         one hub, one nats-server (HUB_NATS_REPLICAS=1)
//   R1, 2 hubs HUB_WORKERS=2 (two hub processes on one port, SO_REUSEPORT),
//              the same one nats-server
// Open loop at a share (0.5) of the R1 closed-loop rate (ack latency below
// saturation), the same offered rate for each:
//   spool, R1, and R3 (three nats-servers in one JetStream cluster,
//   HUB_NATS_REPLICAS=3: a batch is acked once a majority stored it).
// Every point starts fresh servers (a fresh JetStream store dir each,
// hub/test/nats-server.ts) and stops them after. CPU: utime + stime from
// /proc/<pid>/stat of every hub process (the HUB_WORKERS supervisor and its
// workers summed) and of every nats-server, over the measured interval.
// Messages: the spool hub counts them (/metrics); in cluster mode they are
// the batches the JetStream stream stored in the interval (its last_seq,
// /jsz on the NATS monitoring port): one count for any number of hubs on one
// port, where /metrics would answer from whichever worker the kernel picked.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { NATS_SERVER, NatsCluster, NatsServer } from '../../hub/test/nats-server.ts';
import { scrape } from '../bench-lib.ts';
import { leanAvailable, OPEN_LOOP_SIZE } from './ingest.ts';
import { CONNECT_ALLOWANCE_S, startLeanLoad } from './load.ts';
import type { LoadHandle, LoadResult } from './load-types.ts';
import { cpuByPid, cpuDelta, killWithRun, machineBusySeconds, mainThreadCpuSeconds, processTree, sleep } from './proc.ts';
import { startHub, type Server, type ServerContext } from './servers.ts';
import { fmt, ratio, sig, type Table } from './table.ts';

/** The hub's default HUB_NATS_STREAM, and its owners bucket's stream (one message per device claimed). */
const STREAM = 'TELEMETRY';
const OWNERS_STREAM = `KV_${STREAM}-owners`;

export interface ClusterOptions {
  clients: number;
  window: number;
  warmupSeconds: number;
  measureSeconds: number;
  clientProcesses: number;
  tokensFile: string;
  prefix: string;
  root: string;
  /** The open-loop points' rate: this share of the R1 closed-loop msgs/s. */
  share: number;
  /** Set: the hub of the closed-loop spool and R1 points runs with --cpu-prof, profiles written here. */
  cpuProfDir: string | null;
}

export interface Setup {
  /** Row label. */
  label: string;
  /** 0: the local spool (no NATS); else HUB_NATS_REPLICAS, with that many nats-servers. */
  replicas: 0 | 1 | 3;
  /** Hub processes on the port (2: HUB_WORKERS=2). */
  hubs: number;
}

export const SPOOL: Setup = { label: 'local spool', replicas: 0, hubs: 1 };
export const R1: Setup = { label: 'JetStream R1', replicas: 1, hubs: 1 };
export const R1_TWO_HUBS: Setup = { label: 'JetStream R1, HUB_WORKERS=2', replicas: 1, hubs: 2 };
export const R3: Setup = { label: 'JetStream R3', replicas: 3, hubs: 1 };

export interface ClusterPoint {
  setup: Setup;
  /** Open loop: msgs/s offered; NaN closed loop. */
  offeredPerSec: number;
  seconds: number;
  messages: number;
  readings: number;
  countedBy: 'hub /metrics' | 'JetStream stream';
  messagesPerSec: number;
  readingsPerSec: number;
  hubProcesses: number;
  hubCpuPercent: number;
  /** The hub processes' main (JavaScript) threads, summed, % of one core. */
  hubMainThreadPercent: number;
  hubCpuUsPerMessage: number;
  natsServers: number;
  natsCpuPercent: number;
  natsCpuUsPerMessage: number;
  ackP50Ms: number;
  ackP99Ms: number;
  ackMaxMs: number;
  latencySamples: number;
  behindSchedule: number;
  lost: number | null;
  errors: number;
  clientCpuPercent: number;
  /** The machine's busy CPU less the hub, nats-server and client processes' (neighbours, this bench's own process), % of one core. */
  otherCpuPercent: number;
  /** CPU % of one core of each hub process (HUB_WORKERS: the supervisor first), over the interval. */
  hubCpuByProcess: { pid: number; percent: number }[];
  /** Cluster mode with one hub: what the hub itself counted in the same interval (a check of the stream's count). */
  hubCounted: { batches: number; readings: number } | null;
  /** --cluster-cpu-prof: the directory of the profiles the hub wrote (one per thread). */
  profile?: string;
  notes: string[];
  clientReport?: unknown;
  error?: string;
}

export interface ClusterRun {
  closed: ClusterPoint[];
  open: ClusterPoint[];
  skipped: string[];
  natsVersion: string;
}

interface Counts { batches: number; readings: number; sessions: number }

/** /jsz?streams=true as nats-server 2.9 answers it (the fields used here). */
interface Jsz {
  account_details?: { stream_detail?: { name: string; cluster?: { leader?: string }; state?: { messages?: number; last_seq?: number } }[] }[];
}

/**
 * The NATS servers' view, asked of all at once: the batch stream's last_seq
 * (batches stored; never lowered by discards) and the devices claimed (the
 * owners bucket's messages), as the stream's leader reports them (a
 * follower may lag), else the highest any server reports.
 */
async function streamCounts(servers: NatsServer[]): Promise<{ batches: number; owners: number }> {
  const answers = await Promise.all(servers.filter((s) => s.running).map(async (s) => {
    try {
      return { name: s.name, jsz: await (await fetch(`${s.monitorUrl}/jsz?streams=true`, { signal: AbortSignal.timeout(5_000) })).json() as Jsz };
    } catch {
      return null;
    }
  }));
  const pick = (stream: string, read: (state: { messages?: number; last_seq?: number }) => number | undefined): number => {
    let best = -Infinity;
    for (const a of answers) {
      for (const acc of a?.jsz.account_details ?? []) {
        for (const st of acc.stream_detail ?? []) {
          if (st.name !== stream) continue;
          const v = read(st.state ?? {}) ?? 0;
          if (servers.length > 1 && st.cluster?.leader === a!.name) return v;
          best = Math.max(best, v);
        }
      }
    }
    return Number.isFinite(best) ? best : 0;
  };
  return { batches: pick(STREAM, (st) => st.last_seq), owners: pick(OWNERS_STREAM, (st) => st.messages) };
}

interface Deployment {
  hub: Server;
  nats: NatsServer[];
  counters(): Promise<Counts>;
  stop(): Promise<void>;
}

async function stopNats(servers: NatsServer[], cluster: NatsCluster | null, cancels: (() => void)[]): Promise<void> {
  if (cluster) await cluster.stop();
  else await Promise.all(servers.map((s) => s.stop()));
  for (const c of cancels) c();
}

/** Fresh NATS servers (none for the spool), then a fresh hub on them. */
async function deploy(ctx: ServerContext, setup: Setup, name: string, n: number, nodeArgs: string[]): Promise<Deployment> {
  let nats: NatsServer[] = [];
  let cluster: NatsCluster | null = null;
  const cancels: (() => void)[] = [];
  try {
    if (setup.replicas === 3) {
      cluster = await NatsCluster.start(3);
      nats = cluster.servers;
    } else if (setup.replicas === 1) {
      nats = [await NatsServer.start({ name: `bench-${name}` })];
    }
    for (const s of nats) if (s.pid !== undefined) cancels.push(killWithRun(s.pid));
    const env: NodeJS.ProcessEnv = nats.length === 0 ? {} : {
      HUB_NATS_URL: nats.map((s) => s.url).join(','), HUB_NATS_REPLICAS: String(setup.replicas), HUB_ID: 'bench-hub',
      ...(setup.hubs > 1 ? { HUB_WORKERS: String(setup.hubs) } : {}),
    };
    const hub = await startHub(ctx, `cluster-${name}`, { env, nodeArgs, listeners: setup.hubs });
    const fromHub = async (): Promise<Counts> => {
      const m = await scrape(hub.port);
      return { batches: m.get('hub_batches_total{result="accepted"}') ?? 0, readings: m.get('hub_readings_total{result="accepted"}') ?? 0, sessions: m.get('hub_device_sessions') ?? 0 };
    };
    return {
      hub, nats,
      counters: nats.length === 0 ? fromHub : async () => {
        const c = await streamCounts(nats);
        // The lean generator sends `n` readings in every batch (the first of a session adds only metric definitions).
        return { batches: c.batches, readings: c.batches * n, sessions: c.owners };
      },
      async stop() {
        await hub.stop();
        await stopNats(nats, cluster, cancels);
      },
    };
  } catch (err) {
    await stopNats(nats, cluster, cancels);
    throw err;
  }
}

const sumMainThreads = (pids: number[]): number => pids.reduce((a, p) => a + (mainThreadCpuSeconds(p) || 0), 0);

async function measure(ctx: ServerContext, o: ClusterOptions, setup: Setup, log: (s: string) => void, offeredPerSec = NaN, profile = false): Promise<ClusterPoint> {
  const n = OPEN_LOOP_SIZE;
  const open = Number.isFinite(offeredPerSec);
  const name = `${setup.replicas ? `r${setup.replicas}` : 'spool'}-${setup.hubs}-${open ? 'open' : 'closed'}`;
  // One directory per point, node's own file names: one profile per thread (CPU.<date>.<time>.<pid>.<thread id>.<n>.cpuprofile, main thread 0).
  const profileDir = o.cpuProfDir ? join(o.cpuProfDir, `hub-${name}`) : '';
  const nodeArgs = profile && o.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const d = await deploy(ctx, setup, name, n, nodeArgs);
  let load: LoadHandle | null = null;
  try {
    load = startLeanLoad({
      url: d.hub.url, clients: o.clients, window: o.window, readingsPerMessage: n, processes: o.clientProcesses,
      maxSeconds: CONNECT_ALLOWANCE_S + o.warmupSeconds + o.measureSeconds + 10,
      tokensFile: o.tokensFile, prefix: o.prefix, sourceAddresses: [], root: o.root,
      ratePerClient: open ? offeredPerSec / o.clients : undefined,
      serverSessions: async () => (await d.counters()).sessions,
    });
    log(`cluster: ${setup.label} (hub pid ${d.hub.pid}${d.nats.length ? `, nats-server pid ${d.nats.map((s) => s.pid).join(',')}` : ''}) <- ${load.client}${open ? `, open loop at ${fmt(offeredPerSec)} msgs/s` : ', closed loop'}`);
    await load.ready;
    await sleep(o.warmupSeconds * 1000);

    // The hub's processes: itself and, with HUB_WORKERS, its workers (alive by now: every client has a session).
    const hubPids = processTree(d.hub.pid);
    const natsPids = d.nats.map((s) => s.pid ?? -1);
    const clientPids = load.pids().flatMap(processTree);
    const h0 = cpuByPid(hubPids);
    const x0 = cpuByPid(natsPids);
    const cl0 = cpuByPid(clientPids);
    const m0 = sumMainThreads(hubPids);
    const all0 = machineBusySeconds();
    load.markStart();
    const t0 = performance.now();
    // Cluster mode with one hub: its own count too, sampled at the same moments (a check of the stream's).
    const check = d.nats.length > 0 && setup.hubs === 1;
    const [k0, hk0] = await Promise.all([d.counters(), check ? scrape(d.hub.port) : null]);
    await sleep(o.measureSeconds * 1000);
    const [k1, hk1] = await Promise.all([d.counters(), check ? scrape(d.hub.port) : null]);
    load.markEnd();
    const h1 = cpuByPid(hubPids);
    const x1 = cpuByPid(natsPids);
    const m1 = sumMainThreads(hubPids);
    const all1 = machineBusySeconds();
    const seconds = (performance.now() - t0) / 1000;
    const cl1 = cpuByPid(load.pids().flatMap(processTree));

    const result: LoadResult = await load.finish();
    load = null;
    const messages = k1.batches - k0.batches;
    const readings = k1.readings - k0.readings;
    const hubCpu = cpuDelta(h0, h1);
    const natsCpu = cpuDelta(x0, x1);
    const clientCpu = cpuDelta(cl0, cl1);
    const key = (m: Map<string, number> | null, k: string): number => m?.get(k) ?? NaN;
    const hubCounted = hk0 && hk1 ? {
      batches: key(hk1, 'hub_batches_total{result="accepted"}') - key(hk0, 'hub_batches_total{result="accepted"}'),
      readings: key(hk1, 'hub_readings_total{result="accepted"}') - key(hk0, 'hub_readings_total{result="accepted"}'),
    } : null;
    return {
      setup, offeredPerSec, seconds, messages, readings, countedBy: d.nats.length ? 'JetStream stream' : 'hub /metrics',
      messagesPerSec: messages / seconds, readingsPerSec: readings / seconds,
      hubProcesses: hubPids.length, hubCpuPercent: (hubCpu / seconds) * 100, hubMainThreadPercent: ((m1 - m0) / seconds) * 100,
      hubCpuUsPerMessage: (hubCpu / messages) * 1e6,
      natsServers: d.nats.length, natsCpuPercent: d.nats.length ? (natsCpu / seconds) * 100 : NaN,
      natsCpuUsPerMessage: d.nats.length ? (natsCpu / messages) * 1e6 : NaN,
      ackP50Ms: result.latency.p50Ms, ackP99Ms: result.latency.p99Ms, ackMaxMs: result.latency.maxMs ?? NaN, latencySamples: result.latency.samples,
      behindSchedule: result.behindSchedule ?? NaN, lost: result.lost, errors: result.errors,
      clientCpuPercent: (clientCpu / seconds) * 100, otherCpuPercent: ((all1 - all0 - hubCpu - natsCpu - clientCpu) / seconds) * 100, hubCounted,
      hubCpuByProcess: hubPids.map((pid) => ({ pid, percent: ((h1.get(pid) ?? NaN) - (h0.get(pid) ?? NaN)) / seconds * 100 })),
      ...(nodeArgs.length ? { profile: profileDir } : {}),
      notes: result.notes, clientReport: result.raw,
    };
  } finally {
    if (load) await load.finish().catch(() => undefined);
    await d.stop();
  }
}

function failed(setup: Setup, offeredPerSec: number, err: unknown): ClusterPoint {
  return {
    setup, offeredPerSec, seconds: NaN, messages: NaN, readings: NaN, countedBy: setup.replicas ? 'JetStream stream' : 'hub /metrics',
    messagesPerSec: NaN, readingsPerSec: NaN, hubProcesses: NaN, hubCpuPercent: NaN, hubMainThreadPercent: NaN, hubCpuUsPerMessage: NaN,
    natsServers: setup.replicas, natsCpuPercent: NaN, natsCpuUsPerMessage: NaN, ackP50Ms: NaN, ackP99Ms: NaN, ackMaxMs: NaN, latencySamples: 0,
    behindSchedule: NaN, lost: null, errors: 0, clientCpuPercent: NaN, otherCpuPercent: NaN, hubCounted: null, hubCpuByProcess: [], notes: [], error: (err as Error).message,
  };
}

function natsVersion(): string {
  try {
    accessSync(NATS_SERVER, constants.X_OK);
  } catch {
    return '';
  }
  const r = spawnSync(NATS_SERVER, ['--version'], { encoding: 'utf8', timeout: 5_000 });
  return `${(r.stdout || r.stderr).trim().replace(/^nats-server:\s*/, '')} (${NATS_SERVER})`;
}

export async function runCluster(ctx: ServerContext, o: ClusterOptions, log: (s: string) => void): Promise<ClusterRun> {
  const skipped: string[] = [];
  const closed: ClusterPoint[] = [];
  const open: ClusterPoint[] = [];
  const version = natsVersion();
  if (o.cpuProfDir) mkdirSync(o.cpuProfDir, { recursive: true });
  const lean = leanAvailable(o.root);
  if (!lean.ok) return { closed, open, skipped: [lean.why], natsVersion: version };
  const setups = version ? [SPOOL, R1, R1_TWO_HUBS] : [SPOOL];
  if (!version) skipped.push(`cluster mode: nats-server not found at ${NATS_SERVER} (apt-get install nats-server, or set NATS_SERVER): only the local spool was measured`);
  for (const setup of setups) {
    try {
      closed.push(await measure(ctx, o, setup, log, NaN, setup.hubs === 1));
    } catch (err) {
      log(`cluster: ${setup.label}, closed loop failed: ${(err as Error).message}`);
      closed.push(failed(setup, NaN, err));
    }
  }
  const r1 = closed.find((p) => p.setup === R1 && !p.error && p.messagesPerSec > 0);
  if (version && !r1) skipped.push('open loop: no closed-loop R1 point to take the rate from');
  if (r1) {
    const offered = Math.round(r1.messagesPerSec * o.share);
    for (const setup of [SPOOL, R1, R3]) {
      try {
        open.push(await measure(ctx, o, setup, log, offered));
      } catch (err) {
        log(`cluster: ${setup.label}, open loop at ${fmt(offered)} msgs/s failed: ${(err as Error).message}`);
        open.push(failed(setup, offered, err));
      }
    }
  }
  return { closed, open, skipped, natsVersion: version };
}

function pointNotes(points: ClusterPoint[]): string[] {
  const notes: string[] = [];
  for (const p of points) {
    const where = p.setup.label;
    if (p.error) notes.push(`${where}: FAILED: ${p.error}`);
    for (const n of new Set(p.notes)) notes.push(`${where}: ${n}`);
    if (p.lost) notes.push(`${where}: ${fmt(p.lost)} messages lost`);
    if (p.errors) notes.push(`${where}: ${fmt(p.errors)} client errors`);
    if (p.hubCpuByProcess.length > 1) {
      notes.push(`${where}: CPU by hub process: ${p.hubCpuByProcess.map((h, i) => `${i === 0 ? 'supervisor' : 'worker'} pid ${h.pid} ${fmt(h.percent)} %`).join(', ')}.`);
    }
    if (p.hubCounted) {
      notes.push(`${where}: check: the hub's own /metrics counted ${fmt(p.hubCounted.batches)} batches in the interval, the stream ${fmt(p.messages)} (${ratio(p.messages / p.hubCounted.batches)};`
        + ' the hub answers /metrics on its event loop, so a lagging loop shifts its interval).');
    }
    if (p.profile) notes.push(`${where}: ran under --cpu-prof (its figures include the profiler's cost), profiles in ${p.profile}`);
  }
  return notes;
}

const OTHER_CPU_NOTE = 'other CPU: the machine\'s busy time (/proc/stat) less the hub, nats-server and client processes\', % of one core (of 200 %): this bench\'s own process and'
  + ' whatever else runs on the machine; well above a few % means neighbours took cores from the figures in that row.';

const hubCell = (p: ClusterPoint): string => (Number.isFinite(p.hubProcesses) ? `${p.setup.hubs}${p.hubProcesses > p.setup.hubs ? ` (+ supervisor)` : ''}` : String(p.setup.hubs));

export function clusterClosedTable(run: ClusterRun, o: ClusterOptions): Table {
  const base = run.closed.find((p) => p.setup === SPOOL && !p.error);
  return {
    title: `cluster mode: throughput and CPU per message, ${OPEN_LOOP_SIZE} readings/msg (closed loop)`,
    subtitle: [
      `${fmt(o.clients)} lean clients x ${o.window} unacked (closed loop), ${o.clientProcesses} client processes, ${fmt(o.warmupSeconds)} s warm-up then ${fmt(o.measureSeconds)} s measured;`
        + ' fresh hub and fresh nats-server(s) (new JetStream store dir) per point.',
      `local spool: embedded mode, fdatasync before every ack. JetStream: HUB_NATS_URL, acked after JetStream's publish ack; nats-server ${run.natsVersion || 'not installed'}, file storage.`,
      'Hub CPU: utime + stime of every hub process (HUB_WORKERS: supervisor and workers summed); nats CPU: the nats-server process; /proc/<pid>/stat, measured interval.',
    ],
    columns: ['store', 'hub processes', 'nats servers', 'msgs/s', 'readings/s', 'hub CPU', 'hub main threads', 'µs hub CPU/msg', 'nats CPU', 'µs nats CPU/msg', 'µs hub+nats/msg', 'ack p50 ms', 'ack p99 ms', 'msgs/s ÷ spool', 'hub CPU/msg ÷ spool', 'client CPU', 'other CPU'],
    rows: run.closed.map((p) => [
      p.setup.label, hubCell(p), String(p.natsServers || '-'), fmt(p.messagesPerSec), fmt(p.readingsPerSec),
      `${fmt(p.hubCpuPercent)} %`, `${fmt(p.hubMainThreadPercent)} %`, sig(p.hubCpuUsPerMessage),
      p.natsServers ? `${fmt(p.natsCpuPercent)} %` : '-', sig(p.natsCpuUsPerMessage), sig(p.hubCpuUsPerMessage + (p.natsServers ? p.natsCpuUsPerMessage : 0)),
      sig(p.ackP50Ms), sig(p.ackP99Ms),
      ratio(p.messagesPerSec / (base?.messagesPerSec ?? NaN)), ratio(p.hubCpuUsPerMessage / (base?.hubCpuUsPerMessage ?? NaN)), `${fmt(p.clientCpuPercent)} %`, `${fmt(p.otherCpuPercent)} %`,
    ]),
    notes: [
      ...run.skipped.map((s) => `skipped: ${s}`),
      ...pointNotes(run.closed),
      'msgs/s: local spool: hub_batches_total{result="accepted"} between two /metrics scrapes; JetStream: batches the stream stored between the two marks (its last_seq, /jsz of the NATS monitoring port), the same for one hub or two; readings/s: that x 20 (every lean batch carries 20).',
      'µs CPU/msg: CPU over the interval / messages in it. "÷ spool": over the local-spool row of this run. On this machine hub, nats-server(s) and the clients share the same cores: "hub+nats" is the cost per message of the whole store path.',
      'ack p50/p99: send -> ack at the client from the start of the measured interval to the end of sending; closed loop at its limit: queueing, not latency (next table).',
      OTHER_CPU_NOTE,
    ],
  };
}

export function clusterOpenTable(run: ClusterRun, o: ClusterOptions): Table {
  const base = run.open.find((p) => p.setup === SPOOL && !p.error);
  const r1 = run.closed.find((p) => p.setup === R1 && !p.error);
  return {
    title: `cluster mode: ack latency below saturation, ${OPEN_LOOP_SIZE} readings/msg (open loop)`,
    subtitle: [
      `${fmt(o.clients)} lean clients at equal rates, at most ${o.window} unacked each, ${fmt(o.share * 100)} % of the R1 closed-loop rate above (${r1 ? `${fmt(r1.messagesPerSec)} msgs/s` : '-'}), the same offered rate for every row.`,
      'R3: three nats-servers in one JetStream cluster on this machine, HUB_NATS_REPLICAS=3 (a batch is acked once two of three stored it); the hub connects to all three URLs.',
    ],
    columns: ['store', 'nats servers', 'offered msgs/s', 'acked msgs/s', 'hub CPU', 'µs hub CPU/msg', 'nats CPU', 'µs nats CPU/msg', 'ack p50 ms', 'ack p99 ms', 'ack max ms', 'behind', 'p50 ÷ spool', 'p99 ÷ spool', 'client CPU', 'other CPU'],
    rows: run.open.map((p) => [
      p.setup.label, String(p.natsServers || '-'), fmt(p.offeredPerSec), fmt(p.messagesPerSec), `${fmt(p.hubCpuPercent)} %`, sig(p.hubCpuUsPerMessage),
      p.natsServers ? `${fmt(p.natsCpuPercent)} %` : '-', sig(p.natsCpuUsPerMessage),
      sig(p.ackP50Ms), sig(p.ackP99Ms), sig(p.ackMaxMs), fmt(p.behindSchedule),
      ratio(p.ackP50Ms / (base?.ackP50Ms ?? NaN)), ratio(p.ackP99Ms / (base?.ackP99Ms ?? NaN)), `${fmt(p.clientCpuPercent)} %`, `${fmt(p.otherCpuPercent)} %`,
    ]),
    notes: [
      ...run.open.filter((p) => !p.error && (p.messagesPerSec < 0.9 * p.offeredPerSec || p.behindSchedule > 0)).map((p) => `${p.setup.label}: SATURATED at this rate`
        + ` (acked ${fmt(p.messagesPerSec)} of ${fmt(p.offeredPerSec)} msgs/s offered, ${fmt(p.behindSchedule)} batches sent behind schedule): its ack latency is queueing;`
        + ' a lower --cluster-share measures it below saturation.'),
      ...pointNotes(run.open),
      'ack p50/p99/max: send -> ack at the client, from the end of the warm-up (SIGUSR2 to the lean generator) to the end of sending. behind: batches sent late because credit held them (saturation).',
      'nats CPU: R3 sums the three servers.',
      OTHER_CPU_NOTE,
    ],
  };
}
