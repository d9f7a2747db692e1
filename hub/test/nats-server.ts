// Test support: real NATS JetStream servers (Debian's nats-server 2.9.10) on
// free loopback ports, each with its own temp store dir: one server
// (NatsServer.start) or a JetStream cluster of them (NatsCluster.start), for
// the cluster-mode tests. Servers can be killed (any signal) and restarted on
// the same ports and store, as a crash and a recovery. Missing nats-server is
// an error, never a skip: CI installs it (.ci/run, scripts/preflight.ts).
//
// Ready means: the client port answers with INFO, and the monitoring port's
// plain /healthz says {"status":"ok"}. In 2.9.10 that plain check is the one
// that covers JetStream: it fails ("JetStream has not established contact
// with a meta leader") until the server is in a cluster with a meta leader,
// and after a restart until its streams and consumers are current again.
// /healthz?js-enabled-only=true only checks that JetStream is switched on:
// it answers ok at once, with no meta leader yet, so it is not used here.
//
// Every server still running when the test process exits (or dies of
// SIGINT/SIGTERM/SIGHUP) is SIGKILLed, so a failed test leaves no orphans.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from '../../test/support/net.ts';
import { sleep } from '../../test/support/wait.ts';

function executable(p: string): boolean {
  try { accessSync(p, constants.X_OK); return true; } catch { return false; }
}

/** `nats-server` on PATH, or null. */
function onPath(name: string): string | null {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d && executable(join(d, name))) return join(d, name);
  }
  return null;
}

/**
 * The nats-server binary: $NATS_SERVER, else Debian's /usr/sbin/nats-server;
 * if that is not an executable, `nats-server` on PATH (as scripts/preflight.ts
 * accepts either).
 */
const CONFIGURED = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';
export const NATS_SERVER: string = executable(CONFIGURED) ? CONFIGURED : onPath('nats-server') ?? CONFIGURED;

/** How long start(), restart() and waitReady() wait by default. */
const READY_MS = 15_000;
/** How long kill('SIGTERM') waits for a clean exit before SIGKILL. */
const TERM_GRACE_MS = 10_000;
/** How much of a server's output `log` keeps (the tail). */
const LOG_LIMIT = 64 * 1024;

function assertBinary(): void {
  if (!executable(NATS_SERVER)) {
    throw new Error(`nats-server not found (not at ${CONFIGURED}${process.env.NATS_SERVER ? ' ($NATS_SERVER)' : ''}, nor on PATH): `
      + 'install Debian\'s nats-server package: apt-get install -y nats-server (.ci/run does)');
  }
}

// Every live server process, SIGKILLed when the test process goes, and the
// store dirs not removed by stop() yet (removed then too, as far as possible).
const live = new Set<ChildProcess>();
const dirs = new Set<string>();
let exitHooked = false;
function killAllNow(): void {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
  live.clear();
  for (const d of dirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* a dying server still writing: leave it */ }
  }
  dirs.clear();
}
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAllNow();
      // Ours was the only listener: die of the signal as if there had been none.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.once(sig, onSignal);
  }
}

/** Linux: whether every thread of `pid` is stopped (state T or t in /proc/<pid>/task/<tid>/stat). */
function allThreadsStopped(pid: number): boolean {
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // "tid (comm) S ...": the state follows the last ')'.
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'T' && state !== 't') return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** GET a monitoring endpoint: status and parsed JSON body (null if none), or null when unreachable. */
async function getJson(url: string): Promise<{ status: number; body: unknown } | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    const text = await res.text();
    let body: unknown = null;
    try { body = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body };
  } catch {
    return null;
  }
}

/** True when a TCP connection to 127.0.0.1:port gets the NATS INFO line. */
function answersInfo(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (ok: boolean): void => { s.destroy(); resolve(ok); };
    s.setTimeout(1_000, () => done(false));
    s.on('data', (c: Buffer) => { buf += c.toString(); if (buf.startsWith('INFO ')) done(true); else if (buf.length >= 5) done(false); });
    s.on('error', () => done(false));
    s.on('close', () => resolve(false));
  });
}

/** Ports and cluster flags of one server (fixed for its life: restart reuses them). */
export interface NatsServerSpec {
  name: string;
  port: number;
  monitorPort: number;
  /** Cluster mode: this server's route port and the other members' route URLs. */
  cluster?: { port: number; routes: string[]; name: string };
}

/** /jsz's meta_cluster as 2.9.10 reports it (replicas: on the leader only). */
export interface MetaCluster {
  name?: string;
  leader?: string;
  peer?: string;
  cluster_size?: number;
  replicas?: { name: string; current: boolean; offline?: boolean; active?: number; lag?: number }[];
}

/** One real nats-server with JetStream on, on loopback. */
export class NatsServer {
  /** The server name (-n), e.g. "nats-1" in a cluster. */
  readonly name: string;
  /** Its temp dir; JetStream keeps its store under `${dir}/jetstream`. */
  readonly dir: string;
  /** Client port on 127.0.0.1. */
  readonly port: number;
  /** HTTP monitoring port on 127.0.0.1 (/healthz, /varz, /jsz, ...). */
  readonly monitorPort: number;
  /** Route port (cluster members only, else 0). */
  readonly clusterPort: number;
  proc: ChildProcess | null = null;
  #spec: NatsServerSpec;
  #log = '';
  #exited: Promise<void> = Promise.resolve();
  /** The current process failed to spawn (no 'exit' follows). */
  #spawnFailed = false;

  private constructor(spec: NatsServerSpec) {
    this.#spec = spec;
    this.name = spec.name;
    this.port = spec.port;
    this.monitorPort = spec.monitorPort;
    this.clusterPort = spec.cluster?.port ?? 0;
    this.dir = mkdtempSync(join(tmpdir(), `nats-test-${spec.name}-`));
    dirs.add(this.dir);
  }

  /** Starts one JetStream server and waits until it is ready (throws with its log after ~15 s). */
  static async start(opts: { name?: string } = {}): Promise<NatsServer> {
    assertBinary();
    for (let attempt = 1; ; attempt++) {
      const s = new NatsServer({ name: opts.name ?? 'nats-test', port: await freePort(), monitorPort: await freePort() });
      try {
        s.spawn();
        await s.waitUp(READY_MS, true);
        return s;
      } catch (err) {
        await s.stop();
        // freePort's port was taken again before the server bound it: new ports.
        if (attempt < 3 && s.log.includes('address already in use')) continue;
        throw err;
      }
    }
  }

  /** @internal NatsCluster's: a server with a cluster spec, not yet started. */
  static create(spec: NatsServerSpec): NatsServer {
    assertBinary();
    return new NatsServer(spec);
  }

  get url(): string { return `nats://127.0.0.1:${this.port}`; }
  get monitorUrl(): string { return `http://127.0.0.1:${this.monitorPort}`; }
  /** The last ~64 KiB of its stdout and stderr, across restarts. */
  get log(): string { return this.#log; }
  /** Whether its process is running (started and not exited). */
  get running(): boolean {
    return this.proc !== null && !this.#spawnFailed && this.proc.exitCode === null && this.proc.signalCode === null;
  }
  get pid(): number | undefined { return this.proc?.pid; }

  /** The command line flags (the same on every (re)start). */
  args(): string[] {
    const s = this.#spec;
    const a = ['-js', '-sd', this.dir, '-p', String(s.port), '-a', '127.0.0.1', '-m', String(s.monitorPort), '-n', s.name];
    if (s.cluster) {
      a.push('-cluster', `nats://127.0.0.1:${s.cluster.port}`, '-cluster_name', s.cluster.name);
      if (s.cluster.routes.length) a.push('-routes', s.cluster.routes.join(','));
    }
    return a;
  }

  /** @internal Spawns the process, without waiting for anything. */
  spawn(): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    hookExit();
    const proc = spawn(NATS_SERVER, this.args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.#spawnFailed = false;
    live.add(proc);
    const append = (c: Buffer): void => {
      this.#log += c.toString();
      if (this.#log.length > 2 * LOG_LIMIT) this.#log = this.#log.slice(-LOG_LIMIT);
    };
    proc.stdout.on('data', append);
    proc.stderr.on('data', append);
    this.#exited = new Promise<void>((r) => {
      proc.once('exit', (code, signal) => {
        append(Buffer.from(`--- exited ${new Date().toISOString()} (${signal ?? `code ${code}`}) ---\n`));
        live.delete(proc);
        r();
      });
      proc.once('error', (err) => {
        append(Buffer.from(`spawn ${NATS_SERVER} failed: ${err.message}\n`));
        if (this.proc === proc) this.#spawnFailed = true;
        live.delete(proc);
        r();
      });
    });
    // A server left running does not keep the test process alive: the exit hook kills it.
    proc.unref();
    // (With stdio 'pipe' these are net.Sockets.)
    (proc.stdout as Socket).unref();
    (proc.stderr as Socket).unref();
  }

  /** The last `chars` of the log for an error, without the "Healthcheck failed" warnings our own polling causes. */
  logTail(chars = 4000): string {
    const lines = this.#log.split('\n');
    const kept = lines.filter((l) => !l.includes('[WRN] Healthcheck failed'));
    const dropped = lines.length - kept.length;
    return (dropped ? `(${dropped} "Healthcheck failed" warnings left out)\n` : '') + kept.join('\n').slice(-chars);
  }

  /** Throws with the log tail (what errors say about a server). */
  fail(what: string): never {
    throw new Error(`nats-server ${this.name} (${this.url}) ${what}; its log:\n${this.logTail()}`);
  }

  /**
   * @internal Waits until the client port answers INFO and, with `jetstream`,
   * the plain /healthz is ok (JetStream ready: meta leader known, streams current).
   */
  async waitUp(ms: number, jetstream: boolean): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      let last: string;
      if (!this.running) this.fail(`exited (${this.proc?.exitCode ?? this.proc?.signalCode ?? 'spawn failed'}) while starting`);
      if (await answersInfo(this.port)) {
        if (!jetstream) return;
        const h = await getJson(`${this.monitorUrl}/healthz`);
        if (h?.status === 200) return;
        last = h ? `/healthz ${h.status} ${JSON.stringify(h.body)}` : '/healthz unreachable';
      } else {
        last = 'client port does not answer INFO';
      }
      if (Date.now() > end) this.fail(`was not ready within ${ms} ms (${last})`);
      await sleep(50);
    }
  }

  /** The plain /healthz: 200 and {"status":"ok"} when JetStream is ready, else 503 and why (null: unreachable). */
  healthz(): Promise<{ status: number; body: unknown } | null> {
    return getJson(`${this.monitorUrl}/healthz`);
  }

  /** /jsz's meta_cluster (null: unreachable, or a server not in a cluster). */
  async metaCluster(): Promise<MetaCluster | null> {
    const r = await getJson(`${this.monitorUrl}/jsz`);
    const body = r?.body as { meta_cluster?: MetaCluster } | null | undefined;
    return body?.meta_cluster ?? null;
  }

  /**
   * Sends `signal` (SIGTERM by default) and waits for the exit. SIGTERM that
   * has not ended it within 10 s becomes SIGKILL. Nothing to do if it is not running.
   */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    p.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    // Also what keeps the event loop alive while waiting (the child is unref'd).
    const escalate = new Promise<void>((r) => {
      timer = setTimeout(() => { if (this.running) p.kill('SIGKILL'); r(); }, signal === 'SIGKILL' ? 30_000 : TERM_GRACE_MS);
    });
    await Promise.race([this.#exited, escalate]);
    if (this.running) {
      const t = setTimeout(() => undefined, 30_000);
      await this.#exited;
      clearTimeout(t);
    }
    clearTimeout(timer);
  }

  /**
   * Starts it again on the same ports and store dir (stopping it first with
   * SIGTERM if it still runs) and waits until it accepts connections and its
   * JetStream is ready (in a cluster: meta leader known, its streams current).
   */
  async restart(ms = READY_MS): Promise<void> {
    await this.kill('SIGTERM');
    this.#log += `\n--- restart ${new Date().toISOString()} ---\n`;
    this.spawn();
    await this.waitUp(ms, true);
  }

  /**
   * Freezes it (SIGSTOP) and returns once every thread of it is stopped, so
   * nothing it had not answered yet is answered before resume(): kill()
   * returns before the threads of a busy process have all stopped. Fails
   * (with its log) if it is not running: a test that means to hold the
   * server must not go on against nothing, or against whatever took its port.
   */
  async pause(): Promise<void> {
    const p = this.proc;
    if (!p || !this.running || p.pid === undefined) this.fail('is not running (pause)');
    p.kill('SIGSTOP');
    const end = Date.now() + 5_000;
    while (!allThreadsStopped(p.pid)) {
      if (Date.now() > end) this.fail('did not stop within 5 s of SIGSTOP');
      await sleep(5);
    }
  }

  /** Lets a paused server run again (SIGCONT); nothing to do if it is not running. */
  resume(): void {
    if (this.running) this.proc?.kill('SIGCONT');
  }

  /** Kills it (SIGTERM, then SIGKILL) and removes its store dir. */
  async stop(): Promise<void> {
    await this.kill('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }
}

/** `size` nats-servers forming one JetStream cluster ("test-cluster") on loopback. */
export class NatsCluster {
  readonly servers: NatsServer[];

  private constructor(servers: NatsServer[]) { this.servers = servers; }

  /** Starts the servers (named nats-1..N, full mesh of routes) and waits until the cluster is ready (waitReady). */
  static async start(size = 3): Promise<NatsCluster> {
    assertBinary();
    if (!Number.isInteger(size) || size < 1) throw new Error(`cluster size ${size}`);
    for (let attempt = 1; ; attempt++) {
      const ports: { port: number; monitorPort: number; clusterPort: number }[] = [];
      for (let i = 0; i < size; i++) ports.push({ port: await freePort(), monitorPort: await freePort(), clusterPort: await freePort() });
      const servers = ports.map((p, i) => NatsServer.create({
        name: `nats-${i + 1}`,
        port: p.port,
        monitorPort: p.monitorPort,
        cluster: {
          port: p.clusterPort,
          name: 'test-cluster',
          routes: ports.filter((_, j) => j !== i).map((o) => `nats://127.0.0.1:${o.clusterPort}`),
        },
      }));
      const c = new NatsCluster(servers);
      try {
        for (const s of servers) s.spawn();
        // No member's JetStream is ready before a quorum is up: wait for all clients ports first.
        const end = Date.now() + READY_MS;
        await Promise.all(servers.map((s) => s.waitUp(READY_MS, false)));
        await c.waitReady(Math.max(1_000, end - Date.now()));
        return c;
      } catch (err) {
        await c.stop();
        if (attempt < 3 && servers.some((s) => s.log.includes('address already in use'))) continue;
        throw err;
      }
    }
  }

  /** nats://127.0.0.1:P1,nats://127.0.0.1:P2,... (the form HUB_NATS_URL takes; split it for connect()). */
  get urls(): string { return this.urlList.join(','); }
  /** The same as an array, for connect({ servers }). */
  get urlList(): string[] { return this.servers.map((s) => s.url); }

  /**
   * Waits until the running members agree on a JetStream meta leader, the
   * leader reports each other running member as a current peer, and each
   * running member's /healthz is ok. Throws with every member's log tail after `ms`.
   */
  async waitReady(ms = READY_MS): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const up = this.servers.filter((s) => s.running);
      const last = await this.#notReady(up);
      if (!last) return;
      if (Date.now() > end) {
        throw new Error(`NATS cluster not ready within ${ms} ms (${last}); logs:\n`
          + this.servers.map((s) => `--- ${s.name} (${s.running ? 'running' : 'not running'}):\n${s.logTail(3000)}`).join('\n'));
      }
      await sleep(100);
    }
  }

  /** Why the running members are not ready yet ('' when they are). */
  async #notReady(up: NatsServer[]): Promise<string> {
    if (up.length === 0) return 'no member is running';
    const metas = await Promise.all(up.map((s) => s.metaCluster()));
    const leaders = new Set(metas.map((m) => m?.leader ?? ''));
    if (leaders.has('') || leaders.size !== 1) return `meta leaders seen: ${JSON.stringify(metas.map((m) => m?.leader ?? null))}`;
    const leaderName = [...leaders][0];
    const li = up.findIndex((s) => s.name === leaderName);
    if (li < 0) return `meta leader ${leaderName} is not a running member`;
    const replicas = metas[li]?.replicas ?? [];
    for (const s of up) {
      if (s.name === leaderName) continue;
      const r = replicas.find((x) => x.name === s.name);
      if (!r?.current) return `${s.name} is not a current meta peer (${JSON.stringify(r ?? null)})`;
    }
    const health = await Promise.all(up.map((s) => s.healthz()));
    const bad = health.findIndex((h) => h?.status !== 200);
    if (bad >= 0) return `${up[bad]?.name} /healthz: ${JSON.stringify(health[bad] ?? null)}`;
    return '';
  }

  /** The running member that is the JetStream meta leader, if any. */
  async metaLeader(): Promise<NatsServer | undefined> {
    for (const s of this.servers.filter((x) => x.running)) {
      const m = await s.metaCluster();
      if (m?.leader) return this.servers.find((x) => x.name === m.leader);
    }
    return undefined;
  }

  /** A member by server name (nats-1..N). */
  server(name: string): NatsServer {
    const s = this.servers.find((x) => x.name === name);
    if (!s) throw new Error(`no server ${name} in the cluster (${this.servers.map((x) => x.name).join(', ')})`);
    return s;
  }

  /** Stops every member (concurrently) and removes their store dirs. */
  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
  }
}
