// The MQTT load generator of `npm run bench` (the mosquitto column of the
// ingest comparison): N processes, each with many mqtt.js clients, every
// client publishing QoS 1 on its own topic (d/<device id>) the same protobuf
// Batch bytes the hub's clients send (payloads.ts), keeping `window`
// publishes outstanding (closed loop: each PUBACK releases the next publish),
// or, with ratePerClient, publishing on a schedule (open loop: a message is
// due every 1/rate s; one that the window holds back is sent late and
// counted as behind schedule, its latency still measured from publish()).
// Latency is per message, publish() to its PUBACK, counted only for PUBACKs
// between the parent's two marks, as are the acks. TCP_NODELAY on every
// socket, as the ws and uWebSockets.js sockets of the other columns have it.
//
// As a library: startMqttLoad() spawns the workers (this file with --worker)
// and is a LoadHandle. A worker stops by itself after maxSeconds.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MqttClient } from 'mqtt';
import { LatencyHistogram, type HistogramJson } from './histogram.ts';
import type { LoadHandle, LoadOptions, LoadResult } from './load-types.ts';
import { messagePool } from './payloads.ts';
import { spawnTracked, stopChild } from './proc.ts';

interface WorkerConfig {
  host: string;
  port: number;
  clients: number;
  /** Index of this worker's first client in the whole fleet. */
  offset: number;
  window: number;
  readingsPerMessage: number;
  sourceAddresses: string[];
  prefix: string;
  maxSeconds: number;
  payloadFile?: string;
  /** Open loop: messages per second per client; 0: closed loop. */
  rate: number;
}

/** Open loop: how often a worker looks for messages that are due. */
const SCHEDULE_TICK_MS = 5;

type ToWorker = { type: 'mark'; what: 'start' | 'end' } | { type: 'stop' };
type FromWorker =
  | { type: 'ready'; connected: number }
  | { type: 'failed'; error: string }
  | { type: 'result'; acked: number; failed: number; errors: number; unackedAtEnd: number; behind: number; hist: HistogramJson; connected: number };

// ---------------------------------------------------------------- worker

function runWorker(cfg: WorkerConfig): void {
  const send = (m: FromWorker, then: () => void = () => {}): void => { if (process.send) process.send(m, then); else then(); };
  const pool = cfg.payloadFile
    ? readFileSync(cfg.payloadFile, 'utf8').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'base64'))
    : messagePool(`${cfg.prefix}${String(cfg.offset).padStart(4, '0')}`, cfg.readingsPerMessage, 64);
  const hist = new LatencyHistogram();
  let measuring = false;
  let sending = true;
  let acked = 0;
  let failed = 0;
  let errors = 0;
  let connected = 0;
  let inflightTotal = 0;
  let told = false;
  let behind = 0;
  const clients: MqttClient[] = [];
  /** Open loop: each connected client's next due time and its send function. */
  const scheduled: { due: number; send: () => boolean }[] = [];

  for (let i = 0; i < cfg.clients; i++) {
    const id = `${cfg.prefix}${String(cfg.offset + i).padStart(4, '0')}`;
    const topic = `d/${id}`;
    const localAddress = cfg.sourceAddresses.length ? cfg.sourceAddresses[(cfg.offset + i) % cfg.sourceAddresses.length] : undefined;
    const client = new MqttClient(() => {
      const s = netConnect({ host: cfg.host, port: cfg.port, localAddress });
      s.setNoDelay(true);
      return s;
    }, { clientId: id, clean: true, keepalive: 60, reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 30_000, resubscribe: false });
    clients.push(client);
    let inflight = 0;
    let k = i; // clients start at different places in the pool
    /** One publish if the window allows; false when it is full. */
    const publishOne = (): boolean => {
      if (!sending || inflight >= cfg.window) return false;
      inflight++;
      inflightTotal++;
      const t0 = performance.now();
      client.publish(topic, pool[k++ % pool.length]!, { qos: 1 }, (err) => {
        inflight--;
        inflightTotal--;
        if (err) { failed++; return; }
        if (measuring) { acked++; hist.recordMs(performance.now() - t0); }
        if (cfg.rate === 0) pump();
      });
      return true;
    };
    const pump = (): void => { while (publishOne()) { /* closed loop: fill the window */ } };
    client.once('connect', () => {
      connected++;
      if (connected === cfg.clients && !told) { told = true; send({ type: 'ready', connected }); }
      // Open loop: clients spread over one interval so that they do not publish in lockstep.
      if (cfg.rate > 0) scheduled.push({ due: performance.now() + (1000 / cfg.rate) * Math.random(), send: publishOne });
      else pump();
    });
    client.on('error', () => { errors++; });
    client.on('close', () => { if (sending) errors++; });
  }

  if (cfg.rate > 0) {
    const interval = 1000 / cfg.rate;
    const timer = setInterval(() => {
      if (!sending) { clearInterval(timer); return; }
      const now = performance.now();
      for (const c of scheduled) {
        while (c.due <= now) {
          if (!c.send()) break; // held back by the window: tried again next tick
          if (now - c.due > 2 * SCHEDULE_TICK_MS) behind++; // sent late
          c.due += interval;
        }
      }
    }, SCHEDULE_TICK_MS);
  }

  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    sending = false;
    measuring = false;
    const end = Date.now() + 3000;
    const wait = (): void => {
      if (inflightTotal > 0 && Date.now() < end) { setTimeout(wait, 20); return; }
      for (const c of clients) c.end(true);
      send({ type: 'result', acked, failed, errors, unackedAtEnd: inflightTotal, behind, hist: hist.toJSON(), connected }, () => process.exit(0));
      setTimeout(() => process.exit(0), 2000).unref();
    };
    wait();
  };
  process.on('message', (m: ToWorker) => {
    if (m.type === 'mark') measuring = m.what === 'start';
    else stop();
  });
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
  setTimeout(stop, cfg.maxSeconds * 1000).unref();
  setTimeout(() => {
    if (!told) { told = true; send({ type: 'failed', error: `${connected} of ${cfg.clients} clients connected within 30 s (${errors} errors)` }); }
  }, 30_000).unref();
}

// ---------------------------------------------------------------- parent

function mqttVersion(root: string): string {
  try { return (JSON.parse(readFileSync(join(root, 'node_modules/mqtt/package.json'), 'utf8')) as { version: string }).version; } catch { return '?'; }
}

export function startMqttLoad(opts: LoadOptions): LoadHandle {
  const u = new URL(opts.url);
  const procs = Math.max(1, Math.min(opts.processes, opts.clients));
  const workers: ChildProcess[] = [];
  const results: Promise<FromWorker & { type: 'result' }>[] = [];
  const readies: Promise<void>[] = [];
  const self = fileURLToPath(import.meta.url);
  let offset = 0;
  for (let p = 0; p < procs; p++) {
    const n = Math.floor(opts.clients / procs) + (p < opts.clients % procs ? 1 : 0);
    const cfg: WorkerConfig = {
      host: u.hostname, port: Number(u.port), clients: n, offset, window: opts.window, readingsPerMessage: opts.readingsPerMessage,
      sourceAddresses: opts.sourceAddresses, prefix: opts.prefix, maxSeconds: opts.maxSeconds, payloadFile: opts.payloadFile,
      rate: opts.ratePerClient ?? 0,
    };
    offset += n;
    const w = spawnTracked(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', self, '--worker', JSON.stringify(cfg)], {
      cwd: opts.root, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    workers.push(w);
    readies.push(new Promise((res, rej) => {
      const on = (m: FromWorker): void => {
        if (m.type === 'ready') res();
        else if (m.type === 'failed') rej(new Error(`mqtt-load worker ${p}: ${m.error}`));
      };
      w.on('message', on);
      w.once('exit', (code) => rej(new Error(`mqtt-load worker ${p} exited (${code}) before its clients connected`)));
    }));
    results.push(new Promise((res, rej) => {
      w.on('message', (m: FromWorker) => { if (m.type === 'result') res(m); });
      w.once('exit', (code) => rej(new Error(`mqtt-load worker ${p} exited (${code}) without a result`)));
    }));
  }
  const tell = (m: ToWorker): void => { for (const w of workers) if (w.connected) w.send(m); };
  const ready = Promise.all(readies).then(() => undefined);
  ready.catch(() => { /* reported by whoever awaits it */ });
  for (const r of results) r.catch(() => { /* reported by finish() */ });
  return {
    client: `mqtt.js ${mqttVersion(opts.root)} (scripts/bench/mqtt-load.ts, ${procs} process${procs > 1 ? 'es' : ''})`,
    windowed: true,
    ready,
    markStart: () => tell({ type: 'mark', what: 'start' }),
    markEnd: () => tell({ type: 'mark', what: 'end' }),
    pids: () => workers.map((w) => w.pid ?? -1),
    async finish(): Promise<LoadResult> {
      tell({ type: 'stop' });
      const settled = await Promise.allSettled(results);
      await Promise.all(workers.map((w) => stopChild(w, 5000)));
      const hist = new LatencyHistogram();
      let acked = 0, failed = 0, errors = 0, unacked = 0, behind = 0;
      const notes: string[] = [];
      for (const s of settled) {
        if (s.status === 'rejected') { notes.push(String((s.reason as Error).message)); errors++; continue; }
        acked += s.value.acked; failed += s.value.failed; errors += s.value.errors; unacked += s.value.unackedAtEnd; behind += s.value.behind;
        hist.add(s.value.hist);
      }
      return {
        acked, readingsAcked: acked * opts.readingsPerMessage, lost: failed, errors, unackedAtEnd: unacked,
        latency: { p50Ms: hist.quantileMs(0.5), p99Ms: hist.quantileMs(0.99), maxMs: hist.quantileMs(1), samples: hist.count },
        behindSchedule: opts.ratePerClient ? behind : undefined,
        notes,
      };
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv[2] === '--worker') {
  runWorker(JSON.parse(process.argv[3] ?? '{}') as WorkerConfig);
}
