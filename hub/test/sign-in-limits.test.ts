// Failed sign-in limits: the attempt is reserved before the password check
// (bursts cannot overrun a limit), per address (an IPv6 /64 is one) and per
// account, in a bounded table that a flood of cheap failures cannot empty;
// password checks in flight are bounded (503). Unit tests use an injected
// clock and count key derivations with an injected hasher.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import test from 'node:test';
import { Operators, type SignInResult } from '../src/auth/operators.ts';
import { sharedPasswordHasher, type PasswordHasher } from '../src/auth/password-hasher.ts';
import { addressKey, FailureBuckets } from '../src/auth/sign-in-limits.ts';
import { loadConfig } from '../src/core/config.ts';
import { startHub, TEST_OPERATOR } from './helpers.ts';

const DEFAULTS = loadConfig({});
const RIGHT = 'the-right-password';

/** Counts derivations; while held, they wait until release() (checks stay in flight). */
class CountingHasher implements PasswordHasher {
  calls = 0;
  held = false;
  readonly #waiting: (() => void)[] = [];
  constructor(readonly inner?: PasswordHasher) {}

  derive(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
    this.calls++;
    const key = this.inner ? this.inner.derive(password, salt, params) : Promise.resolve(createHash('sha256').update(salt).update(password).digest());
    if (!this.held) return key;
    return new Promise((resolve) => this.#waiting.push(() => resolve(key)));
  }

  release(): void {
    this.held = false;
    for (const f of this.#waiting.splice(0)) f();
  }
}

async function operators(opts: { limits?: Partial<typeof DEFAULTS> } = {}) {
  let now = 1_000_000;
  const hasher = new CountingHasher();
  const ops = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 60_000, now: () => now, hasher, limits: { ...DEFAULTS, ...opts.limits } });
  await ops.setPassword('admin', RIGHT);
  await ops.setPassword('alice', RIGHT);
  hasher.calls = 0;
  return { ops, hasher, advance: (ms: number) => { now += ms; } };
}

const statuses = (rs: SignInResult[]) => rs.map((r) => (r.ok ? 200 : r.status));
const count = (rs: SignInResult[], status: number) => statuses(rs).filter((s) => s === status).length;

test('sign-in limits - address keys: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by /64 in every text form', () => {
  const cases: [string, string][] = [
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::FFFF:c000:0201', '192.0.2.1'],
    // The full form uWS gives for an IPv4 client of a dual-stack socket.
    ['0000:0000:0000:0000:0000:ffff:c000:0201', '192.0.2.1'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:0000:0000:0000:0001', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['[2001:db8:1:2::9]', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['0000:0000:0000:0000:0000:0000:0000:0001', '0:0:0:0::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['2001:db8:1:3::1', '2001:db8:1:3::/64'],
    // Not an IP address: used as it is.
    ['not-an-address', 'not-an-address'],
    ['1:2:3', '1:2:3'],
    ['1::2::3', '1::2::3'],
    ['256.1.1.1', '256.1.1.1'],
  ];
  for (const [text, key] of cases) assert.equal(addressKey(text), key, text);
});

test('sign-in limits - a burst after a lockout expired gets one password check, not one per request', async () => {
  const { ops, hasher, advance } = await operators();
  const addr = '203.0.113.7';
  for (let i = 0; i < DEFAULTS.loginFailuresPerAddress; i++) assert.equal((await ops.signIn('admin', `guess-${i}`, addr)).ok, false);
  assert.equal((await ops.signIn('admin', RIGHT, addr) as { status: number }).status, 429);
  advance(DEFAULTS.loginRetryS * 1000);
  hasher.calls = 0;
  hasher.held = true;
  // 40 wrong guesses and the right one, all in flight at once.
  const burst = Array.from({ length: 40 }, (_, i) => ops.signIn('admin', `burst-${i}`, addr));
  burst.push(ops.signIn('admin', RIGHT, addr));
  hasher.release();
  const results = await Promise.all(burst);
  assert.equal(hasher.calls, 1, 'one attempt reached the password check');
  assert.equal(count(results, 200), 0, 'the right password inside the burst does not get in');
  assert.equal(count(results, 401), 1);
  assert.equal(count(results, 429), 40);
  for (const r of results) if (!r.ok && r.status === 429) assert.ok(r.retryAfterMs > 0);
});

test('sign-in limits - 10,002 cheap failures from new addresses and names do not unlock a locked address or account', async () => {
  const { ops, hasher } = await operators();
  const locked = '198.51.100.1';
  for (let i = 0; i < DEFAULTS.loginFailuresPerAddress; i++) await ops.signIn('probe', `guess-${i}`, locked);
  // The account from many addresses, one failure each.
  for (let i = 1; i <= DEFAULTS.loginFailuresPerAccount; i++) await ops.signIn('admin', `guess-${i}`, `192.0.2.${i}`);
  assert.equal((await ops.signIn('admin', RIGHT, locked) as { status: number }).status, 429);
  hasher.calls = 0;
  // Passwords over 1024 characters skip the hash: the cheapest failures there are.
  const long = 'x'.repeat(1025);
  for (let i = 0; i < 10_002; i++) {
    const r = await ops.signIn(`user${i}`, long, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(r.ok ? 200 : r.status, 401);
  }
  assert.equal(hasher.calls, 0, 'over-long passwords are never hashed');
  assert.ok(ops.trackedFailures.addresses <= DEFAULTS.loginMaxTracked, `${ops.trackedFailures.addresses} addresses tracked`);
  assert.ok(ops.trackedFailures.accounts <= DEFAULTS.loginMaxTracked, `${ops.trackedFailures.accounts} accounts tracked`);
  const still = await ops.signIn('alice', RIGHT, locked);
  assert.equal(still.ok ? 200 : still.status, 429, 'the locked address is still locked');
  assert.match((still as { reason: string }).reason, /from this address/);
  const account = await ops.signIn('admin', RIGHT, '192.0.2.200');
  assert.equal(account.ok ? 200 : account.status, 429, 'the locked account is still locked');
  assert.match((account as { reason: string }).reason, /for this operator/);
});

test('sign-in limits - the table forgets recovered keys before any key that is still limited', () => {
  const b = new FailureBuckets({ burst: 2, refillMs: 1000, maxTracked: 3 });
  b.take('a', 0);
  b.take('b', 0);
  b.take('locked', 900);
  b.take('locked', 900);
  assert.equal(b.size, 3);
  // At 1.5 s a and b have recovered; locked has not.
  assert.ok(b.waitMs('locked', 1500) > 0);
  b.take('c', 1500);
  b.take('d', 1500);
  assert.equal(b.size, 3);
  assert.ok(b.waitMs('locked', 1500) > 0, 'locked is remembered while recovered keys could go');
  // Nothing has recovered: the key closest to recovering goes (one failure
  // each, not locked ones), and the bound holds.
  for (const k of ['e', 'f', 'g', 'h']) {
    b.take(k, 1500);
    assert.equal(b.size, 3);
    assert.ok(b.waitMs('locked', 1500) > 0, `locked is still remembered after ${k}`);
  }
});

test('sign-in limits - two addresses in one IPv6 /64 share a bucket; IPv4-mapped addresses are their IPv4 address', async () => {
  const { ops } = await operators();
  const sameNet = ['2001:db8:1:2::1', '2001:0db8:0001:0002:0000:0000:0000:0002', '2001:db8:1:2:aaaa::3', '2001:DB8:1:2::4', '2001:db8:1:2:ffff::5'];
  for (const [i, a] of sameNet.entries()) assert.equal((await ops.signIn(`n${i}`, 'wrong-password', a) as { status: number }).status, 401, a);
  assert.equal((await ops.signIn('alice', RIGHT, '2001:db8:1:2:ffff:ffff:ffff:ffff') as { status: number }).status, 429, 'another address in the /64');
  assert.ok((await ops.signIn('alice', RIGHT, '2001:db8:1:3::1')).ok, 'the next /64 is another address');

  for (let i = 0; i < DEFAULTS.loginFailuresPerAddress; i++) await ops.signIn(`m${i}`, 'wrong-password', '0000:0000:0000:0000:0000:ffff:c000:0201');
  assert.equal((await ops.signIn('alice', RIGHT, '192.0.2.1') as { status: number }).status, 429);
  assert.equal((await ops.signIn('alice', RIGHT, '::ffff:192.0.2.1') as { status: number }).status, 429);
});

test('sign-in limits - the per-account limit holds across addresses, and only for that account', async () => {
  const { ops } = await operators();
  for (let i = 0; i < DEFAULTS.loginFailuresPerAccount; i++) {
    assert.equal((await ops.signIn('admin', `guess-${i}`, `172.16.0.${i}`) as { status: number }).status, 401);
  }
  const limited = await ops.signIn('admin', RIGHT, '172.16.1.1');
  assert.equal(limited.ok ? 200 : limited.status, 429, 'the right password from a fresh address is refused too');
  assert.match((limited as { reason: string }).reason, /for this operator/);
  assert.ok((await ops.signIn('alice', RIGHT, '172.16.1.1')).ok, 'another operator signs in from the same address');
});

test('sign-in limits - names no account can have count against one shared account bucket and are never hashed', async () => {
  const { ops, hasher } = await operators();
  for (let i = 0; i < DEFAULTS.loginFailuresPerAccount; i++) {
    assert.equal((await ops.signIn(`bad name ${i} ${'y'.repeat(1000)}`, 'whatever1', `172.17.0.${i}`) as { status: number }).status, 401);
  }
  assert.equal((await ops.signIn('no spaces allowed', 'whatever1', '172.17.1.1') as { status: number }).status, 429);
  assert.equal(hasher.calls, 0);
  assert.equal(ops.trackedFailures.accounts, 1);
});

test('sign-in limits - a correct password gives its tokens back; over-long passwords count without hashing', async () => {
  const { ops, hasher } = await operators();
  const addr = '203.0.113.9';
  for (let i = 0; i < DEFAULTS.loginFailuresPerAddress - 1; i++) await ops.signIn('admin', `guess-${i}`, addr);
  assert.ok((await ops.signIn('admin', RIGHT, addr)).ok);
  assert.equal((await ops.signIn('admin', 'one-more-guess', addr) as { status: number }).status, 401, 'the success did not use up the last attempt');
  assert.equal((await ops.signIn('admin', RIGHT, addr) as { status: number }).status, 429);

  hasher.calls = 0;
  const other = '203.0.113.10';
  for (let i = 0; i < DEFAULTS.loginFailuresPerAddress; i++) assert.equal((await ops.signIn('alice', 'z'.repeat(1025), other) as { status: number }).status, 401);
  assert.equal((await ops.signIn('alice', RIGHT, other) as { status: number }).status, 429);
  assert.equal(hasher.calls, 0);
});

test('sign-in limits - past HUB_LOGIN_MAX_CONCURRENT checks in flight: 503 with a retry hint, and the refusals use up no attempts', async () => {
  const { ops, hasher } = await operators({ limits: { loginMaxConcurrent: 2 } });
  const addr = '203.0.113.20';
  hasher.held = true;
  const running = [ops.signIn('admin', 'guess-a', addr), ops.signIn('admin', 'guess-b', addr)];
  assert.equal(ops.checksInFlight, 2);
  const refused = await Promise.all(Array.from({ length: 10 }, (_, i) => ops.signIn('admin', `guess-${i}`, addr)));
  for (const r of refused) {
    assert.equal(r.ok ? 200 : r.status, 503);
    assert.equal((r as { result: string }).result, 'busy');
    assert.ok((r as { retryAfterMs: number }).retryAfterMs > 0);
  }
  assert.equal(hasher.calls, 2);
  hasher.release();
  assert.deepEqual(statuses(await Promise.all(running)), [401, 401]);
  assert.equal(ops.checksInFlight, 0);
  // 2 of 5 used: three more failures, then the limit.
  for (let i = 0; i < 3; i++) assert.equal((await ops.signIn('admin', `after-${i}`, addr) as { status: number }).status, 401);
  assert.equal((await ops.signIn('admin', RIGHT, addr) as { status: number }).status, 429);
});

// With the default HUB_LOGIN_MAX_CONCURRENT, and with the most it allows (so
// the concurrency bound cannot hide a limit that lets a burst through).
for (const maxConcurrent of [DEFAULTS.loginMaxConcurrent, 64]) {
  test(`sign-in limits - 300 concurrent wrong sign-ins from one address over HTTP (HUB_LOGIN_MAX_CONCURRENT=${maxConcurrent}): at most HUB_LOGIN_FAILURES_PER_ADDRESS reach the hash`, async (t) => {
    const hasher = new CountingHasher(sharedPasswordHasher());
    const ops = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 60_000, hasher, limits: { ...DEFAULTS, loginMaxConcurrent: maxConcurrent } });
    await ops.setPassword(TEST_OPERATOR.user, TEST_OPERATOR.password);
    hasher.calls = 0;
    const th = await startHub(t, { deps: { operators: ops } });
    const responses = await Promise.all(Array.from({ length: 300 }, (_, i) => fetch(`http://127.0.0.1:${th.port}/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user: TEST_OPERATOR.user, password: `wrong-${i}` }),
    })));
    const byStatus = new Map<number, number>();
    for (const r of responses) {
      byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
      assert.ok([401, 429, 503].includes(r.status), `status ${r.status}`);
      if (r.status !== 401) assert.ok(Number(r.headers.get('retry-after')) >= 1, `Retry-After on ${r.status}`);
      await r.arrayBuffer();
    }
    t.diagnostic(`statuses: ${JSON.stringify([...byStatus])}, password checks: ${hasher.calls}`);
    assert.ok(hasher.calls >= 1 && hasher.calls <= DEFAULTS.loginFailuresPerAddress, `${hasher.calls} password checks`);
    assert.equal(byStatus.get(401) ?? 0, hasher.calls, 'every 401 is a checked password; nothing else was checked');
    assert.equal((byStatus.get(401) ?? 0) + (byStatus.get(429) ?? 0) + (byStatus.get(503) ?? 0), 300);
    const m = th.hub.metrics;
    assert.equal(await m.value('hub_operator_sign_ins_total', { result: 'failed' }), byStatus.get(401) ?? 0);
    assert.equal(await m.value('hub_operator_sign_ins_total', { result: 'limited' }), byStatus.get(429) ?? 0);
    assert.equal(await m.value('hub_operator_sign_ins_total', { result: 'busy' }), byStatus.get(503) ?? 0);
    assert.equal(await m.value('hub_password_checks_in_flight'), 0);
  });
}
