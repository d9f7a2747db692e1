// The real hub process, killed with SIGKILL mid-stream and restarted on the
// same data directory: every acked batch is in the spool, Welcome names the
// last one, and resends are not stored twice.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEVICE_PATH } from '@telemetry/proto';
import { addDevice } from '../src/auth/registry.ts';
import { createLogger } from '../src/core/log.ts';
import { Spool } from '../src/spool/spool.ts';
import { RawDevice, batchOf, within } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');

async function startHubProcess(t: TestContext, dataDir: string): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'hub/src/main.ts'], {
    cwd: root,
    env: { ...process.env, HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dataDir, HUB_DEVICES_FILE: join(dataDir, 'devices.json'), HUB_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  let out = '';
  const port = await within(new Promise<number>((res, rej) => {
    proc.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /ws:\/\/127\.0\.0\.1:(\d+)\/v1\/devices/.exec(out);
      if (m) res(Number(m[1]));
    });
    proc.once('exit', (code) => rej(new Error(`hub exited ${code}: ${out}`)));
  }), 20_000, 'hub listening');
  return { proc, url: `ws://127.0.0.1:${port}${DEVICE_PATH}` };
}

test('crash - SIGKILL mid-stream: every acked batch survives, Welcome resumes from it, nothing doubled', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'hub-crash-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const token = addDevice(join(dataDir, 'devices.json'), 'dev-1');

  const first = await startHubProcess(t, dataDir);
  const d = new RawDevice(first.url, { token });
  await within(d.opened, 5000, 'open');
  d.hello('dev-1');
  await d.next('welcome');
  let acked = 0;
  let sent: number;
  // Keep 8 in flight and kill the hub while batches are moving.
  for (sent = 1; sent <= 8; sent++) d.batch(batchOf(sent, 10));
  while (acked < 40) {
    const a = await d.next('ack', 5000);
    const now = a.seq ?? 0;
    for (let s = acked + 1; s <= now; s++) if (sent <= 200) d.batch(batchOf(sent++, 10));
    acked = now;
  }
  first.proc.kill('SIGKILL');
  await within(d.closed, 5000, 'connection dropped');
  await new Promise((r) => first.proc.exitCode !== null ? r(null) : first.proc.once('exit', r));
  // Acks that arrived before the close frame count too.
  for (const f of d.frames) if (f.ack && (f.ack.seq ?? 0) > acked) acked = f.ack.seq ?? 0;

  const second = await startHubProcess(t, dataDir);
  const d2 = new RawDevice(second.url, { token });
  await within(d2.opened, 5000, 'open again');
  d2.hello('dev-1');
  const w = await d2.next('welcome');
  assert.ok((w.lastSeq ?? 0) >= acked, `Welcome.last_seq ${w.lastSeq} covers every acked batch (${acked})`);
  // The device resends everything it has not seen acked; the hub acks all.
  const last = sent - 1;
  for (let s = acked + 1; s <= last; s++) d2.batch(batchOf(s, 10));
  assert.equal((await d2.ackFor(last, 5000)).seq, last);
  d2.close();
  await d2.closed;
  second.proc.kill('SIGTERM');
  await new Promise((r) => second.proc.once('exit', r));

  const spool = await Spool.open({ dir: join(dataDir, 'spool'), maxBytes: 1 << 30, segmentBytes: 16 << 20, commitDelayMs: 2, mode: 'embedded', log: createLogger('silent') });
  const seqs = (await spool.read(spool.checkpoint, 1 << 30)).map((r) => r.batch.seq);
  await spool.close();
  assert.deepEqual(seqs, Array.from({ length: last }, (_, i) => i + 1), 'each batch exactly once');
});
