// npm run bench:config [-- --devices 1000 --rate 100] [--cluster]
// The time from an operator's configuration change to the device's report,
// at a fleet of simulated devices (each implements desired configuration,
// device-sim/src/management.ts), through the real hub (embedded mode, its
// own data dir) and the API, as an operator's tool would do it:
//   1. one change per device (PUT /api/v1/devices/:id/config), --rate per
//      second: from just before the request to the hub's receipt of the
//      device's report of that version (`reported.at`, the hub's clock);
//   2. one change per tag group (five `site=` groups cover the fleet): from
//      just before the request to each member's report.
// --cluster: two hubs in cluster mode on one nats-server (started here, as
// the tests start it): the operator's requests go to hub A, every device's
// session is on hub B, so each change crosses the shared KV bucket (hub A
// saves it, hub B's watch sends the delta, hub B saves the report, hub A
// reads it through its watch; `reported.at` is hub B's clock, the same
// machine's).
// The simulator runs in its own processes; everything runs on 127.0.0.1 and
// stops by itself. Prints p50/p90/p99/max per step.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureSimFleet } from './sim-fleet.ts';
import { freePort } from '../test/support/net.ts';
import { spawnTracked, stopChild, sleep } from './bench/proc.ts';
import { NatsServer } from '../hub/test/nats-server.ts';

const { values } = parseArgs({
  options: { devices: { type: 'string', default: '1000' }, rate: { type: 'string', default: '100' }, json: { type: 'boolean', default: false }, cluster: { type: 'boolean', default: false } },
  strict: true,
});
const devices = Number(values.devices);
const rate = Number(values.rate);
if (!Number.isInteger(devices) || devices < 1 || devices > 19_000) throw new Error('--devices: 1..19000 (one simulator process)');
if (!(rate > 0 && rate <= 1000)) throw new Error('--rate: changes per second, 0 < rate <= 1000');

const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'bench-config-'));
const password = 'bench-config-password';
const registry = join(dir, 'devices.json');
const tokens = join(dir, 'tokens.json');
ensureSimFleet(registry, tokens, devices, 'cfg-');
const nats = values.cluster ? await NatsServer.start({ name: 'bench-config' }) : null;
/** Hub A takes the operator's requests; hub B (the same hub when not --cluster) the devices. */
const port = await freePort();
const devicePort = nats ? await freePort() : port;
const base = `http://127.0.0.1:${port}`;
const hubEnv = (p: number, id: string): NodeJS.ProcessEnv => {
  const data = join(dir, id);
  return {
    ...process.env, HUB_PORT: String(p), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: data, HUB_DEVICES_FILE: registry, HUB_ADMIN_PASSWORD: password, HUB_LOG_LEVEL: 'warn',
    ...(nats ? { HUB_NATS_URL: nats.url, HUB_ID: id, HUB_NATS_MAX_BYTES: String(256 << 20) } : {}),
  };
};
const startHub = (p: number, id: string) => spawnTracked(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', 'hub/src/main.ts'], { cwd: root, env: hubEnv(p, id), stdio: ['ignore', 'ignore', 'inherit'] });
const hubs = [startHub(port, 'hub-a')];
if (nats) hubs.push(startHub(devicePort, 'hub-b'));
let sim: ReturnType<typeof spawnTracked> | null = null;

interface ConfigView { desired: { version: number } | null; reported: { version: number; at: number; sampleIntervalMs: number } | null }

function percentiles(xs: number[]): { n: number; p50: number; p90: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { n: s.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: s.at(-1) ?? NaN };
}

try {
  for (const p of new Set([port, devicePort])) {
    for (let i = 0; ; i++) {
      const up = await fetch(`http://127.0.0.1:${p}/readyz`).then((r) => r.ok, () => false);
      if (up) break;
      if (i > 300) throw new Error(`hub on port ${p} not ready within 30 s`);
      await sleep(100);
    }
  }
  const login = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'admin', password }) });
  if (login.status !== 200) throw new Error(`sign-in: ${login.status}`);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
  const api = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const r = await fetch(`${base}${path}`, { method, headers: { cookie, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const ids = Array.from({ length: devices }, (_, i) => `cfg-${String(i).padStart(4, '0')}`);
  const configOf = (id: string) => api('GET', `/api/v1/devices/${id}/config`) as Promise<ConfigView>;
  /** Polls until every device reported at least `version(id)`; the reports. */
  const reportsAtLeast = async (want: Map<string, number>, timeoutMs: number): Promise<Map<string, ConfigView['reported']>> => {
    const got = new Map<string, ConfigView['reported']>();
    const end = Date.now() + timeoutMs;
    while (got.size < want.size) {
      if (Date.now() > end) throw new Error(`${want.size - got.size} of ${want.size} devices did not report within ${timeoutMs} ms`);
      for (const [id, v] of want) {
        if (got.has(id)) continue;
        const c = await configOf(id);
        if (c.reported && c.reported.version >= v) got.set(id, c.reported);
      }
      if (got.size < want.size) await sleep(200);
    }
    return got;
  };

  sim = spawnTracked(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', 'device-sim/src/cli.ts', '--url', `ws://127.0.0.1:${devicePort}/v1/devices`, '--tokens', tokens,
    '--devices', String(devices), '--prefix', 'cfg-', '--rate', '1', '--batch-ms', '1000', '--ramp-ms', '2000', '--quiet'], { cwd: root, env: process.env, stdio: ['ignore', 'ignore', 'inherit'] });
  // Every device connected and reported its factory state (version 0).
  await reportsAtLeast(new Map(ids.map((id) => [id, 0])), 60_000);

  // 1. One change per device, `rate` a second.
  const sentAt = new Map<string, number>();
  const wantVersion = new Map<string, number>();
  const gap = 1000 / rate;
  const started = Date.now();
  await Promise.all(ids.map(async (id, i) => {
    await sleep(Math.max(0, started + i * gap - Date.now()));
    const t0 = Date.now();
    const r = await api('PUT', `/api/v1/devices/${id}/config`, { sampleIntervalMs: 500 + (i % 5) * 100 }) as { desired: { version: number } };
    sentAt.set(id, t0);
    wantVersion.set(id, r.desired.version);
  }));
  const perDevice = await reportsAtLeast(wantVersion, 60_000);
  const perDeviceMs = ids.map((id) => perDevice.get(id)!.at - sentAt.get(id)!);

  // 2. One change per tag group (the fleet's five sites).
  const sites = ['north', 'south', 'east', 'west', 'lab'];
  const groupWant = new Map<string, number>();
  const groupSent = new Map<string, number>();
  const groupAnswerMs: number[] = [];
  for (const site of sites) {
    const t0 = Date.now();
    await api('PUT', `/api/v1/config-groups/site=${site}`, { batchIntervalMs: 2000 });
    groupAnswerMs.push(Date.now() - t0);
    for (const [i, id] of ids.entries()) if (sites[i % sites.length] === site) groupSent.set(id, t0);
  }
  for (const id of ids) groupWant.set(id, (await configOf(id)).desired!.version);
  const perGroup = await reportsAtLeast(groupWant, 60_000);
  const perGroupMs = ids.map((id) => perGroup.get(id)!.at - groupSent.get(id)!);

  const a = percentiles(perDeviceMs), b = percentiles(perGroupMs);
  if (values.json) console.log(JSON.stringify({ devices, rate, cluster: nats !== null, perDevice: a, perGroup: b, groupAnswerMs }));
  else {
    const mode = nats ? 'cluster mode: changes made on hub A, every device on hub B, one nats-server' : 'hub embedded mode';
    console.log(`configuration change -> device report, ${devices} simulated devices (rate 1/s per metric, batches every 1 s), ${mode}`);
    console.log('| change | changes | p50 | p90 | p99 | max |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    console.log(`| one device (PUT /api/v1/devices/:id/config, ${rate}/s) | ${a.n} | ${a.p50} ms | ${a.p90} ms | ${a.p99} ms | ${a.max} ms |`);
    console.log(`| a tag group (PUT /api/v1/config-groups/site=..., 5 groups) | ${b.n} | ${b.p50} ms | ${b.p90} ms | ${b.p99} ms | ${b.max} ms |`);
    console.log(`each group request answered (saved, in force) in ${groupAnswerMs.map((m) => `${m} ms`).join(', ')}`);
  }
} finally {
  if (sim) await stopChild(sim);
  for (const hub of hubs) await stopChild(hub);
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
}
