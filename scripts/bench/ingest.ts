// scripts/bench/: comparison 1, ingest cost. For each message size (readings
// per message) and server: a fresh server, `clients` closed-loop clients
// with `window` unacked messages each, a warm-up, then a measured interval:
// the server's CPU (utime + stime of all its threads, /proc/<pid>/stat)
// between its two ends, divided by the messages acked in it. Clients: the
// device-sim lean load generator for the hub and the ws baseline (the real
// protocol: token, Hello/Welcome, credit, seq), mqtt.js QoS 1 for mosquitto,
// all publishing the same protobuf Batch bytes. Then open-loop points for the
// hub: the same clients sending at a fixed share of the rate the hub reached
// closed loop, for the ack latency below saturation (a closed loop at its
// limit measures queueing, not the hub). Last, the many-devices shape: many
// clients each sending a few messages a second (every message its own read
// and its own ack write), every server at the same fixed rate.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compiledEnv } from '../build.ts';
import { CONNECT_ALLOWANCE_S, startLeanLoad } from './load.ts';
import type { LoadHandle, LoadOptions, LoadResult } from './load-types.ts';
import { startMqttLoad } from './mqtt-load.ts';
import { cpuByPid, cpuDelta, cpuSeconds, mainThreadCpuSeconds, processTree, sleep } from './proc.ts';
import { SERVER_LABELS, startServer, startWsBaseline, type Server, type ServerContext, type ServerCounters, type ServerKind } from './servers.ts';
import { fmt, ratio, sig, type Table } from './table.ts';

export interface IngestOptions {
  sizes: number[];
  servers: ServerKind[];
  clients: number;
  window: number;
  warmupSeconds: number;
  measureSeconds: number;
  clientProcesses: number;
  tokensFile: string;
  prefix: string;
  root: string;
  /** Open-loop points: shares of the hub's closed-loop msgs/s at OPEN_LOOP_SIZE readings (empty: none). */
  openLoop: number[];
  /** The many-devices shape: this many clients at `rate` messages/s each, OPEN_LOOP_SIZE readings, every server; null: none. */
  manyDevices: { devices: number; rate: number } | null;
  /** Set by runIngest: whether device-sim's lean generator runs here. */
  leanOk?: boolean;
}

export interface IngestPoint {
  readingsPerMessage: number;
  server: ServerKind;
  client: string;
  seconds: number;
  /** Messages acked in the measured interval: counted by the client between the marks when it can be told them, else by the server. */
  messages: number;
  countedBy: 'client' | 'server';
  messagesPerSec: number;
  readingsPerSec: number;
  serverCpuSeconds: number;
  serverCpuPercent: number;
  /** The server's main thread alone (the hub's and the baseline's JavaScript thread), % of one core. */
  mainThreadCpuPercent: number;
  /** Open loop: the share of the closed-loop rate offered, and the msgs/s offered; NaN closed loop. */
  share: number;
  offeredPerSec: number;
  /** Open loop: batches the generator sent later than scheduled (credit held them back). */
  behindSchedule: number;
  ackMaxMs: number;
  cpuUsPerMessage: number;
  cpuNsPerReading: number;
  ackP50Ms: number;
  ackP99Ms: number;
  latencySamples: number;
  /** Whether the latency covers only the measured interval (else the whole run, warm-up included). */
  latencyWindowed: boolean;
  lost: number | null;
  errors: number;
  clientCpuPercent: number;
  serverCounted: { batches: number; readings: number } | null;
  notes: string[];
  /** The load generator's own report (the lean generator's --json summary), for --json. */
  clientReport?: unknown;
  error?: string;
}

/** Whether device-sim's CLI has the lean mode (`cli.js lean --help` exits 0), and why not. */
export function leanAvailable(root: string): { ok: boolean; why: string } {
  const r = spawnSync(process.execPath, [join(root, 'device-sim/dist/cli.js'), 'lean', '--help'], { env: compiledEnv(process.env), encoding: 'utf8', timeout: 20_000 });
  if (r.status === 0) return { ok: true, why: '' };
  return { ok: false, why: `device-sim has no lean load generator yet (node device-sim/dist/cli.js lean --help exited ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''})` };
}

/** Steady-state messages captured per size for the MQTT clients. */
const CAPTURE_COUNT = 64;

/**
 * The exact Batch messages the lean generator sends at this size: a ws
 * baseline with --capture and a few lean clients for a moment. The MQTT
 * clients publish these bytes. Null (and the reason) when that fails.
 */
async function captureLeanPayloads(ctx: ServerContext, o: IngestOptions, n: number): Promise<{ file: string | null; why: string }> {
  const file = join(ctx.tmp, `lean-payloads-${n}.b64`);
  if (existsSync(file)) return { file, why: '' };
  const server = await startWsBaseline(ctx, { file, count: CAPTURE_COUNT });
  let load: LoadHandle | null = null;
  try {
    load = startLeanLoad({
      url: server.url, clients: 4, window: o.window, readingsPerMessage: n, processes: 1, maxSeconds: 20,
      tokensFile: o.tokensFile, prefix: o.prefix, sourceAddresses: [], root: o.root, serverSessions: async () => (await server.counters()).sessions ?? 0,
    });
    await load.ready;
    const end = Date.now() + 10_000;
    while (!existsSync(file) && Date.now() < end) await sleep(50);
    await load.finish().catch(() => undefined);
    load = null;
    if (!existsSync(file)) return { file: null, why: `the ws baseline captured fewer than ${CAPTURE_COUNT} lean batches in 10 s` };
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
    return lines === CAPTURE_COUNT ? { file, why: '' } : { file: null, why: `captured ${lines} lean batches, not ${CAPTURE_COUNT}` };
  } catch (err) {
    return { file: null, why: (err as Error).message };
  } finally {
    if (load) await load.finish().catch(() => undefined);
    await server.stop();
  }
}

const delta = (a: ServerCounters, b: ServerCounters, k: keyof ServerCounters): number => (b[k] ?? NaN) - (a[k] ?? NaN);

/** Readings per message of the open-loop points (the issue's shape: 20). */
export const OPEN_LOOP_SIZE = 20;

interface OpenLoop { share: number; offeredPerSec: number }

async function measure(ctx: ServerContext, o: IngestOptions, kind: ServerKind, n: number, log: (s: string) => void, open?: OpenLoop): Promise<IngestPoint> {
  const pointNotes: string[] = [];
  let payloadFile: string | undefined;
  if (kind === 'mosquitto') {
    const cap = o.leanOk ? await captureLeanPayloads(ctx, o, n) : { file: null, why: 'no lean generator' };
    if (cap.file) payloadFile = cap.file;
    else pointNotes.push(`publishing payloads.ts messages (sensor models), not the lean generator's bytes: ${cap.why}`);
  }
  const server: Server = await startServer(ctx, kind, `ingest-${n}`);
  let load: LoadHandle | null = null;
  try {
    const lo: LoadOptions = {
      url: server.url, clients: o.clients, window: o.window, readingsPerMessage: n, processes: o.clientProcesses,
      maxSeconds: o.warmupSeconds + o.measureSeconds + 40,
      tokensFile: o.tokensFile, prefix: o.prefix, sourceAddresses: [], root: o.root, payloadFile,
      ratePerClient: open ? open.offeredPerSec / o.clients : undefined,
    };
    load = kind === 'mosquitto'
      ? startMqttLoad(lo)
      : startLeanLoad({ ...lo, maxSeconds: CONNECT_ALLOWANCE_S + o.warmupSeconds + o.measureSeconds + 10, serverSessions: async () => (await server.counters()).sessions ?? 0 });
    log(`ingest: ${n} readings/msg, ${SERVER_LABELS[kind]} (pid ${server.pid}) <- ${load.client}${open ? `, open loop at ${fmt(open.offeredPerSec)} msgs/s` : ''}`);
    await load.ready;
    await sleep(o.warmupSeconds * 1000);

    const clientPids = load.pids().flatMap(processTree);
    const cl0 = cpuByPid(clientPids);
    const c0 = cpuSeconds(server.pid);
    const m0 = mainThreadCpuSeconds(server.pid);
    load.markStart();
    const t0 = performance.now();
    const k0 = await server.counters();
    await sleep(o.measureSeconds * 1000);
    const k1 = await server.counters();
    load.markEnd();
    const c1 = cpuSeconds(server.pid);
    const m1 = mainThreadCpuSeconds(server.pid);
    const seconds = (performance.now() - t0) / 1000;
    const cl1 = cpuByPid(load.pids().flatMap(processTree));

    const windowed = load.windowed;
    const result: LoadResult = await load.finish();
    load = null;
    const serverCounted = k0.batches === undefined ? null : { batches: delta(k0, k1, 'batches'), readings: delta(k0, k1, 'readings') };
    // The windowed client count when there is one; else what the server counted in the same interval.
    const byClient = windowed;
    const messages = byClient || !serverCounted ? result.acked : serverCounted.batches;
    const readings = byClient || !serverCounted ? result.readingsAcked : serverCounted.readings;
    const cpu = c1 - c0;
    return {
      readingsPerMessage: n, server: kind, client: clientLabel(kind), seconds, messages, countedBy: byClient || !serverCounted ? 'client' : 'server',
      messagesPerSec: messages / seconds, readingsPerSec: readings / seconds,
      serverCpuSeconds: cpu, serverCpuPercent: (cpu / seconds) * 100, mainThreadCpuPercent: ((m1 - m0) / seconds) * 100,
      share: open?.share ?? NaN, offeredPerSec: open?.offeredPerSec ?? NaN, behindSchedule: result.behindSchedule ?? NaN, ackMaxMs: result.latency.maxMs ?? NaN,
      cpuUsPerMessage: (cpu / messages) * 1e6, cpuNsPerReading: (cpu / readings) * 1e9,
      ackP50Ms: result.latency.p50Ms, ackP99Ms: result.latency.p99Ms, latencySamples: result.latency.samples, latencyWindowed: byClient,
      lost: result.lost, errors: result.errors, clientCpuPercent: (cpuDelta(cl0, cl1) / seconds) * 100,
      serverCounted, notes: [...pointNotes, ...result.notes], clientReport: result.raw,
    };
  } finally {
    if (load) await load.finish().catch(() => undefined);
    await server.stop();
  }
}

const clientLabel = (kind: ServerKind): string => (kind === 'mosquitto' ? 'mqtt.js' : 'lean');

export interface IngestRun {
  points: IngestPoint[];
  /** The hub at fixed rates below its closed-loop rate (OPEN_LOOP_SIZE readings per message). */
  openLoop: IngestPoint[];
  /** Every server at the many-devices shape. */
  manyDevices: IngestPoint[];
  skipped: string[];
  /** Mean bytes of the Batch messages the lean generator sent (captured), by readings per message. */
  messageBytes: Record<string, number>;
}

export async function runIngest(ctx: ServerContext, o: IngestOptions, log: (s: string) => void): Promise<IngestRun> {
  const points: IngestPoint[] = [];
  const messageBytes: Record<string, number> = {};
  const skipped: string[] = [];
  let servers = o.servers;
  if (servers.includes('mosquitto') && !ctx.mosquittoPath) {
    skipped.push('mosquitto: not installed; sudo apt-get install mosquitto (Debian/Ubuntu), then run again');
    servers = servers.filter((s) => s !== 'mosquitto');
  }
  const lean = leanAvailable(o.root);
  o.leanOk = lean.ok;
  if (servers.some((s) => s !== 'mosquitto')) {
    if (!lean.ok) {
      skipped.push(`hub and ws baseline: ${lean.why}`);
      servers = servers.filter((s) => s === 'mosquitto');
    }
  }
  for (const n of o.sizes) {
    for (const kind of servers) {
      try {
        points.push(await measure(ctx, o, kind, n, log));
      } catch (err) {
        log(`ingest: ${SERVER_LABELS[kind]} at ${n} readings/msg failed: ${(err as Error).message}`);
        points.push({
          readingsPerMessage: n, server: kind, client: clientLabel(kind), seconds: NaN, messages: NaN, countedBy: 'client', messagesPerSec: NaN,
          readingsPerSec: NaN, serverCpuSeconds: NaN, serverCpuPercent: NaN, mainThreadCpuPercent: NaN, share: NaN, offeredPerSec: NaN, behindSchedule: NaN, ackMaxMs: NaN, cpuUsPerMessage: NaN, cpuNsPerReading: NaN, ackP50Ms: NaN,
          ackP99Ms: NaN, latencySamples: 0, latencyWindowed: false, lost: null, errors: 0, clientCpuPercent: NaN, serverCounted: null,
          notes: [], error: (err as Error).message,
        });
      }
    }
  }
  const openLoop: IngestPoint[] = [];
  const closed = points.find((p) => p.server === 'hub' && p.readingsPerMessage === OPEN_LOOP_SIZE && !p.error);
  if (o.openLoop.length && !closed) skipped.push(`open loop: no closed-loop hub point at ${OPEN_LOOP_SIZE} readings/msg to take the rate from`);
  for (const share of closed ? o.openLoop : []) {
    const offeredPerSec = Math.round(closed!.messagesPerSec * share);
    try {
      openLoop.push(await measure(ctx, o, 'hub', OPEN_LOOP_SIZE, log, { share, offeredPerSec }));
    } catch (err) {
      log(`ingest: open loop at ${fmt(offeredPerSec)} msgs/s failed: ${(err as Error).message}`);
      skipped.push(`open loop at ${share}: FAILED: ${(err as Error).message}`);
    }
  }
  const manyDevices: IngestPoint[] = [];
  if (o.manyDevices) {
    const { devices, rate } = o.manyDevices;
    const many: IngestOptions = { ...o, clients: devices, window: Math.min(o.window, 8) };
    for (const kind of servers) {
      try {
        manyDevices.push(await measure(ctx, many, kind, OPEN_LOOP_SIZE, log, { share: NaN, offeredPerSec: devices * rate }));
      } catch (err) {
        log(`ingest: many devices, ${SERVER_LABELS[kind]} failed: ${(err as Error).message}`);
        skipped.push(`many devices, ${SERVER_LABELS[kind]}: FAILED: ${(err as Error).message}`);
      }
    }
  }
  for (const n of o.sizes) {
    const file = join(ctx.tmp, `lean-payloads-${n}.b64`);
    if (!existsSync(file)) continue;
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    messageBytes[String(n)] = lines.reduce((a, l) => a + Buffer.from(l, 'base64').length, 0) / Math.max(1, lines.length);
  }
  return { points, openLoop, manyDevices, skipped, messageBytes };
}

export function ingestTable(run: IngestRun, o: IngestOptions): Table {
  const { points, skipped, messageBytes } = run;
  const hubAt = (n: number): number => points.find((p) => p.readingsPerMessage === n && p.server === 'hub')?.cpuUsPerMessage ?? NaN;
  const notes = [...skipped.map((s) => `skipped: ${s}`)];
  for (const p of points) {
    const where = `${SERVER_LABELS[p.server]} @ ${p.readingsPerMessage}`;
    if (p.error) notes.push(`${where}: FAILED: ${p.error}`);
    for (const n of new Set(p.notes)) notes.push(`${where}: ${n}`);
    if (p.lost) notes.push(`${where}: ${fmt(p.lost)} messages lost`);
    if (p.errors) notes.push(`${where}: ${fmt(p.errors)} client errors`);
  }
  notes.push(
    'msgs/s: acked in the measured interval (mosquitto: PUBACKs the clients counted between the marks; hub and ws baseline: batches the server counted, /metrics and /stats).',
    'ack p50/p99: per message, send -> ack, at the client, within the measured interval (lean: from its start to the end of sending). "hub ÷ this": hub CPU per message / this server\'s, same message size.',
    'msg B: mean size of the Batch messages the lean generator sent at that size (captured by a ws baseline; the bytes the MQTT clients publish).',
    'client CPU: all client processes (% of one core); when it nears 100 % x processes the clients, not the server, set msgs/s.',
  );
  return {
    title: 'ingest cost: server CPU per message and per reading',
    subtitle: [
      `${fmt(o.clients)} clients x ${o.window} unacked messages each (closed loop), ${o.clientProcesses} client process${o.clientProcesses > 1 ? 'es' : ''},`
        + ` ${fmt(o.warmupSeconds)} s warm-up then ${fmt(o.measureSeconds)} s measured per point; a fresh server per point.`,
      'Server CPU: utime + stime of the server process (all threads) over the measured interval, /proc/<pid>/stat.',
    ],
    columns: ['readings/msg', 'msg B', 'server', 'client', 'msgs/s', 'readings/s', 'server CPU', 'main thread', 'µs CPU/msg', 'ns CPU/reading', 'ack p50 ms', 'ack p99 ms', 'hub ÷ this', 'client CPU'],
    rows: points.map((p) => [
      String(p.readingsPerMessage), fmt(messageBytes[String(p.readingsPerMessage)]), SERVER_LABELS[p.server], p.client, fmt(p.messagesPerSec), fmt(p.readingsPerSec),
      `${fmt(p.serverCpuPercent)} %`, `${fmt(p.mainThreadCpuPercent)} %`, sig(p.cpuUsPerMessage), sig(p.cpuNsPerReading), sig(p.ackP50Ms), sig(p.ackP99Ms),
      ratio(hubAt(p.readingsPerMessage) / p.cpuUsPerMessage), `${fmt(p.clientCpuPercent)} %`,
    ]),
    notes,
  };
}

/** The open-loop points: ack latency below saturation, and what one core (the main thread) carries. */
export function openLoopTable(run: IngestRun, o: IngestOptions): Table {
  const closed = run.points.find((p) => p.server === 'hub' && p.readingsPerMessage === OPEN_LOOP_SIZE && !p.error);
  const notes: string[] = [];
  for (const p of run.openLoop) {
    for (const n of new Set(p.notes)) notes.push(`${fmt(p.share * 100)} %: ${n}`);
    if (p.lost) notes.push(`${fmt(p.share * 100)} %: ${fmt(p.lost)} messages lost`);
    if (p.errors) notes.push(`${fmt(p.share * 100)} %: ${fmt(p.errors)} client errors`);
  }
  notes.push(
    'offered: msgs/s the clients were told to send (a share of the closed-loop row); acked: what the hub counted in the measured interval.',
    'ack p50/p99/max: send -> ack at the client, from the start of the measured interval (after the warm-up) to the end of sending.',
    'behind: batches sent later than scheduled because credit held them (a sign of saturation).',
    'main thread: the hub\'s JavaScript thread alone, % of one core (the rest of "hub CPU" is uWS\'s and libuv\'s threads: fdatasync, the kernel).',
  );
  return {
    title: `ingest below saturation: the hub at fixed rates, ${OPEN_LOOP_SIZE} readings/msg (open loop)`,
    subtitle: [
      `${fmt(o.clients)} clients at equal rates, at most ${o.window} unacked each; closed-loop rate at this size: ${closed ? `${fmt(closed.messagesPerSec)} msgs/s` : '-'}.`,
    ],
    columns: ['share', 'offered msgs/s', 'acked msgs/s', 'hub CPU', 'main thread', 'µs CPU/msg', 'ack p50 ms', 'ack p99 ms', 'ack max ms', 'behind', 'client CPU'],
    rows: run.openLoop.map((p) => [
      `${fmt(p.share * 100)} %`, fmt(p.offeredPerSec), fmt(p.messagesPerSec), `${fmt(p.serverCpuPercent)} %`, `${fmt(p.mainThreadCpuPercent)} %`,
      sig(p.cpuUsPerMessage), sig(p.ackP50Ms), sig(p.ackP99Ms), sig(p.ackMaxMs), fmt(p.behindSchedule), `${fmt(p.clientCpuPercent)} %`,
    ]),
    notes,
  };
}

/** The many-devices shape: every server at the same fixed rate from many clients. */
export function manyDevicesTable(run: IngestRun, o: IngestOptions): Table {
  const m = o.manyDevices!;
  const hub = run.manyDevices.find((p) => p.server === 'hub');
  const notes: string[] = [];
  for (const p of run.manyDevices) {
    for (const n of new Set(p.notes)) notes.push(`${SERVER_LABELS[p.server]}: ${n}`);
    if (p.lost) notes.push(`${SERVER_LABELS[p.server]}: ${fmt(p.lost)} messages lost`);
    if (p.errors) notes.push(`${SERVER_LABELS[p.server]}: ${fmt(p.errors)} client errors`);
  }
  notes.push(
    'Each message is its own socket read and its own ack write here (a client has one message in flight most of the time), so per-message kernel work counts as much as the server\'s own.',
    'acked below offered, or a high ack p99, means the server was saturated at this rate: its µs CPU/msg is then a floor, not its cost.',
    '"hub ÷ this": hub CPU per message / this server\'s at the same shape.',
  );
  return {
    title: `ingest, many devices: ${fmt(m.devices)} clients x ${fmt(m.rate)} msgs/s each, ${OPEN_LOOP_SIZE} readings/msg (open loop)`,
    subtitle: [`Every server at the same offered rate, ${fmt(m.devices * m.rate)} msgs/s; at most ${Math.min(o.window, 8)} unacked per client.`],
    columns: ['server', 'client', 'offered msgs/s', 'acked msgs/s', 'server CPU', 'main thread', 'µs CPU/msg', 'ack p50 ms', 'ack p99 ms', 'behind', 'hub ÷ this', 'client CPU'],
    rows: run.manyDevices.map((p) => [
      SERVER_LABELS[p.server], p.client, fmt(p.offeredPerSec), fmt(p.messagesPerSec), `${fmt(p.serverCpuPercent)} %`, `${fmt(p.mainThreadCpuPercent)} %`,
      sig(p.cpuUsPerMessage), sig(p.ackP50Ms), sig(p.ackP99Ms), fmt(p.behindSchedule), ratio((hub?.cpuUsPerMessage ?? NaN) / p.cpuUsPerMessage), `${fmt(p.clientCpuPercent)} %`,
    ]),
    notes,
  };
}
