// Errors the hub raises on purpose: each kind has its own HUB_ERR_* code,
// sets `name` and keeps its cause; schema problems read "field: problem".
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import test from 'node:test';
import { Operators } from '../src/auth/operators.ts';
import type { PasswordHasher } from '../src/auth/password-hasher.ts';
import { BadRequestError, describeIssues, HubError, issuePath, OperatorError, RegistryError, RuleError } from '../src/core/errors.ts';
import { parseHistoryQuery } from '../src/http/history.ts';
import { Alarms, MAX_RULES, parseRule } from '../src/live/alarms.ts';

const hasher: PasswordHasher = { derive: (password, salt) => Promise.resolve(createHash('sha256').update(salt).update(password).digest()) };

test('errors - each kind has its own code and name, extends HubError and keeps its cause', () => {
  const cause = new Error('underneath');
  for (const [err, code, name] of [
    [new OperatorError('m', { cause }), 'HUB_ERR_OPERATOR', 'OperatorError'],
    [new RuleError('m', { cause }), 'HUB_ERR_RULE', 'RuleError'],
    [new BadRequestError('m', { cause }), 'HUB_ERR_BAD_REQUEST', 'BadRequestError'],
    [new RegistryError('m', { cause }), 'HUB_ERR_REGISTRY', 'RegistryError'],
  ] as const) {
    assert.ok(err instanceof HubError, name);
    assert.equal(err.code, code);
    assert.equal(err.name, name);
    assert.equal(err.cause, cause);
    assert.equal(err.message, 'm');
  }
});

test('errors - bad operator names and password lengths are OperatorError (HUB_ERR_OPERATOR)', async () => {
  const ops = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 1000, hasher });
  const operatorError = (re: RegExp) => (err: unknown) => err instanceof OperatorError && err.code === 'HUB_ERR_OPERATOR' && re.test(err.message);
  await assert.rejects(ops.setPassword('bad name', 'long enough'), operatorError(/operator name "bad name"/));
  await assert.rejects(ops.setPassword('alice', 'short'), operatorError(/8 to 1024/));
  await assert.rejects(ops.setPassword('alice', 'x'.repeat(1025)), operatorError(/8 to 1024/));
});

test('errors - a bad alarm rule and one rule too many are RuleError (HUB_ERR_RULE); the schema report is the cause', async () => {
  assert.throws(() => parseRule({ name: 'x', metric: 'm', op: '=>', threshold: 1 }), (err: unknown) =>
    err instanceof RuleError && err.code === 'HUB_ERR_RULE' && err.message === 'op: one of > >= < <=' && err.cause instanceof Error);
  assert.throws(() => parseRule('x'), (err: unknown) => err instanceof RuleError && err.message === 'a rule is an object');
  assert.throws(() => parseRule({}), (err: unknown) => err instanceof RuleError && err.message === 'name: 1 to 100 characters (and 3 more)');
  const alarms = new Alarms(null);
  for (let i = 0; i < MAX_RULES; i++) await alarms.add({ name: `r${i}`, metric: 'm', op: '<', threshold: i });
  await assert.rejects(alarms.add({ name: 'one more', metric: 'm', op: '<', threshold: 0 }), (err: unknown) => err instanceof RuleError && err.code === 'HUB_ERR_RULE');
});

test('errors - alarm rules: what was accepted before still is (Number() for numbers, anything but a string group is the fleet)', () => {
  const rule = parseRule({ name: '  Hot  ', metric: 'temperature', group: 5, op: '>', threshold: '80', forS: '10' });
  assert.deepEqual({ ...rule, id: 'x' }, { id: 'x', name: 'Hot', metric: 'temperature', group: '', op: '>', threshold: 80, forS: 10 });
  assert.equal(parseRule({ name: 'n', metric: 'm', op: '<', threshold: null }).threshold, 0);
  assert.equal(parseRule({ name: 'n', metric: 'm', op: '<', threshold: 1 }).forS, 0);
  assert.equal(parseRule({ name: 'n', metric: 'm', op: '<', threshold: 1, group: ' site=north ' }).group, 'site=north');
  for (const [bad, message] of [
    [{ name: 'n', metric: 'm', op: '<', threshold: Infinity }, 'threshold: a finite number'],
    [{ name: 'n', metric: 'm', op: '<', threshold: '1e999' }, 'threshold: a finite number'],
    [{ name: 'n', metric: 'm', op: '<', threshold: 1, forS: 86_401 }, 'forS: whole seconds, 0 to 86400'],
    [{ name: 'x'.repeat(101), metric: 'm', op: '<', threshold: 1 }, 'name: 1 to 100 characters'],
    [{ name: '   ', metric: 'm', op: '<', threshold: 1 }, 'name: 1 to 100 characters'],
    [{ name: 'n', metric: 5, op: '<', threshold: 1 }, 'metric: a metric name such as temperature'],
  ] as const) assert.throws(() => parseRule(bad), (err: unknown) => err instanceof RuleError && err.message === message, message);
});

test('errors - a bad history query is BadRequestError (HUB_ERR_BAD_REQUEST)', () => {
  assert.throws(() => parseHistoryQuery(new URLSearchParams('metric=t&step=10x'), 0), (err: unknown) =>
    err instanceof BadRequestError && err.code === 'HUB_ERR_BAD_REQUEST' && /step="10x": expected a duration/.test(err.message));
});

test('errors - schema problems read "field: problem", names that could be misread quoted', () => {
  assert.equal(issuePath(['devices', 'dev-1', 'tags', 'site']), 'devices.dev-1.tags.site');
  assert.equal(issuePath(['rules', 2, 'op']), 'rules[2].op');
  assert.equal(issuePath(['devices', 'dev.1', 'tags', 'a b\n']), 'devices["dev.1"].tags["a b\\n"]');
  assert.equal(issuePath([]), '');
  assert.equal(describeIssues([{ path: ['a'], message: 'bad' }]), 'a: bad');
  assert.equal(describeIssues([{ path: [], message: 'bad' }, { path: ['b'], message: 'worse' }]), 'bad (and 1 more)');
  // A bad record key: the key's own message, not the record's.
  assert.equal(describeIssues([{ path: ['k'], message: 'must be an object', issues: [{ path: [], message: 'key is bad' }] }]), 'k: key is bad');
});
