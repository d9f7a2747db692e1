// npm run bench:storage -- [--devices 500] [--rate 25] [--duration 20] [--outage 60]
//
// Storage benchmark, all on this machine: a real influxd (Debian's 1.6.7
// behind the test-only /api/v2/write adapter from hub/test; point INFLUX_URL
// & co at a real 2.x/3.x to measure that instead), the hub with its spool and
// sink, and the simulator in another process. Prints:
//   1. InfluxDB's own raw line-protocol ingest rate (the ceiling), measured
//      by posting the same schema straight to it, 5,000 lines per request;
//   2. readings/s end to end (simulator -> hub -> InfluxDB confirmed), the
//      ratio to the ceiling, and ack latency with group commit;
//   3. an InfluxDB outage of --outage seconds under the same load, and how
//      fast the backlog drains afterwards.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Influxd, startV2WriteAdapter } from '../hub/test/influxd.ts';
import { BENCH_METRICS_TOKEN, compiled, freePort, histQuantileMs, scrape, waitHealthy } from './bench-lib.ts';
import { ensureSimFleet } from './sim-fleet.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '500' },
    rate: { type: 'string', default: '25' },
    duration: { type: 'string', default: '20' },
    outage: { type: 'string', default: '60' },
  },
});
const devices = Number(values.devices);
const rate = Number(values.rate);
const duration = Number(values.duration);
const outage = Number(values.outage);
const root = resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(join(tmpdir(), 'bench-storage-'));
const children: ChildProcess[] = [];
let influx: Influxd | null = null;
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); influx?.proc?.kill('SIGKILL'); rmSync(tmp, { recursive: true, force: true }); });
process.on('SIGINT', () => process.exit(130));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

/** InfluxDB's own ceiling: the hub's schema, 5,000 lines per POST, 4 in flight. */
async function rawCeiling(db: Influxd, seconds: number): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let lines = 0;
  let t = Date.UTC(2020, 0, 1);
  const worker = async (w: number) => {
    while (Date.now() < end) {
      const body: string[] = [];
      for (let i = 0; i < 5000; i++) {
        const dev = `raw-${w}-${i % 500}`;
        body.push(`temperature,device=${dev},model=th-2,site=north,unit=degC value=${20 + (i % 97) / 10} ${t + Math.floor(i / 500)}`);
      }
      t += 10;
      const res = await fetch(`${db.url}/write?db=raw&precision=ms`, { method: 'POST', body: body.join('\n') });
      if (res.status !== 204) throw new Error(`raw write: HTTP ${res.status} ${await res.text()}`);
      lines += 5000;
    }
  };
  const started = performance.now();
  await Promise.all([0, 1, 2, 3].map(worker));
  return lines / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  // The compiled hub and simulator (built first when stale): what users run.
  const run = await compiled(root);
  influx = await Influxd.start('telemetry');
  await influx.query('CREATE DATABASE "raw"');
  const adapter = await startV2WriteAdapter(() => influx!.url);
  console.log(`influxd 1.6.7 at ${influx.url} (via the test-only /api/v2/write adapter at ${adapter.url})`);

  const ceiling = await rawCeiling(influx, 15);
  console.log(`  InfluxDB raw ingest (ceiling): ${fmt(ceiling)} lines/s`);

  const registry = join(tmp, 'devices.json');
  const tokens = join(tmp, 'tokens.json');
  ensureSimFleet(registry, tokens, devices, 'bs-');
  const port = await freePort();
  const hub = spawn(process.execPath, run.hub.args, {
    cwd: root,
    env: {
      ...run.hub.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN, HUB_DATA_DIR: join(tmp, 'hub'), HUB_DEVICES_FILE: registry, HUB_LOG_LEVEL: 'warn',
      HUB_MAX_CONN_PER_ADDRESS: '100000', HUB_ADMISSION_RATE: '100000', HUB_ADMISSION_BURST: '100000',
      INFLUX_URL: adapter.url, INFLUX_TOKEN: 'bench', INFLUX_ORG: 'bench', INFLUX_BUCKET: 'telemetry',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(hub);
  await waitHealthy(`http://127.0.0.1:${port}`, hub);
  const total = duration + outage + 120;
  const sim = spawn(process.execPath, [...run.sim.args, '--url', `ws://127.0.0.1:${port}/v1/devices`,
    '--devices', String(devices), '--rate', String(rate), '--tokens', tokens, '--prefix', 'bs-', '--duration', String(total), '--ramp-ms', '2000', '--json'],
  { cwd: root, env: run.sim.env, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(sim);
  sim.stdout.resume();
  await sleep(5000);

  // ---- steady state ----
  const m0 = await scrape(port);
  const t0 = performance.now();
  await sleep(duration * 1000);
  const m1 = await scrape(port);
  const secs = (performance.now() - t0) / 1000;
  const d = (k: string) => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
  const landed = d('hub_sink_lines_written_total') / secs;
  const accepted = d('hub_readings_total{result="accepted"}') / secs;
  console.log(`  fleet: ${fmt(devices)} devices x 4 metrics x ${rate}/s (offered ${fmt(devices * rate * 4)} readings/s)`);
  console.log(`  end to end (confirmed by InfluxDB): ${fmt(landed)} readings/s; accepted by the hub ${fmt(accepted)}/s`);
  console.log(`  ratio to the InfluxDB ceiling: ${fmt(landed / ceiling, 3)}`);
  console.log(`  ack latency at the hub (fdatasync group commit): p50 <= ${histQuantileMs(m0, m1, 'hub_ack_latency_seconds', 0.5)} ms, p99 <= ${histQuantileMs(m0, m1, 'hub_ack_latency_seconds', 0.99)} ms (bucket bounds)`);

  // ---- outage and drain ----
  if (outage > 0) {
    await influx.stop();
    const o0 = performance.now();
    await sleep(outage * 1000);
    const before = await scrape(port);
    const backlogBytes = before.get('hub_spool_bytes') ?? 0;
    const written0 = before.get('hub_sink_lines_written_total') ?? 0;
    const acceptedDuring = (before.get('hub_readings_total{result="accepted"}') ?? 0) - (m1.get('hub_readings_total{result="accepted"}') ?? 0);
    console.log(`  InfluxDB down ${fmt((performance.now() - o0) / 1000, 1)} s: the hub kept accepting (${fmt(acceptedDuring)} readings), spool backlog ${fmt(backlogBytes / 2 ** 20, 1)} MiB, credit pressure ${fmt(before.get('hub_spool_pressure') ?? 0, 3)}`);
    await influx.run();
    const r0 = performance.now();
    let after: Awaited<ReturnType<typeof scrape>>;
    for (;;) {
      await sleep(250);
      after = await scrape(port);
      if ((after.get('hub_spool_bytes') ?? Infinity) < 1 << 20) break;
      if (performance.now() - r0 > 600_000) { console.log('  backlog did not drain within 10 min'); break; }
    }
    const drainSecs = (performance.now() - r0) / 1000;
    const drainedLines = (after.get('hub_sink_lines_written_total') ?? 0) - written0;
    console.log(`  backlog drained in ${fmt(drainSecs, 1)} s while the fleet kept streaming: ${fmt(drainedLines)} lines, ${fmt(drainedLines / drainSecs)} lines/s (${fmt(drainedLines / drainSecs / Math.max(1, landed), 1)}x the steady rate)`);
  }
  sim.kill('SIGTERM');
  hub.kill('SIGTERM');
  await new Promise((r) => hub.once('exit', r));
  await adapter.close();
  await influx.destroy();
  process.exit(0);
}

main().catch((err: unknown) => { console.error(err); process.exit(1); });
