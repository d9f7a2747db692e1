// HUB_WORKERS=2 as users run it (the hub process, cluster mode on a real
// nats-server): two worker processes share one port, the kernel spreads
// devices over both, an operator signed in through one is signed in on the
// other, a killed worker is started again (its devices reconnect), and
// SIGTERM to the supervisor stops every worker. Plus the config refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateToken, hashToken } from '../src/auth/registry.ts';
import { loadConfig } from '../src/core/config.ts';
import { freePort } from '../../test/support/net.ts';
import { RawDevice, spawnHub, until, within } from './helpers.ts';
import { NatsServer } from './nats-server.ts';

const TOKEN = 'workers-test-metrics';

/** Hub worker processes started by `pid` (Linux /proc: its children with HUB_WORKER_INDEX; tsx's esbuild is a child too). */
function children(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      if (readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').some((kv) => kv.startsWith('HUB_WORKER_INDEX='))) out.push(Number(name));
    } catch { /* gone */ }
  }
  return out;
}

/** A GET on a connection of its own (so that each may reach another worker). */
function getFresh(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Status { cluster?: { hub: string; hubs: { id: string; up: boolean; devices: number }[] } }

test('workers - HUB_WORKERS=2: one port, devices on both workers, one sign-in for both, a killed worker comes back, SIGTERM stops all', async (t) => {
  const nats = await NatsServer.start({ name: 'workers-test' });
  t.after(() => nats.stop());
  const dir = mkdtempSync(join(tmpdir(), 'workers-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ids = Array.from({ length: 24 }, (_, i) => `w-${i}`);
  const tokens = new Map(ids.map((id) => [id, generateToken(id)]));
  writeFileSync(join(dir, 'devices.json'), JSON.stringify({ version: 1, devices: Object.fromEntries(ids.map((id) => [id, { tokenHash: hashToken(tokens.get(id)!), tags: {} }])) }));
  const port = await freePort();
  const hub = spawnHub(t, {
    HUB_WORKERS: '2', HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: dir, HUB_NATS_URL: nats.url, HUB_NATS_STREAM: 'WORKERS',
    HUB_ID: 'box', HUB_METRICS_TOKEN: TOKEN, HUB_ADMIN_PASSWORD: 'workers-test-password', HUB_LOG_LEVEL: 'warn',
    HUB_DASHBOARD_DIR: join(dir, 'none'),
  });
  const status = async (): Promise<Status> => JSON.parse((await getFresh(port, '/api/v1/status', { authorization: `Bearer ${TOKEN}` })).body) as Status;
  let lastUp: unknown = null;
  const hubsUp = async (): Promise<string[]> => {
    try { const s = await status(); lastUp = s.cluster?.hubs ?? s; return (s.cluster?.hubs ?? []).filter((h) => h.up).map((h) => h.id).sort(); } catch (err) { lastUp = (err as Error).message; return []; }
  };
  // The hub's output as it is when the wait gives up (not as it was when the wait began).
  await until(async () => (await hubsUp()).length === 2, 60_000, 'two workers up', 200).catch((err: Error) => {
    throw new Error(`${err.message}; hubs up: ${JSON.stringify(lastUp)}; hub output:\n${hub.out().slice(-4000)}`);
  });
  // Whichever worker answers, it knows both.
  for (let i = 0; i < 6; i++) assert.deepEqual(await hubsUp(), ['box-0', 'box-1']);
  const workers = children(hub.proc.pid!);
  assert.equal(workers.length, 2, `two worker processes: ${workers.join(',')}`);

  // Devices: the kernel spreads the connections over both workers.
  const url = `ws://127.0.0.1:${port}/v1/devices`;
  const devices: RawDevice[] = [];
  for (const id of ids) {
    const d = new RawDevice(url, { token: tokens.get(id) });
    await within(d.opened, 5000, `${id} open`);
    d.hello(id);
    await d.next('welcome', 5000);
    devices.push(d);
  }
  await until(async () => {
    const hubs = (await status()).cluster?.hubs ?? [];
    return hubs.length === 2 && hubs.every((h) => h.devices > 0) && hubs.reduce((n, h) => n + h.devices, 0) === ids.length;
  }, 10_000, 'devices on both workers', 200);

  // One sign-in: every worker knows the session.
  const login = await fetch(`http://127.0.0.1:${port}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'admin', password: 'workers-test-password' }) });
  assert.equal(login.status, 200);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const me = await getFresh(port, '/api/v1/me', { cookie });
    assert.equal(me.status, 200, `request ${i}: ${me.body}`);
    seen.add((await status()).cluster?.hub ?? '');
  }
  assert.equal(seen.size, 2, 'requests reached both workers');

  // A worker killed: the supervisor starts it again; its devices were closed.
  process.kill(workers[0]!, 'SIGKILL');
  await until(() => children(hub.proc.pid!).length === 2 && !children(hub.proc.pid!).includes(workers[0]!), 15_000, 'a new worker started', 100);
  await until(async () => (await hubsUp()).length === 2, 30_000, 'both workers up again', 200);
  const closedCodes = await Promise.all(devices.map((d) => Promise.race([d.closed.then((c) => c.code), new Promise<number>((r) => setTimeout(() => r(0), 100))])));
  assert.ok(closedCodes.some((c) => c === 1006), `some devices lost their worker: ${closedCodes.join(',')}`);
  for (const d of devices) d.close();

  // SIGTERM: every worker stops, then the supervisor.
  const now = children(hub.proc.pid!);
  hub.proc.kill('SIGTERM');
  const exit = await within(hub.exited, 20_000, 'supervisor exit');
  assert.equal(exit.code, 0, hub.out());
  for (const pid of now) assert.throws(() => process.kill(pid, 0), `worker ${pid} gone`);
});

test('workers - HUB_WORKERS above 1 needs HUB_NATS_URL and a fixed port; HUB_NATS_URL is checked', () => {
  assert.throws(() => loadConfig({ HUB_WORKERS: '2' }), /HUB_WORKERS=2 needs HUB_NATS_URL/);
  assert.throws(() => loadConfig({ HUB_WORKERS: '2', HUB_NATS_URL: 'nats://n:4222', HUB_PORT: '0' }), /needs a fixed HUB_PORT/);
  assert.throws(() => loadConfig({ HUB_WORKERS: '0x' }), /HUB_WORKERS/);
  assert.throws(() => loadConfig({ HUB_NATS_URL: 'nats://a:4222, http://b' }), /HUB_NATS_URL=.*is invalid/);
  assert.throws(() => loadConfig({ HUB_NATS_URL: 'nats://a:4222', HUB_NATS_STREAM: 'a.b' }), /HUB_NATS_STREAM/);
  assert.throws(() => loadConfig({ HUB_NATS_URL: 'nats://a:4222', HUB_NATS_USER: 'u' }), /HUB_NATS_USER and HUB_NATS_PASSWORD/);
  assert.throws(() => loadConfig({ HUB_NATS_URL: 'nats://a:4222', HUB_ID: 'has space' }), /HUB_ID/);
  assert.throws(() => loadConfig({ HUB_NATS_URL: 'nats://a:4222', HUB_NATS_REPLICAS: '7' }), /HUB_NATS_REPLICAS/);
  const ok = loadConfig({ HUB_NATS_URL: 'nats://a:4222,tls://b:4222,c:4222', HUB_WORKERS: '4', HUB_PORT: '8080' });
  assert.equal(ok.workers, 4);
});

test('workers - a hub that cannot reach NATS at start says so and exits', async (t) => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'workers-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hub = spawnHub(t, { HUB_PORT: '0', HUB_DATA_DIR: dir, HUB_NATS_URL: `nats://127.0.0.1:${port}`, HUB_LOG_LEVEL: 'warn', HUB_ADMIN_PASSWORD: 'workers-test-password' });
  const exit = await within(hub.exited, 30_000, 'exit');
  assert.equal(exit.code, 1);
  assert.match(hub.out(), /HUB_ERR_NATS: cannot connect to NATS at HUB_NATS_URL=nats:\/\/127\.0\.0\.1:\d+/);
});

test('workers - a supervisor killed with SIGKILL leaves no worker behind: each sees its IPC channel close and shuts down', async (t) => {
  const nats = await NatsServer.start({ name: 'workers-orphans' });
  t.after(() => nats.stop());
  const dir = mkdtempSync(join(tmpdir(), 'workers-orphans-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const hub = spawnHub(t, {
    HUB_WORKERS: '2', HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: dir, HUB_NATS_URL: nats.url, HUB_NATS_STREAM: 'ORPHANS',
    HUB_ID: 'orph', HUB_ADMIN_PASSWORD: 'workers-test-password', HUB_LOG_LEVEL: 'warn', HUB_DASHBOARD_DIR: join(dir, 'none'),
  });
  await until(() => children(hub.proc.pid!).length === 2, 30_000, 'two worker processes', 100);
  const workers = children(hub.proc.pid!);
  process.kill(hub.proc.pid!, 'SIGKILL');
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };
  await until(() => workers.every((pid) => !alive(pid)), 20_000, `workers ${workers.join(',')} gone after their supervisor`, 100);
  assert.match(hub.out(), /supervisor is gone; this worker shuts down/);
});
