// Operator sign-in, sign-out, password changes and alarm-rule changes write
// their files without blocking the event loop (no synchronous file calls),
// each saved before it is reported and in force, and overlapping changes are
// all kept.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs, { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import test from 'node:test';
import { Operators } from '../src/auth/operators.ts';
import type { PasswordHasher } from '../src/auth/password-hasher.ts';
import { Alarms } from '../src/live/alarms.ts';
import { tempDir } from '../../test/support/fs.ts';

/** Fast stand-in for scrypt: these tests are about files, not hashing. */
const hasher: PasswordHasher = { derive: (password, salt) => Promise.resolve(createHash('sha256').update(salt).update(password).digest()) };

const SYNC_CALLS = ['openSync', 'writeSync', 'writeFileSync', 'fsyncSync', 'fdatasyncSync', 'renameSync', 'mkdirSync', 'closeSync'] as const;

/** Runs `f` with every synchronous file call replaced by a recorder; returns the calls made. */
async function syncFileCalls(f: () => Promise<void>): Promise<string[]> {
  const calls: string[] = [];
  const mutable = fs as unknown as Record<string, unknown>;
  const saved = new Map(SYNC_CALLS.map((k) => [k, mutable[k]]));
  for (const k of SYNC_CALLS) {
    const real = saved.get(k) as (...a: unknown[]) => unknown;
    mutable[k] = (...a: unknown[]) => { calls.push(k); return real(...a); };
  }
  syncBuiltinESMExports();
  try {
    await f();
  } finally {
    for (const [k, v] of saved) mutable[k] = v;
    syncBuiltinESMExports();
  }
  return calls;
}

test('saves - sign-in, sign-out, password changes and alarm rules make no synchronous file calls, and are on disk when reported', async (t) => {
  const dir = tempDir(t, 'saves-');
  const file = join(dir, 'operators.json'), sessionsFile = join(dir, 'sessions.json'), rulesFile = join(dir, 'rules.json');
  const ops = new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher });
  const alarms = new Alarms(rulesFile);
  let token = '';
  let ruleId = '';
  const calls = await syncFileCalls(async () => {
    await ops.setPassword('alice', 'first-password');
    assert.match(readFileSync(file, 'utf8'), /"alice"/);
    const r = await ops.signIn('alice', 'first-password', '10.0.0.1');
    assert.ok(r.ok);
    token = r.token;
    assert.equal(new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher }).check(token)?.user, 'alice', 'the session is saved before sign-in reports it');
    await ops.signOut(token);
    assert.equal(new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher }).check(token), null, 'sign-out is saved before it is reported');
    ruleId = (await alarms.add({ name: 'Hot', metric: 'temperature', op: '>', threshold: 80 })).id;
    assert.equal(new Alarms(rulesFile).rules[0]?.id, ruleId);
    assert.equal(await alarms.remove(ruleId), true);
    assert.deepEqual(new Alarms(rulesFile).rules, []);
  });
  // The checks above read files synchronously on purpose (as a restart would): only writes count.
  const writes = calls.filter((c) => c !== 'openSync' && c !== 'closeSync');
  assert.deepEqual(writes, [], 'no synchronous writes, renames or fsyncs');
});

test('saves - overlapping changes are all kept: accounts, sessions and alarm rules', async (t) => {
  const dir = tempDir(t, 'saves-');
  const file = join(dir, 'operators.json'), sessionsFile = join(dir, 'sessions.json'), rulesFile = join(dir, 'rules.json');
  const ops = new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher });
  await Promise.all(['alice', 'bob', 'carol'].map((n) => ops.setPassword(n, `${n}-password`)));
  const results = await Promise.all(['alice', 'bob', 'carol', 'alice'].map((n, i) => ops.signIn(n, `${n}-password`, `10.0.0.${i}`)));
  const restarted = new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher });
  assert.deepEqual(restarted.names().sort(), ['alice', 'bob', 'carol']);
  for (const r of results) {
    assert.ok(r.ok);
    assert.ok(restarted.check(r.token), `session of ${r.user} survives a restart`);
  }

  const alarms = new Alarms(rulesFile);
  const added = await Promise.all(['a', 'b', 'c'].map((name) => alarms.add({ name, metric: 'temperature', op: '>', threshold: 1 })));
  assert.deepEqual(alarms.rules.map((r) => r.name).sort(), ['a', 'b', 'c']);
  assert.deepEqual(new Alarms(rulesFile).rules.map((r) => r.name).sort(), ['a', 'b', 'c']);
  await Promise.all([alarms.remove(added[0]!.id), alarms.remove(added[2]!.id)]);
  assert.deepEqual(new Alarms(rulesFile).rules.map((r) => r.name), ['b']);
});
