// core/: the one way the hub and its tools replace a file: write a temp file
// (mode 0600), fsync it, rename it over the target, fsync the directory.
// A reader sees the old file or the new one, never half of one, and after a
// crash the new one is there only if it was complete. Used for the device
// registry, operator accounts and sessions, alarm rules, and the spool's
// checkpoint and sequence files. Imports: nothing of ours.
//
// The async form is for the running hub (its fsyncs run on libuv's pool,
// never on the event loop); the sync form is for command-line tools and
// startup, where nothing else is waiting.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Files the hub writes hold token and password hashes and readings: owner only. */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

let counter = 0;
const tmpName = (path: string) => `${path}.${process.pid}.${++counter}.tmp`;

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
  const tmp = tmpName(path);
  const fh = await open(tmp, 'w', FILE_MODE);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  await fsyncDir(dir);
}

export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  const tmp = tmpName(path);
  const fd = openSync(tmp, 'w', FILE_MODE);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dir, 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}

const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n';

export function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  return writeFileAtomic(path, json(value));
}

export function writeJsonAtomicSync(path: string, value: unknown): void {
  writeFileAtomicSync(path, json(value));
}

/** fsync a directory, so a rename or a new file in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try { await fh.sync(); } finally { await fh.close(); }
}
