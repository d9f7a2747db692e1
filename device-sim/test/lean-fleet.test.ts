// device-sim/ tests: the lean fleet against an in-memory hub the test plays
// (fakeLean: Welcome, Acks, closes, by hand): credit is honoured (never more
// in flight than the latest credit, nor than --window), metric definitions
// once per session, seq from Welcome.last_seq + 1, every Ack checked, a
// mid-run close counted by its code with resends after the reconnect, what
// is never acked counted lost, the rate schedule and the pacing to the hub's
// readings limit. The monotonic clock is the test's: counts, never timings.
// Imports: node:test, @telemetry/proto, the shared test/support, and this package's lean-fleet, lean-socket and socket.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeviceMessage, encodeHubMessage, type Hello, type HubMessage, type Limits } from '@telemetry/proto';
import type { v1 } from '@telemetry/proto';
import { LeanFleet, leanErrors, type LeanFleetOptions } from '../src/lean-fleet.ts';
import { readClientFrames, type LeanConnector, type LeanSocket } from '../src/lean-socket.ts';
import { SocketState, type SocketListener, type SocketRequest } from '../src/socket.ts';
import { sleep, until } from '../../test/support/wait.ts';

/** A decoded Batch (defaults filled in). */
type Batch = InstanceType<typeof v1.Batch>;

const LIMITS: Limits = { maxMessageBytes: 262_144, maxBatchReadings: 10_000, maxReadingsPerSecond: 0, readingsBurst: 0, maxMetricsPerSession: 256, idleTimeoutMs: 60_000 };

/** One connection as the fake hub sees it; it is also the device's socket. */
class FakeConn implements LeanSocket {
  readonly batches: Batch[] = [];
  hello: Hello | null = null;
  closedWith: number | null = null;
  /** The latest credit told to the device, and the most in flight seen against it. */
  credit = 0;
  acked = 0;
  overCredit = 0;
  maxInflight = 0;
  writes = 0;
  state: number = SocketState.CONNECTING;

  constructor(readonly request: SocketRequest, readonly listener: SocketListener) {
    setImmediate(() => { this.state = SocketState.OPEN; listener.onOpen(); });
  }

  // ---- the device's side (LeanSocket) ----
  get readyState(): number { return this.state; }
  send(data: Buffer): void {
    const m = decodeDeviceMessage(data);
    if (m.hello) this.hello = m.hello;
  }
  write(frames: Buffer): boolean {
    this.writes++;
    for (const payload of readClientFrames(frames)) {
      const b = decodeDeviceMessage(payload).batch as Batch | null | undefined;
      assert.ok(b, 'only batches come in bursts');
      this.batches.push(b);
      const inflight = Number(b.seq) - this.acked;
      this.maxInflight = Math.max(this.maxInflight, inflight);
      if (inflight > this.credit) this.overCredit++;
    }
    return true;
  }
  close(code: number): void { this.drop(code); }
  terminate(): void { this.drop(1006); }

  // ---- the hub's side (the test) ----
  /** The hub sends a message (synchronously: the device sees it at once). */
  deliver(m: Parameters<typeof encodeHubMessage>[0]): void {
    this.listener.onMessage(encodeHubMessage(m), true);
  }

  welcome(o: { window?: number; credit?: number; lastSeq?: number; limits?: Limits } = {}): void {
    this.credit = o.credit ?? o.window ?? 32;
    this.acked = o.lastSeq ?? 0;
    this.deliver({ welcome: { sessionId: 'fake', protocolVersion: 1, window: o.window ?? 32, credit: this.credit, lastSeq: this.acked, limits: o.limits ?? LIMITS } });
  }

  ack(seq: number, credit: number, extra: Partial<NonNullable<HubMessage['ack']>> = {}): void {
    this.acked = Math.max(this.acked, seq);
    this.credit = credit;
    this.deliver({ ack: { seq, credit, ...extra } });
  }

  /** The hub closes (or the link drops): the device hears onClose once. */
  drop(code: number, reason = ''): void {
    if (this.state === SocketState.CLOSED) return;
    this.state = SocketState.CLOSED;
    this.closedWith = code;
    setImmediate(() => this.listener.onClose(code, reason));
  }

  seqs(from = 0): number[] { return this.batches.slice(from).map((b) => Number(b.seq)); }
}

/** Connection i has said Hello. */
const helloed = (conns: FakeConn[], i = 0) => (conns[i]?.hello ?? null) !== null;

function fakeLean(t: TestContext, options: Partial<LeanFleetOptions> & { devices?: number } = {}) {
  const conns: FakeConn[] = [];
  const connect: LeanConnector = (request, listener) => {
    const c = new FakeConn(request, listener);
    conns.push(c);
    return c;
  };
  const clock = { mono: 1000, wallMs: () => Date.now(), monotonicMs: () => clock.mono };
  const devices = Array.from({ length: options.devices ?? 1 }, (_, i) => ({ id: `lean-${i}`, token: `lean-${i}.secret` }));
  const fleet = new LeanFleet({ url: 'ws://fake/v1/devices', devices, connect, clock, backoffBaseMs: 1, backoffCapMs: 5, ...options });
  t.after(() => fleet.stop());
  /** Lets the fleet run its flushes and a few ticks. */
  const settle = () => sleep(40);
  return { fleet, conns, clock, settle };
}

test('lean fleet - Hello, then nothing until Welcome; seq from last_seq + 1; credit honoured as it shrinks and grows', async (t) => {
  const { fleet, conns, settle } = fakeLean(t);
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  assert.deepEqual([c.hello?.deviceId, c.hello?.protocolVersion], ['lean-0', 1]);
  assert.ok(Number(c.hello?.deviceTimeMs) > 0);
  assert.equal(c.listener !== null && c.request.headers.authorization, 'Bearer lean-0.secret');
  await settle();
  assert.equal(c.batches.length, 0, 'no batch before Welcome');

  c.welcome({ window: 8, credit: 4, lastSeq: 10 });
  await until(() => c.batches.length === 4, 5000, '4 batches');
  await settle();
  assert.deepEqual(c.seqs(), [11, 12, 13, 14], 'the credit, from last_seq + 1');
  assert.equal(c.writes, 1, 'one burst, one write');
  c.ack(12, 1); // 2 in flight, credit 1: nothing may go
  await settle();
  assert.equal(c.batches.length, 4);
  c.ack(14, 3);
  await until(() => c.batches.length === 7, 5000, '3 more');
  c.ack(17, 0); // credit 0: nothing
  await settle();
  assert.equal(c.batches.length, 7);
  c.ack(17, 8); // credit-only ack: the window opens
  await until(() => c.batches.length === 15, 5000, '8 more');
  await settle();
  assert.deepEqual(c.seqs(7), [18, 19, 20, 21, 22, 23, 24, 25]);
  assert.equal(c.overCredit, 0, 'never more in flight than the credit');
  assert.equal(c.maxInflight, 8);
  const d = fleet.devices[0]!;
  assert.deepEqual([d.credit, d.window, d.inflight], [8, 8, 8]);
});

test('lean fleet - --window caps what is in flight below the credit', async (t) => {
  const { conns, settle } = fakeLean(t, { window: 3 });
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  c.welcome({ window: 32, credit: 32 });
  await until(() => c.batches.length === 3, 5000, '3 batches');
  await settle();
  assert.equal(c.batches.length, 3);
  c.ack(1, 32);
  await until(() => c.batches.length === 4, 5000, 'one more');
  await settle();
  assert.equal(c.maxInflight, 3);
});

test('lean fleet - metric definitions in the first batch of every session only; the batch is R readings of M metrics, times on the real clock', async (t) => {
  const { conns } = fakeLean(t, { readings: 6, metrics: 3 });
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  const before = Date.now();
  c.welcome({ credit: 3 });
  await until(() => c.batches.length === 3, 5000, '3 batches');
  assert.deepEqual(c.batches.map((b) => b.metricDefs.length), [3, 0, 0]);
  assert.deepEqual(c.batches[0]!.metricDefs.map((m) => [m.id, m.name]), [[0, 'lean_0'], [1, 'lean_1'], [2, 'lean_2']]);
  for (const b of c.batches) {
    assert.deepEqual(b.metricIds, [0, 1, 2, 0, 1, 2]);
    assert.ok(b.values.every(Number.isFinite));
    assert.ok(Number(b.baseTimeMs) >= before && Number(b.baseTimeMs) <= Date.now());
    assert.equal(Number(b.sentTimeMs), Number(b.baseTimeMs));
  }
  c.ack(3, 3);
  await until(() => c.batches.length === 6, 5000, '3 more');
  assert.deepEqual(c.batches.map((b) => b.metricDefs.length), [3, 0, 0, 0, 0, 0]);
  c.drop(1006); // a lost link: the next session defines the ids again
  await until(() => helloed(conns, 1), 5000, 'reconnected');
  const c2 = conns[1]!;
  c2.welcome({ credit: 3, lastSeq: 6 });
  await until(() => c2.batches.length === 3, 5000, 'batches in the new session');
  assert.deepEqual(c2.batches.map((b) => b.metricDefs.length), [3, 0, 0]);
  assert.deepEqual(c2.seqs(), [7, 8, 9]);
});

test('lean fleet - a close mid-run counts by its code; after the reconnect last_seq acks what it covers and the rest is resent; what is never acked is lost', async (t) => {
  const { fleet, conns, settle } = fakeLean(t);
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  c.welcome({ credit: 4 });
  await until(() => c.batches.length === 4, 5000, '1..4');
  c.ack(2, 4);
  await until(() => c.batches.length === 6, 5000, '5, 6');
  c.drop(1011, 'storage error; retry-after=1');
  await until(() => helloed(conns, 1), 5000, 'reconnected');
  const c2 = conns[1]!;
  c2.welcome({ credit: 4, lastSeq: 3 }); // 3 was stored after all; 4..6 were not
  await until(() => c2.batches.length === 4, 5000, 'resends first');
  assert.deepEqual(c2.seqs(), [4, 5, 6, 7], 'resent in order, then new');
  assert.equal(c2.batches[0]!.metricDefs.length, 4);
  c2.ack(7, 4);
  await until(() => c2.batches.length === 8, 5000, '8..11');
  fleet.stopSending();
  c2.ack(9, 4);
  await settle();
  assert.equal(c2.batches.length, 8, 'nothing new once sending stopped');
  await fleet.stop();
  const k = fleet.counters();
  assert.deepEqual(
    { sent: k.sent, resent: k.resent, acked: k.acked, ackedByWelcome: k.ackedByWelcome, lost: k.lost },
    { sent: 14, resent: 3, acked: 8, ackedByWelcome: 1, lost: 2 },
  );
  assert.equal(k.acked + k.ackedByWelcome + k.lost, k.sent - k.resent, 'every seq once');
  assert.deepEqual(k.closes, { 1011: 1, 1000: 1 });
  assert.equal(leanErrors(k), 1);
  assert.deepEqual([k.sessions, k.reconnects], [2, 1]);
  assert.deepEqual(fleet.lossByDevice(), [{ id: 'lean-0', sent: 14, acked: 9, lost: 2 }]);
  assert.equal(c2.closedWith, 1000, 'a clean close at the end');
});

test('lean fleet - a drain waits for the outstanding acks; an Ack going down, past what was sent, or carrying reports is checked and counted', async (t) => {
  const { fleet, conns } = fakeLean(t);
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  c.welcome({ credit: 4 });
  await until(() => c.batches.length === 4, 5000, '1..4');
  c.ack(3, 4, { reports: [{ seq: 2, nonFiniteDropped: 1, skewCorrected: 2 }] }); // the decoder's path
  await until(() => c.batches.length === 7, 5000, '5..7');
  c.ack(2, 4); // below 3
  c.ack(99, 4); // never sent
  const drained = fleet.drain(5000);
  await sleep(20);
  assert.equal(fleet.inflight, 0, 'the ack of 99 covered what was sent');
  assert.equal(await drained, true);
  await fleet.stop();
  const k = fleet.counters();
  assert.deepEqual([k.ackRegressed, k.ackUnknownSeq, k.hubNonFiniteDropped, k.hubSkewCorrected, k.lost], [1, 1, 1, 2, 0]);
  assert.equal(k.acks, 3);
});

test('lean fleet - a drain that times out: the unacked batches are lost', async (t) => {
  const { fleet, conns } = fakeLean(t);
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  c.welcome({ credit: 5 });
  await until(() => c.batches.length === 5, 5000, '1..5');
  c.ack(3, 0);
  assert.equal(await fleet.drain(50), false);
  await fleet.stop();
  const k = fleet.counters();
  assert.deepEqual([k.sent, k.acked, k.lost], [5, 3, 2]);
});

test('lean fleet - --rate: the schedule releases batches by the clock, a backlog over one second is dropped and counted', async (t) => {
  const { fleet, conns, clock, settle } = fakeLean(t, { rate: 5, tickMs: 5 });
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  c.welcome({ credit: 32 });
  await until(() => c.batches.length === 1, 5000, 'the first batch at once');
  await settle();
  assert.equal(c.batches.length, 1, 'the clock has not moved');
  clock.mono += 1000;
  await until(() => c.batches.length === 6, 5000, 'five more after a second');
  await settle();
  assert.equal(c.batches.length, 6);
  clock.mono += 10_000; // ten seconds' worth at once: one second's worth goes, the rest is behind
  await until(() => c.batches.length === 11, 5000, 'a backlog of one second');
  await settle();
  assert.equal(c.batches.length, 11);
  assert.equal(fleet.counters().behindSchedule, 45);
  assert.equal(c.overCredit, 0);
});

test('lean fleet - paced to the hub readings limit from Welcome (a little under it); a batch over the limits stops the device', async (t) => {
  const { fleet, conns, clock, settle } = fakeLean(t, { readings: 20, tickMs: 5 });
  await until(() => helloed(conns), 5000, 'Hello');
  const c = conns[0]!;
  c.welcome({ credit: 32, limits: { ...LIMITS, maxReadingsPerSecond: 100, readingsBurst: 100 } });
  await until(() => c.batches.length === 4, 5000, 'the burst: 98 readings of tokens');
  await settle();
  assert.equal(c.batches.length, 4);
  assert.ok(fleet.counters().pacedStalls > 0);
  const stalls = fleet.counters().pacedStalls;
  await settle();
  assert.equal(fleet.counters().pacedStalls, stalls, 'one stall, however often the ticker tries again');
  clock.mono += 1000; // 18 + 98 tokens, capped at the burst (98)
  await until(() => c.batches.length === 8, 5000, 'four more');
  await settle();
  assert.equal(c.batches.length, 8);

  const small = fakeLean(t, { readings: 20 });
  await until(() => helloed(small.conns), 5000, 'Hello');
  small.conns[0]!.welcome({ limits: { ...LIMITS, maxBatchReadings: 10 } });
  await until(() => small.fleet.devices[0]!.stopped, 5000, 'stopped');
  await small.settle();
  assert.equal(small.conns[0]!.batches.length, 0);
  assert.equal(small.fleet.counters().closes['over-limits'], 1);
  assert.match(small.fleet.devices[0]!.stopReason ?? '', /--readings 20 is over the hub's max_batch_readings 10/);
});
