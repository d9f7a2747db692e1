// HUB_WORKERS=N (cluster mode): this process supervises N hub processes on
// one port. Each worker is this same program with HUB_WORKER_INDEX set and
// HUB_ID `<base>-<index>`; uWebSockets.js binds the listen socket with
// SO_REUSEPORT, so the kernel spreads new connections over the workers.
// Workers share nothing in memory: batches, device ownership and live state
// go through NATS (cluster/), as between hubs on different machines. A
// worker that dies is started again (backoff 1 s doubling to 30 s, reset
// after a minute up); its devices reconnect to the others meanwhile.
// SIGTERM/SIGINT/SIGHUP are passed on; the supervisor exits when every
// worker has. A worker whose supervisor is gone (killed, even with SIGKILL)
// shuts down as on SIGTERM: no orphan keeps the port or its devices. Nothing imports this file but main.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { hostname } from 'node:os';
import type { Logger } from './core/log.ts';

const RESTART_FIRST_MS = 1_000;
const RESTART_MAX_MS = 30_000;
const STABLE_MS = 60_000;

/** This process's worker index (HUB_WORKER_INDEX), or null when it is not a worker. */
export function workerIndex(env: NodeJS.ProcessEnv): number | null {
  const raw = env.HUB_WORKER_INDEX;
  if (raw === undefined || raw === '') return null;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}

/** The HUB_ID of worker `index`: `<HUB_ID or host name>-<index>`. */
export function workerHubId(base: string | undefined, index: number): string {
  const stem = (base ?? hostname().replace(/[^A-Za-z0-9_.-]/g, '_')).slice(0, 56);
  return `${stem}-${index}`;
}

export interface WorkersOptions {
  count: number;
  hubId: string | undefined;
  log: Logger;
}

export function superviseWorkers(opts: WorkersOptions): Promise<void> {
  const { count, log } = opts;
  const children = new Map<number, ChildProcess>();
  const backoff = new Map<number, number>();
  let stopping: NodeJS.Signals | null = null;

  const start = (index: number): void => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      // The IPC channel is how a worker sees its supervisor go, even by SIGKILL (main.ts: 'disconnect').
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, HUB_WORKERS: '1', HUB_WORKER_INDEX: String(index), HUB_ID: workerHubId(opts.hubId, index) },
    });
    const startedAt = Date.now();
    children.set(index, child);
    child.on('exit', (code, signal) => {
      children.delete(index);
      if (stopping) {
        if (children.size === 0) {
          log.info('every hub worker has exited');
          process.exit(0);
        }
        return;
      }
      const up = Date.now() - startedAt;
      const wait = up >= STABLE_MS ? RESTART_FIRST_MS : Math.min(RESTART_MAX_MS, (backoff.get(index) ?? RESTART_FIRST_MS / 2) * 2);
      backoff.set(index, wait);
      log.error({ worker: index, code, signal, upMs: up }, `hub worker ${index} exited (${signal ?? `code ${code}`}); starting it again in ${wait} ms`);
      setTimeout(() => { if (!stopping) start(index); }, wait);
    });
  };

  const stop = (signal: NodeJS.Signals): void => {
    if (!stopping) log.info({ signal, workers: children.size }, `${signal}: stopping ${children.size} hub workers`);
    stopping = signal;
    if (children.size === 0) process.exit(0);
    for (const child of children.values()) child.kill(signal);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => { for (const child of children.values()) child.kill('SIGHUP'); });

  log.info({ workers: count }, `starting ${count} hub workers on one port (SO_REUSEPORT)`);
  for (let i = 0; i < count; i++) start(i);
  return new Promise<void>(() => undefined);
}
