// The real hub process, killed with SIGKILL mid-stream and restarted on the
// same data directory: every acked batch is in the spool, Welcome names the
// last one, and resends are not stored twice.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { DEVICE_PATH } from '@telemetry/proto';
import { addDevice } from '../src/auth/registry.ts';
import { createLogger } from '../src/core/log.ts';
import { Spool } from '../src/spool/spool.ts';
import { tempDir } from '../../test/support/fs.ts';
import { exitCode, waitForOutput } from '../../test/support/proc.ts';
import { RawDevice, batchOf, spawnHub, within } from './helpers.ts';

async function startHubProcess(t: TestContext, dataDir: string): Promise<{ proc: ChildProcess; url: string }> {
  const hub = spawnHub(t, { HUB_HOST: '127.0.0.1', HUB_PORT: '0', HUB_DATA_DIR: dataDir, HUB_DEVICES_FILE: join(dataDir, 'devices.json'), HUB_LOG_LEVEL: 'info' });
  const [, port] = await waitForOutput(hub, /ws:\/\/127\.0\.0\.1:(\d+)\/v1\/devices/, 20_000, 'hub listening');
  return { proc: hub.proc, url: `ws://127.0.0.1:${port}${DEVICE_PATH}` };
}

test('crash - SIGKILL mid-stream: every acked batch survives, Welcome resumes from it, nothing doubled', async (t) => {
  const dataDir = tempDir(t, 'hub-crash-');
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
  await exitCode(first.proc);
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
  await exitCode(second.proc);

  const spool = await Spool.open({ dir: join(dataDir, 'spool'), maxBytes: 1 << 30, segmentBytes: 16 << 20, commitDelayMs: 2, mode: 'embedded', log: createLogger('silent') });
  const seqs = (await spool.read(spool.checkpoint, 1 << 30)).map((r) => r.batch.seq);
  await spool.close();
  assert.deepEqual(seqs, Array.from({ length: last }, (_, i) => i + 1), 'each batch exactly once');
});
