// The audit trail store (hub/src/auth/audit.ts): bounded on disk under a
// flood, one line per entry whatever the input, ids that continue after a
// restart, filters and paging, rate keys that keep a flood to a count, and
// a torn last line or a failing disk that never breaks the caller.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../src/auth/audit.ts';

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'audit-'));
  test.after?.(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const entry = (action: string, extra: Partial<Parameters<AuditLog['record']>[0]> = {}) => ({ actor: 'admin', address: '127.0.0.1', action, target: '', outcome: 'ok' as const, detail: {}, ...extra });

test('audit - ids continue after a restart; newest first; filters (actor, action prefix, target, outcome, time) and paging with before', async () => {
  const dir = tempDir();
  const file = join(dir, 'audit.jsonl');
  let now = 1_000;
  const first = await AuditLog.open({ file, maxBytes: 1 << 20, now: () => now });
  first.record(entry('sign-in'));
  now = 2_000;
  first.record(entry('device.create', { target: 'd-1' }));
  first.record(entry('device.rotate', { target: 'd-1', actor: 'ops' }));
  await first.close();
  const again = await AuditLog.open({ file, maxBytes: 1 << 20, now: () => now });
  now = 3_000;
  again.record(entry('rule.add', { outcome: 'failed' }));
  const all = await again.query({});
  assert.deepEqual(all.entries.map((e) => [e.id, e.action]), [[4, 'rule.add'], [3, 'device.rotate'], [2, 'device.create'], [1, 'sign-in']]);
  assert.equal(all.next, null);
  assert.deepEqual((await again.query({ action: 'device.' })).entries.map((e) => e.id), [3, 2]);
  assert.deepEqual((await again.query({ action: 'device' })).entries, [], 'no prefix without the dot');
  assert.deepEqual((await again.query({ actor: 'ops' })).entries.map((e) => e.id), [3]);
  assert.deepEqual((await again.query({ target: 'd-1', outcome: 'ok' })).entries.map((e) => e.id), [3, 2]);
  assert.deepEqual((await again.query({ outcome: 'failed' })).entries.map((e) => e.id), [4]);
  assert.deepEqual((await again.query({ since: 2_000, until: 2_500 })).entries.map((e) => e.id), [3, 2]);
  const page1 = await again.query({ limit: 3 });
  assert.deepEqual(page1.entries.map((e) => e.id), [4, 3, 2]);
  assert.equal(page1.next, 2);
  const page2 = await again.query({ limit: 3, before: page1.next ?? 0 });
  assert.deepEqual(page2.entries.map((e) => e.id), [1]);
  assert.equal(page2.next, null);
  await again.close();
});

test('audit - hostile input: fields cut to their bounds, control characters and newlines replaced (one line per entry, none forged), detail keys capped', async () => {
  const dir = tempDir();
  const file = join(dir, 'audit.jsonl');
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  const forged = '\n{"id":999,"time":0,"actor":"root","action":"sign-in","outcome":"ok"}\r\n';
  const detail: Record<string, string> = {};
  for (let i = 0; i < 40; i++) detail[`k${i}${'x'.repeat(50)}`] = 'v'.repeat(1000) + forged;
  log.record({ actor: 'a'.repeat(500) + forged, address: forged.repeat(10), action: 'sign-in' + forged, target: 't'.repeat(5000), outcome: 'failed', detail });
  await log.flush();
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  assert.equal(lines.length, 1);
  const [e] = (await log.query({})).entries;
  assert.equal(e!.actor.length, 64);
  assert.ok(e!.address.length <= 64);
  assert.ok(e!.target.length <= 200);
  assert.equal(Object.keys(e!.detail).length, 16);
  for (const [k, v] of Object.entries(e!.detail)) {
    assert.ok(k.length <= 32);
    assert.ok(String(v).length <= 200);
  }
  assert.equal(/[\n\r]/.test(e!.actor + e!.address + e!.action + Object.values(e!.detail).join('')), false);
  assert.equal((await log.query({ actor: 'root' })).entries.length, 0, 'nothing forged');
  await log.close();
});

test('audit - a flood of 50,000 entries stays within the byte budget (two files), the newest survive', async () => {
  const dir = tempDir();
  const file = join(dir, 'audit.jsonl');
  const maxBytes = 256 * 1024;
  const log = await AuditLog.open({ file, maxBytes });
  for (let i = 0; i < 50_000; i++) {
    log.record(entry('device.update', { target: `dev-${i}`, detail: { n: i } }));
    if (i % 5_000 === 4_999) await log.flush();
  }
  await log.flush();
  const total = statSync(file).size + statSync(`${file}.1`).size;
  assert.ok(total <= maxBytes + 1024, `${total} bytes on disk`);
  const newest = (await log.query({ limit: 1 })).entries[0]!;
  assert.equal(newest.target, 'dev-49999');
  assert.equal(newest.id, 50_000);
  assert.equal((await log.query({ target: 'dev-0' })).entries.length, 0, 'the oldest went first');
  await log.close();
});

test('audit - a rate key keeps a few entries a minute and one summary with the count of the rest', async () => {
  let now = 0;
  const log = new AuditLog({ file: null, maxBytes: 1 << 20, now: () => now, perKeyPerMinute: 5 });
  for (let i = 0; i < 500; i++) log.record(entry('sign-in', { actor: '', outcome: 'failed' }), 'sign-in:10.0.0.9');
  log.record(entry('sign-in', { actor: '', outcome: 'failed', address: '10.0.0.8' }), 'sign-in:10.0.0.8');
  assert.equal(log.stats().suppressed, 495);
  now = 61_000;
  log.record(entry('device.create'));
  const all = (await log.query({ limit: 1000 })).entries;
  assert.equal(all.filter((e) => e.action === 'sign-in').length, 6);
  const summary = all.find((e) => e.action === 'audit.suppressed')!;
  assert.deepEqual(summary.detail, { key: 'sign-in:10.0.0.9', count: 495, action: 'sign-in' });
});

test('audit - a torn last line (a crash mid-write) is skipped; a failing disk is counted, never thrown, and writing resumes', async () => {
  const dir = tempDir();
  const file = join(dir, 'audit.jsonl');
  const log = await AuditLog.open({ file, maxBytes: 1 << 20 });
  log.record(entry('sign-in'));
  await log.close();
  appendFileSync(file, '{"id":2,"time":5,"act');
  const reopened = await AuditLog.open({ file, maxBytes: 1 << 20 });
  assert.deepEqual((await reopened.query({})).entries.map((e) => e.id), [1]);
  await reopened.close();

  const gone = join(dir, 'sub', 'audit.jsonl');
  const failing = await AuditLog.open({ file: gone, maxBytes: 1 << 20 });
  assert.doesNotThrow(() => failing.record(entry('device.create')));
  await failing.flush();
  assert.ok(failing.stats().writeErrors >= 1);
  mkdirSync(join(dir, 'sub'));
  failing.record(entry('device.delete'));
  await failing.flush();
  // The failed batch is written again with the next one: nothing lost.
  assert.deepEqual((await failing.query({})).entries.map((e) => e.action), ['device.delete', 'device.create']);
  await failing.close();
});

test('audit - a flood from many keys at once: past the budget of all keys together, one summary counts the rest', async () => {
  let now = 0;
  const log = new AuditLog({ file: null, maxBytes: 1 << 20, now: () => now, perKeyPerMinute: 5 });
  for (let i = 0; i < 5_000; i++) log.record(entry('sign-in', { actor: '', outcome: 'failed', address: `10.0.${i >> 8}.${i & 255}` }), `sign-in:10.0.${i >> 8}.${i & 255}`);
  now = 61_000;
  log.record(entry('device.create'));
  await log.flush();
  const all = (await log.query({ limit: 1000 })).entries;
  assert.equal(all.filter((e) => e.action === 'sign-in').length, 50, 'perKeyPerMinute x 10 in all');
  const summaries = all.filter((e) => e.action === 'audit.suppressed');
  assert.equal(summaries.length, 1);
  assert.equal(summaries[0]!.detail.count, 4_950);
});
