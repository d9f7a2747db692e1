// sinks/influx/: the dead-letter file, lines InfluxDB rejected as invalid
// (or the hub could not write exactly), one JSON object a line:
// {time, status, reason, line}. Devices decide what ends up here, so it is
// bounded: past `maxBytes` the file is renamed to `<name>.1.ndjson`
// (replacing the previous one) and a new one is started, so the two never
// hold more than 2 x maxBytes. Owner-only (FILE_MODE): the lines are the
// fleet's readings. Not fsynced: a dead letter is a diagnostic copy of data
// InfluxDB refused, not data the hub promised. Imports: core.
import { chmod, rename, stat, writeFile } from 'node:fs/promises';
import { FILE_MODE } from '../../core/atomic-file.ts';
import type { HubMetrics } from '../../core/metrics.ts';

export interface DeadLetter {
  /** HTTP status InfluxDB answered with; null when the hub refused the line itself. */
  readonly status: number | null;
  readonly reason: string;
  readonly line: string;
}

export interface DeadLetterFileOptions {
  path: string;
  /** HUB_DEAD_LETTER_MAX_BYTES. */
  maxBytes: number;
  metrics: HubMetrics;
  now?: () => number;
}

/** `dead-letter.ndjson` -> `dead-letter.1.ndjson`. */
export function rotatedPath(path: string): string {
  return path.endsWith('.ndjson') ? `${path.slice(0, -'.ndjson'.length)}.1.ndjson` : `${path}.1`;
}

export class DeadLetterFile {
  readonly path: string;
  readonly rotatedPath: string;
  readonly #options: DeadLetterFileOptions;
  #currentBytes = 0;
  #rotatedBytes = 0;
  #chmodded = false;
  /** Appends run one at a time: a rotation must not interleave with a write. */
  #chain: Promise<void> = Promise.resolve();

  constructor(o: DeadLetterFileOptions) {
    this.#options = o;
    this.path = o.path;
    this.rotatedPath = rotatedPath(o.path);
  }

  /** Bytes in the current and the rotated file. */
  get bytes(): number { return this.#currentBytes + this.#rotatedBytes; }

  /** Appends the records (rotating as needed); resolves when they are written. */
  append(records: readonly DeadLetter[]): Promise<void> {
    const next = this.#chain.then(() => this.#append(records));
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #append(records: readonly DeadLetter[]): Promise<void> {
    if (!this.#chmodded) {
      // Files an older version made with the default umask.
      for (const file of [this.path, this.rotatedPath]) await chmod(file, FILE_MODE).catch(() => undefined);
      this.#chmodded = true;
    }
    // Sizes from the disk each time: an operator may have removed or emptied a file.
    this.#currentBytes = await sizeOf(this.path);
    this.#rotatedBytes = await sizeOf(this.rotatedPath);
    const max = this.#options.maxBytes;
    const time = new Date((this.#options.now ?? Date.now)()).toISOString();
    let pending = '';
    let pendingBytes = 0;
    for (const record of records) {
      let text = JSON.stringify({ time, status: record.status, reason: record.reason, line: record.line }) + '\n';
      let bytes = Buffer.byteLength(text);
      if (bytes > max) {
        // One record larger than the whole cap: keep what fits, say so.
        const keep = Math.max(0, Math.floor(record.line.length * (max / bytes)) - 512);
        text = JSON.stringify({ time, status: record.status, reason: record.reason.slice(0, 200), line: record.line.slice(0, keep), truncated: true }) + '\n';
        bytes = Buffer.byteLength(text);
      }
      if (this.#currentBytes + pendingBytes + bytes > max) {
        await this.#write(pending, pendingBytes);
        pending = '';
        pendingBytes = 0;
        if (this.#currentBytes > 0) await this.#rotate();
      }
      pending += text;
      pendingBytes += bytes;
    }
    await this.#write(pending, pendingBytes);
  }

  async #write(text: string, bytes: number): Promise<void> {
    if (!bytes) return;
    await writeFile(this.path, text, { flag: 'a', mode: FILE_MODE });
    this.#currentBytes += bytes;
    this.#options.metrics.deadLetterBytes.set(this.bytes);
  }

  async #rotate(): Promise<void> {
    // rename() replaces the older rotated file in one step.
    await rename(this.path, this.rotatedPath);
    this.#rotatedBytes = this.#currentBytes;
    this.#currentBytes = 0;
    this.#options.metrics.deadLetterRotations.inc();
    this.#options.metrics.deadLetterBytes.set(this.bytes);
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}
