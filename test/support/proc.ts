// Test support (not a test file): child processes for the tests that run a
// program (the hub, npm start) as users do: spawned with an environment, its
// output collected, waited on for a line, killed after the test. Imports only
// node: builtins and node:test types, nothing of ours
// (.dependency-cruiser.cjs: test-support-imports-only-node-builtins).
import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';

/** A child started by spawnCollecting(). */
export interface Collecting {
  readonly proc: ChildProcess;
  /** What errors call it ("hub exited 1 ...", "npm start exited ..."). */
  readonly name: string;
  /** Everything it wrote to stdout and stderr so far, in arrival order. */
  readonly out: () => string;
  /** Settles when it exits (listened for from the start, so it is never missed). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface SpawnOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Names the child in errors. */
  name: string;
  /**
   * Its own process group (detached), and after the test SIGKILL goes to the
   * whole group: npm may be gone while what it started still runs.
   */
  group?: boolean;
}

/** Spawns `command args` with stdout and stderr collected for out(); SIGKILLs it (with `group`, its process group) after the test. */
export function spawnCollecting(t: TestContext, command: string, args: string[], opts: SpawnOptions): Collecting {
  const proc = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: opts.group ?? false });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  if (opts.group) {
    t.after(() => { try { process.kill(-(proc.pid ?? 0), 'SIGKILL'); } catch { /* the group has exited */ } });
  } else {
    t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  }
  let out = '';
  proc.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr.on('data', (c: Buffer) => { out += c.toString(); });
  return { proc, name: opts.name, out: () => out, exited };
}

/** Resolves with the first match of `pattern` (a string matches literally) in the child's output; rejects with that output after `ms` or if the child exits first. */
export function waitForOutput(c: Collecting, pattern: RegExp | string, ms: number, what: string): Promise<RegExpExecArray> {
  const re = typeof pattern === 'string' ? new RegExp(pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : pattern;
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const m = re.exec(c.out());
      if (m) settle(() => resolve(m));
    };
    const settle = (f: () => void): void => {
      clearTimeout(timer);
      c.proc.stdout?.off('data', check);
      c.proc.stderr?.off('data', check);
      f();
    };
    const timer = setTimeout(() => settle(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; ${c.name} output so far:\n${c.out()}`))), ms);
    // Registered after spawnCollecting's own listeners: out() already has the chunk.
    c.proc.stdout?.on('data', check);
    c.proc.stderr?.on('data', check);
    void c.exited.then(({ code, signal }) => {
      check();
      settle(() => reject(new Error(`${c.name} exited ${code ?? signal} while waiting for ${what}:\n${c.out()}`)));
    });
    check();
  });
}

/** Resolves with the child's exit code (null if a signal ended it), at once if it has already exited. */
export function exitCode(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((r) => proc.once('exit', (code) => r(code)));
}
