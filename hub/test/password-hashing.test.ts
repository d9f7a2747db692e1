// Password hashing runs in one dedicated, low-priority worker thread: never
// on libuv's thread pool (where the spool's fdatasync waits, and with it
// every device ack), never keeping a finished command-line tool alive, and a
// failed thread costs a 503, not an attempt.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { constants, mkdtempSync, open as openCb, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { scrypt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import test from 'node:test';
import { Operators } from '../src/auth/operators.ts';
import { ScryptWorker, type PasswordHasher } from '../src/auth/password-hasher.ts';
import { PasswordHashError } from '../src/core/errors.ts';
import { tempDir } from '../../test/support/fs.ts';
import { exitCode } from '../../test/support/proc.ts';
import { within } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');

/**
 * Occupies every libuv pool thread: each open() of a FIFO for reading blocks
 * its pool thread until a writer opens it. Returns a release function.
 */
function blockThreadPool(dir: string): { release: () => Promise<void>; opened: Promise<void> } {
  const threads = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  const fifos = Array.from({ length: threads }, (_, i) => join(dir, `fifo-${i}`));
  for (const f of fifos) assert.equal(spawnSync('mkfifo', [f]).status, 0, 'mkfifo');
  const opened = Promise.all(fifos.map((f) => new Promise<void>((res, rej) => openCb(f, 'r', (err, fd) => (err ? rej(err) : (closeSync(fd), res()))))));
  const release = async (): Promise<void> => {
    for (const f of fifos) {
      // Non-blocking: ENXIO until that pool thread is inside its open().
      for (;;) {
        try {
          closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }
    await opened;
  };
  return { release, opened: opened.then(() => undefined) };
}

test('password hashing - sign-ins are checked while every libuv pool thread is busy, in a thread of their own at nice 19', async (t) => {
  const hasher = new ScryptWorker();
  t.after(() => hasher.close());
  const ops = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 60_000, hasher });
  await ops.setPassword('admin', 'right-password');
  const info = await hasher.threadInfo();
  assert.notEqual(info.tid, process.pid, 'not the event loop thread');
  if (process.platform === 'linux') assert.equal(info.nice, 19, 'the hashing thread runs at the lowest CPU priority');

  const dir = tempDir(t, 'pool-');
  const pool = blockThreadPool(dir);
  let poolFree = false;
  // Queued behind the blocked pool threads: done only once they are released.
  const poolProbe = new Promise<void>((res) => scrypt('probe', 'salt', 16, () => { poolFree = true; res(); }));
  try {
    const ok = await within(ops.signIn('admin', 'right-password', '127.0.0.1'), 20_000, 'a sign-in while the pool is blocked');
    assert.ok(ok.ok);
    const wrong = await within(ops.signIn('admin', 'wrong-password', '127.0.0.1'), 20_000, 'a failed sign-in while the pool is blocked');
    assert.equal(wrong.ok, false);
    assert.equal(poolFree, false, 'the pool was blocked the whole time');
  } finally {
    await pool.release();
  }
  await within(poolProbe, 20_000, 'the pool to drain');
});

test('password hashing - the command-line tool exits once the password is saved', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'op-cli-'));
  try {
    const file = join(dir, 'operators.json');
    const proc = spawn(process.execPath, ['--import', 'tsx', 'hub/src/tools/operator.ts', 'alice', '--password-stdin', '--file', file], { cwd: root, stdio: ['pipe', 'ignore', 'pipe'] });
    proc.stdin.end('a-cli-password\n');
    let err = '';
    proc.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    const code = await within(exitCode(proc), 30_000, 'the tool to exit').finally(() => proc.kill('SIGKILL'));
    assert.equal(code, 0, err);
    assert.match(readFileSync(file, 'utf8'), /"name": "alice"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('password hashing - a closed or failed thread fails waiting jobs, starts again on the next one, and costs a sign-in a 503, not an attempt', async () => {
  const hasher = new ScryptWorker();
  const ops = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 60_000, hasher });
  await ops.setPassword('admin', 'right-password');
  const waiting = ops.signIn('admin', 'right-password', '10.1.1.1');
  await hasher.close();
  const r = await waiting;
  assert.equal(r.ok ? 200 : r.status, 503);
  assert.equal((r as { result: string }).result, 'error');
  assert.ok((await ops.signIn('admin', 'right-password', '10.1.1.1')).ok, 'a new thread takes the next job');
  await hasher.close();

  const broken: PasswordHasher = { derive: () => Promise.reject(new PasswordHashError('thread gone')) };
  const down = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 60_000, hasher: broken });
  for (let i = 0; i < 10; i++) {
    const x = await down.signIn('admin', 'whatever-1', '10.1.1.2');
    assert.equal(x.ok ? 200 : x.status, 503, 'the failure is the hub\'s: no 429 however often');
  }
});
