// device-sim/ tests: the lean load generator against the real hub, as users
// run them: the hub a process of its own (test/real-hub.ts: hub/dist when
// built, else its sources), the generator its command line (`lean`, from
// source, in two processes). Every batch sent is acked, nothing is lost,
// the run is clean, and the hub's own counters agree with the generator's.
// Counts only, no timings.
// Imports: node:test, node, the shared test/support, and this package's lean-cli (types) and real-hub.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { LeanSummary } from '../src/lean-cli.ts';
import { tempDir } from '../../test/support/fs.ts';
import { UNLIMITED_ENV, startRealHub, writeFleet } from './real-hub.ts';

const cli = resolve(import.meta.dirname, '../src/cli.ts');
const run = promisify(execFile);

test('lean - against the real hub: 20 devices for 2 s in 2 processes, every batch acked, none lost, the hub stored exactly what was acked', async (t) => {
  const dir = tempDir(t, 'lean-hub-');
  const fleet = writeFleet(dir, 20, 'lean-');
  // Limits lifted as the benchmarks lift them: a closed loop is far over the default 1000 readings/s.
  const hub = await startRealHub({ dataDir: join(dir, 'data'), registry: fleet.registry, env: UNLIMITED_ENV });
  t.after(() => hub.stop());

  const { stdout } = await run(process.execPath, [
    '--import', 'tsx', cli, 'lean', '--url', hub.url, '--tokens', fleet.tokens, '--prefix', 'lean-', '--devices', '20',
    '--readings', '20', '--metrics', '4', '--window', '16', '--duration', '2', '--processes', '2', '--json',
  ], { env: { ...process.env, SIM_TOKEN: '' }, timeout: 120_000 });
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'only the JSON line with --json');
  const s = JSON.parse(lines[0]!) as LeanSummary;

  assert.equal(s.mode, 'lean');
  assert.deepEqual([s.devices, s.processes, s.readingsPerBatch, s.metrics, s.window], [20, 2, 20, 4, 16]);
  assert.ok(s.batches.sent > 0, 'batches were sent');
  assert.equal(s.batches.lost, 0, `lost: ${JSON.stringify(s.lossByDevice)}`);
  assert.equal(s.batches.resent, 0);
  assert.equal(s.batches.acked, s.batches.sent, 'every batch acked in its session');
  assert.equal(s.batches.ackedByWelcome, 0);
  assert.equal(s.readingsAcked, s.batches.acked * 20);
  assert.equal(s.drained, true);
  assert.equal(s.errors, 0, JSON.stringify(s.closes));
  assert.deepEqual(s.closes, { 1000: 20 }, 'one session each, closed cleanly at the end');
  assert.deepEqual(s.violations, { ackRegressed: 0, ackUnknownSeq: 0, welcomeRegressed: 0, creditOverWindow: 0, badMessages: 0, unexpectedMessages: 0 });
  assert.deepEqual(s.hubReports, { nonFiniteDropped: 0, skewDropped: 0, skewCorrected: 0 }, 'finite values, times within the skew bounds');
  assert.equal(s.sessions, 20);
  assert.equal(s.latencyMs.samples, s.batches.acked, 'one latency per acked batch, merged across the processes');
  assert.ok(s.latencyMs.p50 <= s.latencyMs.p99 && s.latencyMs.p99 <= s.latencyMs.max);
  assert.ok(s.cpu.userSeconds > 0 && s.cpu.usPerBatch > 0);
  assert.equal(s.clean, true);

  // The hub's side of the same run.
  const m = await hub.scrape();
  assert.equal(m.get('hub_batches_total{result="accepted"}'), s.batches.acked, 'stored once each');
  assert.equal(m.get('hub_batches_total{result="duplicate"}') ?? 0, 0);
  assert.equal(m.get('hub_readings_total{result="accepted"}'), s.readingsAcked);
  assert.equal(m.get('hub_device_closes_total{code="1000"}'), 20);
});

test('lean - SIGUSR2 starts the steady window again (a warm-up is over): its latency and CPU cover only what came after, across processes', async (t) => {
  const dir = tempDir(t, 'lean-mark-');
  const fleet = writeFleet(dir, 10, 'mark-');
  const hub = await startRealHub({ dataDir: join(dir, 'data'), registry: fleet.registry, env: UNLIMITED_ENV });
  t.after(() => hub.stop());
  const child = spawn(process.execPath, [
    '--import', 'tsx', cli, 'lean', '--url', hub.url, '--tokens', fleet.tokens, '--prefix', 'mark-', '--devices', '10',
    '--readings', '8', '--metrics', '4', '--window', '4', '--rate', '50', '--duration', '4', '--processes', '2', '--json',
  ], { env: { ...process.env, SIM_TOKEN: '' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  // Marked once every device is sending (the hub has acked batches), well before the end.
  const end = Date.now() + 60_000;
  while (((await hub.scrape()).get('hub_batches_total{result="accepted"}') ?? 0) < 50 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500));
  child.kill('SIGUSR2');
  assert.equal(await exited, 0);
  const s = JSON.parse(out.trim()) as LeanSummary;
  assert.equal(s.clean, true);
  assert.ok(s.steadyLatencyMs.samples > 0, 'batches acked after the mark');
  assert.ok(s.steadyLatencyMs.samples < s.latencyMs.samples, `the steady window (${s.steadyLatencyMs.samples}) leaves out what came before the mark (${s.latencyMs.samples} in all)`);
  assert.ok(s.cpu.steady.seconds > 0 && s.cpu.steady.seconds < s.seconds - 0.3, `steady ${s.cpu.steady.seconds} s of ${s.seconds} s`);
});

test('lean - a bad flag exits 2 naming it, with the lean usage', async () => {
  const r = await run(process.execPath, ['--import', 'tsx', cli, 'lean', '--readings', '0', '--tokens', '/nonexistent'], { env: { ...process.env, SIM_TOKEN: '' } })
    .catch((e: { code: number; stderr: string }) => e);
  assert.equal((r as { code: number }).code, 2);
  assert.match((r as { stderr: string }).stderr, /sim lean: --readings must be an integer in 1\.\.1000000[\s\S]*usage: npm run sim -- lean/);
});
