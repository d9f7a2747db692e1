// spool/: what a spool directory holds after a restart or a crash. Reads the
// checkpoint and the saved sequence numbers, scans every segment at or after
// the checkpoint frame by frame, truncates a torn or corrupt tail (never
// acked: an ack waits for the fsync of the whole record) and removes what a
// crash left behind. Imports: core, and the spool's file layout.
import { chmod, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DIR_MODE } from '../core/atomic-file.ts';
import { StoreError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { checkFrame, decodeRecord } from './codec.ts';
import type { Position } from './reader.ts';
import { LOG_START, SEGMENT_HEADER, segmentNumber, type Segment } from './segment-file.ts';

/** What recovery found: logged at startup, and kept on the spool for tests. */
export interface RecoveryReport {
  segments: number;
  records: number;
  bytes: number;
  truncatedBytes: number;
  devices: number;
}

export interface RecoveredSpool {
  /** Where the sink resumes: the persisted checkpoint, moved up to the oldest segment left. */
  checkpoint: Position;
  /** The checkpoint as checkpoint.json holds it (a new spool: the start of the log). */
  persistedCheckpoint: Position;
  /** Highest durable seq per device: devices.json, raised by every record found. */
  durable: Map<string, number>;
  /** Segments kept, oldest first, each sized to its last complete record. */
  segments: Segment[];
  report: RecoveryReport;
}

/** Scans and repairs `dir` (created when missing); `segmentBytes` bounds a plausible record. */
export async function recoverSpool(dir: string, segmentBytes: number, log: Logger): Promise<RecoveredSpool> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  // Readings are the fleet's data: owner only, also for a spool made by an older version.
  await chmod(dir, DIR_MODE);
  let checkpoint = LOG_START;
  let persistedCheckpoint = LOG_START;
  const saved = await readJson<Position>(join(dir, 'checkpoint.json'));
  if (saved && Number.isSafeInteger(saved.segment) && Number.isSafeInteger(saved.offset)) checkpoint = persistedCheckpoint = saved;
  const durable = new Map<string, number>();
  const seqs = (await readJson<Record<string, number>>(join(dir, 'devices.json'))) ?? {};
  for (const [id, seq] of Object.entries(seqs)) if (typeof seq === 'number') durable.set(id, seq);

  const segments: Segment[] = [];
  const report: RecoveryReport = { segments: 0, records: 0, bytes: 0, truncatedBytes: 0, devices: 0 };
  for (const name of (await readdir(dir)).sort()) {
    const segment = segmentNumber(name);
    if (segment === null) continue;
    const path = join(dir, name);
    if (segment < checkpoint.segment) {
      await rm(path, { force: true }); // committed before a crash interrupted the deletion
      continue;
    }
    const buf = await readFile(path);
    let offset = SEGMENT_HEADER.length;
    if (buf.length < SEGMENT_HEADER.length || !buf.subarray(0, SEGMENT_HEADER.length).equals(SEGMENT_HEADER)) {
      log.warn({ segment: name, bytes: buf.length }, 'spool: segment without a valid header (torn while being created); removed');
      report.truncatedBytes += buf.length;
      await rm(path, { force: true });
      continue;
    }
    for (;;) {
      const frame = checkFrame(buf, offset, Math.max(segmentBytes * 2, 64 << 20));
      if (frame.kind !== 'ok') {
        if (offset < buf.length) {
          const lost = buf.length - offset;
          report.truncatedBytes += lost;
          log.warn({ segment: name, offset, bytes: lost, why: frame.kind === 'corrupt' ? frame.why : 'incomplete record' },
            `spool: torn or corrupt tail in ${name} at byte ${offset}: ${lost} bytes truncated (never acked: an ack waits for the fsync of the whole record)`);
          const handle = await open(path, 'r+');
          try { await handle.truncate(offset); await handle.datasync(); } finally { await handle.close(); }
        }
        break;
      }
      const batch = decodeRecord(frame.payload);
      if (batch.seq > (durable.get(batch.deviceId) ?? 0)) durable.set(batch.deviceId, batch.seq);
      report.records++;
      offset = frame.next;
    }
    segments.push({ number: segment, size: offset });
    report.bytes += offset;
    report.segments++;
  }
  report.devices = durable.size;
  if (segments.length && checkpoint.segment < segments[0]!.number) {
    checkpoint = { segment: segments[0]!.number, offset: SEGMENT_HEADER.length };
  }
  return { checkpoint, persistedCheckpoint, durable, segments, report };
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StoreError('HUB_ERR_STORE', `cannot read ${path}`, { cause: err });
  }
}
