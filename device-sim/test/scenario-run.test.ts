// device-sim/ tests: scenario runs as users start them (the simulator's
// command line with --scenario / --config): against a scripted hub that
// never acks one device, the report names exactly that device and what it
// lost and --slo fails the run; against the real hub a reconnect storm in
// two processes loses nothing, every device comes back and the phases are
// reported; bad flags, SLOs and unsupported phases are usage errors naming
// them; the fleet's split over processes and addresses, and the hub limits
// the tool asks for. Counts and orderings only, no timings.
// Imports: node:test, node, the shared test/support, and this package's scenario, scenario-cli and the test hubs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { builtInPlan, planFromObject } from '../src/scenario.ts';
import { autoScale, hubLimitAdvice, slicePlan, type ScenarioSummary } from '../src/scenario-cli.ts';
import { tempDir } from '../../test/support/fs.ts';
import { freePort } from '../../test/support/net.ts';
import { fakeHub } from './fake-hub.ts';
import { ROOT, UNLIMITED_ENV, startRealHub, writeFleet } from './real-hub.ts';

const cli = resolve(import.meta.dirname, '../src/cli.ts');
const execFileP = promisify(execFile);

interface Run { code: number; stdout: string; stderr: string }

async function sim(args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, ['--import', 'tsx', cli, ...args], { env: { ...process.env, SIM_TOKEN: '' }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('scenario - the plan is split over processes by device index, and the fleet over processes and loopback addresses', () => {
  const plan = planFromObject({ devices: 30, phases: [{ kind: 'ramp', duration: '2s', from: { devices: 0 }, to: { devices: 30 } }, { kind: 'steady', duration: '1s', devices: 12 }] });
  const a = slicePlan(plan, 0, 15);
  const b = slicePlan(plan, 15, 15);
  assert.deepEqual(a.phases.map((p) => p.devices), [15, 12]);
  assert.deepEqual(b.phases.map((p) => p.devices), [15, 0]);
  assert.deepEqual([a.maxDevices, b.maxDevices], [15, 15]);
  const ramp = b.phases[0]!;
  assert.ok(ramp.kind === 'ramp' && ramp.from.devices === 0 && ramp.to.devices === 15);

  assert.deepEqual(autoScale({ devices: 500, url: 'ws://127.0.0.1:8080/v1/devices' }), { processes: 1, sourceAddresses: undefined, notes: [] });
  const big = autoScale({ devices: 50_000, url: 'ws://127.0.0.1:8080/v1/devices' });
  assert.equal(big.processes, 3, 'at most 19,000 devices a process');
  assert.equal(big.sourceAddresses?.length, 50, 'at most 1,000 devices an address (the hub default)');
  assert.equal(big.sourceAddresses?.[0], '127.0.0.2');
  assert.equal(autoScale({ devices: 50_000, url: 'ws://hub.example:8080/v1/devices' }).sourceAddresses, undefined, 'addresses only on loopback');
  assert.equal(autoScale({ devices: 50_000, url: 'ws://127.0.0.1:1/v1/devices', processes: 8 }).processes, 8, 'an explicit --processes wins');

  const advice = hubLimitAdvice(builtInPlan('reconnect-storm', { devices: 20_000, rate: 300, batchMs: 1000, durationMs: 60_000 }), { perAddress: 20_000 });
  assert.ok(advice.some((a) => a.startsWith('HUB_MAX_CONN_PER_ADDRESS=20000')), advice.join('\n'));
  assert.ok(advice.some((a) => a.startsWith('HUB_ADMISSION_RATE')), 'a storm of 20,000 is over the admission burst');
  assert.ok(advice.some((a) => a.startsWith('HUB_MAX_READINGS_PER_SEC=1200')), '300/s x 4 metrics');
  assert.ok(advice.some((a) => a.startsWith('an open-file limit (ulimit -n) above 21000')), '20,000 connections need more than 20,000 files');
});

test('scenario - against a hub that never acks one device, the report names exactly that device and its loss, and --slo loss=0 fails the run', async (t) => {
  const hub = await fakeHub(t, { auto: { window: 8, neverAck: (id) => id === 'scn-0003' } });
  const dir = tempDir(t, 'scenario-loss-');
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify(Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`scn-000${i}`, `scn-000${i}.x`]))));
  const config = join(dir, 'plan.yaml');
  writeFileSync(config, 'devices: 6\nrate: 5\nbatchMs: 200\nphases:\n  - { kind: steady, duration: 2s }\n');
  const r = await sim(['--config', config, '--url', hub.url, '--tokens', tokens, '--prefix', 'scn-', '--drain-ms', '1500', '--slo', 'loss=0,errors=0', '--json']);
  assert.equal(r.code, 1, `the SLO fails the run: ${r.stderr}`);
  const s = JSON.parse(r.stdout.trim()) as ScenarioSummary;
  assert.deepEqual(s.loss.byDevice.map((d) => d.id), ['scn-0003'], 'only the device the hub never acked');
  const d = s.loss.byDevice[0]!;
  assert.ok(d.generated > 0 && d.acked === 0, JSON.stringify(d));
  assert.equal(s.loss.readings, d.generated, 'the loss is exactly what that device generated');
  assert.ok(s.counters.readingsAcked > 0 && s.counters.readingsAcked === s.counters.readingsGenerated - d.generated, 'the others: everything acked');
  assert.equal(s.drained, false, 'the never-acked batches were still held at the end');
  const loss = s.slo!.results.find((x) => x.term.name === 'loss')!;
  assert.equal(loss.pass, false);
  assert.equal(s.slo!.results.find((x) => x.term.name === 'errors')!.pass, true);
  assert.equal(s.dup, null, 'duplicates need the database');
});

test('scenario - a reconnect storm against the real hub in two processes: nothing lost, every device back, phases reported, --slo passes', async (t) => {
  const dir = tempDir(t, 'scenario-storm-');
  const fleet = writeFleet(dir, 20, 'storm-');
  const hub = await startRealHub({ dataDir: join(dir, 'data'), registry: fleet.registry, env: UNLIMITED_ENV });
  t.after(() => hub.stop());
  const r = await sim(['--scenario', 'reconnect-storm', '--url', hub.url, '--tokens', fleet.tokens, '--prefix', 'storm-', '--devices', '20',
    '--duration', '9', '--rate', '5', '--batch-ms', '200', '--processes', '2', '--slo', 'loss=0,errors=0,ack_p99<60s', '--json']);
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
  const s = JSON.parse(r.stdout.trim()) as ScenarioSummary;
  assert.equal(s.processes, 2);
  assert.equal(s.loss.readings, 0, JSON.stringify(s.loss));
  assert.equal(s.drained, true);
  assert.ok(s.counters.readingsAcked > 0 && s.counters.readingsAcked === s.counters.readingsGenerated);
  assert.deepEqual(s.phases.map((p) => p.kind), ['steady', 'reconnect-storm', 'steady']);
  const storm = s.phases[1]!;
  assert.notEqual(storm.allBackMs, null, 'every device came back');
  assert.ok(s.counters.sessions >= 40, 'each of the 20 devices opened a new session after the storm');
  assert.equal(s.counters.closes['injected:1006'], 20, 'the storm\'s own drops are counted apart, not as errors');
  assert.equal(s.errors, 0, JSON.stringify(s.counters.closes));
  assert.equal(s.slo?.pass, true, JSON.stringify(s.slo));
  // Each batch's first reading is sampled before the batch is sent: reading -> ack is never below send -> ack.
  assert.ok(s.latencyMs.readingAck.p50 >= s.latencyMs.ack.p50, `${s.latencyMs.readingAck.p50} >= ${s.latencyMs.ack.p50}`);
  assert.equal(s.latencyMs.connect.samples, s.counters.sessions, 'one connect latency per session');
  // The hub agrees: everything acked was stored once.
  const m = await hub.scrape();
  assert.equal(m.get('hub_readings_total{result="accepted"}'), s.counters.readingsAcked);
});

test('scenario - a clock-skew phase against the real hub: the hub reports the skewed readings while the clocks are wrong, and none once they are set right', async (t) => {
  const dir = tempDir(t, 'scenario-skew-');
  const fleet = writeFleet(dir, 6, 'skew-');
  const hub = await startRealHub({ dataDir: join(dir, 'data'), registry: fleet.registry, env: UNLIMITED_ENV });
  t.after(() => hub.stop());
  const config = join(dir, 'skew.json');
  writeFileSync(config, JSON.stringify({ devices: 6, rate: 5, batchMs: 250, phases: [
    { kind: 'steady', name: 'before', duration: '1s' },
    { kind: 'clock-skew', name: 'skew', duration: '3s', share: 1, offsetMs: 3_600_000 },
    { kind: 'steady', name: 'after', duration: '2s' },
  ] }));
  const r = await sim(['--config', config, '--url', hub.url, '--tokens', fleet.tokens, '--prefix', 'skew-', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout.trim()) as ScenarioSummary;
  const phase = (name: string) => s.phases.find((p) => p.name === name)!;
  assert.equal(s.loss.readings, 0, 'readings the hub corrected or dropped were acked: not lost');
  assert.equal(phase('before').hubSkew, 0, 'right clocks: nothing to report');
  assert.ok(phase('skew').hubSkew >= 100, `an hour ahead: the hub reports the readings (${phase('skew').hubSkew})`);
  // Set right at the phase's end: only batches already in flight then can still carry a report.
  assert.ok(phase('after').hubSkew < phase('skew').hubSkew / 4, `after: ${phase('after').hubSkew}`);
  assert.equal(s.counters.hubSkewCorrected + s.counters.hubSkewDropped, phase('before').hubSkew + phase('skew').hubSkew + phase('after').hubSkew);
});

test('scenario - a hub the tool starts (--hub-command), killed with SIGKILL mid-run and started again: every device back, nothing lost', async (t) => {
  const dir = tempDir(t, 'scenario-restart-');
  const fleet = writeFleet(dir, 10, 'rs-');
  const port = await freePort();
  const env = { HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: join(dir, 'data'), HUB_DEVICES_FILE: fleet.registry, HUB_LOG_LEVEL: 'warn', ...UNLIMITED_ENV };
  const command = `${Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ')} exec ${process.execPath} --conditions=@telemetry/source --import tsx ${join(ROOT, 'hub/src/main.ts')}`;
  const config = join(dir, 'restart.json');
  writeFileSync(config, JSON.stringify({ devices: 10, rate: 5, batchMs: 250, phases: [
    { kind: 'steady', name: 'before', duration: '2s' },
    { kind: 'hub-restart', name: 'kill', duration: '6s', signal: 'SIGKILL', atMs: 1000 },
    { kind: 'steady', name: 'after', duration: '2s' },
  ] }));
  const r = await sim(['--config', config, '--url', `ws://127.0.0.1:${port}/v1/devices`, '--tokens', fleet.tokens, '--prefix', 'rs-',
    '--hub-command', command, '--drain-ms', '15000', '--slo', 'loss=0', '--json']);
  assert.equal(r.code, 0, r.stderr.slice(-3000));
  const s = JSON.parse(r.stdout.trim()) as ScenarioSummary;
  const kill = s.phases.find((p) => p.name === 'kill')!;
  assert.deepEqual(kill.commands.map((c) => [c.command, c.exitCode]), [['hub SIGKILL', 0]], 'the tool killed and restarted its hub');
  // Each device's second session may come in a later phase or the drain (its backoff grew while the hub was away): count the run's.
  assert.ok(s.counters.sessions >= 20, `every device opened a new session after the restart (${s.counters.sessions} sessions)`);
  assert.deepEqual([s.loss.readings, s.drained], [0, true], JSON.stringify(s.loss));
  assert.ok(s.counters.readingsAcked > 0 && s.counters.readingsAcked === s.counters.readingsGenerated);
  // The tool ended its hub with the run.
  await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
});

test('scenario - the live display writes plain lines when stderr is not a terminal', async (t) => {
  const hub = await fakeHub(t, { auto: { window: 8 } });
  const dir = tempDir(t, 'scenario-plain-');
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ 'p-0000': 'p-0000.x', 'p-0001': 'p-0001.x' }));
  const r = await sim(['--scenario', 'steady', '--url', hub.url, '--tokens', tokens, '--prefix', 'p-', '--devices', '2', '--duration', '3', '--drain-ms', '1000']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('[sim'));
  assert.ok(lines.length >= 2, r.stderr);
  assert.ok(lines.every((l) => /phase=1\/1 steady|phase=-/.test(l) && !l.includes('\x1b')), lines.join('\n'));
  assert.match(r.stdout, /scenario steady: 2 devices in 1 process/);
});

test('scenario - bad flags, SLOs and phases this version cannot run are usage errors (exit 2) naming them', async (t) => {
  const dir = tempDir(t, 'scenario-bad-');
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ 'b-0000': 'b-0000.x' }));
  const base = ['--url', 'ws://127.0.0.1:1/v1/devices', '--tokens', tokens, '--prefix', 'b-', '--devices', '1'];
  const skew = join(dir, 'bad.json');
  writeFileSync(skew, JSON.stringify({ phases: [{ kind: 'bad-actors', duration: '5s', share: 0.5 }] }));
  const cases: [string[], RegExp][] = [
    [['--scenario', 'nope'], /--scenario: .*unknown scenario "nope".*reconnect-storm/],
    [['--scenario', 'steady', '--config', skew], /--scenario NAME or --config FILE, not both/],
    [['--scenario', 'steady', '--slo', 'ack_p99<100'], /--slo: ack_p99<100: give a unit/],
    [['--scenario', 'steady', '--slo', 'latency<3ms'], /--slo: latency<3ms/],
    [['--config', skew], /bad-actors phases are not supported yet/],
    [['--scenario', 'hub-restart'], /give the run --hub-command CMD/],
    [['--scenario', 'steady', '--hub-ready', 'http://127.0.0.1:1/healthz'], /--hub-ready goes with --hub-command/],
    [['--scenario', 'steady', '--influx-command', 'true'], /--influx-command needs --influx-ready URL/],
    [['--scenario', 'steady', '--duration', '0'], /--duration must be a number in 1\.\./],
  ];
  for (const [args, re] of cases) {
    const r = await sim([...args, ...base]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});
