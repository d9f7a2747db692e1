/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call -- JSON answers of the API, read as the test expects them (a wrong shape fails the assertion) */
// Desired and reported device configuration (proto/README.md §15, hub side):
// the delta after the session's first report, with its version; a change
// while connected goes out at once; the report is kept and clears the delta;
// group defaults and precedence; version bumps; persistence across reopen;
// a change that cannot be saved is 503 and not in force; a v1 device
// without features gets nothing new; ConfigReport checks (4000); API input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloseCode, FEATURE_CONFIG, FEATURE_INVOKE, PROTOCOL_VERSION, type DesiredConfig } from '@telemetry/proto';
import { membersOf } from '../src/app.ts';
import { CommandTracker } from '../src/devices/commands.ts';
import { ConfigConflictError, DeviceConfigs, MAX_CONFLICT_RETRIES, type PersistView } from '../src/devices/configs.ts';
import { RawDevice, type TestHub, batchOf, signedInApi, within } from './helpers.ts';

/** Connects with these Hello.features; returns the device and its Welcome. */
async function connect(th: TestHub, id: string, features: string[] | null) {
  const d = new RawDevice(th.url, { token: th.tokens.get(id) });
  await within(d.opened, 3000, `${id} open`);
  d.send({ hello: { deviceId: id, protocolVersion: PROTOCOL_VERSION, firmware: 'test/2', deviceTimeMs: Date.now(), ...(features ? { features } : {}) } });
  const welcome = await d.next('welcome');
  return { d, welcome };
}

const report = (version: number, sample: number, batch: number, customJson = '', ok = true, error = '') =>
  ({ reported: { version, sampleIntervalMs: sample, batchIntervalMs: batch, customJson, ok, error } });

/** The fields a DesiredConfig carries (present ones only). */
function fields(m: DesiredConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { version: m.version };
  if (typeof m.sampleIntervalMs === 'number') out.sampleIntervalMs = m.sampleIntervalMs;
  if (typeof m.batchIntervalMs === 'number') out.batchIntervalMs = m.batchIntervalMs;
  if (typeof m.customJson === 'string') out.customJson = m.customJson;
  return out;
}

test('device config - the delta (with its version) after the first report, the report kept and the delta cleared, a change while connected goes out at once', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  const put = await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 2000, batchIntervalMs: 5000, custom: { led: false } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const v = put.body.desired.version as number;
  assert.ok(v >= 1);
  assert.deepEqual(put.body.desired.values, { sampleIntervalMs: 2000, batchIntervalMs: 5000, custom: { led: false } });
  assert.equal(put.body.desired.by, 'admin');

  const { d, welcome } = await connect(a.th, 'dev-1', [FEATURE_CONFIG, FEATURE_INVOKE]);
  assert.deepEqual(welcome.features, [FEATURE_CONFIG, FEATURE_INVOKE]);
  // protocol §15.3: nothing before the session's first report.
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(d.frames.some((f) => f.msg === 'desired'), false, 'no DesiredConfig before the first ConfigReport');
  d.send(report(0, 1000, 5000));
  const desired = await d.next('desired');
  assert.deepEqual(fields(desired), { version: v, sampleIntervalMs: 2000, customJson: '{"led":false}' }, 'batch 5000 already matches');
  let view = (await a.call('GET', '/api/v1/devices/dev-1/config')).body;
  assert.equal(view.reported.version, 0);
  assert.deepEqual(view.delta, { version: v, sampleIntervalMs: 2000, custom: { led: false } });

  d.send(report(v, 2000, 5000, '{"led": false}'));
  await new Promise((r) => setTimeout(r, 100));
  view = (await a.call('GET', '/api/v1/devices/dev-1/config')).body;
  assert.equal(view.reported.version, v);
  assert.deepEqual(view.reported.custom, { led: false });
  assert.equal(view.reported.ok, true);
  assert.equal(view.delta, null, 'in sync');
  assert.deepEqual(view.groups, []);

  // An operator change of a connected, idle device goes out at once.
  const again = await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 2000, batchIntervalMs: 5000 });
  assert.equal(again.body.desired.version, v + 1);
  const next = await d.next('desired');
  assert.deepEqual(fields(next), { version: v + 1 }, 'everything already matches: only the version');
  d.send(report(v + 1, 2000, 5000, '{"led":false}'));
  const changed = await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 250 });
  assert.deepEqual(fields(await d.next('desired')), { version: v + 2, sampleIntervalMs: 250 });
  assert.equal(changed.body.desired.version, v + 2);
  // A failed report: nothing more for this version.
  d.send(report(v + 2, 2000, 5000, '', false, 'sample_interval_ms 250: must be 500..60000'));
  await new Promise((r) => setTimeout(r, 150));
  view = (await a.call('GET', '/api/v1/devices/dev-1/config')).body;
  assert.equal(view.reported.ok, false);
  assert.match(view.reported.error, /sample_interval_ms 250/);
  assert.equal(view.delta, null);
  assert.equal(d.frames.some((f) => f.msg === 'desired'), false);
  d.close();
});

test('device config - group defaults, precedence (groups by key, then the device) and version bumps', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1', 'dev-2'] });
  assert.equal((await a.call('PATCH', '/api/v1/devices/dev-2', { tags: { site: 'lab', room: 'r1' } })).status, 200);
  assert.equal((await a.call('GET', '/api/v1/devices/dev-2/config')).body.desired, null);

  const g = await a.call('PUT', `/api/v1/config-groups/${encodeURIComponent('site=lab')}`, { sampleIntervalMs: 3000, batchIntervalMs: 6000 });
  assert.equal(g.status, 200, JSON.stringify(g.body));
  assert.equal(g.body.group.key, 'site=lab');
  let view = (await a.call('GET', '/api/v1/devices/dev-2/config')).body;
  assert.deepEqual(view.groups, ['site=lab']);
  assert.deepEqual(view.desired.values, { sampleIntervalMs: 3000, batchIntervalMs: 6000 });
  assert.equal(view.desired.version, 1);
  assert.equal((await a.call('GET', '/api/v1/devices/dev-1/config')).body.desired, null, 'not in the group');

  // room=r1 sorts before site=lab: site=lab's value wins where both set one.
  await a.call('PUT', `/api/v1/config-groups/${encodeURIComponent('room=r1')}`, { sampleIntervalMs: 1000, custom: { mode: 'eco' } });
  view = (await a.call('GET', '/api/v1/devices/dev-2/config')).body;
  assert.deepEqual(view.groups, ['room=r1', 'site=lab']);
  assert.deepEqual(view.desired.values, { sampleIntervalMs: 3000, batchIntervalMs: 6000, custom: { mode: 'eco' } });
  assert.equal(view.desired.version, 2);

  // The device's own values over every group.
  const own = await a.call('PUT', '/api/v1/devices/dev-2/config', { batchIntervalMs: 7000 });
  assert.deepEqual(own.body.desired.values, { sampleIntervalMs: 3000, batchIntervalMs: 7000, custom: { mode: 'eco' } });
  assert.deepEqual(own.body.desired.own, { batchIntervalMs: 7000 });
  assert.equal(own.body.desired.version, 3);

  const groups = (await a.call('GET', '/api/v1/config-groups')).body.groups;
  assert.deepEqual(groups.map((x: { key: string }) => x.key), ['room=r1', 'site=lab']);
  assert.equal((await a.call('DELETE', `/api/v1/config-groups/${encodeURIComponent('site=lab')}`)).status, 204);
  view = (await a.call('GET', '/api/v1/devices/dev-2/config')).body;
  assert.deepEqual(view.desired.values, { sampleIntervalMs: 1000, batchIntervalMs: 7000, custom: { mode: 'eco' } });
  assert.equal(view.desired.version, 4);
  assert.equal((await a.call('DELETE', `/api/v1/config-groups/${encodeURIComponent('site=lab')}`)).status, 409, 'no defaults to remove');

  // A device that joins a group later gets a new version with the defaults.
  await a.call('PATCH', '/api/v1/devices/dev-1', { tags: { room: 'r1' } });
  view = (await a.call('GET', '/api/v1/devices/dev-1/config')).body;
  assert.deepEqual(view.desired.values, { sampleIntervalMs: 1000, custom: { mode: 'eco' } });
  assert.equal(view.desired.version, 1);
  assert.deepEqual(view.delta, { version: 1, sampleIntervalMs: 1000, custom: { mode: 'eco' } });
});

test('device config - persisted: desired, groups, versions and reports survive a reopen; the next version is higher; a corrupt file is an error naming it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'device-config.json');
  const tags: Record<string, Record<string, string>> = { 'dev-1': { site: 'lab' }, 'dev-2': { site: 'lab' } };
  const opts = { file, membersOf: (k: string, v: string) => Object.keys(tags).filter((id) => tags[id]![k] === v), tagsOf: (id: string) => tags[id] };
  const a = await DeviceConfigs.open(opts);
  await a.setDesired('dev-1', { sampleIntervalMs: 2000, custom: { led: true } }, 'alice');
  await a.setGroupDefaults('site=lab', { batchIntervalMs: 9000 }, 'bob');
  assert.equal(a.view('dev-1').desired?.version, 2);
  assert.equal(a.view('dev-2').desired?.version, 1);
  a.report('dev-1', { version: 7, sampleIntervalMs: 2000, batchIntervalMs: 9000, customJson: '{"led":true}', ok: true, error: '' });
  await a.close();

  const b = await DeviceConfigs.open(opts);
  const v = b.view('dev-1');
  assert.equal(v.desired?.version, 2);
  assert.deepEqual(v.desired?.values, { batchIntervalMs: 9000, sampleIntervalMs: 2000, custom: { led: true } });
  assert.equal(v.desired?.by, 'bob');
  assert.equal(v.reported?.version, 7);
  assert.deepEqual(b.groups().map((g) => g.key), ['site=lab']);
  // protocol §15.1: above every version the device reported.
  assert.equal((await b.setDesired('dev-1', { sampleIntervalMs: 2500 }, 'alice')).version, 8);
  await b.close();

  writeFileSync(file, '{"version":1,"devices":{"x":{"version":"nope"}}}');
  await assert.rejects(DeviceConfigs.open(opts), (err: Error) => err.message.includes(file) && /corrupt/.test(err.message));
  writeFileSync(file, '{not json');
  await assert.rejects(DeviceConfigs.open(opts), (err: Error) => err.message.includes(file));
});

test('device config - a change whose file write fails is 503 and not in force (nothing sent, the previous desired stays)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sub = join(dir, 'sub');
  mkdirSync(sub);
  let th: TestHub | null = null;
  const configs = await DeviceConfigs.open({ file: join(sub, 'device-config.json'), membersOf: (k, v) => (th ? membersOf(th.registry, k, v) : []), tagsOf: (id) => th?.registry.get(id)?.tags });
  const a = await signedInApi(t, { devices: ['dev-1'], deps: { management: { configs, commands: new CommandTracker() } } });
  th = a.th;
  assert.equal((await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 2000 })).status, 200);
  const { d } = await connect(a.th, 'dev-1', [FEATURE_CONFIG]);
  d.send(report(1, 2000, 5000));
  await new Promise((r) => setTimeout(r, 100));
  // The directory becomes a file: every write fails (even as root).
  rmSync(sub, { recursive: true, force: true });
  writeFileSync(sub, 'not a directory');
  const put = await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 4000 });
  assert.equal(put.status, 503, JSON.stringify(put.body));
  assert.match(put.body.error, /not saved, nothing changed/);
  const view = (await a.call('GET', '/api/v1/devices/dev-1/config')).body;
  assert.deepEqual(view.desired.values, { sampleIntervalMs: 2000 });
  assert.equal(view.desired.version, 1);
  assert.equal(view.delta, null);
  const g = await a.call('PUT', `/api/v1/config-groups/${encodeURIComponent('site=test')}`, { batchIntervalMs: 4000 });
  assert.equal(g.status, 503);
  assert.deepEqual((await a.call('GET', '/api/v1/config-groups')).body.groups, []);
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(d.frames.some((f) => f.msg === 'desired'), false, 'nothing that is not saved goes out');
  d.close();
});

test('device config - a v1 device without features: Welcome, acks and nothing else, even with a desired configuration; a ConfigReport from it closes 4000', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1', 'dev-2'] });
  await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 2000 });
  await a.call('PUT', '/api/v1/devices/dev-2/config', { sampleIntervalMs: 2000 });
  const d = new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') });
  await within(d.opened, 3000, 'open');
  d.hello('dev-1');
  const welcome = await d.next('welcome');
  assert.equal(welcome.lastSeq, 0);
  d.batch(batchOf(1));
  d.batch(batchOf(2, 3, { defs: false }));
  const ack = await d.ackFor(2);
  assert.equal(ack.seq, 2);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(d.frames.map((f) => f.msg).filter((m) => m !== 'ack'), [], 'no DesiredConfig, no Command');
  assert.equal(a.th.hub.devices.sendCommand('dev-1', { config: { sampleIntervalMs: 1000 } }) !== null, true, 'Command.config still goes to a v1 device');
  assert.equal((await d.next('command')).config?.sampleIntervalMs, 1000);
  d.close();

  // dev-2 lists only invoke: a ConfigReport is not allowed.
  const { d: d2 } = await connect(a.th, 'dev-2', [FEATURE_INVOKE]);
  d2.send(report(0, 1000, 5000));
  const notice = await d2.next('notice');
  assert.equal(notice.code, CloseCode.PROTOCOL_ERROR);
  assert.match(notice.reason ?? '', /config/);
  assert.equal((await within(d2.closed, 3000, 'closed')).code, CloseCode.PROTOCOL_ERROR);
});

test('device config - ConfigReport checks: oversize or non-object custom_json, an error over 200 characters, too many or empty features → Notice + 4000, nothing stored', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  const cases: [string, () => Parameters<RawDevice['send']>[0]][] = [
    ['custom_json over 4096 bytes', () => report(0, 1000, 5000, JSON.stringify({ k: 'x'.repeat(4100) }))],
    ['custom_json not an object', () => report(0, 1000, 5000, '[1,2]')],
    ['custom_json not JSON', () => report(0, 1000, 5000, '{oops')],
    ['error over 200 characters', () => report(0, 1000, 5000, '', false, 'é'.repeat(201))],
  ];
  for (const [name, msg] of cases) {
    const { d } = await connect(a.th, 'dev-1', [FEATURE_CONFIG]);
    d.send(msg());
    const notice = await d.next('notice');
    assert.equal(notice.code, CloseCode.PROTOCOL_ERROR, name);
    assert.equal((await within(d.closed, 3000, name)).code, CloseCode.PROTOCOL_ERROR, name);
  }
  assert.equal((await a.call('GET', '/api/v1/devices/dev-1/config')).body.reported, null, 'nothing stored');
  // 200 characters exactly (multi-byte) is fine.
  const { d } = await connect(a.th, 'dev-1', [FEATURE_CONFIG]);
  d.send(report(0, 1000, 5000, '', false, 'é'.repeat(200)));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal((await a.call('GET', '/api/v1/devices/dev-1/config')).body.reported.error.length, 200);
  d.close();

  for (const features of [Array.from({ length: 17 }, (_, i) => `f${i}`), [''], ['x'.repeat(33)]]) {
    const f = new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') });
    await within(f.opened, 3000, 'open');
    f.send({ hello: { deviceId: 'dev-1', protocolVersion: PROTOCOL_VERSION, features } });
    assert.equal((await f.next('notice')).code, CloseCode.PROTOCOL_ERROR, JSON.stringify(features).slice(0, 40));
    assert.equal(f.frames.some((x) => x.msg === 'welcome'), false);
  }
});

test('device config - API input: unknown device 404, bad values 400 naming the field, oversize body 413, viewer 403, foreign Origin 403', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  assert.equal((await a.call('GET', '/api/v1/devices/ghost/config')).status, 404);
  assert.equal((await a.call('PUT', '/api/v1/devices/ghost/config', { sampleIntervalMs: 1000 })).status, 404);
  const bad: [unknown, RegExp][] = [
    [{ sampleIntervalMs: 50 }, /sampleIntervalMs/],
    [{ batchIntervalMs: 3_600_001 }, /batchIntervalMs/],
    [{ sampleIntervalMs: 1000.5 }, /sampleIntervalMs/],
    [{ custom: [1] }, /custom/],
    [{ custom: { k: 'x'.repeat(4100) } }, /custom/],
    [{ colour: 'red' }, /colour|unrecognized|Unrecognized/],
    ['not json', /not JSON/],
  ];
  for (const [body, re] of bad) {
    const r = await a.call('PUT', '/api/v1/devices/dev-1/config', body);
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 60));
    assert.match(r.body.error, re);
  }
  assert.equal((await a.call('PUT', '/api/v1/devices/dev-1/config', { custom: { k: 'x'.repeat(20_000) } })).status, 413);
  assert.equal((await a.call('PUT', '/api/v1/config-groups/nokey', { sampleIntervalMs: 1000 })).status, 400, 'a group key is key=value');
  assert.equal((await a.call('GET', '/api/v1/devices/dev-1/config')).body.desired, null, 'nothing changed');

  await a.th.hub.operators.setPassword('watcher', 'viewer-password-1', { role: 'viewer' });
  const login = await fetch(`${a.origin}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'watcher', password: 'viewer-password-1' }) });
  const viewer = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
  assert.equal((await a.call('GET', '/api/v1/devices/dev-1/config', undefined, { cookie: viewer })).status, 200, 'a viewer reads');
  const v = await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 1000 }, { cookie: viewer });
  assert.equal(v.status, 403);
  assert.match(v.body.error, /read only/);
  assert.equal((await a.call('PUT', '/api/v1/config-groups/site%3Dtest', { sampleIntervalMs: 1000 }, { cookie: viewer })).status, 403);
  assert.equal((await a.call('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 1000 }, { origin: 'http://evil.example' })).status, 403);
  assert.equal((await a.call('GET', '/api/v1/devices/dev-1/config')).body.desired, null, 'nothing changed');
  await a.th.hub.audit.flush();
  const entries = (await a.call('GET', '/api/v1/audit?limit=50')).body.entries as { action: string; outcome: string; target: string }[];
  assert.ok(entries.some((e) => e.action === 'config.set' && e.target === 'ghost' && e.outcome !== 'ok'));
});

test('device config - group commit: changes made while a save is in flight are saved together, each in force only after its save, versions in order', async () => {
  const tags: Record<string, Record<string, string>> = {};
  for (let i = 0; i < 50; i++) tags[`d-${i}`] = { site: 'lab' };
  let saves = 0;
  let release: () => void = () => undefined;
  const saved: string[] = [];
  const persistence = {
    save: async (view: { text(): string }): Promise<void> => {
      saves++;
      const text = view.text();
      await new Promise<void>((r) => { release = r; setTimeout(r, 20); });
      saved.push(text);
    },
  };
  const configs = new DeviceConfigs({ membersOf: (k, v) => Object.keys(tags).filter((id) => tags[id]![k] === v), tagsOf: (id) => tags[id], persistence });
  const first = configs.setDesired('d-0', { sampleIntervalMs: 1000 }, 'a');
  // While the first save is in flight: 50 more changes, two of them on d-0.
  const more = Object.keys(tags).map((id, i) => configs.setDesired(id, { sampleIntervalMs: 2000 + i }, 'a'));
  const again = configs.setDesired('d-0', { sampleIntervalMs: 3000 }, 'a');
  assert.equal(configs.view('d-1').desired, null, 'nothing in force before it is saved');
  release();
  await Promise.all([first, ...more, again]);
  assert.equal(saves, 2, 'the first change, then the 51 that queued behind it in one write');
  assert.deepEqual(configs.view('d-0').desired?.values, { sampleIntervalMs: 3000 });
  assert.equal(configs.view('d-0').desired?.version, 3);
  assert.equal(configs.view('d-49').desired?.version, 1);
  assert.match(saved[1]!, /"d-49"/);
});

/** A device's entry as another hub saved it (cluster mode). */
const entry = (version: number, sampleIntervalMs: number, reported?: { version: number; at: number }) => ({
  version, effective: JSON.stringify([sampleIntervalMs, null, null]),
  desired: { values: { sampleIntervalMs }, changedAt: 1, by: 'other-hub' },
  ...(reported ? { reported: { ...reported, sampleIntervalMs, batchIntervalMs: 5000, custom: null, ok: true, error: '' } } : {}),
});

test('device config - another hub\'s entry (cluster mode): in force and told; a report newer here stays; a version held here for another configuration is never reused; bad entries refused', async () => {
  const configs = new DeviceConfigs({ membersOf: () => [], tagsOf: () => ({}) });
  const told: string[] = [];
  configs.onChange((ids) => told.push(...ids));
  assert.equal(configs.adoptDevice('x', entry(4, 700)), true);
  assert.deepEqual(told, ['x']);
  assert.equal(configs.view('x').desired?.version, 4);
  assert.equal(configs.delta('x')?.sampleIntervalMs, 700);

  // Here: version 5 for 800 (not saved elsewhere yet). The other hub's entry also says 5, for 900.
  await configs.setDesired('x', { sampleIntervalMs: 800 }, 'here');
  assert.equal(configs.view('x').desired?.version, 5);
  configs.adoptDevice('x', entry(5, 900));
  const v = configs.view('x').desired;
  assert.deepEqual(v?.values, { sampleIntervalMs: 900 });
  assert.equal(v?.version, 6, 'a device that applied version 5 (800) is sent 900 as version 6');

  // The device reported here after the entry was written: the newer report stays.
  configs.report('x', { version: 6, sampleIntervalMs: 900, batchIntervalMs: 5000, customJson: '', ok: true, error: '' });
  const at = configs.reported('x')!.at;
  configs.adoptDevice('x', entry(6, 900, { version: 3, at: at - 10_000 }));
  assert.equal(configs.reported('x')?.version, 6);
  assert.equal(configs.delta('x'), null);
  // A newer entry wins.
  configs.adoptDevice('x', entry(9, 1200, { version: 8, at: at + 1 }));
  assert.equal(configs.view('x').desired?.version, 9);
  assert.equal(configs.reported('x')?.version, 8);

  for (const bad of [{ version: -1 }, { version: 'x' }, { version: 1, desired: { values: { sampleIntervalMs: 5 }, changedAt: 1, by: 'x' } }, { version: 1, reported: { version: 1 } }, 'text', 7]) {
    assert.equal(configs.adoptDevice('y', bad), false, JSON.stringify(bad));
  }
  assert.equal(configs.view('y').desired, null);
  assert.equal(configs.adoptGroup('no-equals', { values: {}, changedAt: 1, by: 'x' }), false);
  assert.equal(configs.adoptGroup('site=lab', { values: { batchIntervalMs: 1 }, changedAt: 1, by: 'x' }), false);
  assert.equal(configs.adoptGroup('site=lab', { values: { batchIntervalMs: 2000 }, changedAt: 1, by: 'x' }), true);
  assert.deepEqual(configs.groups().map((g) => g.key), ['site=lab']);
  assert.equal(configs.adoptGroup('site=lab', null), true);
  assert.deepEqual(configs.groups(), []);
  told.length = 0;
  assert.equal(configs.adoptDevice('x', null), true);
  assert.deepEqual(told, ['x']);
  assert.equal(configs.view('x').desired, null);
});

test('device config - a save that raced another hub (ConfigConflictError) is planned again on what that hub wrote; one that keeps racing is 503', async () => {
  let conflictsLeft = 1;
  let configs: DeviceConfigs | null = null;
  const written: string[] = [];
  const persistence = {
    save: (view: PersistView): Promise<void> => {
      if (conflictsLeft-- > 0) {
        // What a backend does: adopt the other hub's write, then throw.
        configs!.adoptDevice('x', entry(3, 900));
        return Promise.reject(new ConfigConflictError(['x']));
      }
      written.push(view.deviceJson('x')!);
      return Promise.resolve();
    },
  };
  configs = new DeviceConfigs({ membersOf: () => [], tagsOf: () => ({}), persistence });
  const v = await configs.setDesired('x', { sampleIntervalMs: 500 }, 'here');
  assert.equal(v.version, 4, 'planned again above the version the other hub wrote');
  assert.deepEqual(v.values, { sampleIntervalMs: 500 });
  assert.equal(written.length, 1);
  assert.equal((JSON.parse(written[0]!) as { version: number }).version, 4);

  conflictsLeft = MAX_CONFLICT_RETRIES + 1;
  await assert.rejects(configs.setDesired('x', { sampleIntervalMs: 600 }, 'here'), (err: Error & { status?: number }) => err.status === 503 && /another hub/.test(err.message));
  assert.deepEqual(configs.view('x').desired?.values, { sampleIntervalMs: 900 }, 'what the other hub wrote stays; the refused change is not in force');
  await configs.close();
});

test('device config - another hub\'s write read from the watch before this save\'s acknowledgement (cluster mode) is not overwritten by the older state this save planned', async () => {
  let configs: DeviceConfigs | null = null;
  let during: (() => void) | null = null;
  const persistence = { save: (): Promise<void> => { during?.(); return Promise.resolve(); } };
  configs = new DeviceConfigs({ membersOf: () => ['x'], tagsOf: () => ({ site: 'lab' }), persistence });
  // The save is stored; before its ack is handled, the watch brings a later write of another hub.
  during = () => configs.adoptDevice('x', entry(9, 900));
  await configs.setDesired('x', { sampleIntervalMs: 500 }, 'here');
  assert.equal(configs.view('x').desired?.version, 9);
  assert.deepEqual(configs.view('x').desired?.values, { sampleIntervalMs: 900 });
  // The same for a group's defaults.
  during = () => configs.adoptGroup('site=lab', { values: { batchIntervalMs: 7000 }, changedAt: 2, by: 'other-hub' });
  await configs.setGroupDefaults('site=lab', { batchIntervalMs: 3000 }, 'here');
  assert.deepEqual(configs.group('site=lab')?.values, { batchIntervalMs: 7000 });
  during = null;
  await configs.close();
});
