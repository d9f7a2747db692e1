// auth/: the audit trail of operator actions: sign-ins (and failed ones),
// sign-outs, device registry changes, configuration, commands, alarm rules;
// who, when, what, from which address and how it ended.
// Imports: core (atomic-file's file mode, errors).
//
// JSON Lines in <data>/audit.jsonl plus one rotated file (.1): when the
// current file would pass half of HUB_AUDIT_MAX_BYTES it becomes the rotated
// one (the older rotated one goes), so both together stay within the budget
// (one line more at worst) and the oldest entries go first. Every string is
// cut to a bound and control characters are replaced, so an entry is one
// line that nobody can forge or split. Entries that anyone can cause (failed
// sign-ins) carry a rate key: a few per key and minute are kept, the rest
// counted in one summary entry, so a flood cannot push the real entries out.
//
// record() never throws and never waits: entries of one event-loop turn are
// written together, in the background, one batch after another. At most
// MAX_QUEUE entries wait; past that they are counted and one entry says how
// many. A batch that could not be written (disk full, directory gone) is
// counted and written again with the next one. Readers skip lines that do
// not parse (a crash mid-write) and lines written twice (a retried batch).
//
// Cluster mode (share(), cluster/shared-audit.ts): each entry this trail
// takes names the hub and is handed to the cluster; entries of other hubs
// come back through adopt(), checked and bounded as a record() is, with an
// id of this trail, their hub and their stream sequence (the trail resumes
// after the last one it holds: lastSharedSeq()).
import { open, rename, stat, type FileHandle } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { FILE_MODE } from '../core/atomic-file.ts';
import { HubError } from '../core/errors.ts';

export type AuditOutcome = 'ok' | 'failed' | 'refused';
export type AuditDetail = Record<string, string | number | boolean | null>;

export interface AuditEntry {
  /** ms since the epoch */
  time: number;
  /** Increasing within a trail (continues after a restart). */
  id: number;
  /** The operator; '' for anonymous (a failed sign-in's claimed name is in detail.user). */
  actor: string;
  /** The client's address. */
  address: string;
  /** e.g. sign-in, sign-out, device.create, device.rotate, config.set, command.send, rule.add */
  action: string;
  /** A device id, a rule id, or ''. */
  target: string;
  outcome: AuditOutcome;
  detail: AuditDetail;
  /** Cluster mode: the hub that served the action. */
  hub?: string;
  /** Cluster mode, an entry copied from another hub: its sequence in the shared stream. */
  seq?: number;
}

export interface AuditQuery {
  actor?: string;
  /** Exact, or a prefix ending in '.' (device.). */
  action?: string;
  target?: string;
  outcome?: AuditOutcome;
  /** time ≥ since (ms since the epoch). */
  since?: number;
  /** time ≤ until. */
  until?: number;
  /** Entries with an id below this (the `next` of the previous page). */
  before?: number;
  /** Default 100, at most 1000. */
  limit?: number;
}

export interface AuditOptions {
  /** null: memory only (tests). */
  file: string | null;
  /** Both files together at most this many bytes (one line more at worst); memory only: the ring's budget. */
  maxBytes: number;
  now?: () => number;
  /** Entries kept per rate key and minute (default 20). */
  perKeyPerMinute?: number;
}

export interface AuditStats {
  /** Entries taken into the trail (queued or written; summaries included). */
  written: number;
  /** Left out because MAX_QUEUE entries were waiting already. */
  dropped: number;
  /** Left out by rate keys. */
  suppressed: number;
  /** Batches (or fdatasyncs) that failed; the entries are written again with the next batch. */
  writeErrors: number;
  /** Bytes on disk in both files (memory only: the ring's entries as JSON). */
  bytes: number;
}

const LIMITS = { actor: 64, address: 64, action: 64, target: 200, detailKeys: 16, detailKey: 32, detailValue: 200, rateKey: 200, hub: 64 } as const;
/** Entries waiting for the disk, at most. */
const MAX_QUEUE = 10_000;
/** Memory only: entries kept, at most (and maxBytes of them). */
const MAX_MEMORY_ENTRIES = 10_000;
const MAX_RATE_KEYS = 10_000;
const WINDOW_MS = 60_000;
/** Rate-keyed entries kept a minute, all keys together: this many times perKeyPerMinute. */
const ALL_KEYS_FACTOR = 10;
/** The key that counts what the budget of all keys left out. */
const ALL_KEYS = '(all keys: past the budget of rate-keyed entries)';
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
/** Lines a query parses between turns of the event loop. */
const LINES_PER_TURN = 2_000;
/** Longer than any line this file writes (every field at its bound, escaped). */
const MAX_LINE_BYTES = 64 * 1024;

/** Control characters, line and paragraph separators, bidi overrides: each becomes U+FFFD. */
const UNSAFE = /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu;

/** A value the types did not foresee as text, without running its own toString. */
function asText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (v === null || v === undefined) return '';
  return Object.prototype.toString.call(v);
}

/** At most `max` characters (… marks a cut), control characters replaced; any value becomes its string. */
export function clip(value: unknown, max: number): string {
  let s = asText(value);
  if (s.length > max) {
    let cut = s.slice(0, max - 1);
    // Not half of a surrogate pair.
    if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
    s = `${cut}…`;
  }
  // One UTF-16 unit for one: the length stays within the bound.
  return s.replace(UNSAFE, '\uFFFD');
}

function cleanDetail(detail: unknown): AuditDetail {
  if (typeof detail !== 'object' || detail === null) return {};
  const pairs: [string, AuditDetail[string]][] = [];
  for (const key of Object.keys(detail)) {
    if (pairs.length >= LIMITS.detailKeys) break;
    const v: unknown = (detail as Record<string, unknown>)[key];
    if (v === undefined) continue;
    const value = typeof v === 'string' ? clip(v, LIMITS.detailValue)
      : typeof v === 'number' ? (Number.isFinite(v) ? v : null)
        : typeof v === 'boolean' || v === null ? v : clip(v, LIMITS.detailValue);
    pairs.push([clip(key, LIMITS.detailKey), value]);
  }
  // fromEntries defines own properties: a key `__proto__` stays a key.
  return Object.fromEntries(pairs);
}

function isEntry(v: unknown): v is AuditEntry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return Number.isSafeInteger(e['id']) && typeof e['time'] === 'number' && typeof e['actor'] === 'string' && typeof e['address'] === 'string'
    && typeof e['action'] === 'string' && typeof e['target'] === 'string' && (e['outcome'] === 'ok' || e['outcome'] === 'failed' || e['outcome'] === 'refused')
    && typeof e['detail'] === 'object' && e['detail'] !== null && !Array.isArray(e['detail']);
}

/** One line's entry, or null (a torn or foreign line). */
function parseLine(line: Buffer): AuditEntry | null {
  if (line.length < 2 || line[0] !== 0x7b) return null;
  try {
    const v: unknown = JSON.parse(line.toString('utf8'));
    return isEntry(v) ? v : null;
  } catch {
    return null;
  }
}

/** The lines of a file's text, last first. */
function* linesNewestFirst(buf: Buffer): Generator<Buffer> {
  let end = buf.length;
  while (end > 0) {
    const nl = buf.lastIndexOf(0x0a, end - 1);
    yield buf.subarray(nl + 1, end);
    end = nl;
  }
}

function matches(e: AuditEntry, q: AuditQuery): boolean {
  if (q.before !== undefined && e.id >= q.before) return false;
  if (q.actor !== undefined && e.actor !== q.actor) return false;
  if (q.action !== undefined && (q.action.endsWith('.') ? !e.action.startsWith(q.action) : e.action !== q.action)) return false;
  if (q.target !== undefined && e.target !== q.target) return false;
  if (q.outcome !== undefined && e.outcome !== q.outcome) return false;
  if (q.since !== undefined && e.time < q.since) return false;
  if (q.until !== undefined && e.time > q.until) return false;
  return true;
}

interface Tail { data: Buffer; size: number; ino: number }

/**
 * The last `cap` bytes of a file, from the first whole line in them (a file
 * that grew past its bound some other way is read no further). A missing
 * file is empty.
 */
async function readTail(path: string, cap: number): Promise<Tail> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { data: Buffer.alloc(0), size: 0, ino: -1 };
    throw err;
  }
  try {
    const { size, ino } = await fh.stat();
    const length = Math.min(size, cap);
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, size - length + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    let data = buf.subarray(0, got);
    if (size > length) data = data.subarray(data.indexOf(0x0a) + 1);
    return { data, size, ino };
  } finally {
    await fh.close();
  }
}

interface RateKey { windowStart: number; kept: number; suppressed: number; action: string; outcome: AuditOutcome }

type NewEntry = Omit<AuditEntry, 'time' | 'id'>;

export class AuditLog {
  readonly #file: string | null;
  readonly #maxBytes: number;
  /** <file> rotates before it would pass this. */
  readonly #half: number;
  readonly #now: () => number;
  readonly #perKey: number;
  #nextId = 1;
  /** Entries waiting for the disk (or the ring), oldest first. */
  #queue: AuditEntry[] = [];
  #scheduled = false;
  /** Batches, fdatasyncs and query reads, one after another (never rejects). */
  #chain: Promise<void> = Promise.resolve();
  /** Queries, one at a time (each holds up to both files' text). */
  #queries: Promise<unknown> = Promise.resolve();
  #fh: FileHandle | null = null;
  /** The inode #fh writes (or open() read); another one at the path means the file was replaced. */
  #ino = -1;
  #current = 0;
  #rotated = 0;
  /** <file> may end inside a line: the next write starts a new one. */
  #torn = false;
  /** Memory only: the newest entries, from #memoryHead on, with their size as JSON. */
  #memory: { e: AuditEntry; bytes: number }[] = [];
  #memoryHead = 0;
  #memoryBytes = 0;
  /** Rate keys, oldest window first (Map order: a key is re-added when its window ends). */
  readonly #keys = new Map<string, RateKey>();
  #allStart = 0;
  #allKept = 0;
  /** Keys with entries left out and no summary yet. */
  #pendingSummaries = 0;
  #timer: NodeJS.Timeout | null = null;
  #droppedUnreported = 0;
  /** The last batch failed and nothing was recorded since: the next try waits for a record, flush() or a query. */
  #failedIdle = false;
  #closing = false;
  #closed = false;
  /** Cluster mode: this hub's name in each entry, and where entries are handed to. */
  #hub: string | null = null;
  #publish: ((e: AuditEntry) => void) | null = null;
  #lastSharedSeq = 0;
  readonly #stats = { written: 0, dropped: 0, suppressed: 0, writeErrors: 0 };

  /** A trail that starts empty; open() continues the one on disk. */
  constructor(options: AuditOptions) {
    this.#file = options.file;
    this.#maxBytes = options.maxBytes;
    this.#half = options.maxBytes / 2;
    this.#now = options.now ?? Date.now;
    this.#perKey = options.perKeyPerMinute ?? 20;
  }

  /** Opens the trail: ids continue after the newest entry on disk. A file that cannot be read stops the start (HUB_ERR_CONFIG). */
  static async open(options: AuditOptions): Promise<AuditLog> {
    const log = new AuditLog(options);
    if (options.file) await log.#load(options.file);
    return log;
  }

  async #load(file: string): Promise<void> {
    let current: Tail, rotated: Tail;
    try {
      [current, rotated] = await Promise.all([readTail(file, this.#readCap()), readTail(`${file}.1`, this.#readCap())]);
    } catch (err) {
      throw new HubError('HUB_ERR_CONFIG', `audit trail ${file}: not readable (${(err as Error).message})`, { cause: err });
    }
    this.#current = current.size;
    this.#rotated = rotated.size;
    this.#ino = current.ino;
    this.#torn = current.data.length > 0 && current.data[current.data.length - 1] !== 0x0a;
    let idFound = false;
    for (const tail of [current, rotated]) {
      for (const line of linesNewestFirst(tail.data)) {
        // The newest entry gives the next id; the newest copied one (cluster mode) the stream position.
        if (idFound && !line.includes('"seq":')) continue;
        const e = parseLine(line);
        if (!e) continue;
        if (!idFound) { this.#nextId = e.id + 1; idFound = true; }
        if (typeof e.seq === 'number' && Number.isSafeInteger(e.seq)) { this.#lastSharedSeq = e.seq; return; }
      }
    }
  }

  /** What a query reads of each file, at most. */
  #readCap(): number {
    return Math.ceil(this.#half) + MAX_LINE_BYTES;
  }

  /**
   * Takes an entry into the trail; never throws, never waits (see the file
   * header). With a `rateKey`, at most perKeyPerMinute entries of the key
   * are kept a minute; one `audit.suppressed` entry (detail {key, count,
   * action}; the outcome of the entries left out) counts the rest.
   */
  record(e: NewEntry, rateKey?: string): void {
    try {
      if (this.#closing) {
        this.#stats.dropped++;
        return;
      }
      const now = this.#now();
      this.#expireKeys(now);
      if (rateKey !== undefined && !this.#admit(clip(rateKey, LIMITS.rateKey), e, now)) return;
      if (this.#queue.length >= MAX_QUEUE) {
        this.#stats.dropped++;
        this.#droppedUnreported++;
        return;
      }
      this.#accept(e, now);
    } catch {
      // An input no bound foresaw (a toString that throws): left out, counted.
      this.#stats.dropped++;
    }
  }

  /** Newest first; `next` pages on (pass it as `before`), null at the end. Lines that do not parse are skipped. */
  query(q: AuditQuery): Promise<{ entries: AuditEntry[]; next: number | null }> {
    const run = this.#queries.then(() => this.#query(q));
    this.#queries = run.catch(() => undefined);
    return run;
  }

  stats(): AuditStats {
    return { ...this.#stats, bytes: this.#file ? this.#current + this.#rotated : this.#memoryBytes };
  }

  /** Resolves once everything recorded so far is on disk (fdatasync), or its write failed (stats().writeErrors). Never rejects. */
  flush(): Promise<void> {
    this.#expireKeys(this.#now());
    const errors = this.#stats.writeErrors;
    return this.#step(async () => {
      await this.#writeUnlessTried(errors);
      await this.#sync();
    });
  }

  /** Writes what is queued, with the counts of entries left out in windows still open, and closes the file. Later entries are dropped. */
  async close(): Promise<void> {
    if (this.#closing) return this.#step(() => Promise.resolve());
    const now = this.#now();
    for (const [key, k] of this.#keys) this.#summarize(key, k, now);
    this.#keys.clear();
    this.#pendingSummaries = 0;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#closing = true;
    await this.#step(async () => {
      await this.#writeBatch();
      await this.#sync();
      await this.#fh?.close().catch(() => undefined);
      this.#fh = null;
      this.#closed = true;
    });
  }

  /**
   * Cluster mode: entries this trail takes name `hub` and go to `publish`
   * (which never throws: it counts what it could not share).
   */
  share(hub: string, publish: (e: AuditEntry) => void): void {
    this.#hub = clip(hub, LIMITS.hub);
    this.#publish = publish;
  }

  /** Cluster mode: the stream sequence of the newest entry copied from another hub (0: none). */
  lastSharedSeq(): number { return this.#lastSharedSeq; }

  /**
   * Cluster mode: another hub's entry (as published; stream sequence `seq`)
   * copied into this trail, every field bounded as record() bounds it. False:
   * not an entry. One at or before lastSharedSeq() is already here.
   */
  adopt(raw: unknown, seq: number): boolean {
    if (!isEntry(raw) || !Number.isSafeInteger(seq) || seq <= 0) return false;
    if (seq <= this.#lastSharedSeq) return true;
    this.#lastSharedSeq = seq;
    if (this.#closing || this.#queue.length >= MAX_QUEUE) { this.#stats.dropped++; return true; }
    const e = raw;
    this.#enqueue({
      time: Number.isFinite(e.time) ? e.time : 0, id: this.#nextId++, actor: clip(e.actor, LIMITS.actor), address: clip(e.address, LIMITS.address),
      action: clip(e.action, LIMITS.action), target: clip(e.target, LIMITS.target), outcome: e.outcome, detail: cleanDetail(e.detail),
      hub: clip(typeof e.hub === 'string' ? e.hub : '', LIMITS.hub), seq,
    });
    return true;
  }

  #accept(e: NewEntry, now: number): void {
    const outcome: AuditOutcome = e.outcome === 'ok' || e.outcome === 'refused' ? e.outcome : 'failed';
    const entry: AuditEntry = {
      time: now, id: this.#nextId++, actor: clip(e.actor, LIMITS.actor), address: clip(e.address, LIMITS.address),
      action: clip(e.action, LIMITS.action), target: clip(e.target, LIMITS.target), outcome, detail: cleanDetail(e.detail),
    };
    if (this.#hub !== null) entry.hub = this.#hub;
    this.#enqueue(entry);
    if (this.#publish) {
      try { this.#publish(entry); } catch { /* the publisher counts its own failures */ }
    }
  }

  #enqueue(entry: AuditEntry): void {
    this.#queue.push(entry);
    this.#stats.written++;
    this.#failedIdle = false;
    if (this.#scheduled) return;
    this.#scheduled = true;
    // Next turn: everything recorded in this one goes in one batch.
    setImmediate(() => {
      this.#chain = this.#chain.then(() => {
        this.#scheduled = false;
        return this.#failedIdle ? undefined : this.#writeBatch();
      });
    });
  }

  /** Runs `fn` after every batch and read before it; resolves when it has (never rejects). */
  #step(fn: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(fn).catch(() => undefined);
    this.#chain = run;
    return run;
  }

  /** Writes the queue unless a batch failed since the caller came (errors: the count then) and nothing was recorded after it. */
  async #writeUnlessTried(errors: number): Promise<void> {
    if (this.#failedIdle && this.#stats.writeErrors > errors) return;
    await this.#writeBatch();
  }

  /** Whether an entry of this key is kept now; counts the ones that are not. */
  #admit(key: string, e: NewEntry, now: number): boolean {
    let k = this.#keys.get(key);
    if (k && k.kept < this.#perKey && !this.#allAdmit(now)) k = this.#allKey(now);
    if (!k) {
      if (this.#keys.size >= MAX_RATE_KEYS) {
        // The oldest window goes, its count written now rather than lost.
        const oldest = this.#keys.entries().next();
        if (!oldest.done) {
          this.#keys.delete(oldest.value[0]);
          this.#summarize(oldest.value[0], oldest.value[1], now);
        }
      }
      k = { windowStart: now, kept: 0, suppressed: 0, action: '', outcome: 'failed' };
      this.#keys.set(key, k);
      // Many keys at once (a flood from many addresses): past the budget of
      // all keys together, the rest is counted under one key, so neither the
      // entries nor their summaries can push the real entries out.
      if (!this.#allAdmit(now)) k = this.#allKey(now);
    }
    if (k.kept < this.#perKey) {
      k.kept++;
      return true;
    }
    if (k.suppressed === 0) this.#pendingSummaries++;
    k.suppressed++;
    k.action = clip(e.action, LIMITS.action);
    k.outcome = e.outcome === 'ok' || e.outcome === 'refused' ? e.outcome : 'failed';
    this.#stats.suppressed++;
    // Said even if the flood stops and nothing else is recorded.
    this.#armTimer(now);
    return false;
  }

  /** Whether the budget of all rate-keyed entries of this minute (perKeyPerMinute x 10) has room; takes from it when it has. */
  #allAdmit(now: number): boolean {
    if (now - this.#allStart >= WINDOW_MS) { this.#allStart = now; this.#allKept = 0; }
    if (this.#allKept >= this.#perKey * ALL_KEYS_FACTOR) return false;
    this.#allKept++;
    return true;
  }

  /** The key that counts what the budget of all keys left out (kept at its cap: everything it sees is counted). */
  #allKey(now: number): RateKey {
    let k = this.#keys.get(ALL_KEYS);
    if (!k) {
      k = { windowStart: now, kept: this.#perKey, suppressed: 0, action: '', outcome: 'failed' };
      this.#keys.set(ALL_KEYS, k);
    }
    return k;
  }

  /** Keys whose minute is over: a summary each for what was left out; then forgotten. */
  #expireKeys(now: number): void {
    for (const [key, k] of this.#keys) {
      if (now - k.windowStart < WINDOW_MS) break;
      this.#keys.delete(key);
      this.#summarize(key, k, now);
    }
  }

  #summarize(key: string, k: RateKey, now: number): void {
    if (k.suppressed === 0) return;
    this.#pendingSummaries--;
    this.#accept({ actor: '', address: '', action: 'audit.suppressed', target: '', outcome: k.outcome, detail: { key, count: k.suppressed, action: k.action } }, now);
    k.suppressed = 0;
  }

  #armTimer(now: number): void {
    if (this.#timer !== null) return;
    const first = this.#keys.values().next();
    if (first.done) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      const later = this.#now();
      this.#expireKeys(later);
      if (this.#pendingSummaries > 0) this.#armTimer(later);
    }, Math.max(0, first.value.windowStart + WINDOW_MS - now) + 10);
    this.#timer.unref();
  }

  /** Writes what is queued (never rejects); what could not be written goes back to the queue's front. */
  async #writeBatch(): Promise<void> {
    if (this.#closed) return;
    if (this.#droppedUnreported > 0 && this.#queue.length < MAX_QUEUE) {
      // Room again: say how many were left out.
      const count = this.#droppedUnreported;
      this.#droppedUnreported = 0;
      this.#accept({ actor: '', address: '', action: 'audit.dropped', target: '', outcome: 'failed', detail: { count } }, this.#now());
    }
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    const file = this.#file;
    if (!file) {
      this.#remember(batch);
      return;
    }
    let done = 0;
    try {
      await this.#checkFile(file);
      let parts: string[] = [];
      let partBytes = 0;
      for (let i = 0; i < batch.length; i++) {
        const line = JSON.stringify(batch[i]) + '\n';
        const size = Buffer.byteLength(line);
        if (this.#current + partBytes + size > this.#half && this.#current + partBytes > 0) {
          if (parts.length > 0) await this.#append(file, parts.join(''));
          done = i;
          parts = [];
          partBytes = 0;
          await this.#rotate(file);
        }
        parts.push(line);
        partBytes += size;
      }
      await this.#append(file, parts.join(''));
      done = batch.length;
    } catch {
      // Disk full, directory gone: counted; the rest is written with the next batch.
      this.#stats.writeErrors++;
      this.#failedIdle = this.#queue.length === 0;
      this.#queue = batch.slice(done).concat(this.#queue);
      this.#torn = true;
      await this.#fh?.close().catch(() => undefined);
      this.#fh = null;
    }
  }

  /** Forgets the handle if the path no longer leads to its file (deleted, replaced); reads the sizes. */
  async #checkFile(file: string): Promise<void> {
    const [cur, old] = await Promise.all([stat(file).catch(() => null), stat(`${file}.1`).catch(() => null)]);
    this.#rotated = old?.size ?? 0;
    if (cur && cur.ino === this.#ino) {
      this.#current = cur.size;
      return;
    }
    this.#current = cur?.size ?? 0;
    await this.#fh?.close().catch(() => undefined);
    this.#fh = null;
  }

  async #append(file: string, text: string): Promise<void> {
    let fh = this.#fh;
    if (!fh) {
      fh = await open(file, 'a', FILE_MODE);
      this.#fh = fh;
      const { ino, size } = await fh.stat();
      // A file whose end this log did not see may end inside a line.
      if (size > 0 && ino !== this.#ino) this.#torn = true;
      this.#ino = ino;
      this.#current = size;
    }
    const data = Buffer.from(this.#torn ? `\n${text}` : text);
    for (let off = 0; off < data.length;) {
      const { bytesWritten } = await fh.write(data, off);
      this.#current += bytesWritten;
      off += bytesWritten;
    }
    this.#torn = false;
  }

  /** The current file becomes the rotated one (the older rotated one goes). */
  async #rotate(file: string): Promise<void> {
    await this.#fh?.close().catch(() => undefined);
    this.#fh = null;
    await rename(file, `${file}.1`);
    this.#rotated = this.#current;
    this.#current = 0;
    this.#ino = -1;
    this.#torn = false;
  }

  async #sync(): Promise<void> {
    try {
      await this.#fh?.datasync();
    } catch {
      this.#stats.writeErrors++;
    }
  }

  #remember(batch: AuditEntry[]): void {
    for (const e of batch) {
      const bytes = JSON.stringify(e).length + 1;
      this.#memory.push({ e, bytes });
      this.#memoryBytes += bytes;
    }
    while (this.#memory.length - this.#memoryHead > MAX_MEMORY_ENTRIES || this.#memoryBytes > this.#maxBytes) {
      const gone = this.#memory[this.#memoryHead++];
      if (!gone) break;
      this.#memoryBytes -= gone.bytes;
    }
    if (this.#memoryHead > 4096 && this.#memoryHead * 2 > this.#memory.length) {
      this.#memory = this.#memory.slice(this.#memoryHead);
      this.#memoryHead = 0;
    }
  }

  async #query(q: AuditQuery): Promise<{ entries: AuditEntry[]; next: number | null }> {
    const n = Math.floor(Number(q.limit ?? DEFAULT_LIMIT));
    const limit = Number.isFinite(n) ? Math.min(MAX_LIMIT, Math.max(1, n)) : DEFAULT_LIMIT;
    const found: AuditEntry[] = [];
    const file = this.#file;
    const errors = this.#stats.writeErrors;
    if (!file) {
      await this.#step(() => this.#writeBatch());
      for (let i = this.#memory.length - 1; i >= this.#memoryHead && found.length <= limit; i--) {
        const item = this.#memory[i];
        if (item && matches(item.e, q)) found.push(item.e);
      }
    } else {
      // Read between batches: no rotation halfway through.
      let reading: Promise<Tail[]> = Promise.resolve([]);
      await this.#step(async () => {
        await this.#writeUnlessTried(errors);
        reading = Promise.all([readTail(file, this.#readCap()), readTail(`${file}.1`, this.#readCap())]);
        await reading.catch(() => undefined);
      });
      // A read error (not a bad line) is the caller's to report.
      const tails = await reading;
      // Ids only go down from the newest line: a line out of order is a copy (a retried batch).
      let below = Infinity;
      let parsed = 0;
      for (const tail of tails) {
        for (const line of linesNewestFirst(tail.data)) {
          if (found.length > limit) break;
          if (++parsed % LINES_PER_TURN === 0) await nextTurn();
          const e = parseLine(line);
          if (!e || e.id >= below) continue;
          below = e.id;
          if (matches(e, q)) found.push(e);
        }
      }
    }
    const more = found.length > limit;
    if (more) found.length = limit;
    return { entries: found, next: more ? (found[found.length - 1]?.id ?? null) : null };
  }
}
