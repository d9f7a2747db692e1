// auth/: password hashing off the event loop and off libuv's thread pool.
// Operator passwords are scrypt hashes (N=2^15, r=8, p=1: ~50 ms of a core
// and 32 MiB per check). Node's async crypto.scrypt runs on libuv's shared
// pool, the same four threads the spool's fdatasync needs before any device
// ack, so a sign-in flood would stall acks. Instead every hash runs in ONE
// dedicated worker thread (password-worker.js, crypto.scryptSync, nice 19 on
// Linux): on a 2-core host hashing can take at most one core, at low
// priority, and never a pool thread. Operators bounds how many checks may
// wait for it (HUB_LOGIN_MAX_CONCURRENT). Imports: nothing of ours.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { PasswordHashError } from '../core/errors.ts';

export interface ScryptParams { N: number; r: number; p: number }

/** What Operators needs: a scrypt key derivation that does not block the event loop. */
export interface PasswordHasher {
  derive(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer>;
}

export const SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };
const KEY_BYTES = 32;
/** scrypt needs 128 * N * r bytes (32 MiB here); twice that leaves room. */
const MAX_MEM = 64 * 1024 * 1024;


interface Job { resolve: (m: WorkerReply) => void; reject: (err: Error) => void }
type WorkerReply = { id: number; key?: Uint8Array; error?: string; tid?: number | null; nice?: number | null };

/**
 * The hashing thread, started on first use. It keeps the process alive only
 * while a job is waiting (unref'd when idle), so tests and command-line
 * tools exit without closing it.
 */
export class ScryptWorker implements PasswordHasher {
  #worker: Worker | null = null;
  readonly #jobs = new Map<number, Job>();
  #nextId = 1;

  /** Jobs sent to the thread and not answered yet. */
  get pending(): number { return this.#jobs.size; }

  derive(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
    return this.#send({ password, salt: new Uint8Array(salt), keylen: KEY_BYTES, ...params, maxmem: MAX_MEM })
      .then((m) => {
        if (m.error !== undefined || !m.key) throw new PasswordHashError(`scrypt failed: ${m.error ?? 'no key'}`);
        return Buffer.from(m.key);
      });
  }

  /** The thread's kernel id and nice value (null where the platform does not say). */
  async threadInfo(): Promise<{ tid: number | null; nice: number | null }> {
    const m = await this.#send({ op: 'info' });
    return { tid: m.tid ?? null, nice: m.nice ?? null };
  }

  /** Stops the thread; waiting jobs fail. A later job starts a new one. */
  async close(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return;
    this.#fail(worker, new PasswordHashError('password hashing thread closed'));
    await worker.terminate();
  }

  #send(msg: Record<string, unknown>): Promise<WorkerReply> {
    const worker = this.#worker ?? this.#start();
    const id = this.#nextId++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.#jobs.set(id, { resolve, reject });
      if (this.#jobs.size === 1) worker.ref();
      worker.postMessage({ id, ...msg });
    });
  }

  #start(): Worker {
    const worker = new Worker(new URL('./password-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (m: WorkerReply) => {
      const job = this.#jobs.get(m.id);
      if (!job) return;
      this.#jobs.delete(m.id);
      if (this.#jobs.size === 0) worker.unref();
      job.resolve(m);
    });
    worker.on('error', (err) => this.#fail(worker, new PasswordHashError('password hashing thread failed', { cause: err })));
    worker.on('exit', (code) => this.#fail(worker, new PasswordHashError(`password hashing thread exited (${code})`)));
    this.#worker = worker;
    return worker;
  }

  #fail(worker: Worker, err: Error): void {
    if (this.#worker !== worker) return;
    this.#worker = null;
    const jobs = [...this.#jobs.values()];
    this.#jobs.clear();
    for (const job of jobs) job.reject(err);
  }
}

let shared: ScryptWorker | null = null;

/** The process's one hashing thread. */
export function sharedPasswordHasher(): ScryptWorker {
  shared ??= new ScryptWorker();
  return shared;
}

/** `scrypt$N$r$p$salt$hash` (base64url). */
export async function hashPassword(hasher: PasswordHasher, password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await hasher.derive(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyPassword(hasher: PasswordHasher, password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const want = Buffer.from(parts[5]!, 'base64url');
  if (!(N >= 2 && r >= 1 && p >= 1) || want.length !== KEY_BYTES) return false;
  const got = await hasher.derive(password, salt, { N, r, p });
  return got.length === want.length && timingSafeEqual(got, want);
}

/** A valid hash of a random password: unknown names cost as much as known ones. */
export const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${randomBytes(16).toString('base64url')}$${randomBytes(KEY_BYTES).toString('base64url')}`;
