// Test support (not a test file): hub processes of one cluster (HUB_NATS_URL)
// sharing one port, as users run them: each hub a child process with its
// output kept in a bounded buffer (the tail, for a failure's message) and
// SIGKILLed after the test. uWebSockets.js binds with SO_REUSEPORT, so every
// hub started on the same HUB_PORT listens on it and the kernel hands each
// new connection to one of them: a request to the shared port reaches some
// hub. HubProbe knows which: it asks /api/v1/status (the cluster's hub id)
// and /metrics over one kept-alive connection, the same socket checked, so
// each hub's counters are read from that hub. Also: the JetStream leader of
// a stream, and which NATS server each client is connected to.
// Imports: node, @nats-io (the hub's own NATS client), test/support.
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { parseMetrics } from '../../scripts/bench-lib.ts';

/** How much of a hub's output `log()` keeps (the tail). */
const LOG_LIMIT = 64 * 1024;

/** A program to run with node (scripts/bench-lib.ts compiled(): the compiled hub). */
export interface NodeLaunch { args: string[]; env: NodeJS.ProcessEnv }

/** One hub process. */
export interface HubProcess {
  readonly id: string;
  readonly proc: ChildProcess;
  /** The last ~64 KiB of its stdout and stderr (its JSON log, startup errors). */
  log(): string;
  /** Settles when it exits (listened for from the start). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` and waits for the exit (at once when it has exited). */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/** Spawns a hub (`env` on top of the launch's environment); SIGKILLed after the test if it still runs. */
export function startHubProcess(t: TestContext, launch: NodeLaunch, id: string, env: Record<string, string>, cwd: string): HubProcess {
  const proc = spawn(process.execPath, launch.args, { cwd, env: { ...launch.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const append = (c: Buffer): void => {
    out += c.toString();
    if (out.length > 2 * LOG_LIMIT) out = out.slice(-LOG_LIMIT);
  };
  proc.stdout.on('data', append);
  proc.stderr.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const running = (): boolean => proc.exitCode === null && proc.signalCode === null;
  t.after(() => { if (running()) proc.kill('SIGKILL'); });
  return {
    id, proc, exited,
    log: () => out.slice(-LOG_LIMIT),
    kill: async (signal) => {
      if (running()) proc.kill(signal);
      await exited;
    },
  };
}

export interface HttpAnswer { status: number; body: string; socket: Socket }

/** GET 127.0.0.1:port/path; `agent` false: a connection of its own (closed after). */
export function httpGet(port: number, path: string, o: { token?: string; agent?: Agent | false; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    let socket: Socket | null = null;
    const req = request({
      host: '127.0.0.1', port, path, method: 'GET', agent: o.agent ?? false, timeout: o.timeoutMs ?? 3_000,
      headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, socket: socket ?? res.socket }));
      res.on('error', reject);
    });
    req.on('socket', (s) => { socket = s; });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on port ${port}: no answer within ${o.timeoutMs ?? 3_000} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** /api/v1/status as far as these tests read it. */
export interface HubStatus {
  ready: boolean;
  reasons: string[];
  connections: number;
  sessions: number;
  cluster: {
    hub: string; nats: string; devicesHere: number;
    hubs: { id: string; up: boolean; devices: number; connections: number }[];
    sinkLag?: number; held?: number; redelivered?: number;
  };
  sink: { name: string; state: string; linesWritten?: number; errors?: number; lastError?: string | null };
}


/** One hub's status and metrics, both read over one connection (so both are that hub's). */
export interface HubSample { hub: string; at: number; status: HubStatus; metrics: Map<string, number> }

/**
 * Reads each hub of a shared port separately. Every connection is pinned to
 * the hub the kernel gave it; a sample asks /api/v1/status and /metrics on
 * one kept-alive socket (checked to be the same one), so the metrics belong
 * to the hub the status names. New connections are opened until each hub
 * wanted has one (or the tries run out).
 */
export class HubProbe {
  readonly #port: number;
  readonly #token: string;
  #agents: Agent[] = [];

  constructor(port: number, token: string) {
    this.#port = port;
    this.#token = token;
  }

  async #pair(agent: Agent): Promise<HubSample | null> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const s = await httpGet(this.#port, '/api/v1/status', { token: this.#token, agent, timeoutMs: 2_000 });
        const m = await httpGet(this.#port, '/metrics', { token: this.#token, agent, timeoutMs: 2_000 });
        if (s.socket !== m.socket || s.status !== 200 || m.status !== 200) continue;
        const status = JSON.parse(s.body) as HubStatus;
        return { hub: status.cluster.hub, at: Date.now(), status, metrics: parseMetrics(m.body) };
      } catch {
        return null;
      }
    }
    return null;
  }

  /** A sample of every hub reachable on the port, by hub id (at most `tries` new connections to find the `want` hubs). */
  async sample(want: number, tries = 12): Promise<Map<string, HubSample>> {
    const out = new Map<string, HubSample>();
    const kept: Agent[] = [];
    for (const agent of this.#agents) {
      const r = await this.#pair(agent);
      if (r && !out.has(r.hub)) { out.set(r.hub, r); kept.push(agent); } else agent.destroy();
    }
    for (let n = 0; out.size < want && n < tries; n++) {
      const agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
      const r = await this.#pair(agent);
      if (r && !out.has(r.hub)) { out.set(r.hub, r); kept.push(agent); } else agent.destroy();
    }
    this.#agents = kept;
    return out;
  }

  close(): void {
    for (const a of this.#agents) a.destroy();
    this.#agents = [];
  }
}

/** The hub whose /api/v1/status answers on a fresh connection, or null (nothing listening, or an error). */
export async function statusOnce(port: number, token: string): Promise<HubStatus | null> {
  try {
    const r = await httpGet(port, '/api/v1/status', { token, timeoutMs: 2_000 });
    return r.status === 200 ? JSON.parse(r.body) as HubStatus : null;
  } catch {
    return null;
  }
}

/** JetStream's view of a stream: its leader (server name), replicas and message counters. */
export async function streamInfo(servers: string[], stream: string): Promise<{ leader: string; replicas: { name: string; current: boolean }[]; messages: number; lastSeq: number }> {
  const nc = await connect({ servers, timeout: 5_000, name: 'cluster-procs probe' });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 5_000 });
    const info = await jsm.streams.info(stream);
    return {
      leader: info.cluster?.leader ?? '', replicas: (info.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current })),
      messages: info.state.messages, lastSeq: info.state.last_seq,
    };
  } finally {
    await nc.close();
  }
}

/** Names of the clients connected to a nats-server (its monitoring /connz). */
export async function connectedClients(monitorUrl: string): Promise<string[]> {
  try {
    const res = await fetch(`${monitorUrl}/connz?limit=1024`, { signal: AbortSignal.timeout(2_000) });
    const body = await res.json() as { connections?: { name?: string }[] };
    return (body.connections ?? []).map((c) => c.name ?? '');
  } catch {
    return [];
  }
}

/**
 * What JetStream holds for a failure's message: the stream's state, the
 * sink's durable consumer (pending, ack pending, redelivered, floors), and
 * the messages still in the stream (work queue: not shipped yet), at most `list`.
 */
export async function jetstreamReport(servers: string[], stream: string, consumer: string, list = 40): Promise<string> {
  const nc = await connect({ servers, timeout: 5_000, name: 'cluster-procs probe' });
  try {
    const jsm = await jetstreamManager(nc, { timeout: 5_000 });
    const info = await jsm.streams.info(stream);
    const lines = [`stream ${stream}: ${JSON.stringify(info.state)}`];
    try {
      const c = await jsm.consumers.info(stream, consumer);
      lines.push(`consumer ${consumer}: ${JSON.stringify({ num_pending: c.num_pending, num_ack_pending: c.num_ack_pending, num_redelivered: c.num_redelivered, num_waiting: c.num_waiting, delivered: c.delivered, ack_floor: c.ack_floor })}`);
    } catch (err) {
      lines.push(`consumer ${consumer}: ${(err as Error).message}`);
    }
    const left: string[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && left.length < list; seq++) {
      try {
        const m = await jsm.streams.getMessage(stream, { seq });
        if (m) left.push(`#${seq} ${m.subject} seq ${m.header?.get('Telemetry-Seq') ?? '?'} from ${m.header?.get('Telemetry-Hub') ?? '?'} at ${m.time.toISOString()}`);
      } catch { /* removed (shipped) */ }
    }
    if (left.length) lines.push(`messages left in the stream (first ${list}):`, ...left);
    return lines.join('\n');
  } finally {
    await nc.close();
  }
}
