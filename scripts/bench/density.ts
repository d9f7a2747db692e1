// scripts/bench/: comparison 2, connection density. For each session count
// and server: a fresh server, its RSS once settled (before), then that many
// idle sessions held by raw clients (idle-clients.ts: several processes,
// source addresses 127.0.0.2..), its RSS once the count is reached and has
// settled (after); (after - before) / sessions. A session is what each
// server keeps for a connected, silent device: the hub and the baseline a
// WebSocket past Hello/Welcome (the hub also checked its token), mosquitto
// an MQTT connection past CONNACK.
import { holdIdleSessions } from './idle-clients.ts';
import { loopbackSources, rssKiB, sleep } from './proc.ts';
import { SERVER_LABELS, startServer, type ServerContext, type ServerKind } from './servers.ts';
import { fmt, ratio, type Table } from './table.ts';

export interface DensityOptions {
  sessions: number[];
  servers: ServerKind[];
  /** Sessions per client process (each process may hold at most ~19,000 open files). */
  perProcess: number;
  /** Sessions per source address. */
  perAddress: number;
  /** Seconds to let the server settle before the first RSS reading and after the count is reached. */
  settleSeconds: number;
  /** Longest wait for the sessions to be established. */
  connectSeconds: number;
  tokensFile: string;
  prefix: string;
  root: string;
}

export interface DensityPoint {
  requested: number;
  server: ServerKind;
  /** What was held: the request, or less when the server's open-file limit does not allow it. */
  target: number;
  established: number;
  /** As the server counts them (hub_device_sessions, the baseline's /stats); null for mosquitto. */
  serverSessions: number | null;
  /** After a forced full GC (hub, ws baseline: through the inspector; mosquitto has no GC). */
  rssBeforeKiB: number;
  rssAfterKiB: number;
  kibPerSession: number;
  /** The same without forcing a GC first (what `ps` shows: includes garbage not collected yet). */
  rawRssBeforeKiB: number;
  rawRssAfterKiB: number;
  connectSeconds: number;
  clientProcesses: number;
  sourceAddresses: number;
  notes: string[];
  error?: string;
}

/** Files the server needs besides its sessions (listening socket, spool, registry, logs...). */
export const FD_RESERVE = 300;

/** The most sessions a server with this open-file limit can hold, in whole thousands. */
export function sessionCap(openFiles: number): number {
  if (Number.isNaN(openFiles)) return Infinity; // unknown: no cap
  return Math.max(1000, Math.floor((openFiles - FD_RESERVE) / 1000) * 1000);
}

/** RSS after `settleSeconds`, raw and after a forced full GC (twice: the second collects what the first finalized). */
async function settledRss(gc: (() => Promise<void>) | null, pid: number, settleSeconds: number): Promise<{ raw: number; gc: number }> {
  await sleep(settleSeconds * 1000);
  const raw = rssKiB(pid);
  if (!gc) return { raw, gc: raw };
  await gc();
  await gc();
  await sleep(500);
  return { raw, gc: rssKiB(pid) };
}

async function measure(ctx: ServerContext, o: DensityOptions, kind: ServerKind, requested: number, log: (s: string) => void): Promise<DensityPoint> {
  const point: DensityPoint = {
    requested, server: kind, target: requested, established: 0, serverSessions: null, rssBeforeKiB: NaN, rssAfterKiB: NaN,
    kibPerSession: NaN, rawRssBeforeKiB: NaN, rawRssAfterKiB: NaN, connectSeconds: NaN, clientProcesses: 0, sourceAddresses: 0, notes: [],
  };
  const server = await startServer(ctx, kind, `density-${requested}`, { inspect: true });
  try {
    if (sessionCap(server.openFiles) < requested) {
      point.target = sessionCap(server.openFiles);
      point.notes.push(`capped at ${fmt(point.target)}: the server may open ${fmt(server.openFiles)} files (RLIMIT_NOFILE), one per connection`);
    }
    const before = await settledRss(server.gc, server.pid, o.settleSeconds);
    point.rssBeforeKiB = before.gc;
    point.rawRssBeforeKiB = before.raw;
    const sources = loopbackSources(point.target, o.perAddress);
    point.sourceAddresses = sources.length;
    point.clientProcesses = Math.ceil(point.target / o.perProcess);
    const mode = kind === 'mosquitto' ? 'mqtt' : 'ws';
    log(`density: ${SERVER_LABELS[kind]}, ${fmt(point.target)} idle sessions (${point.clientProcesses} client processes, ${sources.length} source addresses)`);
    const t0 = performance.now();
    const clients = holdIdleSessions({
      mode, host: '127.0.0.1', port: server.port, count: point.target, perProcess: o.perProcess, sourceAddresses: sources,
      tokensFile: kind === 'hub' ? o.tokensFile : undefined, prefix: o.prefix, root: o.root,
      maxSeconds: o.connectSeconds + 4 * o.settleSeconds + 60,
    });
    try {
      const end = Date.now() + o.connectSeconds * 1000;
      let p = clients.progress();
      while (p.established < point.target && p.established + p.failed < point.target && Date.now() < end) {
        await sleep(250);
        p = clients.progress();
      }
      point.connectSeconds = (performance.now() - t0) / 1000;
      if (p.established < point.target) {
        point.notes.push(`only ${fmt(p.established)} of ${fmt(point.target)} sessions after ${fmt(point.connectSeconds, 1)} s (${fmt(p.failed)} failed${p.lastError ? `: ${p.lastError}` : ''})`);
      }
      const after = await settledRss(server.gc, server.pid, o.settleSeconds);
      point.rssAfterKiB = after.gc;
      point.rawRssAfterKiB = after.raw;
      p = clients.progress();
      point.established = p.established;
      if (p.dropped) point.notes.push(`${fmt(p.dropped)} sessions dropped by the server while held`);
      const c = await server.counters();
      point.serverSessions = c.sessions ?? null;
      point.kibPerSession = (point.rssAfterKiB - point.rssBeforeKiB) / Math.max(1, point.established);
    } finally {
      await clients.stop();
    }
  } finally {
    await server.stop();
  }
  return point;
}

export async function runDensity(ctx: ServerContext, o: DensityOptions, log: (s: string) => void): Promise<DensityPoint[]> {
  const points: DensityPoint[] = [];
  for (const n of o.sessions) {
    for (const kind of o.servers) {
      try {
        points.push(await measure(ctx, o, kind, n, log));
      } catch (err) {
        log(`density: ${SERVER_LABELS[kind]} at ${fmt(n)} sessions failed: ${(err as Error).message}`);
        points.push({
          requested: n, server: kind, target: n, established: 0, serverSessions: null, rssBeforeKiB: NaN, rssAfterKiB: NaN, kibPerSession: NaN,
          rawRssBeforeKiB: NaN, rawRssAfterKiB: NaN, connectSeconds: NaN, clientProcesses: 0, sourceAddresses: 0, notes: [], error: (err as Error).message,
        });
      }
    }
  }
  return points;
}

export function densityTable(points: DensityPoint[], o: DensityOptions): Table {
  const hubAt = (n: number): number => points.find((p) => p.requested === n && p.server === 'hub')?.kibPerSession ?? NaN;
  const notes: string[] = [];
  for (const p of points) {
    for (const n of p.notes) notes.push(`${SERVER_LABELS[p.server]} @ ${fmt(p.requested)}: ${n}`);
    if (p.error) notes.push(`${SERVER_LABELS[p.server]} @ ${fmt(p.requested)}: FAILED: ${p.error}`);
  }
  return {
    title: 'connection density: server RSS per idle session',
    subtitle: [
      'RSS of a fresh server once settled (before), then with N idle sessions held, once the count is reached and settled (after),',
      'each read after a full GC forced through the inspector (hub, ws baseline; mosquitto has no GC); raw = the same without forcing it.',
      `KiB/session = (after - before) / sessions. Clients: raw sockets (scripts/bench/idle-clients.ts), ${fmt(o.perProcess)} per process,`,
      `${fmt(o.perAddress)} per source address 127.0.0.2..; ws: upgrade + Bearer token (hub) + Hello, counted at Welcome; mqtt: CONNECT, counted at CONNACK.`,
    ],
    columns: ['sessions', 'server', 'held', 'server counts', 'RSS before MiB', 'RSS after MiB', 'KiB/session', 'hub ÷ this', 'raw KiB/session', 'connect s'],
    rows: points.map((p) => [
      fmt(p.requested), SERVER_LABELS[p.server], fmt(p.established), p.serverSessions === null ? '-' : fmt(p.serverSessions),
      fmt(p.rssBeforeKiB / 1024, 1), fmt(p.rssAfterKiB / 1024, 1), fmt(p.kibPerSession, 2),
      ratio(hubAt(p.requested) / p.kibPerSession),
      fmt((p.rawRssAfterKiB - p.rawRssBeforeKiB) / Math.max(1, p.established), 2), fmt(p.connectSeconds, 1),
    ]),
    notes,
  };
}
