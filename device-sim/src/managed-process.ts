// device-sim/: a process the load tester starts and restarts itself
// (--hub-command, --influx-command): a shell command in its own process
// group, signalled as a whole (a hub started through npm gets the signal
// too), started again when a scenario says so, and ended with the run.
// Imports: node.
import { spawn, type ChildProcess } from 'node:child_process';

export interface ManagedOptions {
  /** What it is, for the log: "hub", "database". */
  name: string;
  command: string;
  /** Polled after each start until it answers (an HTTP health URL); absent: started = spawned. */
  readyUrl?: string;
  readyTimeoutMs?: number;
  log?: (line: string) => void;
}

export class ManagedProcess {
  readonly #o: ManagedOptions;
  #child: ChildProcess | null = null;
  #exited: Promise<void> = Promise.resolve();
  /** Output lines kept for an error message (the last 50). */
  readonly #tail: string[] = [];

  constructor(o: ManagedOptions) {
    this.#o = o;
  }

  get running(): boolean { return this.#child !== null && this.#child.exitCode === null && this.#child.signalCode === null; }
  get pid(): number | undefined { return this.#child?.pid; }

  /** Starts the command and waits until it is ready (readyUrl answers 2xx). */
  async start(): Promise<void> {
    const child = spawn(this.#o.command, { shell: true, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const keep = (b: Buffer) => {
      for (const l of b.toString().split('\n')) if (l.trim()) { this.#tail.push(l.slice(0, 500)); if (this.#tail.length > 50) this.#tail.shift(); }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    if (!this.#o.readyUrl) return;
    const end = Date.now() + (this.#o.readyTimeoutMs ?? 60_000);
    for (;;) {
      try {
        if ((await fetch(this.#o.readyUrl, { signal: AbortSignal.timeout(2000) })).ok) return;
      } catch { /* not yet */ }
      if (!this.running) throw new Error(`${this.#o.name} (${this.#o.command}) exited before it was ready: ${this.#tail.slice(-10).join(' | ')}`);
      if (Date.now() > end) throw new Error(`${this.#o.name} not ready at ${this.#o.readyUrl} after ${this.#o.readyTimeoutMs ?? 60_000} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Sends `signal` to the whole process group and waits for it to exit (SIGKILL after `graceMs`). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<void> {
    const pid = this.#child?.pid;
    if (pid === undefined || !this.running) return;
    const group = (s: NodeJS.Signals) => { try { process.kill(-pid, s); } catch { /* gone */ } };
    group(signal);
    const t = setTimeout(() => group('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(t);
  }

  /** stop(signal), then start() again: returns how long it was away, ms. */
  async restart(signal: NodeJS.Signals): Promise<number> {
    const t0 = Date.now();
    this.#o.log?.(`scenario: ${this.#o.name} ${signal}`);
    await this.stop(signal);
    await this.start();
    const ms = Date.now() - t0;
    this.#o.log?.(`scenario: ${this.#o.name} back after ${ms} ms`);
    return ms;
  }
}
