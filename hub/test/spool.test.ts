// The durable spool: group commit, recovery, torn tails, checkpoint, cap, disk errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../src/core/log.ts';
import { decodeRecord, encodeRecord, checkFrame, FRAME_HEADER_BYTES } from '../src/spool/codec.ts';
import { recoverSpool } from '../src/spool/recovery.ts';
import { LOG_START, SEGMENT_HEADER, segmentName, segmentNumber } from '../src/spool/segment-file.ts';
import { Spool, type SpoolOptions } from '../src/spool/spool.ts';
import type { AcceptedBatch } from '../src/spool/store.ts';
import { tempDir } from '../../test/support/fs.ts';

function batch(deviceId: string, seq: number, n = 4, opts: { deviceTimes?: boolean } = {}): AcceptedBatch {
  const t0 = 1_700_000_000_000 + seq * 1000;
  return {
    deviceId, seq, tags: { site: 'nörth', model: 'th-2' }, receivedAtMs: t0 + 5, clockOffsetMs: -12,
    metricNames: ['temperature', 'humidity'], metricUnits: ['°C', '%'],
    metricIndex: Uint16Array.from({ length: n }, (_, i) => i % 2),
    timesMs: Float64Array.from({ length: n }, (_, i) => t0 + i),
    deviceTimesMs: opts.deviceTimes ? Float64Array.from({ length: n }, (_, i) => t0 + i + 3_600_000) : null,
    values: Float64Array.from({ length: n }, (_, i) => seq + i / 10),
  };
}

/** A logger whose lines the test can read. */
function captureLog(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({ write(chunk: Buffer, _e, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } });
  return { log: createLogger('info', sink), lines };
}

function options(dir: string, extra: Partial<SpoolOptions> = {}): SpoolOptions {
  return { dir, maxBytes: 64 << 20, segmentBytes: 1 << 20, commitDelayMs: 2, mode: 'sink', log: createLogger('silent'), ...extra };
}

test('spool codec - a record round-trips exactly, with device times and unicode', () => {
  for (const b of [batch('dev-ü', 7, 5, { deviceTimes: true }), batch('d', 1, 0)]) {
    const frame = encodeRecord(b);
    const f = checkFrame(frame, 0, 1 << 20);
    assert.equal(f.kind, 'ok');
    const back = decodeRecord((f as { payload: Buffer }).payload);
    assert.deepEqual(back, { ...b, metricIndex: b.metricIndex, timesMs: b.timesMs });
  }
});

test('spool codec - a flipped byte or a short frame is detected', () => {
  const frame = encodeRecord(batch('dev-1', 1));
  const bad = Buffer.from(frame);
  bad[FRAME_HEADER_BYTES + 10]! ^= 0x40;
  assert.equal(checkFrame(bad, 0, 1 << 20).kind, 'corrupt');
  assert.equal(checkFrame(frame.subarray(0, frame.length - 1), 0, 1 << 20).kind, 'incomplete');
});

test('spool - appends resolve after a group commit: one fdatasync for a burst', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const s = await Spool.open(options(dir, { commitDelayMs: 5 }));
  const burst = Array.from({ length: 200 }, (_, i) => s.append(batch(`dev-${i % 20}`, Math.floor(i / 20) + 1)));
  assert.equal(s.acceptedSeq('dev-3'), 10, 'accepted at once');
  assert.equal(s.durableSeq('dev-3'), 0, 'not durable before the commit');
  await Promise.all(burst);
  assert.equal(s.durableSeq('dev-3'), 10);
  assert.equal(s.stats.records, 200);
  assert.ok(s.stats.commits <= 3, `${s.stats.commits} commits for one burst`);
  await s.close();
});

test('spool - restart recovers every record and the per-device sequence numbers', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  // About 8 records a segment, whatever the record format makes of them.
  const segmentBytes = 8 * encodeRecord(batch('dev-1', 1, 20)).length;
  const a = await Spool.open(options(dir, { segmentBytes }));
  for (let seq = 1; seq <= 50; seq++) await a.append(batch('dev-1', seq, 20));
  await a.append(batch('dev-2', 9));
  await a.close();
  const b = await Spool.open(options(dir, { segmentBytes }));
  assert.equal(b.durableSeq('dev-1'), 50);
  assert.equal(b.acceptedSeq('dev-2'), 9);
  assert.equal(b.recovery.records, 51);
  assert.ok(b.recovery.segments > 3, 'rolled over several segments');
  const all = await b.read(b.checkpoint, 64 << 20);
  assert.deepEqual(all.map((r) => `${r.batch.deviceId}:${r.batch.seq}`), [...Array.from({ length: 50 }, (_, i) => `dev-1:${i + 1}`), 'dev-2:9']);
  assert.deepEqual([...all[0]!.batch.values], [...batch('dev-1', 1, 20).values]);
  await b.close();
});

test('spool - a torn tail is truncated at recovery with a log line; earlier records survive', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const a = await Spool.open(options(dir));
  for (let seq = 1; seq <= 3; seq++) await a.append(batch('dev-1', seq));
  await a.close();
  const seg = (await readdir(dir)).filter((f) => f.endsWith('.seg')).sort()[0]!;
  const half = encodeRecord(batch('dev-1', 4));
  await appendFile(join(dir, seg), half.subarray(0, half.length >> 1)); // a crash mid-write
  const { log, lines } = captureLog();
  const b = await Spool.open(options(dir, { log }));
  assert.equal(b.durableSeq('dev-1'), 3);
  assert.equal(b.recovery.truncatedBytes, half.length >> 1);
  assert.ok(lines.some((l) => /torn or corrupt tail/.test(String(l.msg))), 'logged');
  assert.equal((await b.read(b.checkpoint)).length, 3);
  // Appends continue after recovery.
  await b.append(batch('dev-1', 4));
  await b.close();
  const c = await Spool.open(options(dir));
  assert.equal(c.durableSeq('dev-1'), 4);
  assert.equal(c.recovery.truncatedBytes, 0, 'the truncation was made durable');
  await c.close();
});

test('spool - a corrupted record (bad checksum) at the tail is truncated', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const a = await Spool.open(options(dir));
  for (let seq = 1; seq <= 3; seq++) await a.append(batch('dev-1', seq));
  await a.close();
  const seg = join(dir, (await readdir(dir)).filter((f) => f.endsWith('.seg')).sort()[0]!);
  const buf = await readFile(seg);
  buf[buf.length - 3]! ^= 0xff;
  await writeFile(seg, buf);
  const b = await Spool.open(options(dir));
  assert.equal(b.durableSeq('dev-1'), 2);
  assert.ok(b.recovery.truncatedBytes > 0);
  await b.close();
});

test('spool - the sink checkpoint survives restart; committed segments are deleted; seqs survive deletion', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const a = await Spool.open(options(dir, { segmentBytes: 2048 }));
  for (let seq = 1; seq <= 40; seq++) await a.append(batch('dev-1', seq, 20));
  const before = (await readdir(dir)).filter((f) => f.endsWith('.seg')).length;
  const recs = await a.read(a.checkpoint, 64 << 20);
  assert.equal(recs.length, 40);
  a.commit(recs[29]!.end); // the sink confirmed 30
  await a.flushCheckpoint();
  const after = (await readdir(dir)).filter((f) => f.endsWith('.seg')).length;
  assert.ok(after < before, `segments ${before} -> ${after}`);
  await a.close();
  const b = await Spool.open(options(dir, { segmentBytes: 2048 }));
  assert.equal(b.durableSeq('dev-1'), 40, 'from devices.json plus the remaining segments');
  const rest = await b.read(b.checkpoint, 64 << 20);
  assert.deepEqual(rest.map((r) => r.batch.seq), Array.from({ length: 10 }, (_, i) => 31 + i));
  await b.close();
});

test('spool - at the cap appends are refused with HUB_ERR_STORE_FULL, pressure is 1, nothing is deleted', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const one = encodeRecord(batch('dev-1', 1, 50)).length;
  const s = await Spool.open(options(dir, { maxBytes: one * 10, segmentBytes: one * 3 }));
  let seq = 0;
  let err: Error | undefined;
  while (!err && seq < 100) {
    try { await s.append(batch('dev-1', ++seq, 50)); } catch (e) { err = e as Error; }
  }
  assert.equal((err as { code?: string }).code, 'HUB_ERR_STORE_FULL');
  assert.ok(s.pressure() >= 1);
  assert.equal(s.acceptedSeq('dev-1'), seq - 1, 'the refused batch is not counted as accepted');
  assert.equal((await s.read(s.checkpoint, 1 << 30)).length, seq - 1, 'every durable batch is still there');
  // The sink catches up: room again.
  const recs = await s.read(s.checkpoint, 1 << 30);
  s.commit(recs.at(-1)!.end);
  await s.flushCheckpoint();
  assert.ok(s.pressure() < 0.5);
  await s.append(batch('dev-1', seq, 50));
  await s.close();
});

test('spool - embedded mode rotates the oldest segments out at the cap and keeps appending', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const one = encodeRecord(batch('dev-1', 1, 50)).length;
  const s = await Spool.open(options(dir, { maxBytes: one * 10, segmentBytes: one * 2, mode: 'embedded' }));
  for (let seq = 1; seq <= 60; seq++) await s.append(batch('dev-1', seq, 50));
  assert.equal(s.pressure(), 0);
  const kept = await s.read(s.checkpoint, 1 << 30);
  assert.ok(kept.length < 60 && kept.length >= 4, `${kept.length} kept`);
  assert.equal(kept.at(-1)!.batch.seq, 60, 'the newest is kept');
  await s.close();
  const again = await Spool.open(options(dir, { maxBytes: one * 10, segmentBytes: one * 2, mode: 'embedded' }));
  assert.equal(again.durableSeq('dev-1'), 60, 'seqs of rotated segments survive');
  await again.close();
});

test('spool - a failing disk rejects pending appends, stops accepting, and recovers', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  let fail = false;
  const flaky: typeof open = (async (...args: Parameters<typeof open>) => {
    const fh = await open(...args);
    const writev = fh.writev.bind(fh);
    fh.writev = (async (...a: Parameters<typeof fh.writev>) => {
      if (fail) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
      return writev(...a);
    }) as typeof fh.writev;
    return fh;
  });
  const s = await Spool.open(options(dir, { open: flaky, retryDelayMs: 50 }));
  await s.append(batch('dev-1', 1));
  fail = true;
  await assert.rejects(s.append(batch('dev-1', 2)), /spool write failed: ENOSPC/);
  assert.equal(s.healthy, false);
  assert.equal(s.acceptedSeq('dev-1'), 1, 'the failed batch can be resent');
  await assert.rejects(s.append(batch('dev-1', 2)), /unavailable/);
  fail = false;
  const end = Date.now() + 3000;
  while (!s.healthy && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.equal(s.healthy, true);
  await s.append(batch('dev-1', 2));
  await s.close();
  const b = await Spool.open(options(dir));
  assert.deepEqual((await b.read(b.checkpoint)).map((r) => r.batch.seq), [1, 2]);
  await b.close();
});

test('spool - readFrom returns a record larger than the read window whole, instead of nothing', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const s = await Spool.open(options(dir, { segmentBytes: 4 << 20 }));
  t.after(() => s.close());
  await s.append(batch('dev-1', 1, 4));
  await s.append(batch('dev-1', 2, 30_000));
  await s.append(batch('dev-1', 3, 4));
  // A budget of 1 KiB: the first small record, then the ~500 KB one on its own, then the last.
  let pos = s.checkpoint;
  const seqs: number[] = [];
  for (let i = 0; i < 5 && seqs.length < 3; i++) {
    const { records, next } = await s.readFrom(pos, 1024);
    seqs.push(...records.map((r) => r.batch.seq));
    pos = next;
  }
  assert.deepEqual(seqs, [1, 2, 3]);
});

test('spool files - segment names sort in segment order; other files are not segments', () => {
  assert.equal(segmentName(7), '0000000000000007.seg');
  assert.equal(segmentNumber(segmentName(123_456)), 123_456);
  const names = [10, 9, 100, 1].map(segmentName).sort();
  assert.deepEqual(names.map(segmentNumber), [1, 9, 10, 100]);
  for (const other of ['checkpoint.json', 'devices.json', '7.seg', '0000000000000007.seg.tmp', 'x0000000000000007.seg']) assert.equal(segmentNumber(other), null, other);
  assert.deepEqual(LOG_START, { segment: 1, offset: SEGMENT_HEADER.length });
});

test('spool recovery - reads and repairs a directory on its own: stale, torn and headerless segments, checkpoint moved up', async (t) => {
  const dir = tempDir(t, 'spool-test-');
  const frames = [batch('dev-1', 1), batch('dev-1', 2)].map(encodeRecord);
  const torn = encodeRecord(batch('dev-1', 3));
  // Segment 1 is behind the checkpoint (its deletion was interrupted), segment 2 is gone,
  // segment 3 has two records and half a third, segment 4 lost its header.
  await writeFile(join(dir, 'checkpoint.json'), JSON.stringify({ segment: 2, offset: 100 }));
  await writeFile(join(dir, 'devices.json'), JSON.stringify({ 'dev-9': 5, 'dev-1': 1 }));
  await writeFile(join(dir, segmentName(1)), Buffer.concat([SEGMENT_HEADER, encodeRecord(batch('dev-0', 1))]));
  const whole = Buffer.concat([SEGMENT_HEADER, ...frames]);
  await writeFile(join(dir, segmentName(3)), Buffer.concat([whole, torn.subarray(0, 20)]));
  await writeFile(join(dir, segmentName(4)), Buffer.from('TSPO'));
  await writeFile(join(dir, 'notes.txt'), 'not a segment');
  const { log, lines } = captureLog();

  const recovered = await recoverSpool(dir, 1 << 20, log);
  assert.deepEqual(recovered.segments, [{ number: 3, size: whole.length }]);
  assert.deepEqual(recovered.checkpoint, { segment: 3, offset: SEGMENT_HEADER.length }, 'moved up to the oldest segment left');
  assert.deepEqual(recovered.persistedCheckpoint, { segment: 2, offset: 100 });
  assert.deepEqual(Object.fromEntries(recovered.durable), { 'dev-9': 5, 'dev-1': 2 }, 'dev-0 was only in the committed segment');
  assert.deepEqual(recovered.report, { segments: 1, records: 2, bytes: whole.length, truncatedBytes: 20 + 4, devices: 2 });
  assert.deepEqual((await readdir(dir)).sort(), ['0000000000000003.seg', 'checkpoint.json', 'devices.json', 'notes.txt']);
  assert.equal((await readFile(join(dir, segmentName(3)))).length, whole.length, 'the torn tail is cut off on disk');
  assert.equal(lines.filter((l) => /torn or corrupt tail|without a valid header/.test(String(l.msg))).length, 2);
});

test('spool recovery - an empty or missing directory is a new log at its start', async (t) => {
  const dir = join(tempDir(t, 'spool-test-'), 'new', 'spool');
  const recovered = await recoverSpool(dir, 1 << 20, createLogger('silent'));
  assert.deepEqual(recovered.checkpoint, LOG_START);
  assert.deepEqual(recovered.persistedCheckpoint, LOG_START);
  assert.deepEqual(recovered.segments, []);
  assert.equal(recovered.durable.size, 0);
  assert.deepEqual(await readdir(dir), []);
});
