// The durable spool: an append-only, segmented log of accepted batches on
// local disk, with group commit (one fdatasync for every batch that arrived
// within a few ms) and a checkpoint of what the sink has committed.
// Implements BatchStore: append() resolves only after the fdatasync that
// covers the batch (protocol: ack implies durable). Never blocks the event
// loop: all I/O goes through fs.promises.
//
// Files in `dir`:
//   <16-digit segment number>.seg  header "TSPOOL1\n", then frames (codec.ts)
//   checkpoint.json                {segment, offset}: the sink has everything before
//   devices.json                   highest stored seq per device, written before
//                                  segments are deleted (so the numbers survive)
import { chmod, mkdir, open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DIR_MODE, FILE_MODE, fsyncDir, writeFileAtomic } from '../core/atomic-file.ts';
import { StoreError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { FRAME_HEADER_BYTES, checkFrame, decodeRecord, encodeRecord } from './codec.ts';
import type { AcceptedBatch } from '../core/batch.ts';
import type { BatchStore } from './store.ts';

const HEADER = Buffer.from('TSPOOL1\n');
const SEG_RE = /^(\d{16})\.seg$/;
const segName = (n: number) => `${String(n).padStart(16, '0')}.seg`;

export interface Position { readonly segment: number; readonly offset: number }
export const comparePos = (a: Position, b: Position) => a.segment - b.segment || a.offset - b.offset;

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

export interface SpoolRecord { batch: AcceptedBatch; end: Position }

interface Pending { frame: Buffer; batch: AcceptedBatch; resolve: () => void; reject: (e: Error) => void }
interface Segment { n: number; size: number }

export interface RecoveryReport {
  segments: number;
  records: number;
  bytes: number;
  truncatedBytes: number;
  devices: number;
}

export class Spool implements BatchStore {
  readonly #o: SpoolOptions;
  readonly #accepted = new Map<string, number>();
  readonly #durable = new Map<string, number>();
  /** Segments still on disk, oldest first; the last is being written. */
  #segments: Segment[] = [];
  #fh: FileHandle | null = null;
  #queue: Pending[] = [];
  #queuedBytes = 0;
  #committing = false;
  #timer: NodeJS.Timeout | null = null;
  #healthy = true;
  #closed = false;
  #idle: (() => void)[] = [];
  #checkpoint: Position;
  #persistedCheckpoint: Position;
  #checkpointWriting: Promise<void> | null = null;
  #persistChain: Promise<void> = Promise.resolve();
  #durableListeners = new Set<() => void>();
  #lastError: Error | null = null;
  recovery: RecoveryReport = { segments: 0, records: 0, bytes: 0, truncatedBytes: 0, devices: 0 };
  /** Group commits done (one fdatasync each) and records they made durable. */
  readonly stats = { commits: 0, records: 0 };

  private constructor(o: SpoolOptions) {
    this.#o = o;
    this.#checkpoint = { segment: 1, offset: HEADER.length };
    this.#persistedCheckpoint = this.#checkpoint;
  }

  /** Opens (and recovers) the spool in `dir`. */
  static async open(o: SpoolOptions): Promise<Spool> {
    const s = new Spool(o);
    await s.#recover();
    return s;
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
    const cp = this.#segments.find((x) => x.n === this.#checkpoint.segment);
    if (cp) total -= Math.min(cp.size, this.#checkpoint.offset);
    return total + this.#queuedBytes;
  }

  pressure(): number {
    if (this.#o.mode === 'embedded') return 0;
    return this.bytes / this.#o.maxBytes;
  }

  append(batch: AcceptedBatch): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreError('HUB_ERR_STORE_CLOSED', 'spool is closed'));
    if (!this.#healthy) return Promise.reject(new StoreError('HUB_ERR_STORE', `spool unavailable: ${this.#lastError?.message ?? 'disk error'}`));
    if (batch.seq <= this.acceptedSeq(batch.deviceId)) {
      return Promise.reject(new StoreError('HUB_ERR_STORE', `seq ${batch.seq} for ${batch.deviceId} is not above the accepted ${this.acceptedSeq(batch.deviceId)}`));
    }
    if (this.#o.mode === 'sink' && this.bytes >= this.#o.maxBytes) {
      // At the cap: refuse (the device keeps the batch); never delete uncommitted data.
      return Promise.reject(new StoreError('HUB_ERR_STORE_FULL', `spool full (${this.bytes} of ${this.#o.maxBytes} bytes); waiting for the sink`));
    }
    const frame = encodeRecord(batch);
    this.#accepted.set(batch.deviceId, batch.seq);
    this.#queuedBytes += frame.length;
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ frame, batch, resolve, reject });
      if (!this.#committing && this.#timer === null) {
        this.#timer = setTimeout(() => { this.#timer = null; void this.#commitLoop(); }, this.#o.commitDelayMs);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; void this.#commitLoop(); }
    if (this.#committing || this.#queue.length) await new Promise<void>((r) => this.#idle.push(r));
    await this.#persistCheckpoint();
    await this.#fh?.close();
    this.#fh = null;
  }

  // ---- reader side (sinks) --------------------------------------------------------

  get checkpoint(): Position { return this.#checkpoint; }

  /** End of durable data. */
  get head(): Position {
    const last = this.#segments.at(-1);
    return last ? { segment: last.n, offset: last.size } : this.#checkpoint;
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
      const idx = this.#segments.findIndex((x) => x.n >= pos.segment);
      if (idx < 0) break;
      const seg = this.#segments[idx]!;
      if (seg.n > pos.segment) pos = { segment: seg.n, offset: HEADER.length };
      if (pos.offset >= seg.size) {
        if (idx === this.#segments.length - 1) break; // at the head
        pos = { segment: this.#segments[idx + 1]!.n, offset: HEADER.length };
        continue;
      }
      const len = Math.min(seg.size - pos.offset, Math.max(budget, 1 << 16, recordBytes));
      const buf = Buffer.allocUnsafe(len);
      const fh = await open(join(this.#o.dir, segName(seg.n)), 'r');
      let got: number;
      try {
        ({ bytesRead: got } = await fh.read(buf, 0, len, pos.offset));
      } finally {
        await fh.close();
      }
      let off = 0;
      let progressed = false;
      while (off < got) {
        const f = checkFrame(buf.subarray(0, got), off, this.#o.segmentBytes * 2);
        if (f.kind !== 'ok') {
          if (f.kind === 'corrupt') throw new StoreError('HUB_ERR_STORE', `spool segment ${seg.n} corrupt at ${pos.offset + off}: ${f.why}`);
          break;
        }
        const end = { segment: seg.n, offset: pos.offset + f.next };
        out.push({ batch: decodeRecord(f.payload), end });
        budget -= f.next - off;
        off = f.next;
        progressed = true;
      }
      if (!progressed) {
        // A record larger than the window: its header says how large; read it whole.
        const need = got >= FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES + buf.readUInt32LE(0) : 0;
        if (need > len && need <= seg.size - pos.offset && recordBytes < need) { recordBytes = need; continue; }
        break; // the rest of the segment is not a complete record yet
      }
      recordBytes = 0;
      pos = { segment: seg.n, offset: pos.offset + off };
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
      this.#checkpointWriting = new Promise<void>((r) => setTimeout(r, 100).unref())
        .then(() => this.#persistCheckpoint())
        .catch((err: unknown) => this.#o.log.error({ err }, 'spool: checkpoint not written'))
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
        const bytes = group.reduce((a, g) => a + g.frame.length, 0);
        const seg = this.#segments.at(-1)!;
        try {
          await this.#fh!.writev(group.map((g) => g.frame), seg.size);
          await this.#fh!.datasync();
        } catch (err) {
          this.#queuedBytes -= bytes;
          await this.#diskFailed(err as Error, [...group, ...this.#queue.splice(0)]);
          break;
        }
        seg.size += bytes;
        this.#queuedBytes -= bytes;
        this.stats.commits++;
        this.stats.records += group.length;
        for (const g of group) this.#durable.set(g.batch.deviceId, g.batch.seq);
        for (const g of group) g.resolve();
        for (const l of this.#durableListeners) l();
        if (seg.size >= this.#o.segmentBytes) await this.#roll();
        if (this.#o.mode === 'embedded') await this.#rotate();
      }
    } finally {
      this.#committing = false;
      if (this.#queue.length && this.#healthy && this.#timer === null) {
        this.#timer = setTimeout(() => { this.#timer = null; void this.#commitLoop(); }, this.#o.commitDelayMs);
      }
      if (!this.#queue.length) for (const f of this.#idle.splice(0)) f();
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
    this.#o.log.error({ err }, 'spool: write failed; not acking until the disk works again');
    for (const id of new Set(failed.map((f) => f.batch.deviceId))) this.#accepted.set(id, this.durableSeq(id));
    const e = new StoreError('HUB_ERR_STORE', `spool write failed: ${err.message}`, { cause: err });
    for (const f of failed) f.reject(e);
    const seg = this.#segments.at(-1)!;
    try { await this.#fh?.truncate(seg.size); } catch { /* the retry starts a new segment anyway */ }
    const retry = setTimeout(() => void this.#retryDisk(), this.#o.retryDelayMs ?? 5000);
    retry.unref();
  }

  async #retryDisk(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#roll();
      this.#healthy = true;
      this.#lastError = null;
      this.#o.log.info('spool: disk writable again; accepting batches');
    } catch (err) {
      this.#lastError = err as Error;
      const retry = setTimeout(() => void this.#retryDisk(), this.#o.retryDelayMs ?? 5000);
      retry.unref();
    }
  }

  /** Starts a new segment (header written and fsynced, directory fsynced). */
  async #roll(): Promise<void> {
    const n = (this.#segments.at(-1)?.n ?? 0) + 1;
    const fh = await (this.#o.open ?? open)(join(this.#o.dir, segName(n)), 'wx', FILE_MODE);
    try {
      await fh.write(HEADER, 0, HEADER.length, 0);
      await fh.datasync();
      await fsyncDir(this.#o.dir);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(join(this.#o.dir, segName(n)), { force: true }).catch(() => undefined);
      throw err;
    }
    await this.#fh?.close().catch(() => undefined);
    this.#fh = fh;
    this.#segments.push({ n, size: HEADER.length });
  }

  /** Embedded mode: drop the oldest segments past 90 % of the cap. */
  async #rotate(): Promise<void> {
    const limit = this.#o.maxBytes * 0.9;
    let total = this.#segments.reduce((a, s) => a + s.size, 0);
    const drop: Segment[] = [];
    for (const seg of this.#segments.slice(0, -1)) {
      if (total <= limit) break;
      drop.push(seg);
      total -= seg.size;
    }
    if (!drop.length) return;
    const next = this.#segments[drop.length]!;
    this.#checkpoint = { segment: next.n, offset: HEADER.length };
    await this.#persistCheckpoint();
  }

  /** Serialized: concurrent callers share one chain, so files are never written twice at once. */
  #persistCheckpoint(): Promise<void> {
    const next = this.#persistChain.then(() => this.#doPersistCheckpoint());
    this.#persistChain = next.catch(() => undefined);
    return next;
  }

  async #doPersistCheckpoint(): Promise<void> {
    const cp = this.#checkpoint;
    if (comparePos(cp, this.#persistedCheckpoint) === 0 && this.#segments[0]?.n === cp.segment) return;
    const doomed = this.#segments.filter((s) => s.n < cp.segment);
    // Seq numbers of deleted segments must survive: write them first.
    if (doomed.length) await writeFileAtomic(join(this.#o.dir, 'devices.json'), JSON.stringify(Object.fromEntries(this.#durable)));
    await writeFileAtomic(join(this.#o.dir, 'checkpoint.json'), JSON.stringify(cp));
    this.#persistedCheckpoint = cp;
    for (const s of doomed) {
      await rm(join(this.#o.dir, segName(s.n)), { force: true });
      this.#segments.splice(this.#segments.indexOf(s), 1);
    }
  }

  async #recover(): Promise<void> {
    const { dir, log } = this.#o;
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    // Readings are the fleet's data: owner only, also for a spool made by an older version.
    await chmod(dir, DIR_MODE);
    const cp = await readJson<Position>(join(dir, 'checkpoint.json'));
    if (cp && Number.isSafeInteger(cp.segment) && Number.isSafeInteger(cp.offset)) this.#checkpoint = this.#persistedCheckpoint = cp;
    const seqs = (await readJson<Record<string, number>>(join(dir, 'devices.json'))) ?? {};
    for (const [id, seq] of Object.entries(seqs)) if (typeof seq === 'number') this.#durable.set(id, seq);

    const names = (await readdir(dir)).filter((f) => SEG_RE.test(f)).sort();
    const r = this.recovery;
    for (const name of names) {
      const n = Number(SEG_RE.exec(name)![1]);
      const path = join(dir, name);
      if (n < this.#checkpoint.segment) {
        await rm(path, { force: true }); // committed before a crash interrupted the deletion
        continue;
      }
      const buf = await readFile(path);
      let off = HEADER.length;
      if (buf.length < HEADER.length || !buf.subarray(0, HEADER.length).equals(HEADER)) {
        log.warn({ segment: name, bytes: buf.length }, 'spool: segment without a valid header (torn while being created); removed');
        r.truncatedBytes += buf.length;
        await rm(path, { force: true });
        continue;
      }
      for (;;) {
        const f = checkFrame(buf, off, Math.max(this.#o.segmentBytes * 2, 64 << 20));
        if (f.kind !== 'ok') {
          if (off < buf.length) {
            const lost = buf.length - off;
            r.truncatedBytes += lost;
            log.warn({ segment: name, offset: off, bytes: lost, why: f.kind === 'corrupt' ? f.why : 'incomplete record' },
              `spool: torn or corrupt tail in ${name} at byte ${off}: ${lost} bytes truncated (never acked: an ack waits for the fsync of the whole record)`);
            const fh = await open(path, 'r+');
            try { await fh.truncate(off); await fh.datasync(); } finally { await fh.close(); }
          }
          break;
        }
        const b = decodeRecord(f.payload);
        if (b.seq > this.durableSeq(b.deviceId)) this.#durable.set(b.deviceId, b.seq);
        r.records++;
        off = f.next;
      }
      this.#segments.push({ n, size: off });
      r.bytes += off;
      r.segments++;
    }
    for (const [id, seq] of this.#durable) this.#accepted.set(id, seq);
    r.devices = this.#durable.size;
    if (this.#segments.length && this.#checkpoint.segment < this.#segments[0]!.n) {
      this.#checkpoint = { segment: this.#segments[0]!.n, offset: HEADER.length };
    }
    // Append to a fresh segment: never write after bytes recovery had to judge.
    await this.#roll();
    log.info({ ...r, checkpoint: this.#checkpoint }, `spool: recovered ${r.records} records in ${r.segments} segments from ${dir}`);
  }
}

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StoreError('HUB_ERR_STORE', `cannot read ${path}`, { cause: err });
  }
}
