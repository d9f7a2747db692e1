// Signals to the whole `npm start` process group, as systemd, Docker and CI
// runners send them: every process in the group gets one (npm, start.ts, the
// hub, the simulator), and npm and start.ts forward it again. The hub must
// still finish its graceful shutdown: pending batches acked, devices closed
// with 1001, exit 0 by the deadline; and npm start's exit status must say
// whether it did.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { CloseCode, DEVICE_PATH } from '@telemetry/proto';
import { Spool, addDevice, createLogger } from '@telemetry/hub';
import { RawDevice, batchOf, until, within } from '../hub/test/helpers.ts';
import { tempDir } from './support/fs.ts';
import { freePort } from './support/net.ts';
import { spawnCollecting, waitForOutput, type Collecting } from './support/proc.ts';

const root = resolve(import.meta.dirname, '..');
const SHUTDOWN_MS = 5000;

interface Started extends Collecting { port: number }

/** `npm start -- ARGS` in its own process group (as a service manager runs it). */
async function npmStart(t: TestContext, dir: string, args: string[], extra: Record<string, string> = {}): Promise<Started> {
  const port = await freePort();
  const start = spawnCollecting(t, 'npm', ['start', '--', ...args], {
    cwd: root, name: 'npm start', group: true,
    env: {
      ...process.env, HUB_DATA_DIR: dir, HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS),
      // Keeps the build of the shared checkout's dashboard out of this test.
      HUB_DASHBOARD_DIR: join(dir, 'no-dashboard'), ...extra,
    },
  });
  await waitForOutput(start, `ws://127.0.0.1:${port}${DEVICE_PATH}`, 60_000, 'npm start');
  return { ...start, port };
}

test('shutdown - SIGTERM to the npm start process group: every batch is acked, the device gets 1001, no "exiting now", exit 0 by the deadline', async (t) => {
  const dir = tempDir(t, 'group-sigterm-');
  const token = addDevice(join(dir, 'devices.json'), 'dev-1');
  // A long group commit keeps batches pending (appended, not yet durable) when
  // the signal lands, so the graceful window is long enough for the repeats.
  const hub = await npmStart(t, dir, ['--no-sim'], { HUB_SPOOL_COMMIT_MS: '200' });
  const d = new RawDevice(`ws://127.0.0.1:${hub.port}${DEVICE_PATH}`, { token });
  t.after(() => d.ws.terminate());
  await within(d.opened, 5000, 'open');
  d.hello('dev-1');
  const welcome = await d.next('welcome');
  const window = welcome.window ?? 1;

  // Stream: keep the window full, a new batch for each one acked.
  let sent = 0;
  let acked = 0;
  let closed = false;
  const top = () => { while (!closed && sent - acked < window && sent < 10_000) d.batch(batchOf(++sent, 10)); };
  d.ws.on('message', () => {
    for (const f of d.frames.splice(0)) if (f.ack) acked = Math.max(acked, f.ack.seq ?? 0);
    top();
  });
  const close = d.closed.then((c) => { closed = true; return c; });
  top();
  await until(() => acked >= 3 * window, 20_000, 'acks flowing');

  const sentAtSignal = sent;
  const signalledAt = Date.now();
  process.kill(-hub.proc.pid!, 'SIGTERM');
  const c = await within(close, SHUTDOWN_MS + 2000, 'device close');
  const { code } = await within(hub.exited, SHUTDOWN_MS + 5000, 'npm start exit');
  const took = Date.now() - signalledAt;

  assert.equal(c.code, CloseCode.GOING_AWAY, `close ${c.code} ${c.reason}\n${hub.out().slice(-2000)}`);
  assert.doesNotMatch(hub.out(), /exiting now/);
  assert.ok(acked >= sentAtSignal, `every batch sent before the signal is acked (acked ${acked}, sent ${sentAtSignal})`);
  assert.equal(code, 0, hub.out().slice(-2000));
  assert.ok(took < SHUTDOWN_MS, `exited in ${took} ms`);
  assert.match(hub.out(), /shutdown complete/);

  // Ack means durable, and nothing durable went unacked.
  const spool = await Spool.open({ dir: join(dir, 'spool'), maxBytes: 1 << 30, segmentBytes: 16 << 20, commitDelayMs: 2, mode: 'embedded', log: createLogger('silent') });
  const seqs = (await spool.read(spool.checkpoint, 1 << 30)).map((r) => r.batch.seq);
  await spool.close();
  assert.deepEqual(seqs, Array.from({ length: acked }, (_, i) => i + 1));
});

test('shutdown - SIGHUP to the npm start process group (the terminal closed) stops the hub too', async (t) => {
  const dir = tempDir(t, 'group-sighup-');
  const token = addDevice(join(dir, 'devices.json'), 'dev-1');
  const hub = await npmStart(t, dir, ['--no-sim']);
  const d = new RawDevice(`ws://127.0.0.1:${hub.port}${DEVICE_PATH}`, { token });
  t.after(() => d.ws.terminate());
  await within(d.opened, 5000, 'open');
  d.hello('dev-1');
  await d.next('welcome');
  // npm itself dies of SIGHUP; the hub, which takes SIGHUP as "reload TLS",
  // must not be left running without a terminal.
  process.kill(-hub.proc.pid!, 'SIGHUP');
  assert.equal((await within(d.closed, SHUTDOWN_MS + 2000, 'device close')).code, CloseCode.GOING_AWAY);
  await until(() => /shutdown complete/.test(hub.out()), SHUTDOWN_MS + 2000, 'the hub stopped');
});

test('shutdown - npm start exits non-zero when the hub does not finish its shutdown', async (t) => {
  // An InfluxDB that accepts connections and never answers holds the hub's
  // shutdown open (it tries to ship the batch until its deadline).
  const held = new Set<Socket>();
  const influx = createServer((s) => { held.add(s); s.on('error', () => {}); });
  await new Promise<void>((r) => influx.listen(0, '127.0.0.1', () => r()));
  t.after(() => { for (const s of held) s.destroy(); influx.close(); });
  const dir = tempDir(t, 'group-hub-dies-');
  const token = addDevice(join(dir, 'devices.json'), 'dev-1');
  const hub = await npmStart(t, dir, ['--no-sim'], {
    INFLUX_URL: `http://127.0.0.1:${(influx.address() as { port: number }).port}`, INFLUX_TOKEN: 'test', INFLUX_ORG: 'test', INFLUX_BUCKET: 'test',
  });
  const d = new RawDevice(`ws://127.0.0.1:${hub.port}${DEVICE_PATH}`, { token });
  t.after(() => d.ws.terminate());
  await within(d.opened, 5000, 'open');
  d.hello('dev-1');
  await d.next('welcome');
  d.batch(batchOf(1, 10));
  await d.ackFor(1);
  await until(() => held.size > 0, 10_000, 'the sink writing to InfluxDB');
  process.kill(-hub.proc.pid!, 'SIGTERM');
  await until(() => /shutting down/.test(hub.out()), 5000, 'the hub shutting down');
  // The hub dies in the middle of it (the OOM killer, say).
  const ps = spawnSync('ps', ['-o', 'pid=,args=', '-g', String(hub.proc.pid)], { encoding: 'utf8' }).stdout;
  const hubPid = Number(/^\s*(\d+)\s.*hub\/dist\/main\.js/m.exec(ps)?.[1]); // npm start runs the compiled hub
  assert.ok(hubPid > 0, ps);
  process.kill(hubPid, 'SIGKILL');
  const { code } = await within(hub.exited, SHUTDOWN_MS + 5000, 'npm start exit');
  assert.notEqual(code, 0, hub.out().slice(-2000));
  assert.match(hub.out(), /start: the hub exited \(SIGKILL\) while stopping/);
});

test('shutdown - SIGTERM to the npm start process group stops the simulator cleanly too', async (t) => {
  const dir = tempDir(t, 'group-sigterm-sim-');
  const hub = await npmStart(t, dir, ['--devices', '3', '--rate', '5']);
  // The simulator prints a status line per second once it runs.
  await waitForOutput(hub, /3\/3 connected|connected\D+3\b/, 30_000, 'simulator connected');
  process.kill(-hub.proc.pid!, 'SIGTERM');
  const { code } = await within(hub.exited, SHUTDOWN_MS + 5000, 'npm start exit');
  assert.equal(code, 0, hub.out().slice(-2000));
  assert.match(hub.out(), /sim summary:/, 'the simulator finished (it prints a summary)');
  assert.doesNotMatch(hub.out(), /the simulator (exited|was killed)/, 'the simulator exits 0');
  assert.match(hub.out(), /shutdown complete/);
});
