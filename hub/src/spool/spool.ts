// spool/: the durable spool, an append-only, segmented log of accepted
// batches on local disk, with group commit (one fdatasync for every batch
// that arrived within a few ms) and a checkpoint of what the sink has
// committed. Implements BatchStore: append() resolves only after the
// fdatasync that covers the batch (protocol: ack implies durable); and
// SpoolReader, the side sinks read. Never blocks the event loop: all I/O goes
// through fs.promises. Imports: core, and the rest of spool/.
//
// Files in `dir`:
//   <16-digit segment number>.seg  header "TSPOOL1\n", then frames (codec.ts)
//   checkpoint.json                {segment, offset}: the sink has everything before
//   devices.json                   highest stored seq per device, written before
//                                  segments are deleted (so the numbers survive)
// Recovery after a restart or a crash: recovery.ts.
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FILE_MODE, fsyncDir, writeFileAtomic } from '../core/atomic-file.ts';
import type { AcceptedBatch } from '../core/batch.ts';
import { StoreError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { FRAME_HEADER_BYTES, checkFrame, decodeRecord, encodeRecord } from './codec.ts';
import { comparePos, type Position, type SpoolReader, type SpoolRecord } from './reader.ts';
import { recoverSpool, type RecoveredSpool, type RecoveryReport } from './recovery.ts';
import { SEGMENT_HEADER, segmentName, type Segment } from './segment-file.ts';
import type { BatchStore } from './store.ts';

export { comparePos, type Position, type SpoolRecord } from './reader.ts';
export type { RecoveryReport } from './recovery.ts';

export interface SpoolOptions {
  dir: string;
  /** Size cap: credit shrinks past half of it, appends are refused at it. */
  maxBytes: number;
  segmentBytes: number;
  /** Group-commit window: how long the first append of a group waits for company. */
  commitDelayMs: number;
  /**
   * `sink`: segments are deleted only once a sink has committed them.
   * `embedded` (no database): the oldest segments are rotated out at 90 % of
   * the cap, so the spool is a capped local history.
   */
  mode: 'sink' | 'embedded';
  log: Logger;
  /** Delay before a failed disk is tried again. */
  retryDelayMs?: number;
  /** File opening, injectable so tests can make the disk fail. */
  open?: typeof open;
}

/** An append waiting for the next group commit. */
interface Pending { frame: Buffer; batch: AcceptedBatch; resolve: () => void; reject: (err: Error) => void }

export class Spool implements BatchStore, SpoolReader {
  readonly #options: SpoolOptions;
  readonly #accepted = new Map<string, number>();
  readonly #durable: Map<string, number>;
  /** Segments still on disk, oldest first; the last is being written. */
  #segments: Segment[];
  /** The last segment, open for appends. */
  #activeFile: FileHandle | null = null;
  #queue: Pending[] = [];
  #queuedBytes = 0;
  #committing = false;
  #commitTimer: NodeJS.Timeout | null = null;
  #healthy = true;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  #checkpoint: Position;
  /** What checkpoint.json holds. */
  #persistedCheckpoint: Position;
  #checkpointWriting: Promise<void> | null = null;
  #persistChain: Promise<void> = Promise.resolve();
  #durableListeners = new Set<() => void>();
  #lastError: Error | null = null;
  /** What recovery found when the spool was opened. */
  readonly recovery: RecoveryReport;
  /** Group commits done (one fdatasync each) and records they made durable. */
  readonly stats = { commits: 0, records: 0 };

  private constructor(options: SpoolOptions, recovered: RecoveredSpool) {
    this.#options = options;
    this.#checkpoint = recovered.checkpoint;
    this.#persistedCheckpoint = recovered.persistedCheckpoint;
    this.#durable = recovered.durable;
    for (const [id, seq] of this.#durable) this.#accepted.set(id, seq);
    this.#segments = recovered.segments;
    this.recovery = recovered.report;
  }

  /** Opens (and recovers) the spool in `dir`. */
  static async open(options: SpoolOptions): Promise<Spool> {
    const recovered = await recoverSpool(options.dir, options.segmentBytes, options.log);
    const spool = new Spool(options, recovered);
    // Append to a fresh segment: never write after bytes recovery had to judge.
    await spool.#roll();
    const report = spool.recovery;
    options.log.info({ ...report, checkpoint: spool.#checkpoint },
      `spool: recovered ${report.records} records in ${report.segments} segments from ${options.dir}`);
    return spool;
  }

  // ---- BatchStore -------------------------------------------------------------

  get healthy(): boolean { return this.#healthy && !this.#closed; }
  get lastError(): Error | null { return this.#lastError; }
  acceptedSeq(id: string): number { return this.#accepted.get(id) ?? 0; }
  durableSeq(id: string): number { return this.#durable.get(id) ?? 0; }

  /** Bytes on disk not yet committed by the sink (embedded: all kept), plus queued. */
  get bytes(): number {
    let total = 0;
    for (const seg of this.#segments) total += seg.size;
    const checkpointSegment = this.#segments.find((seg) => seg.number === this.#checkpoint.segment);
    if (checkpointSegment) total -= Math.min(checkpointSegment.size, this.#checkpoint.offset);
    return total + this.#queuedBytes;
  }

  pressure(): number {
    if (this.#options.mode === 'embedded') return 0;
    return this.bytes / this.#options.maxBytes;
  }

  append(batch: AcceptedBatch): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreError('HUB_ERR_STORE_CLOSED', 'spool is closed'));
    if (!this.#healthy) return Promise.reject(new StoreError('HUB_ERR_STORE', `spool unavailable: ${this.#lastError?.message ?? 'disk error'}`));
    if (batch.seq <= this.acceptedSeq(batch.deviceId)) {
      return Promise.reject(new StoreError('HUB_ERR_STORE', `seq ${batch.seq} for ${batch.deviceId} is not above the accepted ${this.acceptedSeq(batch.deviceId)}`));
    }
    if (this.#options.mode === 'sink' && this.bytes >= this.#options.maxBytes) {
      // At the cap: refuse (the device keeps the batch); never delete uncommitted data.
      return Promise.reject(new StoreError('HUB_ERR_STORE_FULL', `spool full (${this.bytes} of ${this.#options.maxBytes} bytes); waiting for the sink`));
    }
    const frame = encodeRecord(batch);
    this.#accepted.set(batch.deviceId, batch.seq);
    this.#queuedBytes += frame.length;
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ frame, batch, resolve, reject });
      if (!this.#committing && this.#commitTimer === null) {
        this.#commitTimer = setTimeout(() => { this.#commitTimer = null; void this.#commitLoop(); }, this.#options.commitDelayMs);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#commitTimer) { clearTimeout(this.#commitTimer); this.#commitTimer = null; void this.#commitLoop(); }
    if (this.#committing || this.#queue.length) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    await this.#persistCheckpoint();
    await this.#activeFile?.close();
    this.#activeFile = null;
  }

  // ---- SpoolReader (sinks) ----------------------------------------------------

  get checkpoint(): Position { return this.#checkpoint; }

  /** End of durable data. */
  get head(): Position {
    const last = this.#segments.at(-1);
    return last ? { segment: last.number, offset: last.size } : this.#checkpoint;
  }

  /** Called (without arguments) whenever more data became durable. */
  onDurable(listener: () => void): () => void {
    this.#durableListeners.add(listener);
    return () => this.#durableListeners.delete(listener);
  }

  /** Reads up to `maxBytes` of durable records starting at `from`. */
  async read(from: Position, maxBytes = 4 << 20): Promise<SpoolRecord[]> {
    return (await this.readFrom(from, maxBytes)).records;
  }

  /**
   * Like read(), and also says where reading stopped: past the end of fully
   * read segments even when they held no more records, so a reader's cursor
   * never stalls on an empty segment tail.
   */
  async readFrom(from: Position, maxBytes = 4 << 20): Promise<{ records: SpoolRecord[]; next: Position }> {
    let pos = from;
    const out: SpoolRecord[] = [];
    let budget = maxBytes;
    /** Set when the next record is larger than the window: read exactly that much. */
    let recordBytes = 0;
    while (budget > 0) {
      const idx = this.#segments.findIndex((seg) => seg.number >= pos.segment);
      if (idx < 0) break;
      const seg = this.#segments[idx]!;
      if (seg.number > pos.segment) pos = { segment: seg.number, offset: SEGMENT_HEADER.length };
      if (pos.offset >= seg.size) {
        if (idx === this.#segments.length - 1) break; // at the head
        pos = { segment: this.#segments[idx + 1]!.number, offset: SEGMENT_HEADER.length };
        continue;
      }
      const len = Math.min(seg.size - pos.offset, Math.max(budget, 1 << 16, recordBytes));
      const buf = Buffer.allocUnsafe(len);
      const handle = await open(join(this.#options.dir, segmentName(seg.number)), 'r');
      let got: number;
      try {
        ({ bytesRead: got } = await handle.read(buf, 0, len, pos.offset));
      } finally {
        await handle.close();
      }
      let off = 0;
      let progressed = false;
      while (off < got) {
        const frame = checkFrame(buf.subarray(0, got), off, this.#options.segmentBytes * 2);
        if (frame.kind !== 'ok') {
          if (frame.kind === 'corrupt') throw new StoreError('HUB_ERR_STORE', `spool segment ${seg.number} corrupt at ${pos.offset + off}: ${frame.why}`);
          break;
        }
        const end = { segment: seg.number, offset: pos.offset + frame.next };
        out.push({ batch: decodeRecord(frame.payload), end });
        budget -= frame.next - off;
        off = frame.next;
        progressed = true;
      }
      if (!progressed) {
        // A record larger than the window: its header says how large; read it whole.
        const need = got >= FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES + buf.readUInt32LE(0) : 0;
        if (need > len && need <= seg.size - pos.offset && recordBytes < need) { recordBytes = need; continue; }
        break; // the rest of the segment is not a complete record yet
      }
      recordBytes = 0;
      pos = { segment: seg.number, offset: pos.offset + off };
    }
    return { records: out, next: pos };
  }

  /**
   * The sink has committed everything before `upTo`. Persisted shortly after
   * (coalesced); a crash before that replays a little, which the sink's
   * idempotent writes absorb. Fully committed segments are then deleted.
   */
  commit(upTo: Position): void {
    if (comparePos(upTo, this.#checkpoint) <= 0) return;
    this.#checkpoint = upTo;
    if (!this.#checkpointWriting) {
      this.#checkpointWriting = new Promise<void>((resolve) => setTimeout(resolve, 100).unref())
        .then(() => this.#persistCheckpoint())
        .catch((err: unknown) => this.#options.log.error({ err }, 'spool: checkpoint not written'))
        .finally(() => { this.#checkpointWriting = null; });
    }
  }

  /** Persists the checkpoint now (tests, shutdown). */
  flushCheckpoint(): Promise<void> {
    return this.#persistCheckpoint();
  }

  // ---- internals --------------------------------------------------------------

  async #commitLoop(): Promise<void> {
    if (this.#committing) return;
    this.#committing = true;
    try {
      while (this.#queue.length && this.#healthy) {
        const group = this.#queue;
        this.#queue = [];
        const bytes = group.reduce((sum, pending) => sum + pending.frame.length, 0);
        const seg = this.#segments.at(-1);
        const file = this.#activeFile;
        try {
          // Both exist from Spool.open on: a failed roll keeps the previous segment open.
          if (!seg || !file) throw new StoreError('HUB_ERR_STORE', 'no segment open for appends');
          await file.writev(group.map((pending) => pending.frame), seg.size);
          await file.datasync();
        } catch (err) {
          this.#queuedBytes -= bytes;
          await this.#diskFailed(err as Error, [...group, ...this.#queue.splice(0)]);
          break;
        }
        seg.size += bytes;
        this.#queuedBytes -= bytes;
        this.stats.commits++;
        this.stats.records += group.length;
        for (const pending of group) this.#durable.set(pending.batch.deviceId, pending.batch.seq);
        for (const pending of group) pending.resolve();
        for (const listener of this.#durableListeners) listener();
        if (seg.size >= this.#options.segmentBytes) await this.#roll();
        if (this.#options.mode === 'embedded') await this.#rotate();
      }
    } finally {
      this.#committing = false;
      if (this.#queue.length && this.#healthy && this.#commitTimer === null) {
        this.#commitTimer = setTimeout(() => { this.#commitTimer = null; void this.#commitLoop(); }, this.#options.commitDelayMs);
      }
      if (!this.#queue.length) for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  /**
   * A write or fsync failed: what reached the disk is unknown (a failed
   * fsync may have dropped dirty pages), so none of it counts. Reject every
   * pending batch (their devices keep them and resend), forget their seqs,
   * stop taking appends, and try a fresh segment after a delay.
   */
  async #diskFailed(err: Error, failed: Pending[]): Promise<void> {
    this.#healthy = false;
    this.#lastError = err;
    this.#options.log.error({ err }, 'spool: write failed; not acking until the disk works again');
    for (const id of new Set(failed.map((pending) => pending.batch.deviceId))) this.#accepted.set(id, this.durableSeq(id));
    const storeError = new StoreError('HUB_ERR_STORE', `spool write failed: ${err.message}`, { cause: err });
    for (const pending of failed) pending.reject(storeError);
    const seg = this.#segments.at(-1);
    try { if (seg) await this.#activeFile?.truncate(seg.size); } catch { /* the retry starts a new segment anyway */ }
    const retry = setTimeout(() => void this.#retryDisk(), this.#options.retryDelayMs ?? 5000);
    retry.unref();
  }

  async #retryDisk(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#roll();
      this.#healthy = true;
      this.#lastError = null;
      this.#options.log.info('spool: disk writable again; accepting batches');
    } catch (err) {
      this.#lastError = err as Error;
      const retry = setTimeout(() => void this.#retryDisk(), this.#options.retryDelayMs ?? 5000);
      retry.unref();
    }
  }

  /** Starts a new segment (header written and fsynced, directory fsynced). */
  async #roll(): Promise<void> {
    const segment = (this.#segments.at(-1)?.number ?? 0) + 1;
    const handle = await (this.#options.open ?? open)(join(this.#options.dir, segmentName(segment)), 'wx', FILE_MODE);
    try {
      await handle.write(SEGMENT_HEADER, 0, SEGMENT_HEADER.length, 0);
      await handle.datasync();
      await fsyncDir(this.#options.dir);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(join(this.#options.dir, segmentName(segment)), { force: true }).catch(() => undefined);
      throw err;
    }
    await this.#activeFile?.close().catch(() => undefined);
    this.#activeFile = handle;
    this.#segments.push({ number: segment, size: SEGMENT_HEADER.length });
  }

  /** Embedded mode: drop the oldest segments past 90 % of the cap. */
  async #rotate(): Promise<void> {
    const limit = this.#options.maxBytes * 0.9;
    let total = this.#segments.reduce((sum, seg) => sum + seg.size, 0);
    const drop: Segment[] = [];
    for (const seg of this.#segments.slice(0, -1)) {
      if (total <= limit) break;
      drop.push(seg);
      total -= seg.size;
    }
    if (!drop.length) return;
    const next = this.#segments[drop.length]!;
    this.#checkpoint = { segment: next.number, offset: SEGMENT_HEADER.length };
    await this.#persistCheckpoint();
  }

  /** Serialized: concurrent callers share one chain, so files are never written twice at once. */
  #persistCheckpoint(): Promise<void> {
    const next = this.#persistChain.then(() => this.#doPersistCheckpoint());
    this.#persistChain = next.catch(() => undefined);
    return next;
  }

  async #doPersistCheckpoint(): Promise<void> {
    const checkpoint = this.#checkpoint;
    if (comparePos(checkpoint, this.#persistedCheckpoint) === 0 && this.#segments[0]?.number === checkpoint.segment) return;
    const doomed = this.#segments.filter((seg) => seg.number < checkpoint.segment);
    // Seq numbers of deleted segments must survive: write them first.
    if (doomed.length) await writeFileAtomic(join(this.#options.dir, 'devices.json'), JSON.stringify(Object.fromEntries(this.#durable)));
    await writeFileAtomic(join(this.#options.dir, 'checkpoint.json'), JSON.stringify(checkpoint));
    this.#persistedCheckpoint = checkpoint;
    for (const seg of doomed) {
      await rm(join(this.#options.dir, segmentName(seg.number)), { force: true });
      this.#segments.splice(this.#segments.indexOf(seg), 1);
    }
  }
}
