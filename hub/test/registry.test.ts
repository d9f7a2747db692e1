// The device registry: hashed tokens, verification, the file, hot reload, revocation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CloseCode } from '@telemetry/proto';
import { DeviceRegistry, addDevice, generateToken, hashToken, readRegistryFile, watchRegistryFile, writeRegistryFile } from '../src/auth/registry.ts';
import { RegistryError } from '../src/core/errors.ts';
import { connectDevice, startHub, until, within } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'registry-'));
  process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('registry - tokens verify; wrong, unknown and malformed ones do not; disabled is 403', () => {
  const token = generateToken('dev-1');
  assert.match(token, /^dev-1\.[A-Za-z0-9_-]{43}$/);
  const reg = new DeviceRegistry({ version: 1, devices: { 'dev-1': { tokenHash: hashToken(token), tags: { site: 'a' } }, 'dev-2': { tokenHash: hashToken(generateToken('dev-2')), tags: {}, disabled: true } } });
  const ok = reg.authenticate(token);
  assert.deepEqual(ok, { ok: true, deviceId: 'dev-1', tags: { site: 'a' } });
  const other = generateToken('dev-1');
  assert.equal(reg.authenticate(other).ok, false);
  assert.equal(reg.authenticate(other.replace('dev-1', 'dev-9')).ok, false);
  for (const bad of ['', 'dev-1', 'dev-1.', '.abc', 'dev 1.' + 'a'.repeat(43), 'dev-1.short']) {
    const r = reg.authenticate(bad);
    assert.ok(!r.ok && r.status === 401, bad);
  }
  const dis = reg.authenticate(generateToken('dev-2'));
  assert.ok(!dis.ok && dis.status === 401, 'a wrong token for a disabled device is still 401');
  const t3 = generateToken('dev-3');
  const reg3 = new DeviceRegistry({ version: 1, devices: { 'dev-3': { tokenHash: hashToken(t3), tags: {}, disabled: true } } });
  const r3 = reg3.authenticate(t3);
  assert.ok(!r3.ok && r3.status === 403, 'the right token for a disabled device is 403');
  assert.throws(() => generateToken('bad id'), RegistryError);
});

test('registry - the file stores hashes only; re-adding a device re-keys it', () => {
  const dir = tmp();
  const file = join(dir, 'devices.json');
  const t1 = addDevice(file, 'dev-1', { site: 'north' });
  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes(t1.split('.')[1]!), 'the secret is not in the file');
  assert.equal(new DeviceRegistry(readRegistryFile(file)).authenticate(t1).ok, true);
  const t2 = addDevice(file, 'dev-1');
  const reg = new DeviceRegistry(readRegistryFile(file));
  assert.equal(reg.authenticate(t1).ok, false, 'the old token stops working');
  assert.equal(reg.authenticate(t2).ok, true);
});

test('registry - a bad file is a clear error; a missing file is an empty registry', () => {
  const dir = tmp();
  assert.equal(new DeviceRegistry(readRegistryFile(join(dir, 'none.json'))).size, 0);
  const f = join(dir, 'bad.json');
  writeFileSync(f, '{not json');
  assert.throws(() => readRegistryFile(f), /not valid JSON/);
  writeFileSync(f, JSON.stringify({ version: 1, devices: { 'dev-1': { tokenHash: 'plain' } } }));
  assert.throws(() => readRegistryFile(f), /registry: devices\.dev-1\.tokenHash: must be "sha256:" and the token's hash/);
  writeFileSync(f, JSON.stringify({ version: 2, devices: {} }));
  assert.throws(() => readRegistryFile(f), /registry: version: must be 1/);
  const h = hashToken(generateToken('d'));
  for (const tags of [{ 'bad key': 'x' }, { k: 'x'.repeat(257) }, Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])), { k: 5 }]) {
    writeFileSync(f, JSON.stringify({ version: 1, devices: { d: { tokenHash: h, tags } } }));
    assert.throws(() => readRegistryFile(f), /tag/, JSON.stringify(tags).slice(0, 40));
  }
});

test('registry - tag values with a backslash or control characters and reserved tag keys are refused, in the file and by addDevice', () => {
  const dir = tmp();
  const f = join(dir, 'devices.json');
  const h = hashToken(generateToken('d'));
  const badValues = ['deg\\', 'a\\,b', 'C:\\dir', 'a\nb', 'tab\there', 'nul\u0000', 'del\u007f', 'c1\u0085', 'lone\ud800'];
  const badKeys = ['time', 'Time', '_field', '_measurement', '_x', 'device', 'unit', 'value', 'device_time_ms'];
  for (const tags of [...badValues.map((v) => ({ site: v })), ...badKeys.map((k) => ({ [k]: 'x' })), 'site=a']) {
    writeFileSync(f, JSON.stringify({ version: 1, devices: { d: { tokenHash: h, tags } } }));
    assert.throws(() => readRegistryFile(f), RegistryError, JSON.stringify(tags));
    assert.throws(() => new DeviceRegistry({ version: 1, devices: { d: { tokenHash: h, tags: tags as Record<string, string> } } }), RegistryError);
  }
  // addDevice refuses before writing: the file stays as it was.
  const reg = join(dir, 'add.json');
  addDevice(reg, 'dev-1', { site: 'north' });
  const before = readFileSync(reg, 'utf8');
  for (const tags of [...badValues.map((v) => ({ site: v })), ...badKeys.map((k) => ({ [k]: 'x' }))]) {
    assert.throws(() => addDevice(reg, 'dev-2', tags), RegistryError, JSON.stringify(tags));
    assert.equal(readFileSync(reg, 'utf8'), before);
  }
  // What line protocol escapes exactly is fine.
  const ok = { site: 'a,b=c d', note: '"quoted" \'single\' #hash', nbsp: 'x\u00a0y\u3000z', emoji: '🛰️ 中文', Time_zone: 'UTC+1', devices: 'x' };
  addDevice(reg, 'dev-3', ok);
  assert.deepEqual(new DeviceRegistry(readRegistryFile(reg)).tagsOf('dev-3'), ok);
});

test('registry - changes to the file are picked up; a bad edit keeps the previous registry', async () => {
  const dir = tmp();
  const file = join(dir, 'devices.json');
  addDevice(file, 'dev-1');
  const reg = new DeviceRegistry(readRegistryFile(file));
  const errors: unknown[] = [];
  const stop = watchRegistryFile(file, reg, (e) => errors.push(e));
  try {
    const t2 = addDevice(file, 'dev-2');
    await until(() => reg.authenticate(t2).ok, 3000, 'dev-2 known');
    writeFileSync(file, '{broken');
    await until(() => errors.length > 0, 3000, 'error reported');
    assert.equal(reg.authenticate(t2).ok, true, 'previous content still in force');
    rmSync(file);
    await until(() => errors.some((e) => /was removed; keeping/.test(String((e as Error).message))), 3000, 'removal reported');
    assert.equal(reg.authenticate(t2).ok, true, 'a deleted file does not revoke the fleet');
  } finally {
    stop();
  }
});

test('registry - removing or disabling a device notifies revocation listeners', () => {
  const t1 = generateToken('a');
  const reg = new DeviceRegistry({ version: 1, devices: { a: { tokenHash: hashToken(t1), tags: {} }, b: { tokenHash: hashToken(generateToken('b')), tags: {} }, c: { tokenHash: hashToken(generateToken('c')), tags: {} } } });
  const seen: string[][] = [];
  reg.onRevoked((ids) => seen.push(ids));
  const f = { version: 1 as const, devices: { a: { tokenHash: hashToken(t1), tags: {}, disabled: true }, c: { tokenHash: hashToken(generateToken('c')), tags: {} } } };
  reg.replace(f);
  assert.deepEqual(seen, [['a', 'b', 'c']], 'disabled, removed, re-keyed');
});

test('registry - a connected device whose registration is removed is closed with 4008', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  th.registry.replace({ version: 1, devices: {} });
  const closed = await within(d.closed, 3000, 'revoked');
  assert.equal(closed.code, CloseCode.DEVICE_REVOKED);
});

test('device-token CLI - prints a token that authenticates against the file it wrote', () => {
  const dir = tmp();
  const file = join(dir, 'devices.json');
  const token = execFileSync(process.execPath, ['--import', 'tsx', 'hub/src/tools/device-token.ts', '--add', 'gh-7', '--tag', 'site=north', '--file', file], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const reg = new DeviceRegistry(readRegistryFile(file));
  const r = reg.authenticate(token);
  assert.ok(r.ok && r.tags.site === 'north');
  const list = execFileSync(process.execPath, ['--import', 'tsx', 'hub/src/tools/device-token.ts', '--list', '--file', file], { cwd: root, encoding: 'utf8' });
  assert.match(list, /gh-7\tenabled\tsite=north/);
  writeRegistryFile(file, readRegistryFile(file));
  assert.throws(() => execFileSync(process.execPath, ['--import', 'tsx', 'hub/src/tools/device-token.ts', '--add', 'bad id', '--file', file], { cwd: root, stdio: 'pipe' }));
});
