// device-sim/ tests: the lean command line's flags (in process) and its
// summary: reports of several processes merged (counters and rates added,
// losses listed, CPU per batch), and `clean` only when nothing went wrong.
// Imports: node:test, node, the shared test/support, and this package's lean-cli, lean-fleet, stats and tokens.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../src/cli-flags.ts';
import { mergeReports, parseLeanCli, summarize, type LeanConfig, type LeanReport } from '../src/lean-cli.ts';
import { emptyLeanCounters } from '../src/lean-fleet.ts';
import { LatencyHistogram } from '../src/stats.ts';
import { deviceId } from '../src/tokens.ts';
import { tempDir } from '../../test/support/fs.ts';

function tokensFile(t: TestContext, n: number): string {
  const file = join(tempDir(t, 'lean-cli-'), 'tokens.json');
  writeFileSync(file, JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [deviceId('sim-', i), `${deviceId('sim-', i)}.secret`]))));
  return file;
}

test('lean cli - defaults, and the flags it shares with the simulator', (t) => {
  const file = tokensFile(t, 4);
  const cfg = parseLeanCli(['--tokens', file, '--devices', '3', '--offset', '1'], {}) as LeanConfig;
  assert.deepEqual(cfg.devices.map((d) => d.id), ['sim-0001', 'sim-0002', 'sim-0003']);
  assert.deepEqual(
    [cfg.url, cfg.readings, cfg.metrics, cfg.window, cfg.rate, cfg.durationS, cfg.drainMs, cfg.rampMs, cfg.processes, cfg.auth, cfg.json],
    ['ws://127.0.0.1:8080/v1/devices', 20, 4, 0, 0, 0, 5000, 0, 1, 'header', false],
  );
  const full = parseLeanCli(['--tokens', file, '--devices', '4', '--readings', '100', '--metrics', '8', '--window', '32', '--rate', '50.5',
    '--duration', '10', '--drain-ms', '2000', '--source-addresses', '127.0.0.2-3', '--processes', '2', '--auth', 'subprotocol', '--json', '--quiet'], {}) as LeanConfig;
  assert.deepEqual(
    [full.readings, full.metrics, full.window, full.rate, full.durationS, full.drainMs, full.sourceAddresses, full.processes, full.auth, full.json, full.quiet],
    [100, 8, 32, 50.5, 10, 2000, ['127.0.0.2', '127.0.0.3'], 2, 'subprotocol', true, true],
  );
  const one = parseLeanCli([], { SIM_TOKEN: 'greenhouse-7.c2VjcmV0' }) as LeanConfig;
  assert.deepEqual(one.devices, [{ id: 'greenhouse-7', token: 'greenhouse-7.c2VjcmV0' }]);
  assert.equal(parseLeanCli(['--help'], {}), 'help');
});

test('lean cli - bad flags are refused with an error that names the flag', (t) => {
  const file = tokensFile(t, 3);
  const bad: [string[], RegExp][] = [
    [['--readings', '0'], /--readings must be an integer in 1\.\.1000000/],
    [['--readings', '2.5'], /--readings must be an integer/],
    [['--metrics', '0'], /--metrics must be an integer in 1\.\.65536/],
    [['--window', '2000'], /--window must be an integer in 0\.\.1024/],
    [['--rate', 'fast'], /--rate must be a number in 0\.\.1000000/],
    [['--drain-ms', 'soon'], /--drain-ms must be an integer/],
    [['--batch-ms', '100'], /Unknown option '--batch-ms'/], // the simulator's, not lean mode's
    [['--devices', '4'], /no token for sim-0003/],
    [['--processes', '4'], /more than the 3 devices/],
    [['--url', 'http://x/v1/devices'], /--url must be ws:\/\/ or wss:\/\//],
  ];
  for (const [argv, re] of bad) {
    assert.throws(() => parseLeanCli(['--tokens', file, '--devices', '3', ...argv], {}), (e: Error) => e instanceof UsageError && re.test(e.message), argv.join(' '));
  }
  assert.throws(() => parseLeanCli(['--devices', '3'], {}), /no credentials/);
});

function report(over: Partial<LeanReport> & { sent: number; acked: number; lost?: number }): LeanReport {
  const counters = { ...emptyLeanCounters(), sent: over.sent, acked: over.acked, lost: over.lost ?? 0, acks: over.acked / 8, writes: over.sent / 8, sessions: 10, closes: { 1000: 10 } };
  return {
    counters, seconds: 10, drainSeconds: 0.1, drained: true, sentPerSec: over.sent / 10, ackedPerSec: over.acked / 10, connectedAtEnd: 10,
    lossByDevice: [], stopReasons: [], cpuMicros: { user: 800_000, system: 200_000 }, steady: { cpuMicros: 900_000, batches: over.sent, seconds: 9 },
    ...over,
  };
}

test('lean cli - the summary of several processes: counters and rates added, losses listed, CPU per batch; clean only without loss or errors', () => {
  const cfg = parseLeanCli([], { SIM_TOKEN: 'd.x' }) as LeanConfig;
  const latency = new LatencyHistogram();
  latency.addMany(5, 3);
  latency.add(20);
  const a = report({ sent: 100_000, acked: 100_000 });
  const b = report({ sent: 50_000, acked: 49_990, lost: 10, lossByDevice: [{ id: 'sim-0007', sent: 5000, acked: 4990, lost: 10 }] });
  const merged = mergeReports([a, b]);
  const steady = new LatencyHistogram();
  steady.add(7);
  const s = summarize({ ...cfg, processes: 2 }, 20, merged, latency, steady);
  assert.deepEqual(s.batches, { sent: 150_000, resent: 0, acked: 149_990, ackedByWelcome: 0, lost: 10, behindSchedule: 0 });
  assert.equal(s.batchesSentPerSec, 15_000);
  assert.equal(s.readingsAckedPerSec, 14_999 * 20);
  assert.equal(s.readingsAcked, 149_990 * 20);
  assert.deepEqual(s.lossByDevice, [{ id: 'sim-0007', sent: 5000, acked: 4990, lost: 10 }]);
  assert.deepEqual(s.closes, { 1000: 20 });
  assert.equal(s.errors, 0);
  assert.deepEqual([s.cpu.userSeconds, s.cpu.systemSeconds], [1.6, 0.4]);
  assert.ok(Math.abs(s.cpu.usPerBatch - 2e6 / 150_000) < 1e-9);
  assert.ok(Math.abs(s.cpu.steady.usPerBatch - 1.8e6 / 150_000) < 1e-9);
  assert.equal(s.latencyMs.samples, 4);
  assert.equal(s.latencyMs.max, 20);
  assert.deepEqual([s.steadyLatencyMs.samples, s.steadyLatencyMs.max], [1, 7], 'the steady window has its own histogram');
  assert.equal(s.clean, false, 'a lost batch');
  assert.equal(summarize(cfg, 10, mergeReports([a]), latency, latency).clean, true);
  const closed = report({ sent: 10, acked: 10 });
  closed.counters.closes = { 1000: 9, 1011: 1 };
  const c = summarize(cfg, 10, mergeReports([closed]), latency, latency);
  assert.deepEqual([c.errors, c.clean], [1, false]);
  assert.equal(summarize(cfg, 10, mergeReports([{ ...a, drained: false }]), latency, latency).clean, false, 'not drained');
});
