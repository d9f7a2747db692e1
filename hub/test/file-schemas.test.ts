// The files the hub reads at start (device registry, operators, sessions,
// alarm rules) are checked against their schemas: a file that breaks a rule
// is refused with a message that names the field and the problem, and the
// schema's report is kept as the error's cause.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import { DeviceRegistry, generateToken, hashToken, type RegistryFile } from '../src/auth/registry.ts';
import { Operators } from '../src/auth/operators.ts';
import type { PasswordHasher } from '../src/auth/password-hasher.ts';
import { HubError, RegistryError } from '../src/core/errors.ts';
import { Alarms } from '../src/live/alarms.ts';
import { tempDir } from '../../test/support/fs.ts';

const hash = hashToken(generateToken('d'));
/** Fast stand-in for scrypt: these tests are about files, not hashing. */
const hasher: PasswordHasher = { derive: (password, salt) => Promise.resolve(createHash('sha256').update(salt).update(password).digest()) };

/** The error `f` throws, which must be one. */
function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    assert.ok(err instanceof Error);
    return err;
  }
  assert.fail('expected an error');
}

test('file schemas - registry: each refusal names the field and the problem', () => {
  const device = (entry: unknown) => ({ version: 1, devices: { 'dev-1': entry } });
  const cases: [unknown, string][] = [
    ['not an object', 'registry: must be {"version": 1, "devices": {...}}'],
    [{ version: 2, devices: {} }, 'registry: version: must be 1'],
    [{ version: 1 }, 'registry: devices: must be an object of devices by id'],
    [{ version: 1, devices: { 'bad id': { tokenHash: hash } } }, 'registry: devices["bad id"]: device ids are 1-128 of [A-Za-z0-9_:.-], starting with a letter or digit'],
    [device(null), 'registry: devices.dev-1: must be an object with a tokenHash'],
    [device({ tokenHash: 'plain' }), 'registry: devices.dev-1.tokenHash: must be "sha256:" and the token\'s hash (npm run device-token -- --add ID writes one)'],
    [device({ tokenHash: hash, tags: 'site=a' }), 'registry: devices.dev-1.tags: must be an object of tag names to strings'],
    [device({ tokenHash: hash, tags: ['a'] }), 'registry: devices.dev-1.tags: must be an object of tag names to strings'],
    [device({ tokenHash: hash, tags: { site: 'a\\b' } }), 'registry: devices.dev-1.tags.site: must not contain a backslash (InfluxDB cannot store one exactly)'],
    [device({ tokenHash: hash, tags: { site: 'a\nb' } }), 'registry: devices.dev-1.tags.site: must not contain control characters (InfluxDB cannot store them exactly)'],
    [device({ tokenHash: hash, tags: { site: 'lone\ud800' } }), 'registry: devices.dev-1.tags.site: must not contain a lone surrogate (not UTF-8)'],
    [device({ tokenHash: hash, tags: { site: 'x'.repeat(257) } }), 'registry: devices.dev-1.tags.site: must be at most 256 bytes of UTF-8'],
    [device({ tokenHash: hash, tags: { site: 5 } }), 'registry: devices.dev-1.tags.site: must be a string'],
    [device({ tokenHash: hash, tags: { 'bad key': 'x' } }), 'registry: devices.dev-1.tags["bad key"]: tag names are 1-64 of [A-Za-z0-9_], starting with a letter'],
    [device({ tokenHash: hash, tags: { Time: 'x' } }), 'registry: devices.dev-1.tags.Time: tag name is reserved (time, device, unit, value, device_time_ms)'],
    [device({ tokenHash: hash, tags: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) }), 'registry: devices.dev-1.tags: at most 32 tags'],
    [device({ tokenHash: 'plain', tags: { site: 'a\\b' } }), 'registry: devices.dev-1.tokenHash: must be "sha256:" and the token\'s hash (npm run device-token -- --add ID writes one) (and 1 more)'],
  ];
  for (const [file, message] of cases) {
    const err = thrown(() => new DeviceRegistry(file as never));
    assert.ok(err instanceof RegistryError, message);
    assert.equal(err.message, message);
    assert.equal(err.code, 'HUB_ERR_REGISTRY');
    assert.ok(err.cause instanceof Error, 'the schema report is the cause');
  }
  // Unknown fields are allowed, as before; `disabled` is true or enabled.
  const reg = new DeviceRegistry({ version: 1, devices: { 'dev-1': { tokenHash: hash, tags: { site: 'a' }, createdAt: 'x', disabled: 'yes' } }, note: 1 } as never);
  assert.equal(reg.size, 1);
  assert.deepEqual(reg.tagsOf('dev-1'), { site: 'a' });
});

test('file schemas - registry: a "__proto__" device id or tag key is refused, not dropped', () => {
  for (const [text, message] of [
    [`{"version":1,"devices":{"__proto__":{"tokenHash":"${hash}"}}}`, 'registry: devices.__proto__: device ids are 1-128 of [A-Za-z0-9_:.-], starting with a letter or digit'],
    [`{"version":1,"devices":{"d":{"tokenHash":"${hash}","tags":{"__proto__":"x"}}}}`, 'registry: devices.d.tags.__proto__: tag names are 1-64 of [A-Za-z0-9_], starting with a letter'],
  ] as const) {
    assert.throws(() => new DeviceRegistry(JSON.parse(text) as RegistryFile), (err: unknown) => err instanceof RegistryError && err.message === message, message);
  }
});

test('file schemas - operators file: the entry and the field are named; the code stays HUB_ERR_CONFIG', (t) => {
  const dir = tempDir(t, 'schemas-');
  const file = join(dir, 'operators.json');
  const scrypt = 'scrypt$32768$8$1$c2FsdA$a2V5';
  const cases: [unknown, string][] = [
    [null, 'expected {"operators": [{"name", "password"}]}'],
    [{ operators: {} }, 'operators: must be a list [{"name", "password"}]'],
    [{ operators: ['x'] }, 'operators[0]: must be {"name", "password"}'],
    [{ operators: [{ name: 'ok', password: scrypt }, { name: 'bad name', password: scrypt }] }, 'operators[1].name: must be 1-64 of letters, digits, _.@-, starting with a letter or digit'],
    [{ operators: [{ name: 'x', password: 'plain' }] }, 'operators[0].password: must be a scrypt password hash (npm run operator -- NAME sets one)'],
    [{ operators: [{ name: 'x' }] }, 'operators[0].password: must be a scrypt password hash (npm run operator -- NAME sets one)'],
  ];
  for (const [content, message] of cases) {
    writeFileSync(file, JSON.stringify(content));
    const err = thrown(() => new Operators({ file, sessionsFile: null, sessionTtlMs: 1, hasher }));
    assert.ok(err instanceof HubError);
    assert.equal(err.code, 'HUB_ERR_CONFIG');
    assert.equal(err.message, `HUB_OPERATORS_FILE=${file}: ${message}`);
    assert.ok(err.cause instanceof Error, 'the schema report is the cause');
  }
  writeFileSync(file, '{nope');
  assert.throws(() => new Operators({ file, sessionsFile: null, sessionTtlMs: 1, hasher }), /not readable JSON/);
});

test('file schemas - operators file: unknown fields of an account survive a save made for another one', async (t) => {
  const dir = tempDir(t, 'schemas-');
  const file = join(dir, 'operators.json');
  const ops = new Operators({ file, sessionsFile: null, sessionTtlMs: 1, hasher });
  await ops.setPassword('alice', 'alice-password');
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { operators: Record<string, unknown>[] };
  saved.operators[0]!.team = 'night shift';
  writeFileSync(file, JSON.stringify(saved));
  const again = new Operators({ file, sessionsFile: null, sessionTtlMs: 1, hasher });
  await again.setPassword('bob', 'bob-password');
  const after = JSON.parse(readFileSync(file, 'utf8')) as { operators: Record<string, unknown>[] };
  assert.equal(after.operators.find((o) => o.name === 'alice')?.team, 'night shift');
});

test('file schemas - sessions file: a bad entry signs out only its operator; a damaged file signs everyone out', async (t) => {
  const dir = tempDir(t, 'schemas-');
  const file = join(dir, 'operators.json'), sessionsFile = join(dir, 'sessions.json');
  const ops = new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher });
  await ops.setPassword('alice', 'alice-password');
  const r = await ops.signIn('alice', 'alice-password', '10.0.0.1');
  assert.ok(r.ok);
  const saved = JSON.parse(readFileSync(sessionsFile, 'utf8')) as { sessions: unknown[] };
  const restart = () => new Operators({ file, sessionsFile, sessionTtlMs: 60_000, hasher });
  for (const bad of [null, 'x', { hash: 5, user: 'alice', expires: Date.now() + 60_000 }, { hash: 'h', user: 'alice', expires: 'later' }, { hash: 'h', user: 'alice' }]) {
    writeFileSync(sessionsFile, JSON.stringify({ sessions: [bad, ...saved.sessions] }));
    assert.equal(restart().check(r.token)?.user, 'alice', `the good session stays next to ${JSON.stringify(bad)}`);
  }
  for (const damaged of ['{nope', 'null', '{"sessions": 5}', '{"sessions": {}}']) {
    writeFileSync(sessionsFile, damaged);
    assert.equal(restart().check(r.token), null, damaged);
  }
});

test('file schemas - alarm rules file: the rule and the field are named; the code stays HUB_ERR_CONFIG', (t) => {
  const dir = tempDir(t, 'schemas-');
  const file = join(dir, 'rules.json');
  const good = { name: 'Hot', metric: 'temperature', op: '>', threshold: 80 };
  const cases: [unknown, string][] = [
    [null, 'expected {"rules": [...]}'],
    [{ rules: 'x' }, 'rules: must be a list of rules'],
    [{ rules: [good, { ...good, op: '=>' }] }, 'rules[1].op: one of > >= < <='],
    [{ rules: [5] }, 'rules[0]: a rule is an object'],
    [{ rules: [{ ...good, forS: 1.5 }] }, 'rules[0].forS: whole seconds, 0 to 86400'],
  ];
  for (const [content, message] of cases) {
    writeFileSync(file, JSON.stringify(content));
    const err = thrown(() => new Alarms(file));
    assert.ok(err instanceof HubError);
    assert.equal(err.code, 'HUB_ERR_CONFIG');
    assert.equal(err.message, `HUB_ALARM_RULES_FILE=${file}: ${message}`);
    assert.ok(err.cause instanceof Error, 'the schema report is the cause');
  }
  // Ids from the file are kept when they are ids, replaced when not.
  writeFileSync(file, JSON.stringify({ rules: [{ ...good, id: 'rule_1' }, { ...good, id: 'not an id!' }] }));
  const [kept, replaced] = new Alarms(file).rules;
  assert.equal(kept!.id, 'rule_1');
  assert.match(replaced!.id, /^[A-Za-z0-9_-]{8}$/);
});
