// device-sim/ tests: the simulator's device management beyond the core
// protocol (proto/README.md §5.14, §12, §15): Hello.features, the
// ConfigReport after Welcome, DesiredConfig applied all or nothing (and kept
// across sessions), Invoke ping and reboot, and plain v1 devices (--v1, or a
// hub whose Welcome lists no features) that never send the newer messages.
// Runs against a tiny hub built here on the `ws` server: it selects the
// subprotocol, answers Hello with a Welcome listing the features it is told
// to, acks every batch and records what arrives.
// Imports: node:test, node, ws, @telemetry/proto, this package's cli, device,
// fleet and management, and the repository's shared test/support/.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  DEVICE_SUBPROTOCOL, FEATURE_CONFIG, FEATURE_INVOKE, decodeDeviceMessage, encodeHubMessage,
  type CommandResult, type ConfigReport, type DeviceMessage, type DesiredConfig, type Invoke, type Limits,
} from '@telemetry/proto';
import { parseCli, type CliConfig, type Summary } from '../src/cli.ts';
import { SimDevice } from '../src/device.ts';
import type { SimDeviceOptions } from '../src/device-options.ts';
import { Fleet } from '../src/fleet.ts';
import { answerInvoke, checkDesired } from '../src/management.ts';
import { tempDir } from '../../test/support/fs.ts';
import { until } from '../../test/support/wait.ts';

const LIMITS: Limits = {
  maxMessageBytes: 262_144, maxBatchReadings: 10_000, maxReadingsPerSecond: 1_000_000, readingsBurst: 10_000_000,
  maxMetricsPerSession: 256, maxMetricNameBytes: 64, maxFutureSkewMs: 300_000, maxPastSkewMs: 604_800_000, idleTimeoutMs: 60_000,
};

interface Session {
  ws: WebSocket;
  /** Every message of the session, decoded, in order. */
  msgs: DeviceMessage[];
  /** Readings received, with the wall time each batch arrived. */
  batches: { at: number; readings: number }[];
  /** The close frame's code, once closed. */
  closeCode: number | null;
}

/** The tiny hub: `features` goes into every Welcome ([]: no field 9 at all, as from a hub older than the features). */
async function tinyHub(t: TestContext, features: string[] = [FEATURE_CONFIG, FEATURE_INVOKE]) {
  const sessions: Session[] = [];
  const lastSeq = new Map<string, number>();
  const wss = new WebSocketServer({
    host: '127.0.0.1', port: 0, perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(DEVICE_SUBPROTOCOL) ? DEVICE_SUBPROTOCOL : false),
  });
  await new Promise<void>((r) => wss.once('listening', r));
  wss.on('connection', (ws) => {
    const s: Session = { ws, msgs: [], batches: [], closeCode: null };
    sessions.push(s);
    let deviceId = '';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const m = decodeDeviceMessage(data);
      s.msgs.push(m);
      if (m.hello) {
        deviceId = m.hello.deviceId ?? '';
        ws.send(encodeHubMessage({ welcome: {
          sessionId: `s${sessions.length}`, protocolVersion: 1, serverTimeMs: Date.now(), echoDeviceTimeMs: m.hello.deviceTimeMs ?? 0,
          window: 32, credit: 32, lastSeq: lastSeq.get(deviceId) ?? 0, limits: LIMITS, features,
        } }));
      } else if (m.batch) {
        const seq = Math.max(lastSeq.get(deviceId) ?? 0, Number(m.batch.seq ?? 0));
        lastSeq.set(deviceId, seq);
        s.batches.push({ at: Date.now(), readings: m.batch.values?.length ?? 0 });
        ws.send(encodeHubMessage({ ack: { seq, credit: 32 } }));
      }
    });
    ws.on('close', (code) => { s.closeCode = code; });
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  const port = (wss.address() as { port: number }).port;
  const reports = (s: Session | undefined): ConfigReport[] => (s?.msgs ?? []).flatMap((m) => (m.reported ? [m.reported] : []));
  const results = (s: Session | undefined): CommandResult[] => (s?.msgs ?? []).flatMap((m) => (m.commandResult ? [m.commandResult] : []));
  return {
    url: `ws://127.0.0.1:${port}/v1/devices`, sessions, reports, results,
    wait: (cond: () => boolean, what: string, ms = 3000) => until(cond, ms, what, 10),
    desired: (s: Session, d: DesiredConfig) => s.ws.send(encodeHubMessage({ desired: d })),
    invoke: (s: Session, id: number, invoke: Invoke) => s.ws.send(encodeHubMessage({ command: { id, invoke } })),
    /** A ping round trip: every frame the device sent before the pong has arrived. */
    flush: (s: Session) => new Promise<void>((r) => { s.ws.once('pong', () => r()); s.ws.ping(); }),
  };
}

/** 1 reading/s per metric (sample interval 1000 ms), 200 ms batches, fast reconnects; stopped after the test. */
function simDevice(t: TestContext, url: string, extra: Partial<SimDeviceOptions> = {}): SimDevice {
  const d = new SimDevice({ id: 'dev-m', token: 'dev-m.secret', url, rate: 1, batchIntervalMs: 200, backoffBaseMs: 20, backoffCapMs: 100, ...extra });
  t.after(() => d.stop());
  return d;
}

/** Readings the hub received in the window of `ms` from now. */
async function readingsOver(s: Session, ms: number): Promise<number> {
  const from = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  return s.batches.filter((b) => b.at > from && b.at <= from + ms).reduce((n, b) => n + b.readings, 0);
}

test('management - Hello lists config and invoke; the first message after Welcome is a ConfigReport of the factory state', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t);
  const d = simDevice(t, hub.url);
  d.start();
  await hub.wait(() => (hub.sessions[0]?.batches.length ?? 0) > 0, 'a batch');
  const s = hub.sessions[0]!;
  assert.deepEqual(s.msgs[0]?.hello?.features, ['config', 'invoke']);
  assert.ok(s.msgs[1]?.reported, 'the ConfigReport comes right after Hello/Welcome, before any batch');
  const r = s.msgs[1].reported;
  assert.deepEqual(
    [Number(r.version), r.sampleIntervalMs, r.batchIntervalMs, r.customJson, r.ok, r.error],
    [0, 1000, 200, '', true, ''],
  );
  assert.equal(hub.reports(s).length, 1, 'one report per session unless a DesiredConfig comes');
});

test('management - DesiredConfig sample_interval_ms 200 makes the device sample 5 times as often; the report carries the new version', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t);
  const d = simDevice(t, hub.url);
  d.start();
  await hub.wait(() => hub.reports(hub.sessions[0]).length === 1 && hub.sessions[0]!.batches.length > 0, 'the first report and a batch');
  const s = hub.sessions[0]!;
  const before = await readingsOver(s, 2000);
  hub.desired(s, { version: 3, sampleIntervalMs: 200 });
  await hub.wait(() => hub.reports(s).length === 2, 'the report for version 3');
  const after = await readingsOver(s, 2000);
  // 4 metrics: about 8 readings in 2 s at 1000 ms, about 40 at 200 ms.
  assert.ok(before > 0 && after / before > 2, `readings in 2 s: ${before} at 1000 ms, ${after} at 200 ms`);
  const r = hub.reports(s)[1]!;
  assert.deepEqual([Number(r.version), r.sampleIntervalMs, r.batchIntervalMs, r.customJson, r.ok, r.error], [3, 200, 200, '', true, '']);
  assert.equal(d.counters.configUpdatesApplied, 1);
  assert.equal(d.counters.configUpdatesRefused, 0);
});

test('management - a value out of range is refused with an error naming the field, and nothing of the delta is applied; state survives a reconnect', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t);
  const d = simDevice(t, hub.url);
  d.start();
  await hub.wait(() => hub.reports(hub.sessions[0]).length === 1, 'the first report');
  const s = hub.sessions[0]!;
  hub.desired(s, { version: 5, batchIntervalMs: 1000, customJson: '{"led":false}' });
  await hub.wait(() => hub.reports(s).length === 2, 'report 5');
  // Out of range, together with a valid field: all or nothing.
  hub.desired(s, { version: 6, sampleIntervalMs: 50, customJson: '{"led":true}' });
  await hub.wait(() => hub.reports(s).length === 3, 'report 6');
  hub.desired(s, { version: 7, customJson: '[1, 2]' });
  hub.desired(s, { version: 8, batchIntervalMs: 0 });
  await hub.wait(() => hub.reports(s).length === 5, 'reports 7 and 8');
  const [, r5, r6, r7, r8] = hub.reports(s);
  assert.deepEqual([Number(r5!.version), r5!.sampleIntervalMs, r5!.batchIntervalMs, r5!.customJson, r5!.ok], [5, 1000, 1000, '{"led":false}', true]);
  assert.equal(Number(r6!.version), 6, 'the version is taken whatever the outcome');
  assert.equal(r6!.ok, false);
  assert.match(r6!.error ?? '', /^sample_interval_ms 50: must be 100\.\.3600000$/);
  assert.deepEqual([r6!.sampleIntervalMs, r6!.batchIntervalMs, r6!.customJson], [1000, 1000, '{"led":false}'], 'the old values kept');
  assert.deepEqual([r7!.ok, r7!.customJson], [false, '{"led":false}']);
  assert.match(r7!.error ?? '', /custom_json/);
  assert.deepEqual([r8!.ok, r8!.batchIntervalMs], [false, 1000]);
  assert.match(r8!.error ?? '', /batch_interval_ms 0/);
  hub.desired(s, { version: 9, customJson: `{"x":"${'a'.repeat(4100)}"}` });
  await hub.wait(() => hub.reports(s).length === 6, 'report 9');
  assert.match(hub.reports(s)[5]!.error ?? '', /custom_json: \d+ bytes, at most 4096/);
  assert.deepEqual([d.counters.configUpdatesApplied, d.counters.configUpdatesRefused], [1, 4]);

  // The applied configuration is the device's own state: the next session reports it as it was.
  s.ws.terminate();
  await hub.wait(() => hub.reports(hub.sessions[1]).length === 1, 'the report of the next session');
  const again = hub.reports(hub.sessions[1])[0]!;
  assert.deepEqual(
    [Number(again.version), again.sampleIntervalMs, again.batchIntervalMs, again.customJson, again.ok],
    [9, 1000, 1000, '{"led":false}', false],
  );
});

test('management - Invoke ping answers the uptime; an unknown name gets ok = false', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t);
  const d = simDevice(t, hub.url);
  const started = Date.now();
  d.start();
  await hub.wait(() => hub.reports(hub.sessions[0]).length === 1, 'the first report');
  await new Promise((r) => setTimeout(r, 300));
  const s = hub.sessions[0]!;
  hub.invoke(s, 7, { name: 'ping' });
  hub.invoke(s, 8, { name: 'calibrate' });
  await hub.wait(() => hub.results(s).length === 2, 'two results');
  const [ping, unknown] = hub.results(s);
  assert.deepEqual([Number(ping!.id), ping!.ok], [7, true]);
  const { uptime_ms: uptime } = JSON.parse(ping!.resultJson ?? '') as { uptime_ms: number };
  assert.ok(Number.isInteger(uptime) && uptime >= 250 && uptime <= Date.now() - started + 5, `uptime ${uptime}`);
  assert.deepEqual([Number(unknown!.id), unknown!.ok, unknown!.message, unknown!.resultJson], [8, false, 'unknown command calibrate', '']);
  assert.equal(d.counters.commandsAnswered, 2);
});

test('management - Invoke reboot answers first, closes with 1000, reconnects with a fresh Hello; uptime restarts, configuration kept', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t);
  const d = simDevice(t, hub.url);
  d.start();
  await hub.wait(() => hub.reports(hub.sessions[0]).length === 1, 'the first report');
  const s = hub.sessions[0]!;
  hub.desired(s, { version: 2, sampleIntervalMs: 500 });
  await hub.wait(() => hub.reports(s).length === 2, 'report 2');
  await new Promise((r) => setTimeout(r, 400));
  hub.invoke(s, 1, { name: 'ping' });
  await hub.wait(() => hub.results(s).length === 1, 'ping');
  const uptimeBefore = (JSON.parse(hub.results(s)[0]!.resultJson ?? '') as { uptime_ms: number }).uptime_ms;
  hub.invoke(s, 2, { name: 'reboot' });
  await hub.wait(() => s.closeCode !== null, 'the close');
  assert.equal(s.closeCode, 1000);
  const reboot = hub.results(s)[1];
  assert.deepEqual([Number(reboot?.id), reboot?.ok, reboot?.resultJson], [2, true, '{"rebooting":true}'], 'the result came before the close');
  await hub.wait(() => hub.reports(hub.sessions[1]).length === 1, 'the new session and its report', 5000);
  const next = hub.sessions[1]!;
  assert.equal(next.msgs[0]?.hello?.deviceId, 'dev-m', 'a fresh Hello first');
  const r = hub.reports(next)[0]!;
  assert.deepEqual([Number(r.version), r.sampleIntervalMs], [2, 500], 'the applied configuration survives the reboot');
  hub.invoke(next, 1, { name: 'ping' });
  await hub.wait(() => hub.results(next).length === 1, 'ping after the reboot');
  const uptimeAfter = (JSON.parse(hub.results(next)[0]!.resultJson ?? '') as { uptime_ms: number }).uptime_ms;
  assert.ok(uptimeAfter < uptimeBefore, `uptime restarted: ${uptimeAfter} ms after, ${uptimeBefore} ms before`);
  assert.equal(d.counters.closes['1000'], 1);
  assert.equal(d.counters.sessions, 2);
});

test('management - a Welcome without features (an older hub): no ConfigReport ever, DesiredConfig ignored, Invoke answered as unknown', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t, []);
  const d = simDevice(t, hub.url, { rate: 5 });
  d.start();
  await hub.wait(() => (hub.sessions[0]?.batches.length ?? 0) >= 3, 'three batches');
  const s = hub.sessions[0]!;
  assert.deepEqual(s.msgs[0]?.hello?.features, ['config', 'invoke'], 'the device still lists what it implements');
  hub.desired(s, { version: 4, sampleIntervalMs: 500 });
  hub.invoke(s, 3, { name: 'ping' });
  await hub.wait(() => hub.results(s).length === 1, 'the result');
  await hub.flush(s);
  assert.equal(hub.reports(s).length, 0, 'never a ConfigReport');
  assert.deepEqual([hub.results(s)[0]!.ok, hub.results(s)[0]!.resultJson], [false, '']);
  assert.equal(d.configReport.sampleIntervalMs, 200, 'the DesiredConfig was not applied');
  assert.equal(d.counters.configUpdatesApplied + d.counters.configUpdatesRefused, 0);
});

test('management - --v1 (Fleet v1) devices list no features and send no ConfigReport even when the hub lists them', { timeout: 10_000 }, async (t) => {
  assert.equal((parseCli(['--v1'], { SIM_TOKEN: 'dev-v1.c2VjcmV0' }) as CliConfig).v1, true);
  assert.equal((parseCli([], { SIM_TOKEN: 'dev-v1.c2VjcmV0' }) as CliConfig).v1, false);
  const hub = await tinyHub(t);
  const fleet = new Fleet({ url: hub.url, devices: [{ id: 'dev-v1', token: 'dev-v1.secret' }], rate: 5, batchIntervalMs: 100, v1: true });
  t.after(() => fleet.stop());
  await hub.wait(() => (hub.sessions[0]?.batches.length ?? 0) >= 2, 'two batches');
  const s = hub.sessions[0]!;
  const hello = s.msgs[0]?.hello;
  assert.equal(hello?.deviceId, 'dev-v1');
  assert.deepEqual(hello?.features ?? [], []);
  hub.invoke(s, 9, { name: 'ping' });
  await hub.wait(() => hub.results(s).length === 1, 'the result');
  await hub.flush(s);
  assert.equal(hub.reports(s).length, 0);
  assert.equal(hub.results(s)[0]!.ok, false, 'a v1 device does not know Invoke');
});

test('management - the command line: --v1 reaches the devices, and the JSON summary carries the new counters', { timeout: 10_000 }, async (t) => {
  const hub = await tinyHub(t);
  const dir = tempDir(t, 'sim-mgmt-');
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ 'sim-0000': 'sim-0000.secret', 'sim-0001': 'sim-0001.secret' }));
  const cli = resolve(import.meta.dirname, '../src/cli.ts');
  const run = (extra: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', cli, '--url', hub.url, '--tokens', tokens, '--devices', '1', '--rate', '5', '--batch-ms', '100', '--duration', '1', '--json', ...extra], { env: { ...process.env, SIM_TOKEN: '' } });
  const [v1, full] = await Promise.all([run(['--v1']), run(['--offset', '1'])]);
  const summaries = [v1, full].map((r) => JSON.parse(r.stdout.trim()) as Summary);
  for (const s of summaries) {
    assert.deepEqual([s.counters.configUpdatesApplied, s.counters.configUpdatesRefused, s.counters.commandsAnswered], [0, 0, 0]);
  }
  const byId = new Map(hub.sessions.map((s) => [s.msgs[0]?.hello?.deviceId ?? '', s]));
  assert.deepEqual(byId.get('sim-0000')?.msgs[0]?.hello?.features ?? [], [], '--v1: no features');
  assert.deepEqual(byId.get('sim-0001')?.msgs[0]?.hello?.features, ['config', 'invoke']);
  assert.equal(hub.reports(byId.get('sim-0000')).length, 0, 'the v1 device never reports');
  assert.equal(hub.reports(byId.get('sim-0001')).length, 1, 'the device with features reports once after Welcome');
});

test('management - checkDesired and answerInvoke (the pure parts)', () => {
  assert.deepEqual(checkDesired({ version: 1 }), { ok: true, delta: {} }, 'an empty delta is applied (it moves the version)');
  assert.deepEqual(checkDesired({ version: 1, sampleIntervalMs: 100, batchIntervalMs: 3_600_000, customJson: '{}' }), {
    ok: true, delta: { sampleIntervalMs: 100, batchIntervalMs: 3_600_000, customJson: '{}' },
  });
  const bad = checkDesired({ version: 1, sampleIntervalMs: 3_600_001, customJson: 'null' });
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? bad.error : '', /^sample_interval_ms 3600001: must be 100\.\.3600000; custom_json: must be a JSON object$/);
  assert.equal(answerInvoke({ name: 'ping', argsJson: '[' }, 5).ok, false, 'arguments it cannot read');
  assert.equal(answerInvoke({ name: 'ping', argsJson: '{"verbose":true}' }, 5).resultJson, '{"uptime_ms":5}', 'unknown arguments ignored');
});
