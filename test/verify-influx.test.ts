// The load tester's proof of storage against a real InfluxDB (Debian's
// influxd 1.6.7): its per-device count of stored readings over every
// measurement, limited to the run's devices and time window, and the
// comparison that names exactly the devices with readings missing or
// doubled; then a scenario run through the real hub into InfluxDB (via the
// test-only /api/v2/write adapter) with --verify-influx, where every acked
// reading is found exactly once and --slo loss=0,dup=0 passes.
// Imports: node:test, node, @telemetry/device-sim (verify-influx), @telemetry/hub (registry), hub/test support (influxd, helpers), the shared test/support.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { compareStored, countStored, prefixRegex } from '@telemetry/device-sim';
import { generateToken, hashToken, writeRegistryFile, type RegistryFile } from '@telemetry/hub';
import { spawnHub } from '../hub/test/helpers.ts';
import { Influxd, startV2WriteAdapter } from '../hub/test/influxd.ts';
import { freePort } from './support/net.ts';
import { until } from './support/wait.ts';

const cli = resolve(import.meta.dirname, '../device-sim/src/cli.ts');

async function influx(t: TestContext): Promise<Influxd> {
  const db = await Influxd.start('telemetry');
  t.after(() => db.destroy());
  return db;
}

async function write(db: Influxd, lines: string[]): Promise<void> {
  const res = await fetch(`${db.url}/write?db=telemetry&precision=ms`, { method: 'POST', body: lines.join('\n') });
  assert.equal(res.status, 204, await res.text());
}

test('verify-influx - counts per device over every measurement, only the run\'s prefix and window; the comparison names exactly what is missing and doubled', async (t) => {
  const db = await influx(t);
  const t0 = 1_800_000_000_000;
  await write(db, [
    ...[0, 1, 2].map((i) => `temperature,device=v-0000,site=a value=${i} ${t0 + i}`),
    ...[0, 1].map((i) => `humidity,device=v-0000 value=${i} ${t0 + i}`),
    `temperature,device=v-0001 value=1 ${t0}`,
    ...[0, 1, 2, 3].map((i) => `temperature,device=v-0002 value=${i} ${t0 + i}`),
    `temperature,device=v-0009 value=1 ${t0}`,
    // Not the run's: another prefix, and the run's prefix outside its window.
    `temperature,device=other-0000 value=1 ${t0}`,
    `temperature,device=v-0000 value=9 ${t0 - 3_600_000}`,
  ]);
  const stored = await countStored({ url: db.url, db: 'telemetry' }, { prefix: 'v-', fromMs: t0 - 1000, toMs: t0 + 1000 });
  assert.deepEqual(Object.fromEntries(stored), { 'v-0000': 5, 'v-0001': 1, 'v-0002': 4, 'v-0009': 1 });

  const r = compareStored(new Map([['v-0000', 5], ['v-0001', 3], ['v-0002', 2], ['v-0003', 0]]), stored);
  assert.deepEqual([r.devices, r.expected, r.stored, r.missing, r.doubled, r.unexpectedDevices], [4, 10, 11, 2, 3, 1]);
  assert.deepEqual(r.worst, [
    { id: 'v-0001', expected: 3, stored: 1 },
    { id: 'v-0002', expected: 2, stored: 4 },
    { id: 'v-0009', expected: 0, stored: 1 },
  ], 'exactly the devices that are off, most missing first');

  assert.equal(compareStored(new Map([['v-0000', 5]]), new Map([['v-0000', 5], ['v-0009', 1]]), new Set(['v-0009'])).doubled, 0, 'an ignored device (a bad actor) counts on neither side');

  // A prefix with regex characters matches literally.
  assert.equal(prefixRegex('a.b/c'), '/^a\\.b\\/c/');
  assert.equal((await countStored({ url: db.url, db: 'telemetry' }, { prefix: 'v.', fromMs: t0 - 1000, toMs: t0 + 1000 })).size, 0);
  await assert.rejects(countStored({ url: db.url, db: 'nope' }, { prefix: 'v-', fromMs: 0, toMs: 1 }), /InfluxDB: database not found/);
  await assert.rejects(countStored({ url: 'http://127.0.0.1:1', db: 'telemetry' }, { prefix: 'v-', fromMs: 0, toMs: 1, timeoutMs: 2000 }), /did not answer/);
});

test('verify-influx - a scenario through the real hub into InfluxDB: every acked reading stored once, --slo loss=0,dup=0 passes', async (t) => {
  const db = await influx(t);
  const adapter = await startV2WriteAdapter(() => db.url);
  t.after(() => adapter.close());
  const dir = await mkdtemp(join(tmpdir(), 'verify-influx-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file: RegistryFile = { version: 1, devices: {} };
  const tokens: Record<string, string> = {};
  for (let i = 0; i < 10; i++) {
    const id = `vi-${String(i).padStart(4, '0')}`;
    tokens[id] = generateToken(id);
    file.devices[id] = { tokenHash: hashToken(tokens[id]), tags: { site: `s${i % 2}` } };
  }
  writeRegistryFile(join(dir, 'devices.json'), file);
  await writeFile(join(dir, 'tokens.json'), JSON.stringify(tokens));
  const port = await freePort();
  const hub = spawnHub(t, {
    HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: dir, HUB_DEVICES_FILE: join(dir, 'devices.json'), HUB_LOG_LEVEL: 'warn',
    INFLUX_URL: adapter.url, INFLUX_TOKEN: 'test', INFLUX_ORG: 'test', INFLUX_BUCKET: 'telemetry', HUB_SINK_BATCH_LINES: '500',
  });
  await until(async () => { try { return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok; } catch { return false; } }, 30_000, 'hub healthy', 100);

  let out: { stdout: string; stderr: string };
  try {
    out = await promisify(execFile)(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', cli,
      '--scenario', 'steady', '--url', `ws://127.0.0.1:${port}/v1/devices`, '--tokens', join(dir, 'tokens.json'), '--prefix', 'vi-', '--devices', '10',
      '--duration', '4', '--rate', '5', '--batch-ms', '250', '--drain-ms', '5000', '--verify-influx', db.url, '--influx-db', 'telemetry', '--settle-ms', '30000',
      '--slo', 'loss=0,dup=0', '--json'], { env: { ...process.env, SIM_TOKEN: '' }, timeout: 120_000 });
  } catch (err) {
    assert.fail(`the run failed: ${(err as { stderr?: string }).stderr ?? String(err)}\n--- hub ---\n${hub.out()}`);
  }
  const s = JSON.parse(out.stdout.trim()) as {
    storage: { expected: number; stored: number; missing: number; doubled: number; settled: boolean; devices: number };
    dup: number; loss: { readings: number }; counters: { readingsAcked: number }; slo: { pass: boolean };
  };
  assert.equal(s.storage.devices, 10);
  assert.ok(s.storage.expected > 0 && s.storage.expected === s.counters.readingsAcked, JSON.stringify(s.storage));
  assert.deepEqual([s.storage.stored, s.storage.missing, s.storage.doubled, s.storage.settled], [s.storage.expected, 0, 0, true]);
  assert.deepEqual([s.dup, s.loss.readings, s.slo.pass], [0, 0, true]);
});
