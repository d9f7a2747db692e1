// Storage end to end: the real hub process with INFLUX_URL set, a real
// influxd (1.6.7 behind the test-only /api/v2/write adapter), and a
// simulated fleet. At the end every reading the devices got acked is in
// InfluxDB exactly once (InfluxDB overwrites an identical point, so counts
// cannot hide duplicates in the spool either: the spool is checked too).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEVICE_PATH } from '@telemetry/proto';
import { Fleet } from '@telemetry/device-sim';
import { generateToken, hashToken, writeRegistryFile, type RegistryFile } from '@telemetry/hub';
import { spawnHub } from '../hub/test/helpers.ts';
import { Influxd, startV2WriteAdapter } from '../hub/test/influxd.ts';
import { freePort } from './support/net.ts';
import { exitCode } from './support/proc.ts';
import { until } from './support/wait.ts';

/** until()'s pause here: most conditions query InfluxDB or the hub. */
const POLL_MS = 100;

/** `logs`: each hub process's output so far, in start order. */
interface Env { dir: string; influx: Influxd; adapterUrl: string; devices: { id: string; token: string }[]; port: number; logs: (() => string)[] }

const METRICS_TOKEN = 'storage-test-metrics-token';

/** A failure says what the hub was doing: the tail of its log is added. */
async function withHubLog(e: Env, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const tail = e.logs.flatMap((out) => out().trim().split('\n').slice(-40));
    if (err instanceof Error) err.message += `\n--- hub log (last lines) ---\n${tail.join('\n')}`;
    throw err;
  }
}

/** A gauge or counter from the hub's /metrics (summed over labels matching `labels`). */
async function hubMetric(e: Env, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${e.port}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name} `) || (line.startsWith(`${name}{`) && line.includes(labels))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function setup(t: TestContext, n: number): Promise<Env> {
  const cleanup: (() => Promise<unknown>)[] = [];
  t.after(async () => { for (const f of cleanup.reverse()) await f(); });
  const dir = await mkdtemp(join(tmpdir(), 'storage-e2e-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const influx = await Influxd.start('telemetry');
  cleanup.push(() => influx.destroy());
  const adapter = await startV2WriteAdapter(() => influx.url);
  cleanup.push(() => adapter.close());
  const file: RegistryFile = { version: 1, devices: {} };
  const devices: { id: string; token: string }[] = [];
  for (let i = 0; i < n; i++) {
    const id = `st-${i}`;
    const token = generateToken(id);
    devices.push({ id, token });
    file.devices[id] = { tokenHash: hashToken(token), tags: { site: `site-${i % 2}` } };
  }
  writeRegistryFile(join(dir, 'devices.json'), file);
  // A fixed free port so the restarted hub comes back on the same URL.
  const port = await freePort();
  return { dir, influx, adapterUrl: adapter.url, devices, port, logs: [] };
}

async function startHub(t: TestContext, e: Env, extra: Record<string, string> = {}): Promise<ChildProcess> {
  const hub = spawnHub(t, {
    HUB_HOST: '127.0.0.1', HUB_PORT: String(e.port), HUB_DATA_DIR: e.dir, HUB_DEVICES_FILE: join(e.dir, 'devices.json'),
    HUB_LOG_LEVEL: 'info', INFLUX_URL: e.adapterUrl, INFLUX_TOKEN: 'test', INFLUX_ORG: 'test', INFLUX_BUCKET: 'telemetry',
    HUB_SINK_BATCH_LINES: '500', HUB_METRICS_TOKEN: METRICS_TOKEN, ...extra,
  });
  // Both pipes are read (a full pipe would block the hub) into what a failure quotes.
  e.logs.push(hub.out);
  await until(async () => {
    try { return (await fetch(`http://127.0.0.1:${e.port}/healthz`)).ok; } catch { return false; }
  }, 20_000, 'hub healthy', POLL_MS);
  return hub.proc;
}

async function influxCount(influx: Influxd): Promise<number> {
  const series = await influx.query('SELECT count("value") FROM /.*/', 'telemetry');
  return series.reduce((a, s) => a + Number(s.values[0]?.[1] ?? 0), 0);
}

function fleetFor(e: Env, rate = 20): Fleet {
  return new Fleet({
    url: `ws://127.0.0.1:${e.port}${DEVICE_PATH}`, devices: e.devices, rate, batchIntervalMs: 250, rampMs: 200,
    device: { backoffBaseMs: 100, backoffCapMs: 1000 },
  });
}

test('storage - InfluxDB down mid-stream until the spool cap is reached: devices are held back by credit, then everything lands once', async (t) => {
  const e = await setup(t, 20);
  // A 1 MiB spool: 15-30 s of backlog fills it. Credit shrinks past half,
  // then the hub stops taking batches; devices hold their data.
  const hub = await startHub(t, e, { HUB_SPOOL_MAX_BYTES: String(1 << 20), HUB_SPOOL_SEGMENT_BYTES: String(128 << 10) });
  const fleet = fleetFor(e, 40);
  t.after(() => fleet.stop());
  await withHubLog(e, async () => {
    await until(async () => (await influxCount(e.influx)) > 0, 20_000, 'first points in InfluxDB', POLL_MS);
    await e.influx.stop();
    // The outage lasts until the spool is full and devices are held back:
    // long enough for the sink's backoff to grow, on a fast or a busy machine.
    await until(async () => (await hubMetric(e, 'hub_spool_pressure')) >= 1, 120_000, 'the spool at its cap', POLL_MS);
    await until(() => fleet.pending > 0 && fleet.counters().reducedCreditAcks > 0, 30_000, 'devices held back with reduced credit', POLL_MS);
    const during = fleet.counters();
    // /readyz names the sink state (503 here: the spool is full); the detail is on /api/v1/status.
    const ready = await (await fetch(`http://127.0.0.1:${e.port}/readyz`)).json() as { sink: string };
    assert.equal(ready.sink, 'retrying');
    assert.ok(during.reducedCreditAcks > 0, `the hub shrank credit while InfluxDB was down (${JSON.stringify(during)})`);
    assert.ok(fleet.pending > 0, 'devices are holding batches the hub could not take');
    await e.influx.run();
    fleet.stopSampling();
    // The sink's /ping probe ends its backoff within seconds; what remains is
    // devices told to come back later (1013) at the cap.
    await until(() => fleet.pending === 0, 60_000, 'devices delivered everything', POLL_MS);
    const acked = fleet.counters().readingsAcked;
    await until(async () => (await influxCount(e.influx)) === acked, 60_000, `InfluxDB has all ${acked} acked readings`, POLL_MS);
    assert.equal(fleet.counters().readingsDropped, 0, 'no device had to drop data');
  });
  hub.kill('SIGTERM');
  await exitCode(hub);
});

test('storage - the hub killed with SIGKILL mid-stream and restarted: every acked reading lands, nothing doubled', async (t) => {
  const e = await setup(t, 20);
  const first = await startHub(t, e);
  const fleet = fleetFor(e);
  t.after(() => fleet.stop());
  await withHubLog(e, async () => {
    await until(() => fleet.counters().batchesAcked > 100, 20_000, 'streaming', POLL_MS);
    first.kill('SIGKILL');
    await exitCode(first);
    await until(() => fleet.connected === 0, 10_000, 'devices noticing the hub is gone', POLL_MS);
    const second = await startHub(t, e);
    await until(() => fleet.connected === e.devices.length, 20_000, 'devices back', POLL_MS);
    const acked = fleet.counters().batchesAcked;
    await until(() => fleet.counters().batchesAcked > acked + 100, 20_000, 'streaming to the restarted hub', POLL_MS);
    fleet.stopSampling();
    await until(() => fleet.pending === 0, 30_000, 'devices delivered everything', POLL_MS);
    const c = fleet.counters();
    assert.ok(c.reconnects >= e.devices.length, 'every device reconnected');
    await until(async () => (await influxCount(e.influx)) === c.readingsAcked, 60_000, `InfluxDB has all ${c.readingsAcked} acked readings`, POLL_MS);
    // Exactly-once in storage: per device, the readings in InfluxDB are the acked ones.
    const perDevice = await e.influx.query('SELECT count("value") FROM "temperature" GROUP BY "device"', 'telemetry');
    const generatedTemp = fleet.devices.reduce((a, d) => a + d.counters.readingsAcked / 4, 0);
    assert.equal(perDevice.reduce((a, s) => a + Number(s.values[0]?.[1] ?? 0), 0), generatedTemp);
    second.kill('SIGTERM');
    await exitCode(second);
  });
});
