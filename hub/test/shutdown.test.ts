// The real hub process: graceful shutdown, startup refusals, the binding log line.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { CloseCode, DEVICE_PATH, parseRetryAfterMs } from '@telemetry/proto';
import { addDevice } from '../src/auth/registry.ts';
import { tempDir } from '../../test/support/fs.ts';
import { exitCode, waitForOutput } from '../../test/support/proc.ts';
import { sleep } from '../../test/support/wait.ts';
import { RawDevice, batchOf, spawnHub, until, within } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');

function env(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dir, HUB_DEVICES_FILE: join(dir, 'devices.json'), ...extra };
}

async function startHub(t: TestContext, dir: string, extra: Record<string, string> = {}): Promise<{ proc: ChildProcess; port: number; out: () => string }> {
  const hub = spawnHub(t, env(dir, extra));
  const [, port] = await waitForOutput(hub, /ws:\/\/127\.0\.0\.1:(\d+)\/v1\/devices/, 20_000, 'hub listening');
  return { proc: hub.proc, port: Number(port), out: hub.out };
}

test('shutdown - SIGTERM: pending acks go out, devices get 1001 with a retry hint, new upgrades are refused, exit 0', async (t) => {
  const dir = tempDir(t, 'hub-shutdown-');
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
  const code = await exitCode(hub.proc);
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
  const dir = tempDir(t, 'hub-signals-');
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

  const exited = exitCode(hub.proc);
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
  await sleep(Math.max(0, first + 1200 - Date.now()));
  assert.equal(hub.proc.exitCode, null, 'the sink still holds the shutdown open');
  hub.proc.kill('SIGINT');
  assert.equal(await within(exited, 3000, 'exit after the second Ctrl-C'), 130);
  assert.match(hub.out(), /SIGINT again: exiting now/);
});

test('main - SIGHUP without TLS is logged and does not stop the hub', async (t) => {
  const dir = tempDir(t, 'hub-sighup-');
  const hub = await startHub(t, dir);
  hub.proc.kill('SIGHUP');
  await until(() => /SIGHUP: nothing to reload/.test(hub.out()), 5000, 'SIGHUP logged');
  const r = await fetch(`http://127.0.0.1:${hub.port}/healthz`);
  assert.equal(r.status, 200, 'still serving');
  assert.equal(hub.proc.exitCode, null);
  hub.proc.kill('SIGTERM');
  await exitCode(hub.proc);
});

test('main - an invalid config value stops the hub with an error naming the variable', (t) => {
  const dir = tempDir(t, 'hub-badcfg-');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'hub/src/main.ts'], { cwd: root, env: env(dir, { HUB_WINDOW: 'abc' }), encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /HUB_ERR_CONFIG: HUB_WINDOW="abc" is invalid/);
});

test('main - logs which uWebSockets.js binding runs, and that nothing reaches a database', async (t) => {
  const dir = tempDir(t, 'hub-binding-');
  const hub = await startHub(t, dir);
  assert.match(hub.out(), /uWebSockets\.js binding: .*native/);
  assert.match(hub.out(), /Nothing reaches a database/);
  hub.proc.kill('SIGTERM');
  await exitCode(hub.proc);
});
