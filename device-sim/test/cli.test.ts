// device-sim/ tests: the command line: flag validation (in process), and
// real runs against a fake hub (one process, and --processes 2 merging its
// children's summaries and latency histograms).
// Imports: node:test, node, and this package's cli, tokens and test helpers.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { UsageError, parseCli, type CliConfig, type Summary } from '../src/cli.ts';
import { deviceId } from '../src/tokens.ts';
import { tempDir } from '../../test/support/fs.ts';
import { fakeHub } from './fake-hub.ts';

const cli = resolve(import.meta.dirname, '../src/cli.ts');
const run = promisify(execFile);

function tokensFile(t: TestContext, n: number): string {
  const dir = tempDir(t, 'sim-cli-');
  const file = join(dir, 'tokens.json');
  writeFileSync(file, JSON.stringify(Object.fromEntries(Array.from({ length: n }, (_, i) => [deviceId('sim-', i), `${deviceId('sim-', i)}.secret`]))));
  return file;
}

test('cli - --tokens and --ca are taken from where npm was run (INIT_CWD), not the workspace npm runs the script in', (t) => {
  const file = tokensFile(t, 2);
  const dir = resolve(file, '..');
  writeFileSync(join(dir, 'ca.pem'), 'not checked here, only read');
  const cfg = parseCli(['--tokens', 'tokens.json', '--devices', '2', '--ca', 'ca.pem'], { INIT_CWD: dir }) as CliConfig;
  assert.deepEqual(cfg.devices.map((d) => d.id), ['sim-0000', 'sim-0001']);
  assert.equal(cfg.caFile, join(dir, 'ca.pem'));
  // Without INIT_CWD (run directly), relative to the current directory, where there is no such file.
  assert.throws(() => parseCli(['--tokens', 'tokens.json', '--devices', '2'], {}), /--tokens: cannot read tokens file/);
});

test('cli - flags are validated with an error that names the flag', (t) => {
  const file = tokensFile(t, 3);
  const bad: [string[], RegExp][] = [
    [['--tokens', file, '--devices', '3', '--rate', 'fast'], /--rate must be a number/],
    [['--tokens', file, '--devices', '2.5'], /--devices must be an integer/],
    [['--tokens', file, '--devices', '4'], /no token for sim-0003/],
    [['--tokens', file, '--devices', '3', '--bad-actors', '2'], /--bad-actors must be a number in 0..1/],
    [['--tokens', file, '--devices', '3', '--auth', 'cookie'], /--auth must be header or subprotocol/],
    [['--tokens', file, '--devices', '3', '--url', 'http://x/v1/devices'], /--url must be ws:\/\/ or wss:\/\//],
    [['--tokens', file, '--devices', '3', '--processes', '4'], /more than the 3 devices/],
    [['--tokens', file, '--devices', '3', '--source-addresses', 'nope'], /not an IP address/],
    [['--tokens', file, '--devices', '3', '--ca', '/nonexistent.pem'], /--ca: cannot read/],
    [['--tokens', file, '--devices', '3', '--bogus'], /Unknown option '--bogus'/],
    [['--devices', '3'], /no credentials/],
    [['--tokens', '/nonexistent.json'], /--tokens: cannot read tokens file/],
  ];
  for (const [argv, re] of bad) assert.throws(() => parseCli(argv, {}), (e: Error) => e instanceof UsageError && re.test(e.message), argv.join(' '));

  const cfg = parseCli(['--tokens', file, '--devices', '2', '--offset', '1', '--rate', '0.5', '--source-addresses', '127.0.0.2-3', '--json'], {}) as CliConfig;
  assert.deepEqual(cfg.devices.map((d) => d.id), ['sim-0001', 'sim-0002']);
  assert.equal(cfg.rate, 0.5);
  assert.deepEqual(cfg.sourceAddresses, ['127.0.0.2', '127.0.0.3']);
  assert.equal(cfg.json, true);
  // SIM_TOKEN: one device, whatever its id.
  const one = parseCli([], { SIM_TOKEN: 'greenhouse-7.c2VjcmV0' }) as CliConfig;
  assert.deepEqual(one.devices, [{ id: 'greenhouse-7', token: 'greenhouse-7.c2VjcmV0' }]);
  assert.throws(() => parseCli(['--devices', '5'], { SIM_TOKEN: 'greenhouse-7.c2VjcmV0' }), /exactly one device/);
  assert.equal(parseCli(['--help'], {}), 'help');
});

test('cli - a bad flag exits 2 with the usage', async () => {
  const r = await run(process.execPath, ['--import', 'tsx', cli, '--rate', 'x'], { env: { ...process.env, SIM_TOKEN: '' } }).catch((e: { code: number; stderr: string }) => e);
  assert.equal((r as { code: number }).code, 2);
  assert.match((r as { stderr: string }).stderr, /sim: --rate must be a number[\s\S]*usage: npm run sim/);
});

async function summaryOf(args: string[]): Promise<Summary> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', cli, ...args, '--json'], { env: { ...process.env, SIM_TOKEN: '' } });
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'only the JSON line with --json');
  return JSON.parse(lines[0]!) as Summary;
}

test('cli - runs a fleet for --duration and prints one JSON summary', async (t) => {
  const hub = await fakeHub(t, { auto: {} });
  const s = await summaryOf(['--url', hub.url, '--tokens', tokensFile(t, 3), '--devices', '3', '--rate', '20', '--batch-ms', '100', '--duration', '1']);
  assert.equal(s.devices, 3);
  assert.equal(s.processes, 1);
  assert.ok(s.seconds >= 1 && s.seconds < 3);
  assert.ok(s.counters.batchesAcked > 10, `acked ${s.counters.batchesAcked}`);
  assert.equal(s.counters.closes['1000'], 3, 'stopped cleanly');
  assert.equal(s.errors, 0);
  assert.ok(s.latencyMs.p50 >= 0 && s.latencyMs.p99 >= s.latencyMs.p50);
  assert.ok(s.readingsAckedPerSec > 0);
  assert.ok(s.cpu.userSeconds > 0);
  assert.equal(hub.stored.size, 3);
});

test('cli - --processes 2 splits the fleet and merges the summaries', async (t) => {
  const hub = await fakeHub(t, { auto: {} });
  const s = await summaryOf(['--url', hub.url, '--tokens', tokensFile(t, 4), '--devices', '4', '--rate', '20', '--batch-ms', '100', '--duration', '1', '--processes', '2']);
  assert.equal(s.devices, 4);
  assert.equal(s.processes, 2);
  assert.equal(s.counters.closes['1000'], 4);
  assert.deepEqual([...hub.stored.keys()].sort(), ['sim-0000', 'sim-0001', 'sim-0002', 'sim-0003']);
  const stored = [...hub.stored.values()].reduce((a, v) => a + v.length, 0);
  assert.equal(s.counters.batchesAcked, stored);
  assert.equal(s.latencyMs.samples, stored);
});

test('cli - --processes hands each child its slice over IPC: thousands of tokens fit (an env var is capped at 128 KiB)', async (t) => {
  const dir = tempDir(t, 'sim-cli-');
  const file = join(dir, 'tokens.json');
  // Real-sized tokens: id + '.' + 43 characters of base64url.
  writeFileSync(file, JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [deviceId('sim-', i), `${deviceId('sim-', i)}.${'x'.repeat(43)}`]))));
  // Nothing listens on port 9 here: the devices only back off; the point is that both children start and report.
  const s = await summaryOf(['--url', 'ws://127.0.0.1:9/v1/devices', '--tokens', file, '--devices', '5000', '--rate', '0', '--duration', '1', '--processes', '2']);
  assert.equal(s.devices, 5000);
  assert.equal(s.processes, 2);
});
