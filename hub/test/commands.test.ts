/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call -- JSON answers of the API, read as the test expects them (a wrong shape fails the assertion) */
// Tracked commands (proto/README.md §12, Invoke) through the REST API:
// delivered -> succeeded with result_json, failed, timed out, queued for an
// offline device and delivered when it connects, expired after its TTL,
// refused (offline with ttl 0; a device without "invoke"), a group send, the
// per-device cap, and a result for an unknown id (counted, ignored).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloseCode, FEATURE_INVOKE, PROTOCOL_VERSION } from '@telemetry/proto';
import { COMPACT_BYTES, CommandFile } from '../src/devices/command-file.ts';
import { CommandTracker, MAX_ACTIVE_PER_DEVICE, REMOTE_DELIVERY_MS, type CommandRecord } from '../src/devices/commands.ts';
import { RawDevice, type SignedInApi, type TestHub, metric, signedInApi, within } from './helpers.ts';

async function connect(th: TestHub, id: string, features: string[] | null) {
  const d = new RawDevice(th.url, { token: th.tokens.get(id) });
  await within(d.opened, 3000, `${id} open`);
  d.send({ hello: { deviceId: id, protocolVersion: PROTOCOL_VERSION, firmware: 'test/2', ...(features ? { features } : {}) } });
  await d.next('welcome');
  return d;
}

async function stateOf(a: SignedInApi, id: string, want: string, ms = 4000): Promise<any> {
  const end = Date.now() + ms;
  for (;;) {
    const c = (await a.call('GET', `/api/v1/commands/${id}`)).body.command;
    if (c.state === want || Date.now() > end) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('commands - delivered then succeeded with result_json, failed, timed out', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  const d = await connect(a.th, 'dev-1', [FEATURE_INVOKE]);
  const sent = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'ping' });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  assert.equal(sent.body.command.state, 'delivered');
  assert.equal(sent.body.command.by, 'admin');
  assert.equal(sent.body.command.timeoutMs, 30_000);
  const cmd = await d.next('command');
  assert.equal(cmd.invoke?.name, 'ping');
  assert.equal(cmd.invoke?.argsJson ?? '', '');
  d.send({ commandResult: { id: cmd.id, ok: true, message: 'pong', resultJson: '{"uptime_ms":86400000}' } });
  const done = await stateOf(a, sent.body.command.id, 'succeeded');
  assert.equal(done.state, 'succeeded');
  assert.deepEqual(done.result, { uptime_ms: 86400000 });
  assert.equal(done.message, 'pong');
  assert.ok(done.deliveredAt > 0 && done.finishedAt >= done.deliveredAt);

  const bad = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'acme.calibrate', args: { offset: 2 } });
  const cmd2 = await d.next('command');
  assert.deepEqual(JSON.parse(cmd2.invoke?.argsJson ?? ''), { offset: 2 });
  d.send({ commandResult: { id: cmd2.id, ok: false, message: 'unknown command acme.calibrate' } });
  const failed = await stateOf(a, bad.body.command.id, 'failed');
  assert.equal(failed.state, 'failed');
  assert.equal(failed.message, 'unknown command acme.calibrate');

  const slow = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'ping', timeoutMs: 1000 });
  await d.next('command');
  const timedOut = await stateOf(a, slow.body.command.id, 'timed_out', 4000);
  assert.equal(timedOut.state, 'timed_out');

  const list = (await a.call('GET', '/api/v1/devices/dev-1/commands')).body.commands;
  assert.deepEqual(list.map((c: { id: string }) => c.id), [slow.body.command.id, bad.body.command.id, sent.body.command.id], 'newest first');
  assert.equal(await metric(a.th, 'hub_command_results_total', { result: 'ok' }), 1);
  assert.equal(await metric(a.th, 'hub_command_results_total', { result: 'failed' }), 1);
  d.close();
});

test('commands - an invalid result_json fails the command and closes the session (4000); a result for an unknown id is counted and ignored', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  const d = await connect(a.th, 'dev-1', [FEATURE_INVOKE]);
  const sent = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'ping' });
  const cmd = await d.next('command');
  d.send({ commandResult: { id: 999_999, ok: true, resultJson: '1' } });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(await metric(a.th, 'hub_command_results_total', { result: 'unknown' }), 1);
  assert.equal((await a.call('GET', `/api/v1/commands/${sent.body.command.id}`)).body.command.state, 'delivered', 'not touched');
  d.send({ commandResult: { id: cmd.id, ok: true, resultJson: '{not json' } });
  assert.equal((await d.next('notice')).code, CloseCode.PROTOCOL_ERROR);
  const c = await stateOf(a, sent.body.command.id, 'failed');
  assert.equal(c.state, 'failed');
  assert.match(c.message, /result_json/);
});

test('commands - queued for an offline device and delivered when it connects, oldest first; refused with ttl 0 offline and for a device without "invoke"', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1', 'dev-2'] });
  const first = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'first' });
  const second = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'second', ttlMs: 60_000 });
  assert.equal(first.body.command.state, 'queued');
  const refused = await a.call('POST', '/api/v1/devices/dev-1/commands', { name: 'now', ttlMs: 0 });
  assert.equal(refused.status, 202);
  assert.equal(refused.body.command.state, 'refused');
  assert.match(refused.body.command.message, /offline/);

  const d = await connect(a.th, 'dev-1', [FEATURE_INVOKE]);
  const c1 = await d.next('command');
  const c2 = await d.next('command');
  assert.deepEqual([c1.invoke?.name, c2.invoke?.name], ['first', 'second']);
  assert.equal((await a.call('GET', `/api/v1/commands/${first.body.command.id}`)).body.command.state, 'delivered');
  d.send({ commandResult: { id: c2.id, ok: true } });
  assert.equal((await stateOf(a, second.body.command.id, 'succeeded')).state, 'succeeded');

  // A v1 device (no features): refused at once, and a queued one is refused when it connects.
  const queued = await a.call('POST', '/api/v1/devices/dev-2/commands', { name: 'ping' });
  assert.equal(queued.body.command.state, 'queued');
  const v1 = await connect(a.th, 'dev-2', null);
  assert.match((await stateOf(a, queued.body.command.id, 'refused')).message, /invoke/);
  const r = await a.call('POST', '/api/v1/devices/dev-2/commands', { name: 'ping' });
  assert.equal(r.body.command.state, 'refused');
  assert.match(r.body.command.message, /does not list "invoke"/);
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(v1.frames.some((f) => f.msg === 'command'), false, 'no Invoke to a v1 device');
  d.close();
  v1.close();
});

test('commands - a queued command expires after its TTL (tracker, clock by hand)', () => {
  let now = 1_000_000;
  const tracker = new CommandTracker({ now: () => now });
  const sent: string[] = [];
  tracker.attach({ sendInvoke: (id, name) => { sent.push(name); return 'offline'; } });
  const r = tracker.send('dev-9', { name: 'ping', ttlMs: 1000, by: 'op' });
  assert.equal(r.state, 'queued');
  now += 999;
  tracker.sweep();
  assert.equal(r.state, 'queued');
  now += 1;
  tracker.sweep();
  assert.equal(r.state, 'expired');
  // One still queued but past its TTL at connect time is expired, not sent.
  const late = tracker.send('dev-9', { name: 'late', ttlMs: 1000, by: 'op' });
  now += 5000;
  tracker.connected('dev-9', true);
  assert.equal(late.state, 'expired');
  assert.deepEqual(sent, ['ping', 'late'], 'only the attempts at send time');
  tracker.close();
});

test('commands - group send, the per-device cap (429), bad input', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1', 'dev-2', 'dev-3'] });
  await a.call('PATCH', '/api/v1/devices/dev-3', { tags: { site: 'elsewhere' } });
  const d1 = await connect(a.th, 'dev-1', [FEATURE_INVOKE]);
  const group = await a.call('POST', '/api/v1/commands', { tag: 'site=test', name: 'ping' });
  assert.equal(group.status, 202, JSON.stringify(group.body));
  assert.deepEqual(group.body.commands.map((c: { device: string; state: string }) => `${c.device}:${c.state}`), ['dev-1:delivered', 'dev-2:queued']);
  assert.equal((await d1.next('command')).invoke?.name, 'ping');
  assert.equal((await a.call('POST', '/api/v1/commands', { tag: 'site=nowhere', name: 'ping' })).status, 404);

  for (let i = 1; i < MAX_ACTIVE_PER_DEVICE; i++) assert.equal((await a.call('POST', '/api/v1/devices/dev-2/commands', { name: `c${i}` })).status, 202);
  const over = await a.call('POST', '/api/v1/devices/dev-2/commands', { name: 'one-too-many' });
  assert.equal(over.status, 429);
  assert.match(over.body.error, /16 commands/);
  const groupOver = await a.call('POST', '/api/v1/commands', { tag: 'site=test', name: 'again' });
  assert.deepEqual(groupOver.body.commands.map((c: { device: string; state: string }) => `${c.device}:${c.state}`), ['dev-1:delivered', 'dev-2:refused']);

  const bad: [string, unknown, RegExp][] = [
    ['/api/v1/devices/dev-1/commands', { name: 'no spaces' }, /name/],
    ['/api/v1/devices/dev-1/commands', { name: 'ping', args: [1] }, /args/],
    ['/api/v1/devices/dev-1/commands', { name: 'ping', args: { k: 'x'.repeat(5000) } }, /args/],
    ['/api/v1/devices/dev-1/commands', { name: 'ping', timeoutMs: 10 }, /timeoutMs/],
    ['/api/v1/devices/dev-1/commands', { name: 'ping', ttlMs: 90_000_000 }, /ttlMs/],
    ['/api/v1/commands', { tag: 'nokey', name: 'ping' }, /tag/],
  ];
  for (const [path, body, re] of bad) {
    const r = await a.call('POST', path, body);
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 60));
    assert.match(r.body.error, re);
  }
  assert.equal((await a.call('POST', '/api/v1/devices/ghost/commands', { name: 'ping' })).status, 404);
  assert.equal((await a.call('GET', '/api/v1/commands/nope')).status, 404);
  await a.th.hub.audit.flush();
  const entries = (await a.call('GET', '/api/v1/audit?limit=100')).body.entries as { action: string; outcome: string }[];
  assert.ok(entries.some((e) => e.action === 'command.send' && e.outcome === 'ok'));
  assert.ok(entries.some((e) => e.action === 'command.send' && e.outcome === 'refused'));
  d1.close();
});

test('commands - shared (cluster mode): stored before it is sent; one that cannot be stored is 503 and not kept (a group: that device refused); ttlMs 0 for a device on another hub; a stored state moves forward only', async () => {
  const stored: string[] = [];
  let fail = false;
  const share = {
    put: (r: CommandRecord): Promise<void> => {
      if (fail) return Promise.reject(new Error('no responders'));
      stored.push(`${r.id}:${r.state}`);
      return Promise.resolve();
    },
    onlineElsewhere: (id: string) => id === 'remote',
  };
  const sent: string[] = [];
  const tracker = new CommandTracker({ share });
  tracker.attach({
    sendInvoke: (id, name) => { sent.push(`${name}:${stored.length}`); return id === 'here' ? 7 : 'offline'; },
    features: (id) => (id === 'here' ? { invoke: true } : null),
  });
  const here = await tracker.submit('here', { name: 'ping', by: 'op' });
  assert.equal(here.state, 'delivered');
  assert.deepEqual(sent, ['ping:1'], 'sent after the queued record was stored');
  assert.deepEqual(stored, [`${here.id}:queued`, `${here.id}:delivered`]);

  const remote = await tracker.submit('remote', { name: 'now', ttlMs: 0, by: 'op' });
  assert.equal(remote.state, 'queued');
  assert.equal(remote.ttlMs, REMOTE_DELIVERY_MS);
  const nowhere = await tracker.submit('nowhere', { name: 'now', ttlMs: 0, by: 'op' });
  assert.equal(nowhere.state, 'refused');

  fail = true;
  const attempts = sent.length;
  await assert.rejects(tracker.submit('here', { name: 'ping', by: 'op' }), (err: Error & { status?: number }) => err.status === 503 && /not stored, not sent/.test(err.message));
  assert.equal(tracker.forDevice('here').length, 1, 'the unstored command is not kept');
  const group = await tracker.submitMany(['here', 'remote'], { name: 'ping', by: 'op' });
  assert.deepEqual(group.map((r) => r.state), ['refused', 'refused']);
  assert.equal(sent.length, attempts, 'nothing unstored was sent');
  fail = false;

  // Another hub's record of `remote`: adopted, then moved forward only.
  const theirs = { ...remote, id: 'other-1', state: 'delivered', deliveredAt: Date.now(), argsJson: '' };
  assert.equal(tracker.adopt(theirs), true);
  assert.equal(tracker.get('other-1')?.state, 'delivered');
  assert.equal(tracker.adopt({ ...theirs, state: 'queued' }), true);
  assert.equal(tracker.get('other-1')?.state, 'delivered', 'not back to queued');
  tracker.adopt({ ...theirs, state: 'succeeded', finishedAt: Date.now(), result: { ok: 1 } });
  assert.deepEqual(tracker.get('other-1')?.result, { ok: 1 });
  for (const bad of [null, 'x', { ...theirs, id: 'bad id!' }, { ...theirs, id: 'o2', state: 'lost' }, { ...theirs, id: 'o3', timeoutMs: -1 }, { ...theirs, id: 'o4', argsJson: 'x'.repeat(5000) }]) {
    assert.equal(tracker.adopt(bad), false, JSON.stringify(bad)?.slice(0, 80));
  }
  tracker.close();
});

test('commands - embedded store (<data>/commands.jsonl): on disk before sent; a queued command survives a restart and goes out when the device connects; one delivered before it times out; torn lines skipped; compaction keeps the file bounded', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-commands-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'commands.jsonl');
  let now = 1_000_000;
  const open = async (link: { online: string[]; sent: string[] }) => {
    const store = new CommandFile(file);
    const tracker = new CommandTracker({ now: () => now, share: store });
    await store.start(tracker);
    tracker.attach({
      sendInvoke: (id, name) => { if (!link.online.includes(id)) return 'offline'; link.sent.push(`${id}:${name}:${readFileSync(file, 'utf8').split('\n').length - 1}`); return link.sent.length; },
      features: (id) => (link.online.includes(id) ? { invoke: true } : null),
    });
    return { store, tracker };
  };
  const first = { online: ['here'], sent: [] as string[] };
  const a = await open(first);
  const waiting = await a.tracker.submit('away', { name: 'reboot', ttlMs: 60_000, by: 'op' });
  const inFlight = await a.tracker.submit('here', { name: 'ping', timeoutMs: 5000, by: 'op' });
  assert.equal(inFlight.state, 'delivered');
  assert.deepEqual(first.sent, ['here:ping:2'], 'the queued record of ping was on disk (line 2) when it was sent');
  await a.store.close();
  a.tracker.close();

  // A restart: the file is read back.
  appendFileSync(file, '{"torn": tr');
  const second = { online: [] as string[], sent: [] as string[] };
  const b = await open(second);
  assert.equal(b.store.skipped, 1, 'the torn line');
  assert.equal(b.tracker.get(waiting.id)?.state, 'queued');
  assert.equal(b.tracker.get(inFlight.id)?.state, 'delivered');
  now += 5000;
  b.tracker.sweep();
  assert.equal(b.tracker.get(inFlight.id)?.state, 'timed_out', 'its result can no longer come (wire ids restart)');
  second.online.push('away');
  b.tracker.connected('away', true);
  assert.deepEqual(second.sent.map((s) => s.split(':').slice(0, 2).join(':')), ['away:reboot']);
  assert.equal(b.tracker.get(waiting.id)?.state, 'delivered');
  b.tracker.result('away', 1, { ok: true, message: 'rebooting', resultJson: '', invalid: null });
  await b.store.close();
  b.tracker.close();
  const c = await open({ online: [], sent: [] });
  assert.equal(c.tracker.get(waiting.id)?.state, 'succeeded');
  assert.equal(c.tracker.get(waiting.id)?.message, 'rebooting');

  c.tracker.close();
  await c.store.close();

  // Bounded: 3,000 commands with 3 KiB of arguments each (about 19 MiB of lines) through a tracker
  // that keeps 200 records: compaction keeps the file within what the tracker keeps plus COMPACT_BYTES.
  const store = new CommandFile(file);
  const small = new CommandTracker({ now: () => now, share: store, maxKept: 200 });
  await store.start(small);
  const args = { blob: 'x'.repeat(3000) };
  let written = 0;
  for (let i = 0; i < 3000; i++) {
    const r = await small.submit(`d-${i % 100}`, { name: 'fill', args, ttlMs: 0, by: 'op' });
    assert.equal(r.state, 'refused');
    written += 2 * (JSON.stringify({ ...r, argsJson: JSON.stringify(args) }).length + 1);
  }
  await new Promise((r) => setTimeout(r, 50));
  await store.close();
  const size = statSync(file).size;
  assert.ok(written > 4 * COMPACT_BYTES, `${written} bytes written`);
  const line = written / 6000;
  assert.ok(size < COMPACT_BYTES + 200 * line + 64 * 1024, `file ${size} bytes after ${written} written (${line} bytes a line)`);
  small.close();

  // A file that cannot be read stops the start, naming it.
  rmSync(file);
  mkdirSync(file);
  await assert.rejects(new CommandFile(file).start(new CommandTracker()), (err: Error) => err.message.includes(file));
});
