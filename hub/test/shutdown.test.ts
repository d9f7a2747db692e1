// The real hub process: graceful shutdown, startup refusals, the binding log line.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CloseCode, DEVICE_PATH, parseRetryAfterMs } from '@telemetry/proto';
import { addDevice } from '../src/auth/registry.ts';
import { RawDevice, batchOf, until, within } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');

function env(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dir, HUB_DEVICES_FILE: join(dir, 'devices.json'), ...extra };
}

async function startHub(t: TestContext, dir: string, extra: Record<string, string> = {}): Promise<{ proc: ChildProcess; port: number; out: () => string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'hub/src/main.ts'], { cwd: root, env: env(dir, extra), stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const port = await within(new Promise<number>((res, rej) => {
    const check = () => { const m = /ws:\/\/127\.0\.0\.1:(\d+)\/v1\/devices/.exec(out); if (m) res(Number(m[1])); };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => rej(new Error(`hub exited ${code}: ${out}`)));
  }), 20_000, 'hub listening');
  return { proc, port, out: () => out };
}

test('shutdown - SIGTERM: pending acks go out, devices get 1001 with a retry hint, new upgrades are refused, exit 0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-shutdown-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const token = addDevice(join(dir, 'devices.json'), 'dev-1');
  const hub = await startHub(t, dir);
  const url = `ws://127.0.0.1:${hub.port}${DEVICE_PATH}`;
  const d = new RawDevice(url, { token });
  await within(d.opened, 5000, 'open');
  d.hello('dev-1');
  await d.next('welcome');
  for (let seq = 1; seq <= 5; seq++) d.batch(batchOf(seq, 10));
  // SIGTERM right behind the batches: they are acked before the close.
  setTimeout(() => hub.proc.kill('SIGTERM'), 0);
  const closed = await within(d.closed, 10_000, 'close');
  assert.equal(closed.code, CloseCode.GOING_AWAY);
  assert.ok((parseRetryAfterMs(closed.reason) ?? 0) > 0, closed.reason);
  const lastAck = d.frames.filter((f) => f.ack).map((f) => f.ack!.seq ?? 0).at(-1) ?? 0;
  assert.equal(lastAck, 5, 'every batch acked before the close');
  const code = await new Promise<number | null>((res) => hub.proc.exitCode !== null ? res(hub.proc.exitCode) : hub.proc.once('exit', res));
  assert.equal(code, 0);
  assert.match(hub.out(), /shutdown complete/);
  // Nothing listens any more.
  const late = new RawDevice(url, { token });
  await assert.rejects(within(late.opened, 5000, 'open'), /ECONNREFUSED/);
});

test('shutdown - a repeated SIGTERM or a quick second SIGINT does not cut the graceful shutdown short; a SIGINT more than a second later exits at once', async (t) => {
  // An InfluxDB that accepts connections and never answers: the sink holds
  // the shutdown open (up to its deadline) while it tries to ship a batch.
  const held = new Set<Socket>();
  const influx = createServer((s) => { held.add(s); s.on('error', () => {}); });
  await new Promise<void>((r) => influx.listen(0, '127.0.0.1', () => r()));
  t.after(() => { for (const s of held) s.destroy(); influx.close(); });
  const dir = mkdtempSync(join(tmpdir(), 'hub-signals-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const token = addDevice(join(dir, 'devices.json'), 'dev-1');
  const hub = await startHub(t, dir, {
    INFLUX_URL: `http://127.0.0.1:${(influx.address() as { port: number }).port}`, INFLUX_TOKEN: 'test', INFLUX_ORG: 'test', INFLUX_BUCKET: 'test',
    HUB_SHUTDOWN_TIMEOUT_MS: '10000',
  });
  const d = new RawDevice(`ws://127.0.0.1:${hub.port}${DEVICE_PATH}`, { token });
  await within(d.opened, 5000, 'open');
  d.hello('dev-1');
  await d.next('welcome');
  d.batch(batchOf(1, 10));
  await d.ackFor(1);
  await until(() => held.size > 0, 10_000, 'the sink writing to InfluxDB');

  const exited = new Promise<number | null>((r) => hub.proc.once('exit', r));
  const first = Date.now();
  hub.proc.kill('SIGTERM');
  assert.equal((await within(d.closed, 5000, 'device close')).code, CloseCode.GOING_AWAY);
  // The repeats a process group and npm start deliver, and one Ctrl-C's worth.
  hub.proc.kill('SIGTERM');
  hub.proc.kill('SIGINT');
  await until(() => /SIGTERM again: already shutting down/.test(hub.out()) && /SIGINT again: already shutting down/.test(hub.out()), 5000, `repeats logged:\n${hub.out()}`);
  assert.ok(Date.now() - first < 1000, 'the SIGINT came within a second of the first signal');
  assert.equal(hub.proc.exitCode, null, 'still shutting down gracefully');
  assert.doesNotMatch(hub.out(), /exiting now/);

  // A second Ctrl-C, a moment later: the hub stops waiting.
  await new Promise((r) => setTimeout(r, Math.max(0, first + 1200 - Date.now())));
  assert.equal(hub.proc.exitCode, null, 'the sink still holds the shutdown open');
  hub.proc.kill('SIGINT');
  assert.equal(await within(exited, 3000, 'exit after the second Ctrl-C'), 130);
  assert.match(hub.out(), /SIGINT again: exiting now/);
});

test('main - SIGHUP without TLS is logged and does not stop the hub', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-sighup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hub = await startHub(t, dir);
  hub.proc.kill('SIGHUP');
  await until(() => /SIGHUP: nothing to reload/.test(hub.out()), 5000, 'SIGHUP logged');
  const r = await fetch(`http://127.0.0.1:${hub.port}/healthz`);
  assert.equal(r.status, 200, 'still serving');
  assert.equal(hub.proc.exitCode, null);
  hub.proc.kill('SIGTERM');
  await new Promise((r) => hub.proc.once('exit', r));
});

test('main - an invalid config value stops the hub with an error naming the variable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-badcfg-'));
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'hub/src/main.ts'], { cwd: root, env: env(dir, { HUB_WINDOW: 'abc' }), encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /HUB_ERR_CONFIG: HUB_WINDOW="abc" is invalid/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('main - logs which uWebSockets.js binding runs, and that nothing reaches a database', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-binding-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hub = await startHub(t, dir);
  assert.match(hub.out(), /uWebSockets\.js binding: .*native/);
  assert.match(hub.out(), /Nothing reaches a database/);
  hub.proc.kill('SIGTERM');
  await new Promise((r) => hub.proc.once('exit', r));
});
