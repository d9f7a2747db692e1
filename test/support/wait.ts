// Test support (not a test file): waiting with a deadline, for the tests of
// every package and the root scripts. Imports only node: builtins, nothing
// of ours (.dependency-cruiser.cjs: test-support-imports-only-node-builtins).

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Rejects after `ms` unless `p` settles first; the error names `what` it waited for. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); }),
  ]);
}

/** Polls `cond` until true, pausing `pause` ms (or awaiting `pause()`) between checks; rejects after `ms` naming `what`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  pause: number | (() => Promise<unknown>) = 10,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await (typeof pause === 'number' ? sleep(pause) : pause());
  }
}
