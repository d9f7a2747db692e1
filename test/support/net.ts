// Test support (not a test file): network helpers for the tests of every
// package and the root scripts. Imports only node: builtins, nothing of ours
// (.dependency-cruiser.cjs: test-support-imports-only-node-builtins).
import { createServer } from 'node:net';

/** A TCP port on 127.0.0.1 that was free a moment ago (listens on port 0, closes, returns the port). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
    s.on('error', rej);
  });
}
