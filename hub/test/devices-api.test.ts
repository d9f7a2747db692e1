/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-argument, @typescript-eslint/no-unsafe-call -- JSON answers of the API, read as the test expects them (a wrong shape fails the assertion) */
// /api/v1/devices (the registry API), operator roles and the audit trail of
// what operators do: every endpoint with good and bad input (unknown device,
// malformed and oversize bodies, wrong role, missing or foreign Origin), a
// rotated token (the old one refused, the live session closed with 4008),
// and in the embedded mode a change is in the registry file before it is
// answered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloseCode } from '@telemetry/proto';
import { DeviceAdmin } from '../src/auth/device-admin.ts';
import { DeviceRegistry, readRegistryFile, writeRegistryFile, type RegistryFile } from '../src/auth/registry.ts';
import { writeJsonAtomic } from '../src/core/atomic-file.ts';
import { firstInOrder } from '../src/http/device-routes.ts';
import { RawDevice, TEST_OPERATOR, type TestHub, signedInApi, within } from './helpers.ts';

async function signInAs(th: TestHub, user: string, password: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${th.port}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password }) });
  assert.equal(r.status, 200);
  return (r.headers.get('set-cookie') ?? '').split(';')[0]!;
}

test('devices api - register (the token once, and it connects), list with search, tag and presence filters, paging and sort, get one', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1', 'dev-2'] });
  const created = await a.call('POST', '/api/v1/devices', { id: 'green-7', tags: { site: 'lab', room: 'r2' } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.token, /^green-7\.[A-Za-z0-9_-]{43}$/);
  assert.equal(created.body.device.id, 'green-7');
  assert.match(created.body.connect.url, /^ws:\/\/127\.0\.0\.1:\d+\/v1\/devices$/);
  assert.ok(created.body.connect.command.includes(created.body.token));
  // The token works at once; nothing stores it but the answer.
  const d = new RawDevice(a.th.url, { token: created.body.token });
  await within(d.opened, 3000, 'the new device connects');
  d.hello('green-7');
  await d.next('welcome', 3000);
  assert.equal(JSON.stringify(a.th.registry.file()).includes(created.body.token), false);

  const all = await a.call('GET', '/api/v1/devices');
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.devices.map((x: { id: string }) => x.id), ['dev-1', 'dev-2', 'green-7']);
  assert.equal(all.body.total, 3);
  assert.deepEqual((await a.call('GET', '/api/v1/devices?q=GREEN')).body.devices.map((x: { id: string }) => x.id), ['green-7']);
  assert.deepEqual((await a.call('GET', '/api/v1/devices?tag=site:lab&tag=room:r2')).body.devices.map((x: { id: string }) => x.id), ['green-7']);
  assert.deepEqual((await a.call('GET', '/api/v1/devices?tag=site:lab&tag=room:r9')).body.devices, []);
  const online = await a.call('GET', '/api/v1/devices?presence=online');
  assert.deepEqual(online.body.devices.map((x: { id: string }) => x.id), ['green-7']);
  assert.ok(online.body.devices[0].lastSeenMs > 0);
  const page = await a.call('GET', '/api/v1/devices?sort=-id&limit=2&offset=1');
  assert.deepEqual(page.body.devices.map((x: { id: string }) => x.id), ['dev-2', 'dev-1']);
  assert.equal(page.body.total, 3);
  const one = await a.call('GET', '/api/v1/devices/green-7');
  assert.deepEqual(one.body.device.tags, { site: 'lab', room: 'r2' });
  assert.equal(one.body.device.presence, 'online');
  d.close();
});

test('devices api - bad input: unknown device, taken id, malformed and oversize bodies, invalid tags and ids, bad list parameters', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  const cases: [string, string, unknown, number, RegExp][] = [
    ['GET', '/api/v1/devices/nope', undefined, 404, /no device nope/],
    ['PATCH', '/api/v1/devices/nope', { disabled: true }, 404, /no device nope/],
    ['POST', '/api/v1/devices/nope/rotate', undefined, 404, /no device nope/],
    ['DELETE', '/api/v1/devices/nope', undefined, 404, /no device nope/],
    ['POST', '/api/v1/devices', { id: 'dev-1' }, 409, /exists already/],
    ['POST', '/api/v1/devices', '{"id": "x"', 400, /not JSON/],
    ['POST', '/api/v1/devices', { id: 'has space' }, 400, /invalid device id/],
    ['POST', '/api/v1/devices', { id: 'x'.repeat(129) }, 400, /invalid device id/],
    ['POST', '/api/v1/devices', { id: 'ok-1', tags: { device: 'x' } }, 400, /reserved/],
    ['POST', '/api/v1/devices', { id: 'ok-1', tags: { site: 'a\\b' } }, 400, /backslash/],
    ['POST', '/api/v1/devices', { id: 'ok-1', tags: { site: 7 } }, 400, /strings/],
    ['POST', '/api/v1/devices', { id: 'ok-1', token: 'mine' }, 400, /token|Unrecognized|unrecognized/],
    ['POST', '/api/v1/devices', [], 400, /expected/],
    ['POST', '/api/v1/devices', { id: 'big', tags: { site: 'x'.repeat(20_000) } }, 413, /too large/],
    ['PATCH', '/api/v1/devices/dev-1', {}, 400, /nothing to change/],
    ['PATCH', '/api/v1/devices/dev-1', { disabled: 'yes' }, 400, /true or false/],
    ['POST', '/api/v1/devices/bulk', { action: 'explode', ids: ['dev-1'] }, 400, /action is one of/],
    ['POST', '/api/v1/devices/bulk', { action: 'disable', ids: [] }, 400, /empty/],
    ['POST', '/api/v1/devices/bulk', { action: 'disable', ids: Array.from({ length: 1001 }, (_, i) => `d${i}`) }, 400, /at most 1000/],
    ['GET', '/api/v1/devices?limit=0', undefined, 400, /at least 1/],
    ['GET', '/api/v1/devices?limit=501', undefined, 400, /at most 500/],
    ['GET', '/api/v1/devices?sort=colour', undefined, 400, /sort is one of/],
    ['GET', '/api/v1/devices?presence=asleep', undefined, 400, /presence is one of/],
    ['GET', '/api/v1/devices?tag=nocolon', undefined, 400, /key:value/],
    ['GET', '/api/v1/devices?q=a&q=b', undefined, 400, /more than once/],
    ['GET', '/api/v1/devices?colour=red', undefined, 400, /colour|Unrecognized|unrecognized/],
    ['GET', `/api/v1/devices?q=${'x'.repeat(200)}`, undefined, 400, /at most 128/],
    ['GET', '/api/v1/devices/%E0%A4%A', undefined, 404, /no device/],
  ];
  for (const [method, path, body, status, error] of cases) {
    const r = await a.call(method, path, body);
    assert.equal(r.status, status, `${method} ${path.slice(0, 60)} ${JSON.stringify(body)?.slice(0, 60)}: ${JSON.stringify(r.body)}`);
    assert.match(typeof r.body === 'string' ? r.body : r.body.error, error, `${method} ${path.slice(0, 60)}`);
  }
  // Nothing of that changed the registry.
  assert.deepEqual(Object.keys(a.th.registry.file().devices), ['dev-1']);
});

test('devices api - rotate: the old token is refused, the live session is closed with 4008 at once, the new token connects', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  const d = new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') });
  await within(d.opened, 3000, 'open');
  d.hello('dev-1');
  await d.next('welcome', 3000);
  const r = await a.call('POST', '/api/v1/devices/dev-1/rotate');
  assert.equal(r.status, 200);
  assert.equal((await within(d.closed, 3000, 'closed on rotate')).code, CloseCode.DEVICE_REVOKED);
  const old = new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') });
  assert.equal((await within(old.refused, 3000, 'old token refused')).status, 401);
  const fresh = new RawDevice(a.th.url, { token: r.body.token });
  await within(fresh.opened, 3000, 'new token connects');
  fresh.close();
});

test('devices api - disable closes the session (4008) and refuses with 403, enable lets it back; tags replaced; delete; bulk reports unknown ids', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1', 'dev-2', 'dev-3'] });
  const d = new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') });
  await within(d.opened, 3000, 'open');
  d.hello('dev-1');
  await d.next('welcome', 3000);
  assert.equal((await a.call('PATCH', '/api/v1/devices/dev-1', { disabled: true })).status, 200);
  assert.equal((await within(d.closed, 3000, 'closed on disable')).code, CloseCode.DEVICE_REVOKED);
  assert.equal((await within(new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') }).refused, 3000, 'refused')).status, 403);
  assert.equal((await a.call('GET', '/api/v1/devices?presence=disabled')).body.devices[0].id, 'dev-1');
  assert.equal((await a.call('PATCH', '/api/v1/devices/dev-1', { disabled: false, tags: { site: 'b' } })).body.device.tags.site, 'b');
  const back = new RawDevice(a.th.url, { token: a.th.tokens.get('dev-1') });
  await within(back.opened, 3000, 'enabled again');
  back.close();
  assert.equal((await a.call('DELETE', '/api/v1/devices/dev-2')).status, 204);
  assert.equal((await a.call('GET', '/api/v1/devices/dev-2')).status, 404);
  const bulk = await a.call('POST', '/api/v1/devices/bulk', { action: 'disable', ids: ['dev-1', 'dev-3', 'ghost'] });
  assert.equal(bulk.status, 200);
  assert.deepEqual(bulk.body, { done: ['dev-1', 'dev-3'], unknown: ['ghost'] });
  assert.deepEqual((await a.call('GET', '/api/v1/devices?presence=disabled')).body.devices.map((x: { id: string }) => x.id), ['dev-1', 'dev-3']);
});

test('devices api - roles: a viewer reads but every change is 403; no session is 401; a foreign Origin is 403, none at all (not a browser) is allowed', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  await a.th.hub.operators.setPassword('watcher', 'viewer-password-1', { role: 'viewer' });
  const viewer = await signInAs(a.th, 'watcher', 'viewer-password-1');
  const me = await fetch(`${a.origin}/api/v1/me`, { headers: { cookie: viewer } });
  assert.deepEqual(await me.json(), { user: 'watcher', role: 'viewer' });
  assert.deepEqual((await a.call('GET', '/api/v1/me')).body, { user: TEST_OPERATOR.user, role: 'admin' });
  const as = (cookie: string, method: string, path: string, body?: unknown, origin: string | null = a.origin) => fetch(`${a.origin}${path}`, {
    method, headers: { cookie, ...(origin ? { origin } : {}), 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal((await as(viewer, 'GET', '/api/v1/devices')).status, 200);
  const writes: [string, string, unknown?][] = [
    ['POST', '/api/v1/devices', { id: 'v-1' }], ['PATCH', '/api/v1/devices/dev-1', { disabled: true }], ['POST', '/api/v1/devices/dev-1/rotate'],
    ['DELETE', '/api/v1/devices/dev-1'], ['POST', '/api/v1/devices/bulk', { action: 'delete', ids: ['dev-1'] }],
    ['POST', '/api/v1/alarms/rules', { name: 'r', metric: 'm', op: '>', threshold: 1, forS: 0 }],
  ];
  for (const [method, path, body] of writes) {
    const r = await as(viewer, method, path, body);
    assert.equal(r.status, 403, `viewer ${method} ${path}`);
    assert.match(((await r.json()) as { error: string }).error, /viewer: read only/);
    assert.equal((await as(a.cookie, method, path, body, 'http://evil.example')).status, 403, `admin from another origin ${method} ${path}`);
    assert.equal((await fetch(`${a.origin}${path}`, { method, headers: { origin: a.origin } })).status, 401, `no session ${method} ${path}`);
  }
  assert.equal((await as(viewer, 'GET', '/api/v1/audit')).status, 403, 'the audit trail is for admins');
  assert.deepEqual(Object.keys(a.th.registry.file().devices), ['dev-1']);
  assert.equal(a.th.registry.get('dev-1')?.disabled, undefined);
  // No Origin at all is not a browser (browsers send one with every write; the
  // cookie is SameSite=Strict): the rule of every other write, e.g. curl.
  assert.equal((await as(a.cookie, 'POST', '/api/v1/devices', { id: 'curl-1' }, null)).status, 201);
});

test('devices api - the audit trail: sign-in (ok and failed), device changes and rule changes with who, when, what and from where; filters; a failed-sign-in flood is bounded', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-1'] });
  await fetch(`${a.origin}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'admin', password: 'wrong-password!' }) });
  await a.call('POST', '/api/v1/devices', { id: 'aud-1', tags: { site: 'x' } });
  await a.call('POST', '/api/v1/devices/aud-1/rotate');
  await a.call('PATCH', '/api/v1/devices/aud-1', { disabled: true });
  await a.call('POST', '/api/v1/devices', { id: 'dev-1' }); // 409: audited as failed
  const rule = await a.call('POST', '/api/v1/alarms/rules', { name: 'hot', metric: 'temperature', op: '>', threshold: 80, forS: 0 });
  await a.call('DELETE', `/api/v1/alarms/rules/${rule.body.rule.id}`);
  await a.call('DELETE', '/api/v1/devices/aud-1');
  await a.th.hub.audit.flush();
  const all = (await a.call('GET', '/api/v1/audit?limit=50')).body.entries as { action: string; actor: string; outcome: string; target: string; address: string; time: number; detail: Record<string, unknown> }[];
  const seen = all.map((e) => `${e.action}:${e.outcome}:${e.target}`).reverse();
  assert.deepEqual(seen, [
    'sign-in:ok:', 'sign-in:failed:', 'device.create:ok:aud-1', 'device.rotate:ok:aud-1', 'device.update:ok:aud-1', 'device.create:failed:dev-1',
    `rule.add:ok:${rule.body.rule.id}`, `rule.remove:ok:${rule.body.rule.id}`, 'device.delete:ok:aud-1',
  ]);
  const create = all.find((e) => e.action === 'device.create' && e.outcome === 'ok')!;
  assert.equal(create.actor, 'admin');
  assert.equal(create.detail.id, 'aud-1');
  assert.match(create.address, /127\.0\.0\.1/);
  assert.ok(Math.abs(create.time - Date.now()) < 60_000);
  assert.equal(all.find((e) => e.action === 'sign-in' && e.outcome === 'failed')!.detail.user, 'admin');
  assert.equal(JSON.stringify(all).includes('wrong-password'), false, 'no password in the trail');
  const devicesOnly = (await a.call('GET', '/api/v1/audit?action=device.&outcome=failed')).body.entries;
  assert.deepEqual(devicesOnly.map((e: { action: string }) => e.action), ['device.create']);
  assert.equal((await a.call('GET', '/api/v1/audit?limit=5000')).status, 400);
  assert.equal((await a.call('GET', '/api/v1/audit?since=yesterday')).status, 400);

  // A flood of failed sign-ins from one address: a few entries and a count, not one line each.
  await Promise.all(Array.from({ length: 60 }, () => fetch(`${a.origin}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'x'.repeat(500), password: 'y' }) })));
  await a.th.hub.audit.flush();
  const failed = (await a.call('GET', '/api/v1/audit?action=sign-in&limit=1000')).body.entries.filter((e: { outcome: string }) => e.outcome !== 'ok');
  assert.ok(failed.length <= 25, `${failed.length} sign-in failures kept`);
  assert.ok(a.th.hub.audit.stats().suppressed > 0);
});

test('devices api - embedded mode: a change is in the registry file before it is answered; a file that cannot be written changes nothing (503)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'devices-api-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'devices.json');
  const initial: RegistryFile = { version: 1, devices: {} };
  writeRegistryFile(file, initial);
  let failWrites = false;
  const registry = new DeviceRegistry(initial);
  // The hub's own commit in the embedded mode (hub/src/main.ts): written, then in force.
  const admin = new DeviceAdmin({
    registry, commit: async (next) => { if (failWrites) throw new Error('disk full'); await writeJsonAtomic(file, next); registry.replace(next); },
  });
  const a = await signedInApi(t, { devices: [], deps: { auth: registry, deviceAdmin: admin } });
  const r = await a.call('POST', '/api/v1/devices', { id: 'filed-1', tags: { site: 's' } });
  assert.equal(r.status, 201);
  const onDisk = readRegistryFile(file);
  assert.deepEqual(Object.keys(onDisk.devices), ['filed-1']);
  assert.equal(onDisk.devices['filed-1']!.tags.site, 's');
  assert.match(onDisk.devices['filed-1']!.createdAt ?? '', /^\d{4}-\d\d-\d\dT/);
  assert.equal(readFileSync(file, 'utf8').includes(r.body.token), false, 'only the hash is stored');
  failWrites = true;
  const refused = await a.call('POST', '/api/v1/devices/filed-1/rotate');
  assert.equal(refused.status, 503);
  assert.match(refused.body.error, /disk full/);
  assert.equal(registry.get('filed-1')!.tokenHash, onDisk.devices['filed-1']!.tokenHash, 'the old token still in force');
});

test('devices api - sort by lastSeen and created, both ways, paged: key order, ties by id; a registry change is in the next list', async (t) => {
  const a = await signedInApi(t, { devices: ['dev-b', 'dev-a', 'dev-c'] });
  // Created through the API: createdAt in order of creation; the file's devices have none (sort first).
  for (const id of ['new-2', 'new-1']) {
    assert.equal((await a.call('POST', '/api/v1/devices', { id, tags: {} })).status, 201);
    await new Promise((r) => setTimeout(r, 5));
  }
  const ids = async (q: string): Promise<string[]> => (await a.call('GET', `/api/v1/devices?${q}`)).body.devices.map((x: { id: string }) => x.id) as string[];
  assert.deepEqual(await ids('sort=created'), ['dev-a', 'dev-b', 'dev-c', 'new-2', 'new-1']);
  assert.deepEqual(await ids('sort=-created'), ['new-1', 'new-2', 'dev-c', 'dev-b', 'dev-a']);
  assert.deepEqual(await ids('sort=-created&offset=1&limit=2'), ['new-2', 'dev-c']);
  // Seen: dev-c, then dev-a; the others never (lastSeen 0, first ascending).
  for (const id of ['dev-c', 'dev-a']) {
    const d = new RawDevice(a.th.url, { token: a.th.tokens.get(id) });
    await within(d.opened, 3000, id);
    d.hello(id);
    await d.next('welcome', 3000);
    await new Promise((r) => setTimeout(r, 5));
    d.close();
  }
  assert.deepEqual(await ids('sort=lastSeen'), ['dev-b', 'new-1', 'new-2', 'dev-c', 'dev-a']);
  assert.deepEqual(await ids('sort=-lastSeen&limit=3'), ['dev-a', 'dev-c', 'new-2']);
  assert.deepEqual(await ids('sort=-lastSeen&offset=4'), ['dev-b']);
  assert.deepEqual(await ids('sort=-id&offset=4&limit=5'), ['dev-a']);
  assert.deepEqual(await ids('sort=id&offset=9'), []);
  // The sorted ids follow a change at once.
  assert.equal((await a.call('DELETE', '/api/v1/devices/dev-a')).status, 204);
  assert.deepEqual(await ids('sort=id'), ['dev-b', 'dev-c', 'new-1', 'new-2']);
});

test('devices api - firstInOrder (the list\'s selection) is a full sort\'s first k, with ties, for k below and above the selection bound', () => {
  let seed = 7;
  const random = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31; };
  for (const n of [0, 1, 10, 5000]) {
    const keys = Array.from({ length: n }, () => Math.floor(random() * 50));
    for (const sign of [1, -1]) {
      const cmp = (x: number, y: number): number => sign * (keys[x]! - keys[y]! || x - y);
      const full = Array.from({ length: n }, (_, i) => i).sort(cmp);
      for (const k of [0, 1, 3, 50, 2000, 2001, 6000]) {
        for (const fromEnd of [false, true]) assert.deepEqual(firstInOrder(n, k, cmp, fromEnd), full.slice(0, k), `n ${n} k ${k} sign ${sign} fromEnd ${fromEnd}`);
      }
    }
  }
});
