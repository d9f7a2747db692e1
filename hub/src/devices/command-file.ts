// devices/: tracked commands kept on disk in the embedded mode
// (`<data>/commands.jsonl`), through the same CommandShare seam cluster mode
// stores them through: a command is on disk before it is sent or answered,
// and so is every state it then takes (delivered, the result, refused). At
// start the file is read back into the tracker (later lines of a record
// move it forward: CommandTracker.adopt), so a command still queued for an
// offline device survives a restart and goes out when the device connects;
// one delivered before the restart whose result never came is timed out.
//
// JSON Lines, appended in groups: the lines of one event-loop turn are one
// write and one fdatasync (on libuv's pool, one group at a time). When the
// appends since the last compaction pass COMPACT_BYTES (or the size the
// compaction left, whichever is more) the file is rewritten atomically with
// the records the tracker keeps (at most MAX_KEPT), so it stays bounded.
// Lines that do not parse (a crash mid-write) are skipped.
// Imports: core (atomic file, errors), devices/commands.
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { FILE_MODE, writeFileAtomic } from '../core/atomic-file.ts';
import { HubError } from '../core/errors.ts';
import type { CommandRecord, CommandShare, CommandTracker } from './commands.ts';

export const COMPACT_BYTES = 4 << 20;
/** A record line is a few KiB (4 KiB of arguments, 4 KiB of result); longer is not ours. */
const MAX_LINE_BYTES = 64 << 10;

interface Waiting { line: string; resolve: () => void; reject: (err: unknown) => void }

export class CommandFile implements CommandShare {
  readonly #file: string;
  #tracker: CommandTracker | null = null;
  #fh: FileHandle | null = null;
  #queue: Waiting[] = [];
  #writing: Promise<void> | null = null;
  #sinceCompaction = 0;
  #compactedBytes = 0;
  /** Lines read at start that were not records. */
  skipped = 0;

  constructor(file: string) { this.#file = file; }

  /**
   * Reads the file into `tracker` (none yet: nothing) and compacts it. A
   * file that cannot be read stops the start (HUB_ERR_CONFIG, naming it).
   */
  async start(tracker: CommandTracker): Promise<void> {
    this.#tracker = tracker;
    let text = '';
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new HubError('HUB_ERR_CONFIG', `tracked commands ${this.#file}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let raw: unknown = null;
      if (line.length <= MAX_LINE_BYTES) {
        try { raw = JSON.parse(line); } catch { raw = null; }
      }
      if (raw === null || !tracker.adopt(raw)) this.skipped++;
    }
    await this.#compact();
  }

  onlineElsewhere(): boolean { return false; }

  put(record: CommandRecord, argsJson: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ line: `${JSON.stringify({ ...record, argsJson })}\n`, resolve, reject });
      this.#writing ??= this.#drain();
    });
  }

  /** One write and one fdatasync per group of lines, one group after another. */
  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        // Lines of this turn join the group.
        await new Promise<void>((r) => setImmediate(r));
        const group = this.#queue.splice(0);
        const data = group.map((w) => w.line).join('');
        try {
          this.#fh ??= await open(this.#file, 'a', FILE_MODE);
          await this.#fh.write(data);
          await this.#fh.datasync();
        } catch (err) {
          await this.#fh?.close().catch(() => undefined);
          this.#fh = null;
          for (const w of group) w.reject(err);
          continue;
        }
        for (const w of group) w.resolve();
        this.#sinceCompaction += Buffer.byteLength(data);
        if (this.#sinceCompaction > Math.max(COMPACT_BYTES, this.#compactedBytes)) await this.#compact().catch(() => undefined);
      }
    } finally {
      this.#writing = null;
    }
  }

  /** Rewrites the file with the records the tracker keeps now. */
  async #compact(): Promise<void> {
    const tracker = this.#tracker;
    if (!tracker) return;
    const lines: string[] = [];
    for (const { record, argsJson } of tracker.snapshot()) lines.push(`${JSON.stringify({ ...record, argsJson })}\n`);
    const text = lines.join('');
    await this.#fh?.close().catch(() => undefined);
    this.#fh = null;
    await writeFileAtomic(this.#file, text);
    this.#compactedBytes = Buffer.byteLength(text);
    this.#sinceCompaction = 0;
  }

  /** Waits for the lines in flight; later puts open the file again. */
  async close(): Promise<void> {
    await this.#writing;
    await this.#fh?.close().catch(() => undefined);
    this.#fh = null;
  }
}
