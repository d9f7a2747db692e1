// Test support (not a test file): scratch directories for the tests of every
// package. Imports only node: builtins and node:test types, nothing of ours
// (.dependency-cruiser.cjs: test-support-imports-only-node-builtins).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** A new directory `<under>/<prefix>XXXXXX` (under the OS temp dir by default), removed with its contents after the test. */
export function tempDir(t: TestContext, prefix: string, under: string = tmpdir()): string {
  const dir = mkdtempSync(join(under, prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
