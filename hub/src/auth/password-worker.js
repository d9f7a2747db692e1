// auth/: the password-hashing thread (started by password-hasher.ts). Plain
// JavaScript so that it loads without a TypeScript loader in the worker.
// scryptSync runs here, one job at a time, so no scrypt ever runs on libuv's
// thread pool, where the spool's fdatasync (and so every device ack) waits.
// On Linux the thread lowers its own CPU priority (nice 19), so hashing
// yields a core to the ingest thread. Imports: nothing of ours.
import { scryptSync } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort } from 'node:worker_threads';

/** This thread's kernel id: /proc/thread-self links to /proc/PID/task/TID. */
let tid = null;
try {
  const id = Number(readlinkSync('/proc/thread-self').split('/').pop());
  if (Number.isSafeInteger(id) && id > 0) tid = id;
} catch {
  // Not Linux: the thread keeps its normal priority.
}
if (tid !== null) {
  try {
    // setpriority(PRIO_PROCESS, tid) on Linux applies to this thread only.
    setPriority(tid, 19);
  } catch {
    // Not permitted: hashing still works, at normal priority.
  }
}

parentPort.on('message', (job) => {
  if (job.op === 'info') {
    let nice = null;
    try { if (tid !== null) nice = getPriority(tid); } catch { /* unknown */ }
    parentPort.postMessage({ id: job.id, tid, nice });
    return;
  }
  try {
    const key = scryptSync(job.password, Buffer.from(job.salt), job.keylen, { N: job.N, r: job.r, p: job.p, maxmem: job.maxmem });
    parentPort.postMessage({ id: job.id, key: new Uint8Array(key) });
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: err instanceof Error ? err.message : String(err) });
  }
});
