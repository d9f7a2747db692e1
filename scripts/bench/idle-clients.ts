// The idle-session client of `npm run bench` (the connection-density
// comparison): raw sockets, as light on the client side as a session can be,
// so that one process holds 10,000 of them and a few hold 50,000.
//   ws    TCP, the HTTP upgrade to /v1/devices written by hand (subprotocol
//         iot.telemetry.v1, `Authorization: Bearer <device token>` when a
//         tokens file is given: the hub's check at the upgrade), then a Hello
//         in one masked binary frame; the session counts once its Welcome
//         arrives (proto/README.md §2, §4). Pings are answered with pongs
//         (the hub pings a silent device), nothing else is sent.
//   mqtt  TCP, an MQTT 3.1.1 CONNECT (clean session, keepalive 60 s) for
//         mosquitto; the session counts on CONNACK 0. A PINGREQ every 30 s
//         keeps it within its keepalive.
// Each socket binds to one of the source addresses (127.0.0.2..), round-robin,
// so that 50,000 connections do not run out of ephemeral ports.
//
// As a library: holdIdleSessions() spawns the workers (this file with
// --worker) and reports their progress; each worker stops by itself after
// maxSeconds.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { DEVICE_PATH, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, decodeHubMessage, encodeDeviceMessage } from '@telemetry/proto';
import { spawnTracked, stopChild } from './proc.ts';

export type IdleMode = 'ws' | 'mqtt';

interface WorkerConfig {
  mode: IdleMode;
  host: string;
  port: number;
  count: number;
  /** Index of this worker's first session in the whole fleet (device ids, client ids). */
  offset: number;
  sourceAddresses: string[];
  /** ws: tokens file ({"<id>": "<token>"}); without it no Authorization header is sent. */
  tokensFile?: string;
  prefix: string;
  /** Handshakes in progress at once in this worker. */
  concurrency: number;
  maxSeconds: number;
}

interface Progress { established: number; failed: number; dropped: number; lastError: string }
type FromWorker = { type: 'progress' } & Progress;

// ---------------------------------------------------------------- worker

/** One masked client frame (payload <= 125 bytes: Hello and pongs). */
function clientFrame(opcode: number, payload: Uint8Array): Buffer {
  if (payload.length > 125) throw new Error('idle-clients: frame payload over 125 bytes');
  const mask = randomBytes(4);
  const out = Buffer.allocUnsafe(6 + payload.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | payload.length;
  mask.copy(out, 2);
  for (let i = 0; i < payload.length; i++) out[6 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

/** MQTT 3.1.1 CONNECT: clean session, no will, no credentials. */
function mqttConnect(clientId: string, keepaliveS: number): Buffer {
  const id = Buffer.from(clientId);
  const rest = Buffer.concat([
    Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, keepaliveS >> 8, keepaliveS & 0xff, id.length >> 8, id.length & 0xff]),
    id,
  ]);
  if (rest.length > 127) throw new Error('idle-clients: client id too long');
  return Buffer.concat([Buffer.from([0x10, rest.length]), rest]);
}

const PINGREQ = Buffer.from([0xc0, 0x00]);
const EMPTY = Buffer.alloc(0);

function runWorker(cfg: WorkerConfig): void {
  const tokens = cfg.tokensFile ? JSON.parse(readFileSync(cfg.tokensFile, 'utf8')) as Record<string, string> : null;
  const p: Progress = { established: 0, failed: 0, dropped: 0, lastError: '' };
  const live = new Set<Socket>();
  let next = 0;
  let inProgress = 0;
  let stopping = false;

  const idOf = (i: number): string => `${cfg.prefix}${String(cfg.offset + i).padStart(4, '0')}`;

  const open = (i: number, attempt: number): void => {
    inProgress++;
    const id = idOf(i);
    const localAddress = cfg.sourceAddresses.length ? cfg.sourceAddresses[(cfg.offset + i) % cfg.sourceAddresses.length] : undefined;
    const s = connect({ host: cfg.host, port: cfg.port, localAddress });
    s.setNoDelay(true);
    let buf: Buffer = EMPTY;
    let upgraded = cfg.mode === 'mqtt';
    let done = false; // handshake over, one way or the other
    let up = false;
    const finish = (ok: boolean, why = ''): void => {
      if (done) return;
      done = true;
      inProgress--;
      if (ok) { up = true; p.established++; live.add(s); }
      else {
        s.destroy();
        if (attempt < 3 && !stopping) setTimeout(() => open(i, attempt + 1), 500 * attempt);
        else { p.failed++; p.lastError = why; }
      }
      pump();
    };
    s.on('connect', () => {
      if (cfg.mode === 'mqtt') { s.write(mqttConnect(`idle-${cfg.offset + i}`, 60)); return; }
      const token = tokens?.[id];
      s.write(`GET ${DEVICE_PATH} HTTP/1.1\r\nHost: ${cfg.host}:${cfg.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
        + `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${DEVICE_SUBPROTOCOL}\r\n`
        + (token ? `Authorization: Bearer ${token}\r\n` : '') + '\r\n');
    });
    s.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (cfg.mode === 'mqtt') {
        // CONNACK (20 02 00 rc), then only PINGRESPs (d0 00).
        if (!done && buf.length >= 4) finish(buf[0] === 0x20 && buf[3] === 0, `CONNACK ${buf.subarray(0, 4).toString('hex')}`);
        buf = EMPTY;
        return;
      }
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const status = buf.subarray(0, buf.indexOf('\r\n')).toString('latin1');
        if (!/^HTTP\/1\.1 101\b/.test(status)) { finish(false, status); return; }
        upgraded = true;
        buf = buf.subarray(end + 4);
        s.write(clientFrame(0x2, encodeDeviceMessage({ hello: { deviceId: id, protocolVersion: PROTOCOL_VERSION, firmware: 'bench-idle', deviceTimeMs: Date.now() } })));
      }
      while (buf.length >= 2) {
        const opcode = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) break;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (opcode === 0x2 && !done) {
          let welcome = false;
          try { welcome = !!decodeHubMessage(payload).welcome; } catch { /* not a HubMessage */ }
          finish(welcome, welcome ? '' : 'first message was not a Welcome');
        } else if (opcode === 0x9) {
          s.write(clientFrame(0xa, payload));
        } else if (opcode === 0x8) {
          s.destroy();
        }
      }
      if (buf.length === 0) buf = EMPTY;
    });
    s.on('error', (err) => { if (!done) finish(false, err.message); });
    s.on('close', () => {
      if (!done) finish(false, 'closed during the handshake');
      else if (up && live.delete(s) && !stopping) { p.established--; p.dropped++; }
    });
  };

  const pump = (): void => {
    while (!stopping && next < cfg.count && inProgress < cfg.concurrency) open(next++, 1);
  };

  const report = (): void => { process.send?.({ type: 'progress', ...p } satisfies FromWorker); };
  const progress = setInterval(report, 250);
  const pings = cfg.mode === 'mqtt' ? setInterval(() => { for (const s of live) s.write(PINGREQ); }, 30_000) : null;

  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(progress);
    if (pings) clearInterval(pings);
    for (const s of live) s.destroy();
    report();
    setTimeout(() => process.exit(0), 200);
  };
  process.on('message', stop);
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  setTimeout(stop, cfg.maxSeconds * 1000).unref();
  pump();
}

// ---------------------------------------------------------------- parent

export interface IdleOptions {
  mode: IdleMode;
  host: string;
  port: number;
  count: number;
  perProcess: number;
  sourceAddresses: string[];
  tokensFile?: string;
  prefix: string;
  maxSeconds: number;
  root: string;
  concurrency?: number;
}

export interface IdleHandle {
  /** Summed over the workers, as they last reported. */
  progress(): Progress;
  pids(): number[];
  stop(): Promise<void>;
}

export function holdIdleSessions(opts: IdleOptions): IdleHandle {
  const procs = Math.max(1, Math.ceil(opts.count / opts.perProcess));
  const workers: ChildProcess[] = [];
  const last: Progress[] = [];
  const self = fileURLToPath(import.meta.url);
  let offset = 0;
  for (let w = 0; w < procs; w++) {
    const n = Math.floor(opts.count / procs) + (w < opts.count % procs ? 1 : 0);
    const cfg: WorkerConfig = {
      mode: opts.mode, host: opts.host, port: opts.port, count: n, offset, sourceAddresses: opts.sourceAddresses,
      tokensFile: opts.tokensFile, prefix: opts.prefix, concurrency: opts.concurrency ?? 200, maxSeconds: opts.maxSeconds,
    };
    offset += n;
    last.push({ established: 0, failed: 0, dropped: 0, lastError: '' });
    const c = spawnTracked(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', self, '--worker', JSON.stringify(cfg)], {
      cwd: opts.root, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    c.on('message', (m: FromWorker) => { if (m.type === 'progress') last[w] = m; });
    workers.push(c);
  }
  return {
    progress: () => last.reduce((a, b) => ({
      established: a.established + b.established, failed: a.failed + b.failed, dropped: a.dropped + b.dropped, lastError: b.lastError || a.lastError,
    }), { established: 0, failed: 0, dropped: 0, lastError: '' }),
    pids: () => workers.map((w) => w.pid ?? -1),
    async stop(): Promise<void> {
      for (const w of workers) if (w.connected) w.send('stop');
      await Promise.all(workers.map((w) => stopChild(w, 5000)));
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === '--worker') {
  runWorker(JSON.parse(process.argv[3] ?? '{}') as WorkerConfig);
}
