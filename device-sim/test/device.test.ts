// device-sim/ tests: the simulated device on the in-memory socket with a
// hand-driven clock: session start, credit, resends, acks, the outbox,
// commands, pacing and the device's own timeouts. Deterministic: every
// frame is counted the moment it is sent. A batch closes at the first tick
// batchIntervalMs after its first reading, after sampling that tick's
// instant: at 20 readings/s and 50 ms batches, one 8-reading batch per 100 ms.
// Imports: node:test, @telemetry/proto, and this package's test helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LIMITS, fakeDevice } from './fake-socket.ts';

test('device - Hello first and nothing else before Welcome, with the token and the protocol subprotocol', (t) => {
  const { device: d, hub, clock } = fakeDevice(t);
  d.start();
  const c = hub.last;
  assert.deepEqual(c.request.protocols, ['iot.telemetry.v1']);
  assert.deepEqual(c.request.headers, { authorization: 'Bearer dev-1.secret' });
  assert.equal(c.request.handshakeTimeoutMs, 15_000);
  c.accept();
  clock.advance(400); // batches close, but nothing goes before Welcome
  assert.equal(c.frames.length, 1);
  const h = c.msgs[0]!.hello!;
  assert.deepEqual([h.deviceId, h.protocolVersion, h.firmware, Number(h.deviceTimeMs)], ['dev-1', 1, 'device-sim/0.1', clock.wall - 400]);
  assert.equal(d.outboxSize, 4);
});

test('device - never more unacked batches in flight than the latest credit', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { rate: 200, batchIntervalMs: 10 });
  d.start();
  const c = hub.last.accept();
  c.welcome({ credit: 3 });
  clock.advance(60); // a batch per 20 ms
  assert.equal(c.batches.length, 3, 'three batches');
  // More batches close, and every tick tries to send; none may go out.
  clock.advance(200);
  assert.ok(d.outboxSize >= 8, 'the outbox grew');
  assert.equal(c.batches.length, 3);
  assert.equal(d.inflight, 3);

  c.ack(c.seqs[0]!, 3);
  assert.equal(c.batches.length, 4, 'one more after one ack');
  const waiting = d.outboxSize;
  clock.advance(100);
  assert.ok(d.outboxSize >= waiting + 3, 'the outbox grew');
  assert.equal(c.batches.length, 4, 'still 3 in flight');

  // Everything acked but credit 0 (a full spool): nothing goes.
  c.ack(c.seqs[3]!, 0);
  assert.equal(d.inflight, 0);
  const held = d.outboxSize;
  clock.advance(100);
  assert.ok(d.outboxSize >= held + 3, 'the outbox grew');
  assert.equal(c.batches.length, 4, 'credit 0 stops sending');

  // A credit-only ack (the same seq again) lets 2 go.
  c.ack(c.seqs[3]!, 2);
  clock.advance(100);
  assert.equal(c.batches.length, 6);
  assert.deepEqual(c.seqs, [1, 2, 3, 4, 5, 6], 'in order, no gaps');
});

test('device - after a forced disconnect it resends from Welcome.last_seq: nothing lost, nothing at or below it resent', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub, clock } = fakeDevice(t);
  d.start();
  const first = hub.last.accept();
  first.welcome();
  clock.advance(650);
  const sentBefore = first.batches.length;
  assert.ok(sentBefore >= 6, `six batches (${sentBefore})`);
  // The hub stored 1..4, but the acks were lost with the link.
  first.drop();
  assert.equal(d.counters.closes['1006'], 1);
  t.mock.timers.tick(d.reconnectDelayMs);
  const second = hub.last.accept();
  assert.notEqual(second, first, 'reconnected');
  assert.equal(second.msgs[0]!.hello?.deviceId, 'dev-1');
  second.welcome({ lastSeq: 4 });
  clock.advance(250);
  assert.ok(second.batches.length >= sentBefore - 4 + 2, 'resends and new batches');
  const seqs = second.seqs;
  assert.equal(seqs[0], 5, 'resumes right after last_seq');
  assert.deepEqual(seqs, seqs.map((_, i) => 5 + i), 'resends first, in order, then new batches: no gaps');
  // Metric ids are interned per session: the first batch of the new session defines them again.
  assert.deepEqual(second.batches[0]!.metricDefs!.map((m) => m.name), ['temperature', 'humidity', 'pressure', 'battery']);
  // A resent batch carries the same readings, and a fresh sent_time_ms.
  for (const b of second.batches.filter((b) => Number(b.seq) <= sentBefore)) {
    const orig = first.batches.find((o) => Number(o.seq) === Number(b.seq));
    assert.ok(orig, `batch ${b.seq} was sent in the first session`);
    assert.deepEqual(Array.from(b.values!), Array.from(orig.values!));
    assert.deepEqual(Array.from(b.timeOffsetsMs!).map(Number), Array.from(orig.timeOffsetsMs!).map(Number));
    assert.equal(Number(b.baseTimeMs), Number(orig.baseTimeMs));
    assert.ok(Number(b.sentTimeMs) > Number(orig.sentTimeMs));
  }
  // In memory every frame arrives: exactly what was above last_seq is resent.
  assert.equal(d.counters.batchesResent, sentBefore - 4);
  // Welcome.last_seq counts as acked: 4, then everything up to the ack.
  const last = seqs.at(-1)!;
  second.ack(last);
  assert.equal(d.counters.batchesAcked, last, 'acks counted once each');
});

test('device - a Welcome.last_seq ahead of its counter moves the counter past it', (t) => {
  const { device: d, hub, clock } = fakeDevice(t);
  d.start();
  const c = hub.last.accept();
  c.welcome({ lastSeq: 100 }); // e.g. a device that lost its flash
  clock.advance(110);
  assert.ok(c.batches.length >= 1, 'a batch');
  assert.equal(c.seqs[0], 101);
  assert.equal(d.lastSeq, c.seqs.at(-1));
});

test('device - acks remove batches, record latency and add up the hub reports', (t) => {
  const { device: d, hub, clock } = fakeDevice(t);
  d.start();
  const c = hub.last.accept();
  c.welcome();
  clock.advance(200); // b1 goes at 100 ms, b2 at 200 ms
  assert.equal(c.batches.length, 2, 'two batches');
  const [b1, b2] = c.batches as [NonNullable<typeof c.batches[0]>, NonNullable<typeof c.batches[0]>];
  clock.mono += 7.25; // the ack comes 7.25 ms after b2 went
  c.ack(Number(b2.seq), 16, [{ seq: b1.seq, nonFiniteDropped: 2, skewDropped: 1, skewCorrected: 3 }]);
  assert.equal(d.counters.batchesAcked, 2);
  assert.equal(d.counters.readingsAcked, b1.values!.length + b2.values!.length);
  assert.equal(d.latency.count, 2);
  assert.ok(d.latency.minMs >= 0 && d.latency.maxMs < 3000);
  assert.equal(d.latency.maxMs, 107.25, 'send -> ack of b1, to the µs');
  assert.ok(d.latency.minMs <= 7.25 && d.latency.minMs > 7.25 * 0.999, `b2's, within the histogram's precision (${d.latency.minMs})`);
  assert.equal(d.counters.hubNonFiniteDropped, 2);
  assert.equal(d.counters.hubSkewDropped, 1);
  assert.equal(d.counters.hubSkewCorrected, 3);
  assert.equal(d.counters.reducedCreditAcks, 1, 'credit 16 < window 32');
  assert.equal(d.credit, 16);
  const s = d.stats;
  assert.equal(s.connected, true);
  assert.equal(s.latencySamples, 2);
  assert.equal(s.pending, d.outboxSize);
  assert.equal(s.batchesAcked, 2);
});

test('device - a full outbox drops the oldest unsent batches and counts them', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { outboxCap: 5, rate: 100, batchIntervalMs: 10 });
  d.start();
  const c = hub.last.accept();
  // No Welcome yet: nothing can be sent, the outbox fills (a batch per 20 ms).
  clock.advance(200);
  assert.ok(d.counters.batchesDropped >= 3, 'drops');
  assert.equal(d.outboxSize, 5);
  assert.ok(d.counters.readingsDropped >= 3 * 4);
  c.welcome();
  assert.equal(c.batches.length, 5, 'the kept batches');
  const seqs = c.seqs;
  assert.ok(seqs[0]! > 1, 'the oldest went');
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), 'what was kept is contiguous (each drop took the oldest)');
});

test('device - commands: ConfigUpdate is applied and acknowledged, an unknown one answered ok=false', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { rate: 1, batchIntervalMs: 1000 });
  d.start();
  const c = hub.last.accept();
  c.welcome();
  c.deliver({ command: { id: 7, config: { sampleIntervalMs: 5, batchIntervalMs: 40 } } });
  c.deliver({ command: { id: 8 } });
  const results = c.msgs.filter((m) => m.commandResult).map((m) => m.commandResult!);
  assert.deepEqual(results.map((r) => [Number(r.id), r.ok, r.message]), [[7, true, 'applied'], [8, false, 'unknown command']]);
  // 200 samples/s per metric in 40 ms batches: batches now come quickly.
  clock.advance(160);
  assert.ok(c.batches.length >= 3, `batches at the new rate (${c.batches.length})`);
  assert.ok(c.batches.every((b) => b.values!.length === 40), 'instants 5 ms apart, 10 to a batch');
  assert.equal(d.counters.readingsSkipped, 0, 'a new rate is not a backlog');
});

test('device - sends no faster than Welcome.max_readings_per_second once its burst is spent (§10)', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { rate: 10, batchIntervalMs: 100 });
  d.start();
  const c = hub.last.accept();
  clock.advance(2000); // ten 8-reading batches kept before Welcome (a reconnect's backlog)
  assert.equal(d.outboxSize, 10);
  c.welcome({ limits: { ...DEFAULT_LIMITS, maxReadingsPerSecond: 80, readingsBurst: 16 } });
  assert.equal(c.batches.length, 2, 'the burst: 16 readings');
  for (const s of c.seqs) c.ack(s);
  clock.mono += 99; // tokens come at 80/s: one batch's 8 readings take 100 ms
  c.ack(2);
  assert.equal(c.batches.length, 2, 'not yet');
  clock.mono += 1;
  c.ack(2);
  assert.equal(c.batches.length, 3, 'one batch per 100 ms');
});

test('device - batches in flight with no Ack for ackTimeoutMs: the link is dropped and counted (§7)', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub, clock } = fakeDevice(t, { ackTimeoutMs: 1000 });
  d.start();
  const c = hub.last.accept();
  c.welcome();
  clock.advance(1090, 10); // the first batch goes at 100 ms: 990 ms without an ack
  assert.equal(c.closedByDevice, null);
  clock.advance(10, 10);
  assert.equal(d.counters.closes['ack-timeout'], 1);
  assert.deepEqual(c.closedByDevice, { code: 1006, reason: '' }, 'no close frame: the session is dead');
});

test('device - a session that hears nothing for idle_timeout_ms + 10 s is dropped; any frame or ping counts as heard', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { device: d, hub, clock } = fakeDevice(t, { rate: 0 });
  d.start();
  const c = hub.last.accept();
  c.welcome({ limits: { ...DEFAULT_LIMITS, idleTimeoutMs: 1000 } });
  clock.advance(10_000, 100);
  c.ping();
  clock.advance(10_000, 100);
  c.ack(0); // a credit-only ack is a frame too
  clock.advance(10_900, 100);
  assert.equal(d.counters.closes['idle-timeout'], undefined, 'heard within 11 s each time');
  clock.advance(200, 100);
  assert.equal(d.counters.closes['idle-timeout'], 1);
  assert.deepEqual(c.closedByDevice, { code: 1006, reason: '' });
});
