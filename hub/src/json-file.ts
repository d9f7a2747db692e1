// Small JSON files the hub and its tools rewrite (device registry, operator
// accounts and sessions, alarm rules). Imports: nothing of ours.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes atomically (temp file + rename) so a reader never sees half a file;
 * mode 0600: these files hold token and password hashes.
 */
export function writeJsonAtomic(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, path);
}
