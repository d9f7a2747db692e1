// The audit trail store (hub/src/auth/audit.ts): ids that continue after a
// restart, one write per event-loop turn, every filter and paging, bounds
// and line safety whatever the input, rotation within the byte budget under
// a flood, rate keys and a bounded queue that turn floods into counts, torn
// lines skipped, a failing disk counted and caught up on, flush() durable
// for a fresh open(). Imports: node:test, node, hub/src/auth/audit.
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { AuditLog, type AuditEntry } from '../src/auth/audit.ts';

function tempFile(t: { after: (fn: () => void) => void }): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'audit-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, file: join(dir, 'audit.jsonl') };
}

type New = Omit<AuditEntry, 'time' | 'id'>;
const entry = (action: string, extra: Partial<New> = {}): New => ({ actor: 'admin', address: '127.0.0.1', action, target: '', outcome: 'ok', detail: {}, ...extra });
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

test('audit - ids continue after a restart (from <file>.1 when <file> is gone), newest first, in the order recorded', async (t) => {
  const { file } = tempFile(t);
  const first = await AuditLog.open({ file, maxBytes: 1 << 20 });
  first.record(entry('sign-in'));
  first.record(entry('device.create'));
  await turn();
  first.record(entry('device.rotate'));
  await first.close();
  const second = await AuditLog.open({ file, maxBytes: 1 << 20 });
  second.record(entry('sign-out'));
  assert.deepEqual((await second.query({})).entries.map((e) => [e.id, e.action]), [[4, 'sign-out'], [3, 'device.rotate'], [2, 'device.create'], [1, 'sign-in']]);
  await second.close();
  // Just rotated: only <file>.1 holds entries.
  writeFileSync(`${file}.1`, readFileSync(file));
  unlinkSync(file);
  const third = await AuditLog.open({ file, maxBytes: 1 << 20 });
  third.record(entry('rule.add'));
  assert.deepEqual((await third.query({ limit: 2 })).entries.map((e) => e.id), [5, 4]);
  await third.close();
});

test('audit - entries recorded in one event-loop turn go to disk in one write, after record() has returned', async (t) => {
  const { dir, file } = tempFile(t);
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  const probe = await open(dir, 'r');
  const proto = Object.getPrototypeOf(probe) as { write: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const write = proto.write;
  let writes = 0;
  proto.write = function (this: unknown, ...args: unknown[]) { writes++; return write.apply(this, args); };
  try {
    for (let i = 0; i < 500; i++) log.record(entry('config.set', { target: `d-${i}` }));
    // Not on disk yet: record() queued and returned.
    assert.equal(statSync(file, { throwIfNoEntry: false }), undefined);
    await log.flush();
    assert.equal(writes, 1);
    assert.equal(lines(file).length, 500);
  } finally {
    proto.write = write;
  }
  await log.close();
});

test('audit - every filter, action prefixes only with a dot, limit bounds, and paging with before', async () => {
  let now = 1_000;
  const log = new AuditLog({ file: null, maxBytes: 1 << 20, now: () => now });
  log.record(entry('sign-in', { actor: 'ops' }));
  now = 2_000;
  log.record(entry('device.create', { target: 'd-1' }));
  log.record(entry('device.rotate', { target: 'd-1', outcome: 'failed' }));
  now = 3_000;
  log.record(entry('devices.list', { target: 'd-2', outcome: 'refused' }));
  log.record(entry('rule.add', { actor: 'ops', target: 'r-1' }));
  const ids = async (q: Parameters<AuditLog['query']>[0]) => (await log.query(q)).entries.map((e) => e.id);
  assert.deepEqual(await ids({}), [5, 4, 3, 2, 1]);
  assert.deepEqual(await ids({ actor: 'ops' }), [5, 1]);
  assert.deepEqual(await ids({ action: 'device.' }), [3, 2]);
  assert.deepEqual(await ids({ action: 'device.create' }), [2]);
  assert.deepEqual(await ids({ action: 'device' }), [], 'no prefix without the dot');
  assert.deepEqual(await ids({ target: 'd-1' }), [3, 2]);
  assert.deepEqual(await ids({ outcome: 'failed' }), [3]);
  assert.deepEqual(await ids({ outcome: 'refused' }), [4]);
  assert.deepEqual(await ids({ since: 2_000 }), [5, 4, 3, 2]);
  assert.deepEqual(await ids({ until: 2_000 }), [3, 2, 1]);
  assert.deepEqual(await ids({ since: 2_000, until: 2_000, target: 'd-1', outcome: 'ok' }), [2]);
  assert.deepEqual(await ids({ before: 4 }), [3, 2, 1]);
  assert.deepEqual(await ids({ before: 4, actor: 'ops' }), [1]);

  const page1 = await log.query({ limit: 2 });
  assert.deepEqual([page1.entries.map((e) => e.id), page1.next], [[5, 4], 4]);
  const page2 = await log.query({ limit: 2, before: page1.next ?? 0 });
  assert.deepEqual([page2.entries.map((e) => e.id), page2.next], [[3, 2], 2]);
  const page3 = await log.query({ limit: 2, before: page2.next ?? 0 });
  assert.deepEqual([page3.entries.map((e) => e.id), page3.next], [[1], null]);
  // Exactly `limit` left: no next page.
  assert.equal((await log.query({ limit: 5 })).next, null);

  for (let i = 0; i < 1_500; i++) log.record(entry('command.send'));
  const byDefault = await log.query({});
  assert.equal(byDefault.entries.length, 100);
  assert.equal(byDefault.next, byDefault.entries[99]?.id);
  assert.equal((await log.query({ limit: 5_000 })).entries.length, 1000);
  assert.equal((await log.query({ limit: 0 })).entries.length, 1);
});

test('audit - hostile input: fields cut to their bounds (… marks it), control characters replaced, "\\n{…}" forges no line, detail capped', async (t) => {
  const { file } = tempFile(t);
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  const forged = '\n{"time":0,"id":999,"actor":"root","address":"","action":"sign-in","target":"","outcome":"ok","detail":{}}\n';
  const detail: Record<string, string | number> = { n: Number.NaN };
  for (let i = 0; i < 40; i++) detail[`key${i}-${'x'.repeat(50)}`] = 'v'.repeat(1000) + forged;
  log.record({ actor: 'a'.repeat(500), address: `1.2.3.4${forged}`, action: `sign-in${forged}`, target: 't'.repeat(5000), outcome: 'failed', detail });
  log.record({ ...entry('sign-in'), actor: `eve\u0000\u001b[2J\r\u2028\u202e`, detail: JSON.parse('{"__proto__":{"polluted":true},"user":"x"}') as Record<string, string> });
  await log.flush();
  assert.equal(lines(file).length, 2, 'one line per entry');
  const [second, first] = (await log.query({})).entries;
  assert.ok(first && second);
  assert.equal(first.actor, `${'a'.repeat(63)}…`);
  assert.equal(first.target, `${'t'.repeat(199)}…`);
  assert.equal(first.address.length, 64);
  assert.equal(first.action.length, 64);
  assert.equal(Object.keys(first.detail).length, 16);
  assert.equal(first.detail['n'], null);
  for (const [k, v] of Object.entries(first.detail)) {
    assert.ok(k.length <= 32, k);
    if (typeof v === 'string') assert.equal(v, `${'v'.repeat(199)}…`);
  }
  assert.equal(second.actor, 'eve\uFFFD\uFFFD[2J\uFFFD\uFFFD\uFFFD');
  const text = [first, second].map((e) => [e.actor, e.address, e.action, e.target, ...Object.keys(e.detail), ...Object.values(e.detail).map(String)].join('')).join('');
  assert.equal(/\p{Cc}|[\u2028\u2029\u202a-\u202e]/u.test(text), false);
  assert.deepEqual(Object.keys(second.detail), ['__proto__', 'user']);
  assert.equal(Object.getPrototypeOf(second.detail), Object.prototype);
  assert.equal((await log.query({ actor: 'root' })).entries.length, 0, 'nothing forged');
  await log.close();
  const reopened = await AuditLog.open({ file, maxBytes: 1 << 20 });
  assert.deepEqual((await reopened.query({})).entries.map((e) => e.id), [2, 1]);
  await reopened.close();
});

test('audit - a flood of 50,000 entries stays within the byte budget in two files, the newest survive', async (t) => {
  const { file } = tempFile(t);
  const maxBytes = 256 * 1024;
  const log = await AuditLog.open({ file, maxBytes });
  for (let i = 0; i < 50_000; i++) {
    log.record(entry('device.update', { target: `dev-${i}`, detail: { n: i } }));
    // As fast as the disk takes them (a faster producer fills the queue: the next test).
    if (i % 5_000 === 4_999) await log.flush();
  }
  await log.flush();
  const sizes = [statSync(file).size, statSync(`${file}.1`).size];
  const longest = Math.max(...[...lines(file), ...lines(`${file}.1`)].map((l) => l.length + 1));
  assert.ok(sizes[0]! + sizes[1]! <= maxBytes + longest, `${sizes.join(' + ')} bytes on disk`);
  for (const size of sizes) assert.ok(size <= maxBytes / 2 + longest);
  assert.equal(log.stats().bytes, sizes[0]! + sizes[1]!);
  assert.equal(log.stats().written, 50_000);
  const page = await log.query({ limit: 1000 });
  assert.deepEqual(page.entries.map((e) => e.id), Array.from({ length: 1000 }, (_, i) => 50_000 - i));
  assert.equal(page.entries[0]?.target, 'dev-49999');
  assert.equal((await log.query({ target: 'dev-0' })).entries.length, 0, 'the oldest went first');
  await log.close();
});

test('audit - memory only: a bounded ring (10,000 entries, maxBytes)', async () => {
  const log = new AuditLog({ file: null, maxBytes: 1 << 30 });
  for (let i = 0; i < 12_000; i++) {
    log.record(entry('command.send', { target: `d-${i}` }));
    if (i % 5_000 === 4_999) await turn();
  }
  await log.flush();
  assert.deepEqual((await log.query({ before: 2_002, limit: 1000 })).entries.map((e) => e.id), [2_001]);
  const small = new AuditLog({ file: null, maxBytes: 64 * 1024 });
  for (let i = 0; i < 5_000; i++) small.record(entry('command.send', { target: `d-${i}` }));
  await small.flush();
  assert.ok(small.stats().bytes <= 64 * 1024);
  assert.ok((await small.query({ limit: 1000, action: 'command.send' })).entries.length < 1000);
  assert.equal((await small.query({ limit: 1 })).entries[0]?.id, 5_000);
});

test('audit - rate keys keep perKeyPerMinute entries a key and minute; one summary counts the rest; the key table is bounded without losing counts', async () => {
  let now = 0;
  const log = new AuditLog({ file: null, maxBytes: 1 << 30, now: () => now, perKeyPerMinute: 5 });
  const failed = (address: string) => entry('sign-in', { actor: '', address, outcome: 'failed', detail: { user: 'root' } });
  for (let i = 0; i < 500; i++) log.record(failed('10.0.0.9'), 'sign-in-failed:10.0.0.9');
  for (let i = 0; i < 3; i++) log.record(failed('10.0.0.8'), 'sign-in-failed:10.0.0.8');
  log.record(entry('device.create'));
  assert.equal(log.stats().suppressed, 495);
  let all = (await log.query({ limit: 1000 })).entries;
  assert.equal(all.filter((e) => e.action === 'sign-in').length, 8);
  assert.equal(all.filter((e) => e.action === 'audit.suppressed').length, 0, 'not before the minute is over');
  now = 60_000;
  await log.flush();
  all = (await log.query({ limit: 1000 })).entries;
  const summaries = all.filter((e) => e.action === 'audit.suppressed');
  assert.equal(summaries.length, 1, 'one summary, and none for a key that lost nothing');
  assert.deepEqual(summaries[0]?.detail, { key: 'sign-in-failed:10.0.0.9', count: 495, action: 'sign-in' });
  assert.equal(summaries[0]?.outcome, 'failed');
  // A new minute: kept again, and counted again.
  for (let i = 0; i < 10; i++) log.record(failed('10.0.0.9'), 'sign-in-failed:10.0.0.9');
  assert.equal((await log.query({ limit: 1000, action: 'sign-in', since: 60_000 })).entries.length, 5);
  now = 120_000;
  await log.flush();
  assert.deepEqual((await log.query({ action: 'audit.suppressed', since: 120_000 })).entries.map((e) => e.detail['count']), [5]);

  // 10,000 other keys push the oldest out: its count is written then, not lost.
  now = 200_000;
  for (let i = 0; i < 7; i++) log.record(failed('10.9.9.9'), 'old');
  for (let i = 0; i < 10_000; i++) log.record(failed(`10.1.${i >> 8}.${i & 255}`), `k${i}`);
  await log.flush();
  const old = (await log.query({ action: 'audit.suppressed', since: 200_000 })).entries;
  assert.deepEqual(old.map((e) => e.detail), [{ key: 'old', count: 2, action: 'sign-in' }]);
});

test('audit - past 10,000 queued entries the rest are dropped and counted, and one entry says how many once there is room', async (t) => {
  const { file } = tempFile(t);
  const log = await AuditLog.open({ file, maxBytes: 64 << 20 });
  for (let i = 0; i < 10_050; i++) log.record(entry('command.send', { target: `d-${i}` }));
  assert.equal(log.stats().dropped, 50);
  await log.flush();
  const [newest, before] = (await log.query({ limit: 2 })).entries;
  assert.equal(newest?.action, 'audit.dropped');
  assert.deepEqual(newest?.detail, { count: 50 });
  assert.equal(before?.target, 'd-9999');
  assert.equal(lines(file).length, 10_001);
  log.record(entry('command.send'));
  await log.flush();
  assert.equal((await log.query({ action: 'audit.dropped' })).entries.length, 1, 'said once');
  await log.close();
});

test('audit - torn or foreign lines are skipped, never an error, and an entry written after a torn line is whole', async (t) => {
  const { file } = tempFile(t);
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  log.record(entry('sign-in'));
  log.record(entry('sign-out'));
  await log.close();
  appendFileSync(file, '[1,2]\n{"id":"x"}\nnot json\n{"time":5,"id":3,"actor":"adm');
  const reopened = await AuditLog.open({ file, maxBytes: 1 << 20 });
  assert.deepEqual((await reopened.query({})).entries.map((e) => e.id), [2, 1]);
  reopened.record(entry('rule.add'));
  await reopened.flush();
  assert.deepEqual((await reopened.query({})).entries.map((e) => [e.id, e.action]), [[3, 'rule.add'], [2, 'sign-out'], [1, 'sign-in']]);
  await reopened.close();
});

test('audit - a write error (directory removed) is counted, never thrown; once the directory is back the entries are written, in order', async (t) => {
  const { dir } = tempFile(t);
  const sub = join(dir, 'data');
  const file = join(sub, 'audit.jsonl');
  mkdirSync(sub);
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  log.record(entry('device.create', { target: 'd-1' }));
  await log.flush();
  rmSync(sub, { recursive: true });
  assert.doesNotThrow(() => log.record(entry('device.rotate', { target: 'd-1' })));
  await log.flush();
  assert.equal(log.stats().writeErrors, 1);
  log.record(entry('device.delete', { target: 'd-1' }));
  await log.flush();
  assert.equal(log.stats().writeErrors, 2, 'tried again with the next batch');
  assert.deepEqual((await log.query({})).entries, []);
  mkdirSync(sub);
  const errors = log.stats().writeErrors;
  log.record(entry('config.set', { target: 'd-2' }));
  await log.flush();
  assert.equal(log.stats().writeErrors, errors);
  assert.deepEqual((await log.query({})).entries.map((e) => [e.id, e.action]), [[4, 'config.set'], [3, 'device.delete'], [2, 'device.rotate']]);
  await log.close();
  const fresh = await AuditLog.open({ file, maxBytes: 1 << 20 });
  fresh.record(entry('sign-out'));
  assert.equal((await fresh.query({ limit: 1 })).entries[0]?.id, 5);
  await fresh.close();
});

test('audit - flush() makes everything recorded readable by a fresh open(), without close()', async (t) => {
  const { file } = tempFile(t);
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  for (let i = 0; i < 300; i++) log.record(entry('command.send', { target: `d-${i}` }));
  await log.flush();
  const fresh = await AuditLog.open({ file, maxBytes: 1 << 20 });
  const seen = await fresh.query({ limit: 1000 });
  assert.equal(seen.entries.length, 300);
  assert.equal(seen.entries[0]?.target, 'd-299');
  await log.close();
});
