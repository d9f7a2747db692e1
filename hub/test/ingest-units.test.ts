// Socket-free units of the device endpoint's parts: credit from store
// pressure, acks that are queued behind backpressure, the handshake sweep
// period, close-code labels, the token and subprotocol of an upgrade, the
// session table and the live-path guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { CloseCode, DEVICE_SUBPROTOCOL, decodeHubMessage } from '@telemetry/proto';
import { LogLimiter, createLogger } from '../src/core/log.ts';
import { HubMetrics } from '../src/core/metrics.ts';
import type { LiveFeed } from '../src/live/state.ts';
import { AckFlusher, creditFor } from '../src/ingest/acks.ts';
import { closeCodeLabel, handshakeSweepMs } from '../src/ingest/lifecycle.ts';
import { GuardedLiveFeed } from '../src/ingest/live-feed.ts';
import { SEND_BACKPRESSURE, SEND_DROPPED, SEND_OK } from '../src/ingest/send.ts';
import { Session, SessionTable } from '../src/ingest/session.ts';
import { upgradeCredentials } from '../src/ingest/upgrade.ts';

test('credit - the full window up to half full, none when full, at least 1 in between (the examples of proto/README.md §7)', () => {
  assert.equal(creditFor(0, 32), 32);
  assert.equal(creditFor(0.5, 32), 32);
  assert.equal(creditFor(0.75, 32), 16);
  assert.equal(creditFor(0.9, 32), 6);
  assert.equal(creditFor(0.99, 32), 1);
  assert.equal(creditFor(0.999, 4), 1, 'never 0 below full');
  assert.equal(creditFor(1, 32), 0);
  assert.equal(creditFor(1.5, 32), 0);
});

test('session - the handshake timeout is checked every max(50, min(1000, timeout/4)) ms', () => {
  assert.equal(handshakeSweepMs(10_000), 1000);
  assert.equal(handshakeSweepMs(2000), 500);
  assert.equal(handshakeSweepMs(200), 50);
  assert.equal(handshakeSweepMs(1), 50);
  assert.equal(handshakeSweepMs(1001), 250, 'whole milliseconds');
});

test('session - close codes become metric labels; a code nobody defined is "other"', () => {
  for (const code of [1000, 1001, 1006, 1011, 1013, ...Object.values(CloseCode)]) assert.equal(closeCodeLabel(code), String(code));
  for (const code of [1004, 3000, 4999, 0]) assert.equal(closeCodeLabel(code), 'other');
});

test('upgrade - the token comes from a Bearer header or a bearer.<token> subprotocol; the header wins; ours is selected, the token never', () => {
  const ours = DEVICE_SUBPROTOCOL;
  assert.deepEqual(upgradeCredentials(`${ours}, bearer.dev-1.secret`, ''), { token: 'dev-1.secret', subprotocol: ours });
  assert.deepEqual(upgradeCredentials(ours, 'Bearer dev-1.header'), { token: 'dev-1.header', subprotocol: ours });
  assert.deepEqual(upgradeCredentials(`${ours},bearer.dev-1.sub`, 'bearer   dev-1.header  '), { token: 'dev-1.header', subprotocol: ours }, 'scheme case-insensitive, header first');
  assert.deepEqual(upgradeCredentials('bearer.dev-1.sub', 'Basic abc'), { token: 'dev-1.sub', subprotocol: '' }, 'a header in another form is ignored; ours not offered');
  assert.deepEqual(upgradeCredentials('', 'Bearer two tokens'), { token: '', subprotocol: '' });
  assert.deepEqual(upgradeCredentials('', ''), { token: '', subprotocol: '' });
});

test('session - the table counts connections per socket and address, keeps one state per device and its current session', () => {
  const table = new SessionTable({ maxReadingsPerSecond: 100, readingsBurst: 200 });
  const device = table.device('dev-1', 0);
  assert.equal(table.device('dev-1', 5), device, 'one state per device');
  assert.equal(device.take(200, 0), true, 'a full readings bucket');
  const first = new Session('s', 1, 'dev-1', {}, '10.0.0.1', device);
  const second = new Session('s', 2, 'dev-1', {}, '10.0.0.1', device);
  for (const session of [first, second]) {
    table.add(session, 0);
    device.session = session;
  }
  assert.deepEqual([table.sockets.size, table.awaitingHello.size, table.addresses.get('10.0.0.1'), table.current('dev-1')], [2, 2, 2, second]);
  second.state = 'open';
  table.awaitingHello.delete(second);
  assert.equal(table.openSessions, 1);
  table.remove(first);
  assert.equal(table.current('dev-1'), second, 'an older session leaving does not unset the newer one');
  table.remove(second);
  assert.deepEqual([table.sockets.size, table.awaitingHello.size, table.addresses.addresses, table.current('dev-1'), table.current('dev-2')], [0, 0, 0, null, undefined]);
});

test('live guard - calls reach the live path; a failure there is logged once and never thrown; without a live path nothing happens', () => {
  const lines: string[] = [];
  const out = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(...chunk.toString().split('\n').filter(Boolean)); done(); } });
  const log = new LogLimiter(createLogger('error', out), { perMinute: 100, now: () => 0 });
  const calls: string[] = [];
  let fail = false;
  const live: LiveFeed = {
    durable: (b) => { calls.push(`durable ${b.seq}`); if (fail) throw new Error('boom'); },
    sessionOpened: (id, _tags, firmware, address) => calls.push(`opened ${id} ${firmware} ${address}`),
    sessionClosed: (id, code, byHub) => calls.push(`closed ${id} ${code} ${byHub}`),
    ackLatency: (ms) => { calls.push(`ack ${ms}`); if (fail) throw new Error('boom'); },
    connectionCount: (n) => { calls.push(`connections ${n}`); if (fail) throw new Error('boom'); },
  };
  const guard = new GuardedLiveFeed(live, log);
  const batch = { seq: 7 } as Parameters<LiveFeed['durable']>[0];
  guard.connectionCount(1);
  guard.sessionOpened('dev-1', {}, 'fw/1', '10.0.0.1');
  guard.durable(batch);
  guard.sessionClosed('dev-1', 4002, true);
  guard.ackLatency(12);
  fail = true;
  for (let i = 0; i < 3; i++) { guard.durable(batch); guard.connectionCount(0); guard.ackLatency(5); }
  log.flush();
  assert.deepEqual(calls.slice(0, 5), ['connections 1', 'opened dev-1 fw/1 10.0.0.1', 'durable 7', 'closed dev-1 4002 true', 'ack 12']);
  assert.equal(calls.length, 14);
  assert.equal(lines.filter((line) => (JSON.parse(line) as { msg: string }).msg.startsWith('live path failed')).length, 1);
  const none = new GuardedLiveFeed(undefined, log);
  none.durable(batch);
  none.connectionCount(3);
});

/** An open session on a socket that records what is sent (with `result()` as send's answer), credit 8. */
function openSession(table: SessionTable, result: () => number = () => SEND_OK): { session: Session; sent: Uint8Array[] } {
  const sent: Uint8Array[] = [];
  const ws = { send: (bytes: Uint8Array) => { sent.push(bytes); return result(); }, cork: (f: () => void) => { f(); return ws; } };
  const session = new Session('s', 1, 'dev-1', {}, '10.0.0.1', table.device('dev-1', 0));
  session.ws = ws as unknown as NonNullable<Session['ws']>;
  session.state = 'open';
  session.lastCredit = 8;
  return { session, sent };
}

test('session - flags are independent bits; the id is the instance prefix and the serial in base 36; nothing is allocated before use', () => {
  const table = new SessionTable({ maxReadingsPerSecond: 100, readingsBurst: 200 });
  const s = new Session('abc', 71, 'dev-1', {}, '10.0.0.1', table.device('dev-1', 0));
  assert.equal(s.id, 'abc-1z');
  assert.deepEqual([s.metricTable, s.inflight, s.reports, s.commandIds, s.inflightCount], [null, null, null, null, 0]);
  const flags = ['welcomed', 'toldSkew', 'toldBackpressure', 'gone', 'closedByHub'] as const;
  for (const set of flags) {
    for (const f of flags) s[f] = false;
    s[set] = true;
    assert.deepEqual(flags.filter((f) => s[f]), [set], `only ${set}`);
    s[set] = false;
    assert.deepEqual(flags.filter((f) => s[f]), [], `${set} cleared`);
  }
  s.addInflight(4, 100);
  s.addInflight(5, 101);
  assert.deepEqual([s.inflightCount, s.inflight], [2, [4, 100, 5, 101]]);
  assert.equal(s.metrics(), s.metrics(), 'one metric table, created on first use');
});

test('acks - only durable batches leave the in-flight pairs; the rest keep their order and receive times', () => {
  const table = new SessionTable({ maxReadingsPerSecond: 100, readingsBurst: 200 });
  const metrics = new HubMetrics();
  const latencies: number[] = [];
  const live = { durable() {}, sessionOpened() {}, sessionClosed() {}, connectionCount() {}, ackLatency(ms: number) { latencies.push(ms); } };
  const log = new LogLimiter(createLogger('error', new Writable({ write(_c: Buffer, _e, done) { done(); } })), { perMinute: 100, now: () => 0 });
  const acks = new AckFlusher({ window: 8, store: { durableSeq: () => 5, pressure: () => 0 }, metrics, now: () => 1000, live: new GuardedLiveFeed(live, log), sessions: table.sockets });
  const { session, sent } = openSession(table);
  for (const [seq, at] of [[4, 900], [6, 910], [5, 920], [7, 930], [3, 940]] as const) session.addInflight(seq, at);
  acks.markDirty(session);
  acks.flush();
  assert.deepEqual(sent.map((bytes) => decodeHubMessage(bytes).ack?.seq), [5]);
  assert.deepEqual(session.inflight, [6, 910, 7, 930]);
  assert.deepEqual(latencies, [100, 80, 60]);
  assert.equal(session.lastAckSeq, 5);
});

test('acks - a live path that throws on ack latency does not stop the ack flush', () => {
  const table = new SessionTable({ maxReadingsPerSecond: 100, readingsBurst: 200 });
  const errors: string[] = [];
  const log = new LogLimiter(createLogger('error', new Writable({ write(chunk: Buffer, _enc, done) { errors.push(chunk.toString()); done(); } })), { perMinute: 100, now: () => 0 });
  const throwing: LiveFeed = { durable() {}, sessionOpened() {}, sessionClosed() {}, connectionCount() {}, ackLatency() { throw new Error('boom'); } };
  const acks = new AckFlusher({ window: 8, store: { durableSeq: () => 10, pressure: () => 0 }, metrics: new HubMetrics(), now: () => 1000, live: new GuardedLiveFeed(throwing, log), sessions: table.sockets });
  const { session, sent } = openSession(table);
  session.addInflight(1, 990);
  session.addInflight(2, 995);
  acks.markDirty(session);
  acks.flush();
  assert.deepEqual(sent.map((bytes) => decodeHubMessage(bytes).ack?.seq), [2]);
  assert.equal(errors.length, 1, 'logged once');
});

test('acks - an Ack that uWS queues or drops is counted as send_backpressure; one that goes out is not', async () => {
  const metrics = new HubMetrics();
  const table = new SessionTable({ maxReadingsPerSecond: 100, readingsBurst: 200 });
  const acks = new AckFlusher({ window: 8, store: { durableSeq: () => 10, pressure: () => 0 }, metrics, now: () => 1000, live: undefined, sessions: table.sockets });
  let result = SEND_OK;
  const { session, sent } = openSession(table, () => result);
  for (result of [SEND_OK, SEND_BACKPRESSURE, SEND_DROPPED]) {
    session.addInflight(sent.length + 1, 990);
    acks.markDirty(session);
    acks.flush();
  }
  assert.deepEqual(sent.map((bytes) => decodeHubMessage(bytes).ack?.seq), [1, 2, 3]);
  assert.equal(await metrics.value('hub_limit_violations_total', { limit: 'send_backpressure' }), 2);
});
