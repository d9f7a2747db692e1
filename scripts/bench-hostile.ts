// npm run bench:hostile -- [--only signin,names,poison] [--hub-root DIR]
//
// What hostile input costs everyone else, each attack against a baseline
// phase measured in the same run on the same hub process:
//   signin  a device streaming a batch every 20 ms, its send->ack latency
//           with nothing else going on, then during waves of 300 concurrent
//           wrong sign-ins from one address, then from 300 addresses;
//   names   hub RSS after one device token opens 300 sessions that each
//           define 256 new metric names, against 300 sessions of 4 names;
//   poison  a fleet streaming into a real influxd (Debian's 1.6.7 behind the
//           test-only /api/v2/write adapter): InfluxDB write requests/s and
//           how late the fleet's readings are in InfluxDB, then the same
//           while one device sends readings whose unit ends in a backslash
//           at 1,000 readings/s.
// The hub is this checkout's compiled one (built first when stale).
// --hub-root runs the hub of another checkout (e.g. an older commit in a
// git worktree) with this script, for before/after figures: its hub/dist
// when that is up to date, else its sources through tsx (the first line
// of the output says which; a hub under tsx carries the loader's memory and
// start-up cost, so compare RSS figures only between hubs run the same way).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { DEVICE_PATH, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, decodeHubMessage, encodeDeviceMessage, type Batch } from '@telemetry/proto';
import { Influxd, startV2WriteAdapter } from '../hub/test/influxd.ts';
import { addDevice } from '@telemetry/hub';
import { BENCH_METRICS_TOKEN, compiled, freePort, otherHub, scrape, waitHealthy, type Launch } from './bench-lib.ts';

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: 'signin,names,poison' },
    'hub-root': { type: 'string' },
    seconds: { type: 'string', default: '10' },
  },
});
const only = new Set(values.only.split(','));
const phaseMs = Number(values.seconds) * 1000;
const root = resolve(import.meta.dirname, '..');
const hubRoot = resolve(values['hub-root'] ?? root);
let hubLaunch: Launch;
const tmp = mkdtempSync(join(tmpdir(), 'bench-hostile-'));
const children: ChildProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); rmSync(tmp, { recursive: true, force: true }); });
process.on('SIGINT', () => process.exit(130));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const ADMIN_PASSWORD = 'bench-admin-password-1';

function quantile(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

interface HubProc { port: number; proc: ChildProcess; tokens: Map<string, string> }

async function startHub(name: string, ids: string[], env: Record<string, string> = {}): Promise<HubProc> {
  const dir = join(tmp, name);
  const registry = join(dir, 'devices.json');
  const tokens = new Map(ids.map((id) => [id, addDevice(registry, id, { site: 'bench' })]));
  const port = await freePort();
  const proc = spawn(process.execPath, hubLaunch.args, {
    cwd: hubRoot,
    env: {
      ...hubLaunch.env, INIT_CWD: hubRoot, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN,
      HUB_DATA_DIR: dir, HUB_DEVICES_FILE: registry, HUB_LOG_LEVEL: 'warn', HUB_ADMIN_PASSWORD: ADMIN_PASSWORD, ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let logBytes = 0;
  proc.stderr.on('data', (c: Buffer) => { logBytes += c.length; });
  proc.once('exit', () => { if (logBytes) console.log(`  (hub ${name} wrote ${fmt(logBytes)} bytes to stderr)`); });
  children.push(proc);
  await waitHealthy(`http://127.0.0.1:${port}`, proc);
  return { port, proc, tokens };
}

async function stopHub(h: HubProc): Promise<void> {
  if (h.proc.exitCode !== null) return;
  h.proc.kill('SIGTERM');
  await new Promise((r) => h.proc.once('exit', r));
}

/** A plain protocol client: Hello, then batches on demand; records send->ack latency per seq. */
class BenchDevice {
  readonly ws: WebSocket;
  readonly welcome: Promise<{ lastSeq: number }>;
  readonly closed: Promise<number>;
  readonly latencies: number[] = [];
  readonly #sentAt = new Map<number, number>();
  #acked = 0;
  constructor(port: number, readonly id: string, token: string) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}${DEVICE_PATH}`, [DEVICE_SUBPROTOCOL], { headers: { authorization: `Bearer ${token}` }, perMessageDeflate: false });
    this.closed = new Promise((r) => this.ws.once('close', (code) => r(code)));
    this.ws.on('error', () => undefined);
    this.welcome = new Promise((res, rej) => {
      this.ws.once('open', () => this.ws.send(encodeDeviceMessage({ hello: { deviceId: id, protocolVersion: PROTOCOL_VERSION, firmware: 'bench', deviceTimeMs: Date.now() } })));
      this.ws.once('close', (code) => rej(new Error(`${id}: closed ${code} before Welcome`)));
      this.ws.on('message', (data: Buffer) => {
        const m = decodeHubMessage(data);
        if (m.welcome) { this.#acked = m.welcome.lastSeq ?? 0; res({ lastSeq: this.#acked }); }
        if (m.ack) {
          const now = performance.now();
          for (let s = this.#acked + 1; s <= (m.ack.seq ?? 0); s++) {
            const t = this.#sentAt.get(s);
            if (t !== undefined) { this.latencies.push(now - t); this.#sentAt.delete(s); }
          }
          this.#acked = Math.max(this.#acked, m.ack.seq ?? 0);
        }
      });
    });
  }
  get unacked(): number { return this.#sentAt.size; }
  send(b: Batch): void {
    this.#sentAt.set(b.seq!, performance.now());
    this.ws.send(encodeDeviceMessage({ batch: { ...b, sentTimeMs: Date.now() } }));
  }
  close(): void { this.ws.close(1000); }
}

function readings(seq: number, n: number, defs: { id: number; name: string; unit?: string }[]): Batch {
  const now = Date.now();
  return {
    seq, baseTimeMs: now - n, metricDefs: defs,
    metricIds: Array.from({ length: n }, (_, i) => defs[i % defs.length]!.id),
    timeOffsetsMs: Array.from({ length: n }, (_, i) => i),
    values: Array.from({ length: n }, (_, i) => 20 + (i % 10) / 10),
  };
}

/**
 * Waves of 300 concurrent wrong sign-ins until `endMs`, from one address or
 * 300, in a worker thread: the flood gets its own event loop, so it does not
 * delay the probe device's acks in this one (only the hub can do that).
 */
function signInFlood(port: number, endMs: number, manyAddresses: boolean): Promise<Map<number, number>> {
  const code = `
    const { parentPort, workerData: { port, endMs, many } } = require('node:worker_threads');
    const { request } = require('node:http');
    const one = (localAddress, password) => new Promise((res) => {
      const body = JSON.stringify({ user: 'admin', password });
      const req = request({ host: '127.0.0.1', port, localAddress, method: 'POST', path: '/login', agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (r) => { r.resume(); r.on('end', () => res(r.statusCode)); });
      req.on('error', () => res(0));
      req.end(body);
    });
    (async () => {
      const statuses = {};
      while (Date.now() < endMs) {
        const got = await Promise.all(Array.from({ length: 300 }, (_, i) =>
          one(many ? '127.0.' + (1 + Math.floor(i / 250)) + '.' + (1 + (i % 250)) : '127.0.0.1', 'wrong-password-' + i)));
        for (const s of got) statuses[s] = (statuses[s] ?? 0) + 1;
      }
      parentPort.postMessage(statuses);
    })();`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { port, endMs, many: manyAddresses } });
    w.once('message', (m: Record<string, number>) => { resolve(new Map(Object.entries(m).map(([k, v]) => [Number(k), v]))); void w.terminate(); });
    w.once('error', reject);
  });
}

// ---- signin -------------------------------------------------------------------

async function benchSignIn(): Promise<void> {
  console.log('\n## Sign-in flood vs one streaming device (8 readings every 20 ms)');
  const hub = await startHub('signin', ['probe']);
  const probe = new BenchDevice(hub.port, 'probe', hub.tokens.get('probe')!);
  let seq = (await probe.welcome).lastSeq;
  const defs = [{ id: 1, name: 'temperature', unit: 'degC' }];
  let streaming = true;
  const stream = (async () => {
    while (streaming) {
      if (probe.unacked < 32) probe.send(readings(++seq, 8, defs));
      await sleep(20);
    }
  })();
  const phase = async (label: string, attack: ((end: number) => Promise<Map<number, number>>) | null) => {
    const m0 = await scrape(hub.port);
    probe.latencies.length = 0;
    const started = performance.now();
    const end = Date.now() + phaseMs;
    const statuses = attack ? await attack(end) : new Map<number, number>();
    while (Date.now() < end) await sleep(50);
    await sleep(200);
    const m1 = await scrape(hub.port);
    const d = (k: string) => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
    const l = probe.latencies;
    const st = [...statuses].sort().map(([s, n]) => `${n} x ${s}`).join(', ') || '-';
    const checks = d('hub_operator_sign_ins_total{result="ok"}') + d('hub_operator_sign_ins_total{result="failed"}');
    // A wave outlasts the phase when the hub is slow to answer: divide by the time it really took.
    const cpu = (100 * d('process_cpu_seconds_total')) / ((performance.now() - started) / 1000);
    console.log(`| ${label} | ${fmt(l.length)} | ${fmt(quantile(l, 0.5), 1)} | ${fmt(quantile(l, 0.99), 1)} | ${fmt(Math.max(...l), 1)} | ${st} | ${fmt(checks)} | ${fmt(cpu)} % |`);
    return quantile(l, 0.99);
  };
  const waves = (many: boolean) => (end: number) => signInFlood(hub.port, end, many);
  console.log(`| phase (${phaseMs / 1000} s each) | acks | ack p50 ms | ack p99 ms | ack max ms | sign-in responses | passwords checked | hub CPU |`);
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  const base = await phase('no sign-ins (baseline)', null);
  const one = await phase('waves of 300 concurrent wrong sign-ins, one address', waves(false));
  const many = await phase('waves of 300 concurrent wrong sign-ins, 300 addresses', waves(true));
  console.log(`ack p99 during the flood / baseline: one address ${fmt(one / base, 2)}, 300 addresses ${fmt(many / base, 2)}`);
  streaming = false;
  await stream;
  probe.close();
  await stopHub(hub);
}

// ---- names --------------------------------------------------------------------

async function benchNames(): Promise<void> {
  console.log('\n## One token, 300 sessions: 256 new metric names each vs the same 4 names');
  const hub = await startHub('names', ['plain', 'attacker'], { HUB_ADMISSION_RATE: '100000', HUB_ADMISSION_BURST: '100000' });
  const rss = async () => (await scrape(hub.port)).get('process_resident_memory_bytes') ?? NaN;
  const heap = async () => (await scrape(hub.port)).get('nodejs_heap_size_used_bytes') ?? NaN;
  const run = async (id: string, namesPer: (session: number) => { id: number; name: string }[]) => {
    let seq = 0;
    const codes = new Map<number, number>();
    for (let s = 0; s < 300; s++) {
      const d = new BenchDevice(hub.port, id, hub.tokens.get(id)!);
      try {
        seq = Math.max(seq, (await d.welcome).lastSeq);
        const defs = namesPer(s);
        d.send(readings(++seq, defs.length, defs));
        const code = await Promise.race([d.closed, sleep(300).then(() => 0)]);
        if (code) codes.set(code, (codes.get(code) ?? 0) + 1);
      } catch { /* refused or closed before Welcome */ }
      d.close();
      await Promise.race([d.closed, sleep(1000)]);
    }
    return codes;
  };
  await sleep(1000);
  const r0 = await rss(), h0 = await heap();
  const plainCodes = await run('plain', () => ['temperature', 'humidity', 'pressure', 'battery'].map((name, i) => ({ id: i + 1, name })));
  await sleep(2000);
  const r1 = await rss(), h1 = await heap();
  const attackCodes = await run('attacker', (s) => Array.from({ length: 256 }, (_, i) => ({ id: i + 1, name: `m${s}_${i}` })));
  await sleep(2000);
  const r2 = await rss(), h2 = await heap();
  const codes = (m: Map<number, number>) => [...m].map(([c, n]) => `${n} x ${c}`).join(', ') || 'none';
  const m = await scrape(hub.port);
  console.log('| 300 sessions of one token | hub RSS growth | JS heap growth | closes |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| 4 names each (baseline) | ${fmt((r1 - r0) / 2 ** 20, 1)} MiB | ${fmt((h1 - h0) / 2 ** 20, 1)} MiB | ${codes(plainCodes)} |`);
  console.log(`| 256 new names each | ${fmt((r2 - r1) / 2 ** 20, 1)} MiB | ${fmt((h2 - h1) / 2 ** 20, 1)} MiB | ${codes(attackCodes)} |`);
  console.log(`distinct metric names fleet-wide: ${m.get('hub_metric_names') ?? 'n/a'}; 4006 closes counted: ${m.get('hub_limit_violations_total{limit="metrics_per_device"}') ?? 'n/a'}`);
  await stopHub(hub);
}

// ---- poison -------------------------------------------------------------------

async function benchPoison(): Promise<void> {
  console.log('\n## A device sending units that end in a backslash, 1,000 readings/s, vs a 50-device fleet into InfluxDB (20 ms per write)');
  const influx = await Influxd.start('telemetry');
  cleanups.push(() => influx.destroy());
  // 20 ms per write request, as the database the attack report used: every
  // extra request the poison causes then costs the fleet time.
  const adapter = await startV2WriteAdapter(() => influx.url, { writeDelayMs: 20 });
  cleanups.push(() => adapter.close());
  const fleetIds = Array.from({ length: 50 }, (_, i) => `fleet-${String(i).padStart(2, '0')}`);
  const hub = await startHub('poison', [...fleetIds, 'poison'], {
    INFLUX_URL: adapter.url, INFLUX_TOKEN: 'bench', INFLUX_ORG: 'bench', INFLUX_BUCKET: 'telemetry', HUB_SINK_BATCH_LINES: '5000',
  });
  const fleet = await Promise.all(fleetIds.map(async (id) => { const d = new BenchDevice(hub.port, id, hub.tokens.get(id)!); return { d, seq: (await d.welcome).lastSeq }; }));
  let streaming = true;
  const defs = [{ id: 1, name: 'temperature', unit: 'degC' }, { id: 2, name: 'humidity', unit: '%' }];
  const stream = (async () => {
    while (streaming) {
      for (const f of fleet) if (f.d.unacked < 32) f.d.send(readings(++f.seq, 10, defs));
      await sleep(250);
    }
  })();
  /** Newest fleet reading InfluxDB holds, ms behind now. */
  const lateness = async (): Promise<number> => {
    const s = await influx.query(`SELECT last("value") FROM "temperature" WHERE "device" =~ /^fleet-/`, 'telemetry');
    const t = Number(s[0]?.values[0]?.[0] ?? 0);
    return t ? Date.now() - t : NaN;
  };
  const phase = async (label: string, attack: ((end: number) => Promise<string>) | null) => {
    const m0 = await scrape(hub.port);
    const req0 = adapter.requests;
    const end = Date.now() + phaseMs;
    const lates: number[] = [];
    const sampling = (async () => { while (Date.now() < end) { lates.push(await lateness()); await sleep(500); } })();
    const what = attack ? await attack(end) : '-';
    await sampling;
    const m1 = await scrape(hub.port);
    const secs = phaseMs / 1000;
    const d = (k: string) => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
    const l = lates.filter(Number.isFinite);
    console.log(`| ${label} | ${fmt((adapter.requests - req0) / secs, 1)} | ${fmt(d('hub_sink_lines_written_total') / secs)} | ${fmt(d('hub_sink_lines_dead_lettered_total'))} | ${fmt(quantile(l, 0.5))} | ${fmt(Math.max(...l))} | ${what} |`);
  };
  const poison = async (end: number): Promise<string> => {
    const codes = new Map<number, number>();
    let sent = 0;
    let seq = 0;
    while (Date.now() < end) {
      const d = new BenchDevice(hub.port, 'poison', hub.tokens.get('poison')!);
      try {
        seq = Math.max(seq, (await d.welcome).lastSeq);
        // 100 readings every 100 ms: 1,000 readings/s, until the hub closes it.
        for (;;) {
          const code = await Promise.race([d.closed, sleep(100).then(() => 0)]);
          if (code) { codes.set(code, (codes.get(code) ?? 0) + 1); break; }
          if (Date.now() >= end) break;
          d.send(readings(++seq, 100, [{ id: 1, name: 'temperature', unit: 'degC\\' }]));
          sent += 100;
        }
      } catch {
        codes.set(-1, (codes.get(-1) ?? 0) + 1);
        await sleep(100);
      }
      d.close();
    }
    return `${fmt(sent)} poison readings sent; closes: ${[...codes].map(([c, n]) => `${n} x ${c === -1 ? 'refused' : c}`).join(', ')}`;
  };
  await sleep(3000);
  console.log(`| phase (${phaseMs / 1000} s each) | InfluxDB write requests/s | lines confirmed/s | lines dead-lettered | fleet lateness in InfluxDB p50 ms | max ms | poison device |`);
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  await phase('fleet only (baseline)', null);
  await phase('fleet + poison device', poison);
  await phase('fleet only, after', null);
  streaming = false;
  await stream;
  for (const f of fleet) f.d.close();
  await stopHub(hub);
}

async function main(): Promise<void> {
  hubLaunch = hubRoot === root ? { ...(await compiled(root)).hub, from: 'compiled, hub/dist/main.js' } : otherHub(hubRoot);
  console.log(`hub from ${hubRoot}: ${hubLaunch.from}; machine: ${(await import('node:os')).cpus().length} cores, Node ${process.version}`);
  if (only.has('signin')) await benchSignIn();
  if (only.has('names')) await benchNames();
  if (only.has('poison')) await benchPoison();
  for (const f of cleanups.reverse()) await f();
  process.exit(0);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
