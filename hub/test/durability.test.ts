// "Acks mean durable", tested where it can break: the spool's fdatasync is
// held back by the test, and no Ack may reach the device until it returns.
// Also: files the hub replaces are fsynced before they are renamed into
// place, and what the hub writes to disk is readable by its owner only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp, { open, readdir, stat } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { writeJsonAtomic, writeJsonAtomicSync } from '../src/core/atomic-file.ts';
import { createLogger } from '../src/core/log.ts';
import { Spool } from '../src/spool/spool.ts';
import { tempDir } from '../../test/support/fs.ts';
import { batchOf, connectDevice, startHub, until } from './helpers.ts';

/**
 * open() for the spool whose file handles record writes and fdatasyncs in
 * `events` and hold each fdatasync until the test calls release().
 */
function heldSync(events: string[]) {
  const held: (() => void)[] = [];
  const state = { armed: false };
  const opener = (async (path: fs.PathLike, flags?: string | number, mode?: fs.Mode) => {
    const fh = await open(path, flags, mode);
    return new Proxy(fh, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop === 'writev') return (...a: Parameters<typeof fh.writev>) => { events.push('write'); return fh.writev(...a); };
        if (prop === 'datasync') {
          return async () => {
            if (!state.armed) return fh.datasync();
            events.push('fdatasync called');
            await new Promise<void>((r) => held.push(r));
            await fh.datasync();
            events.push('fdatasync returned');
          };
        }
        return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(target) : v;
      },
    });
  }) as typeof open;
  return { opener, state, release: () => { for (const r of held.splice(0)) r(); } };
}

test('durability - no Ack reaches the device before the fdatasync that covers its batch has returned', async (t) => {
  const dir = tempDir(t, 'durability-');
  const events: string[] = [];
  const sync = heldSync(events);
  const spool = await Spool.open({ dir, maxBytes: 64 << 20, segmentBytes: 1 << 20, commitDelayMs: 2, mode: 'sink', log: createLogger('silent'), open: sync.opener });
  sync.state.armed = true;
  t.after(async () => { sync.state.armed = false; sync.release(); await spool.close(); });
  const th = await startHub(t, { deps: { store: spool } });
  const { d } = await connectDevice(th, 'dev-1');

  d.batch(batchOf(1));
  await until(() => events.includes('fdatasync called'), 3000, 'the commit to reach its fdatasync');
  // The batch is written and its fdatasync is running: give the hub every
  // chance to ack early (many event-loop turns), then check it did not.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(d.frames.filter((f) => f.msg === 'ack').length, 0, 'no Ack while the fdatasync is in progress');
  assert.equal(spool.durableSeq('dev-1'), 0);

  sync.release();
  const ack = await d.ackFor(1);
  events.push('ack received');
  assert.equal(ack.seq, 1);
  assert.deepEqual(events, ['write', 'fdatasync called', 'fdatasync returned', 'ack received']);
});

test('durability - replaced files are fsynced before the rename, async and sync', async (t) => {
  const dir = tempDir(t, 'durability-');
  const calls: string[] = [];
  const probe = await open(join(dir, 'probe'), 'w');
  const FileHandle = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const origSync = FileHandle.sync, origRename = fsp.rename, origFsyncSync = fs.fsyncSync, origRenameSync = fs.renameSync;
  FileHandle.sync = function (this: unknown) { calls.push('fsync'); return origSync.call(this); };
  fsp.rename = (async (a: fs.PathLike, b: fs.PathLike) => { calls.push('rename'); return origRename(a, b); });
  fs.fsyncSync = (fd: number) => { calls.push('fsync'); origFsyncSync(fd); };
  fs.renameSync = (a: fs.PathLike, b: fs.PathLike) => { calls.push('rename'); origRenameSync(a, b); };
  syncBuiltinESMExports();
  t.after(() => {
    FileHandle.sync = origSync; fsp.rename = origRename; fs.fsyncSync = origFsyncSync; fs.renameSync = origRenameSync;
    syncBuiltinESMExports();
  });

  await writeJsonAtomic(join(dir, 'a.json'), { a: 1 });
  // file fsync, rename, then the directory's fsync (so the rename survives a crash)
  assert.deepEqual(calls, ['fsync', 'rename', 'fsync']);
  calls.length = 0;
  writeJsonAtomicSync(join(dir, 'b.json'), { b: 2 });
  assert.deepEqual(calls, ['fsync', 'rename', 'fsync']);
  assert.deepEqual(JSON.parse(fs.readFileSync(join(dir, 'a.json'), 'utf8')), { a: 1 });
  assert.equal((await readdir(dir)).filter((f) => f.endsWith('.tmp')).length, 0, 'no temp files left');
});

test('durability - spool segments, checkpoint and sequence files are 0600 in a 0700 folder, also for an old 0755 spool', async (t) => {
  const root = tempDir(t, 'durability-');
  const dir = join(root, 'spool');
  await fsp.mkdir(dir, { mode: 0o755 });
  await fsp.chmod(dir, 0o755);
  const spool = await Spool.open({ dir, maxBytes: 64 << 20, segmentBytes: 8 << 10, commitDelayMs: 1, mode: 'sink', log: createLogger('silent') });
  for (let seq = 1; seq <= 40; seq++) {
    const n = 200;
    await spool.append({
      deviceId: 'dev-1', seq, tags: {}, receivedAtMs: 1_700_000_000_000, clockOffsetMs: 0, metricNames: ['temperature'], metricUnits: [''],
      metricIndex: new Uint16Array(n), timesMs: Float64Array.from({ length: n }, (_, i) => 1_700_000_000_000 + i), deviceTimesMs: null, values: new Float64Array(n),
    });
  }
  // Commit past the first segment so devices.json and checkpoint.json are written.
  const { records } = await spool.readFrom(spool.checkpoint, 1 << 30);
  spool.commit(records.at(-1)!.end);
  await spool.flushCheckpoint();
  await spool.close();
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  const files = await readdir(dir);
  assert.ok(files.includes('checkpoint.json') && files.includes('devices.json') && files.some((f) => f.endsWith('.seg')), files.join(' '));
  for (const f of files) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
});
