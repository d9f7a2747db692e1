// scripts/bench/: process plumbing for `npm run bench`: reading a process's
// CPU, RSS and open-file limit from /proc, and the children the run starts
// (servers, load generators), each in its own process group so that one
// SIGKILL by group id ends it with whatever it started, and all of them are
// ended when the run exits, however it exits.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ: /proc/<pid>/stat counts CPU time in these ticks (100 on Linux). */
const TICKS_PER_SECOND = 100;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fields of /proc/<pid>/stat after the command name: [0] is state, [1] ppid, [11] utime, [12] stime. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime + stime of a process (all its threads), in seconds; NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND : NaN;
}

/** CPU seconds the whole machine spent busy (every core: /proc/stat's cpu line less idle and iowait); NaN off Linux. */
export function machineBusySeconds(): number {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f;
    return (user! + nice! + system! + irq! + softirq! + steal!) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** utime + stime of a process's main thread alone (its JavaScript thread, for Node.js), in seconds; NaN when it is gone. */
export function mainThreadCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** The pid and every descendant of it alive now (a load generator's worker processes). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (!f) continue;
    const ppid = Number(f[1]);
    let list = children.get(ppid);
    if (!list) children.set(ppid, list = []);
    list.push(Number(name));
  }
  const out: number[] = [];
  const walk = (p: number): void => { out.push(p); for (const c of children.get(p) ?? []) walk(c); };
  walk(pid);
  return out;
}

/**
 * CPU seconds of a set of processes, keyed by pid, so that two samples can be
 * subtracted pid by pid (a worker that exits between them drops out of both).
 */
export function cpuByPid(pids: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of pids) { const c = cpuSeconds(p); if (Number.isFinite(c)) m.set(p, c); }
  return m;
}

/** Sum over the pids present in both samples of (b - a). */
export function cpuDelta(a: Map<number, number>, b: Map<number, number>): number {
  let s = 0;
  for (const [p, v] of b) { const u = a.get(p); if (u !== undefined) s += v - u; }
  return s;
}

/** Resident set size in KiB (VmRSS), NaN when the process is gone. */
export function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/**
 * The limit on open files (RLIMIT_NOFILE) of a running process, soft (what
 * it may open now) or hard (what it may raise itself to: node does at
 * startup); Infinity when unlimited.
 */
export function openFileLimit(pid: number, which: 'soft' | 'hard' = 'soft'): number {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (!m) return NaN;
    const v = which === 'soft' ? m[1]! : m[2]!;
    return v === 'unlimited' ? Infinity : Number(v);
  } catch {
    return NaN;
  }
}

/**
 * Sockets in LISTEN state on a local TCP port (/proc/net/tcp and tcp6): with
 * SO_REUSEPORT each process sharing the port has its own, so HUB_WORKERS=N
 * hubs show N once every one of them listens.
 */
export function listeningSockets(port: number): number {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[1]!.endsWith(hex) && f[3] === '0A') n++;
    }
  }
  return n;
}

/**
 * For a process this run started some other way (the NATS servers of
 * hub/test/nats-server.ts, which end them at exit but not when this process
 * is SIGKILLed): a watchdog (sh, checking every 2 s) that SIGKILLs `pid` if
 * this process dies first. Returns the watchdog's cancel, for when `pid` was stopped.
 */
export function killWithRun(pid: number): () => void {
  const dog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${pid} 2>/dev/null; do sleep 2; done; if kill -0 ${pid} 2>/dev/null; then kill -KILL ${pid} 2>/dev/null; fi`], {
    detached: true, stdio: 'ignore',
  });
  dog.unref();
  return () => { if (dog.exitCode === null && dog.signalCode === null) dog.kill('SIGKILL'); };
}

/** Every child this run started, ended (by process group) when the run exits. */
const started = new Set<ChildProcess>();

function killGroup(c: ChildProcess, signal: NodeJS.Signals): void {
  if (c.pid === undefined) return;
  try { process.kill(-c.pid, signal); } catch { /* the group is gone */ }
}

process.on('exit', () => { for (const c of started) killGroup(c, 'SIGKILL'); });

/**
 * Spawns a child in its own process group and registers it for the cleanup
 * at exit. A watchdog (sh, checking every 2 s) kills the child's group if this
 * process dies without that cleanup (SIGKILL): servers do not stop by
 * themselves, and nothing may outlive the run.
 */
export function spawnTracked(command: string, args: readonly string[], opts: SpawnOptions): ChildProcess {
  const c = spawn(command, args, { ...opts, detached: true });
  started.add(c);
  c.once('exit', () => started.delete(c));
  if (c.pid !== undefined) {
    const dog = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null && kill -0 ${c.pid} 2>/dev/null; do sleep 2; done; if kill -0 ${c.pid} 2>/dev/null; then kill -KILL -${c.pid} 2>/dev/null; fi`], {
      detached: true, stdio: 'ignore',
    });
    dog.unref();
    c.once('exit', () => { if (dog.exitCode === null) dog.kill('SIGKILL'); });
  }
  return c;
}

/** Whether the child has not exited yet. */
export const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/** Resolves when the child has exited (at once if it already has). */
export function exited(c: ChildProcess): Promise<void> {
  if (!running(c)) return Promise.resolve();
  return new Promise((r) => c.once('exit', () => r()));
}

/** SIGTERM to the child's group, then SIGKILL to it after `graceMs`; resolves when the child has exited. */
export async function stopChild(c: ChildProcess, graceMs = 5000): Promise<void> {
  if (!running(c)) { killGroup(c, 'SIGKILL'); return; } // leftovers of its group, if any
  killGroup(c, 'SIGTERM');
  const t = setTimeout(() => killGroup(c, 'SIGKILL'), graceMs);
  await exited(c);
  clearTimeout(t);
  killGroup(c, 'SIGKILL');
}

/** `a.b.c.d-e` (last octet range), `a.b.c.d-a.b.c.e` or `a,b,c` as a list of addresses. */
export function expandAddressRange(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+\.\d+\.\d+\.)(\d+)-(?:\d+\.\d+\.\d+\.)?(\d+)$/.exec(part);
    if (!m) { out.push(part); continue; }
    for (let i = Number(m[2]); i <= Number(m[3]); i++) out.push(`${m[1]}${i}`);
  }
  return out;
}

/** `count` source addresses 127.0.0.2, 127.0.0.3, ... for `perAddress` connections each. */
export function loopbackSources(connections: number, perAddress: number): string[] {
  const n = Math.max(1, Math.ceil(connections / perAddress));
  if (n > 250) throw new Error(`bench: ${connections} connections need ${n} source addresses at ${perAddress} each; at most 250 in 127.0.0.2-251`);
  return Array.from({ length: n }, (_, i) => `127.0.0.${2 + i}`);
}
