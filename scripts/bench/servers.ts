// scripts/bench/: the three servers `npm run bench` compares, each started
// fresh for every measurement point, on a free port on 127.0.0.1:
//   hub        the compiled hub (node hub/dist/main.js, built first when
//              stale), as `npm start` runs it: durable spool (fdatasync
//              before every ack), live path on; the limits that would
//              refuse a benchmark lifted (per-address connections,
//              admission rate, readings/s per device).
//   mosquitto  Debian's broker: QoS 1 PUBACKs from RAM (persistence false),
//              max_inflight_messages 32, max_queued_messages high.
//   ws         scripts/bench/ws-baseline.ts: `ws` + the generated protobuf
//              decoder, Welcome and Ack, nothing else.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import WebSocket from 'ws';
import { BENCH_METRICS_TOKEN, freePort, scrape, waitHealthy, type Launch } from '../bench-lib.ts';
import { compiledEnv } from '../build.ts';
import { listeningSockets, openFileLimit, running, sleep, spawnTracked, stopChild } from './proc.ts';

export type ServerKind = 'hub' | 'mosquitto' | 'ws';
export const SERVER_KINDS: readonly ServerKind[] = ['hub', 'mosquitto', 'ws'];
export const SERVER_LABELS: Record<ServerKind, string> = { hub: 'hub', mosquitto: 'mosquitto', ws: 'ws baseline' };

/** Counters a server keeps itself (the hub's /metrics, the baseline's /stats); mosquitto keeps none we read. */
export interface ServerCounters {
  batches?: number;
  readings?: number;
  sessions?: number;
}

export interface Server {
  kind: ServerKind;
  pid: number;
  port: number;
  /** The device endpoint (hub, ws baseline) or the broker (mosquitto). */
  url: string;
  /** The server's RLIMIT_NOFILE: it cannot hold more connections than this. */
  openFiles: number;
  counters(): Promise<ServerCounters>;
  /** Its stderr so far (the last 8 KiB), for errors. */
  stderr(): string;
  /** A full garbage collection in the server, through the inspector (node servers started with `inspect`); null otherwise. */
  gc: (() => Promise<void>) | null;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Node servers: start with --inspect on a free loopback port, so that gc() can force a full collection. */
  inspect?: boolean;
  /** The hub: more environment over the benchmark's (cluster mode: HUB_NATS_URL, HUB_NATS_REPLICAS, HUB_WORKERS, HUB_ID). */
  env?: NodeJS.ProcessEnv;
  /** The hub: node flags before its script (--cpu-prof ...). */
  nodeArgs?: string[];
  /** The hub: healthy once this many sockets listen on its port (HUB_WORKERS=N: N processes, SO_REUSEPORT); default 1. */
  listeners?: number;
}

/** HeapProfiler.collectGarbage over the inspector protocol of the node process listening on `port`. */
async function inspectorGc(port: number): Promise<void> {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as { webSocketDebuggerUrl: string }[];
  const url = targets[0]?.webSocketDebuggerUrl;
  if (!url) throw new Error(`no inspector target on port ${port}`);
  const ws = new WebSocket(url);
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => { ws.terminate(); rej(new Error('inspector: no answer to HeapProfiler.collectGarbage within 30 s')); }, 30_000);
    ws.once('open', () => ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
    ws.on('message', (d: Buffer) => {
      if ((JSON.parse(d.toString()) as { id?: number }).id === 1) { clearTimeout(t); ws.close(); res(); }
    });
    ws.once('error', (err) => { clearTimeout(t); rej(err); });
  });
}

export interface ServerContext {
  root: string;
  /** Scratch directory of this run. */
  tmp: string;
  hub: Launch;
  /** The hub's device registry (scripts/sim-fleet.ts wrote it). */
  registry: string;
  mosquittoPath: string | null;
  /** Welcome.window of the hub and the baseline, max_inflight_messages of mosquitto. */
  window: number;
}

function collectStderr(c: ChildProcess): () => string {
  let err = '';
  c.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-8192); });
  return () => err;
}

async function waitPort(port: number, c: ChildProcess, ms: number, what: string, stderr: () => string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host: '127.0.0.1', port }, () => { s.destroy(); res(true); });
      s.on('error', () => res(false));
    });
    if (ok) return;
    if (!running(c)) throw new Error(`${what} exited (${c.exitCode ?? c.signalCode}) before listening: ${stderr()}`);
    if (Date.now() > end) throw new Error(`${what} did not listen on ${port} within ${ms} ms: ${stderr()}`);
    await sleep(50);
  }
}

function handle(kind: ServerKind, c: ChildProcess, port: number, url: string, stderr: () => string, counters: () => Promise<ServerCounters>, inspectPort: number | null): Server {
  return {
    kind, pid: c.pid ?? -1, port, url, openFiles: openFileLimit(c.pid ?? -1), counters, stderr,
    gc: inspectPort === null ? null : () => inspectorGc(inspectPort),
    stop: () => stopChild(c, 15_000),
  };
}

async function inspectArgs(opts: StartOptions): Promise<{ port: number | null; args: string[] }> {
  if (!opts.inspect) return { port: null, args: [] };
  const port = await freePort();
  return { port, args: [`--inspect=127.0.0.1:${port}`] };
}

export async function startHub(ctx: ServerContext, name: string, opts: StartOptions = {}): Promise<Server> {
  const port = await freePort();
  const inspect = await inspectArgs(opts);
  const dataDir = join(ctx.tmp, `hub-${name}`);
  mkdirSync(dataDir, { recursive: true });
  const c = spawnTracked(process.execPath, [...inspect.args, ...(opts.nodeArgs ?? []), ...ctx.hub.args], {
    cwd: ctx.root,
    env: {
      ...ctx.hub.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: dataDir, HUB_DEVICES_FILE: ctx.registry,
      HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN, HUB_LOG_LEVEL: 'warn', HUB_WINDOW: String(ctx.window),
      // Lifted: these refuse a benchmark's load from one machine, not a fleet's.
      HUB_MAX_CONN_PER_ADDRESS: '1000000', HUB_MAX_CONNECTIONS: '1000000', HUB_ADMISSION_RATE: '1000000', HUB_ADMISSION_BURST: '10000000',
      HUB_MAX_READINGS_PER_SEC: '10000000', HUB_READINGS_BURST: '100000000',
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const stderr = collectStderr(c);
  try {
    await waitHealthy(`http://127.0.0.1:${port}`, c, 60_000);
    // HUB_WORKERS=N: /healthz answered from one of them; every one listening on the port.
    const want = opts.listeners ?? 1;
    const end = Date.now() + 60_000;
    while (listeningSockets(port) < want) {
      if (!running(c)) throw new Error(`the hub exited (${c.exitCode ?? c.signalCode}) before ${want} processes listened on ${port}`);
      if (Date.now() > end) throw new Error(`${listeningSockets(port)} of ${want} hub processes listen on ${port} after 60 s`);
      await sleep(100);
    }
  } catch (err) {
    await stopChild(c);
    throw new Error(`${(err as Error).message}; hub stderr: ${stderr()}`, { cause: err });
  }
  return handle('hub', c, port, `ws://127.0.0.1:${port}/v1/devices`, stderr, async () => {
    const m = await scrape(port);
    return {
      batches: m.get('hub_batches_total{result="accepted"}') ?? 0,
      readings: m.get('hub_readings_total{result="accepted"}') ?? 0,
      sessions: m.get('hub_device_sessions') ?? 0,
    };
  }, inspect.port);
}

/** The broker's configuration for the benchmark (`mosquitto -c`). */
export function mosquittoConfig(port: number, window: number): string {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    // QoS 1 acks from RAM: nothing is written to disk.
    'persistence false',
    `max_inflight_messages ${window}`,
    'max_queued_messages 1000000',
    'max_connections -1',
    // As the hub (uWebSockets.js) and ws do: no Nagle delay on small acks.
    'set_tcp_nodelay true',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    '',
  ].join('\n');
}

export async function startMosquitto(ctx: ServerContext, name: string): Promise<Server> {
  if (!ctx.mosquittoPath) throw new Error('mosquitto is not installed');
  const port = await freePort();
  const conf = join(ctx.tmp, `mosquitto-${name}.conf`);
  writeFileSync(conf, mosquittoConfig(port, ctx.window));
  const c = spawnTracked(ctx.mosquittoPath, ['-c', conf], { cwd: ctx.tmp, stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = collectStderr(c);
  try {
    await waitPort(port, c, 10_000, 'mosquitto', stderr);
  } catch (err) {
    await stopChild(c);
    throw err;
  }
  return handle('mosquitto', c, port, `mqtt://127.0.0.1:${port}`, stderr, () => Promise.resolve({}), null);
}

/** `capture`: the file the baseline writes the first steady-state Batch messages it receives to (ws-baseline.ts --capture). */
export async function startWsBaseline(ctx: ServerContext, capture?: { file: string; count: number }, opts: StartOptions = {}): Promise<Server> {
  const port = await freePort();
  const inspect = await inspectArgs(opts);
  const extra = capture ? ['--capture', capture.file, '--capture-count', String(capture.count)] : [];
  // Like the hub: plain node on proto's dist/ (no source condition); tsx only to load this .ts file.
  const c = spawnTracked(process.execPath, [...inspect.args, '--import', 'tsx', join(ctx.root, 'scripts/bench/ws-baseline.ts'), '--port', String(port), '--window', String(ctx.window), ...extra], {
    cwd: ctx.root, env: compiledEnv(process.env), stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr = collectStderr(c);
  c.stdout?.resume();
  try {
    await waitPort(port, c, 30_000, 'the ws baseline', stderr);
  } catch (err) {
    await stopChild(c);
    throw err;
  }
  return handle('ws', c, port, `ws://127.0.0.1:${port}/v1/devices`, stderr, async () => {
    const r = await fetch(`http://127.0.0.1:${port}/stats`);
    return await r.json() as ServerCounters;
  }, inspect.port);
}

export function startServer(ctx: ServerContext, kind: ServerKind, name: string, opts: StartOptions = {}): Promise<Server> {
  switch (kind) {
    case 'hub': return startHub(ctx, name, opts);
    case 'mosquitto': return startMosquitto(ctx, name);
    case 'ws': return startWsBaseline(ctx, undefined, opts);
  }
}
