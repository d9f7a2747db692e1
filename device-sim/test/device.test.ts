// The simulated device against a scripted fake hub: session start, credit,
// resends, acks, commands and the shape of what it sends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { encodeHubMessage, type Batch } from '@telemetry/proto';
import { batchesOf, device, fakeHub, flush, welcome } from './fake-hub.ts';

test('device - Hello first, token in the Authorization header, only the protocol subprotocol offered', async (t) => {
  const hub = await fakeHub(t);
  const before = Date.now();
  device(t, hub.url).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const c = hub.conns[0]!;
  assert.equal(c.req.headers.authorization, 'Bearer dev-1.secret');
  assert.equal(c.req.headers['sec-websocket-protocol'], 'iot.telemetry.v1');
  assert.equal(c.req.headers['sec-websocket-extensions'], undefined, 'no permessage-deflate offered');
  const h = c.msgs[0]!.hello!;
  assert.equal(h.deviceId, 'dev-1');
  assert.equal(h.protocolVersion, 1);
  assert.equal(h.firmware, 'device-sim/0.1');
  assert.ok(Number(h.deviceTimeMs) >= before && Number(h.deviceTimeMs) <= Date.now());
  await flush(c);
  assert.equal(c.frames.length, 1, 'nothing before Welcome but Hello');
});

test('device - subprotocol auth offers bearer.<token> and sends no header', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { authVia: 'subprotocol' }).start();
  await hub.until(() => hub.conns.length === 1, 'connection');
  assert.equal(hub.conns[0]!.req.headers.authorization, undefined);
  assert.equal(hub.conns[0]!.req.headers['sec-websocket-protocol'], 'iot.telemetry.v1,bearer.dev-1.secret');
});

test('device - never more unacked batches in flight than the latest credit', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { rate: 200, batchIntervalMs: 10 });
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const c = hub.conns[0]!;
  welcome(c, { credit: 3 });
  await hub.until(() => batchesOf(c).length === 3, 'three batches');
  // More batches close, and every tick tries to send; none may go out.
  await hub.until(() => d.outboxSize >= 8, 'the outbox to grow');
  await flush(c);
  assert.equal(batchesOf(c).length, 3);
  assert.equal(d.inflight, 3);

  c.ws.send(encodeHubMessage({ ack: { seq: batchesOf(c)[0]!.seq, credit: 3 } }));
  await hub.until(() => batchesOf(c).length === 4, 'one more after one ack');
  const waiting = d.outboxSize;
  await hub.until(() => d.outboxSize >= waiting + 3, 'the outbox to grow');
  await flush(c);
  assert.equal(batchesOf(c).length, 4, 'still 3 in flight');

  // Everything acked but credit 0 (a full spool): nothing goes.
  c.ws.send(encodeHubMessage({ ack: { seq: batchesOf(c)[3]!.seq, credit: 0 } }));
  await hub.until(() => d.inflight === 0, 'the ack');
  const held = d.outboxSize;
  await hub.until(() => d.outboxSize >= held + 3, 'the outbox to grow');
  await flush(c);
  assert.equal(batchesOf(c).length, 4, 'credit 0 stops sending');

  // A credit-only ack (the same seq again) lets 2 go.
  c.ws.send(encodeHubMessage({ ack: { seq: batchesOf(c)[3]!.seq, credit: 2 } }));
  await hub.until(() => batchesOf(c).length === 6, 'two more');
  await flush(c);
  assert.equal(batchesOf(c).length, 6);
  assert.deepEqual(batchesOf(c).map((b) => Number(b.seq)), [1, 2, 3, 4, 5, 6], 'in order, no gaps');
});

test('device - after a forced disconnect it resends from Welcome.last_seq: nothing lost, nothing at or below it resent', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await hub.until(() => batchesOf(hub.conns[0]!).length >= 6, 'six batches');
  // The hub stored 1..4, but the acks were lost with the link.
  hub.conns[0]!.ws.terminate();
  await hub.until(() => hub.conns[1]?.msgs.length === 1, 'reconnect and hello', 4000);
  const first = batchesOf(hub.conns[0]!);
  const sentBefore = first.length;
  assert.equal(d.counters.closes['1006'], 1);
  welcome(hub.conns[1]!, { lastSeq: 4 });
  await hub.until(() => batchesOf(hub.conns[1]!).length >= sentBefore - 4 + 2, 'resends and new batches');
  const second = batchesOf(hub.conns[1]!);
  const seqs = second.map((b) => Number(b.seq));
  assert.equal(seqs[0], 5, 'resumes right after last_seq');
  assert.deepEqual(seqs, seqs.map((_, i) => 5 + i), 'resends first, in order, then new batches: no gaps');
  // Metric ids are interned per session: the first batch of the new session defines them again.
  assert.deepEqual(second[0]!.metricDefs!.map((m) => m.name), ['temperature', 'humidity', 'pressure', 'battery']);
  // A resent batch carries the same readings, and a fresh sent_time_ms.
  for (const b of second.filter((b) => Number(b.seq) <= sentBefore)) {
    const orig = first.find((o) => Number(o.seq) === Number(b.seq));
    assert.ok(orig, `batch ${b.seq} was sent in the first session`);
    assert.deepEqual(Array.from(b.values!), Array.from(orig.values!));
    assert.deepEqual(Array.from(b.timeOffsetsMs!).map(Number), Array.from(orig.timeOffsetsMs!).map(Number));
    assert.equal(Number(b.baseTimeMs), Number(orig.baseTimeMs));
    assert.ok(Number(b.sentTimeMs) >= Number(orig.sentTimeMs));
  }
  // >=: a batch sent just as the link died may never have reached the hub.
  assert.ok(d.counters.batchesResent >= sentBefore - 4, `resent ${d.counters.batchesResent}`);
  // Welcome.last_seq counts as acked: 4, then everything up to the ack.
  const last = seqs.at(-1)!;
  hub.conns[1]!.ws.send(encodeHubMessage({ ack: { seq: last, credit: 32 } }));
  await hub.until(() => d.counters.batchesAcked === last, 'acks counted once each');
});

test('device - a Welcome.last_seq ahead of its counter moves the counter past it', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!, { lastSeq: 100 }); // e.g. a device that lost its flash
  await hub.until(() => batchesOf(hub.conns[0]!).length >= 1, 'a batch');
  assert.ok(Number(batchesOf(hub.conns[0]!)[0]!.seq) > 100);
});

test('device - acks remove batches, record latency and add up the hub reports', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const c = hub.conns[0]!;
  welcome(c);
  await hub.until(() => batchesOf(c).length >= 2, 'two batches');
  const [b1, b2] = batchesOf(c) as [Batch, Batch];
  c.ws.send(encodeHubMessage({ ack: { seq: b2.seq, credit: 16, reports: [{ seq: b1.seq, nonFiniteDropped: 2, skewDropped: 1, skewCorrected: 3 }] } }));
  await once(d, 'ack');
  assert.equal(d.counters.batchesAcked, 2);
  assert.equal(d.counters.readingsAcked, b1.values!.length + b2.values!.length);
  assert.equal(d.latency.count, 2);
  assert.ok(d.latency.samples.every((ms) => ms >= 0 && ms < 3000));
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

test('device - stop() closes with 1000 and does not come back', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url);
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await once(d, 'welcome');
  const closed = once(hub.conns[0]!.ws, 'close');
  await d.stop();
  const [code] = (await closed) as [number];
  assert.equal(code, 1000);
  assert.equal(d.stopped, true);
  assert.equal(d.connected, false);
  assert.equal(d.counters.reconnects, 0);
  assert.equal(d.counters.closes['1000'], 1);
});

test('device - a full outbox drops the oldest unsent batches and counts them', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { outboxCap: 5, rate: 100, batchIntervalMs: 10 });
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  // No Welcome yet: nothing can be sent, the outbox fills.
  await hub.until(() => d.counters.batchesDropped >= 3, 'drops');
  assert.equal(d.outboxSize, 5);
  assert.ok(d.counters.readingsDropped >= 3 * 4);
  welcome(hub.conns[0]!);
  await hub.until(() => batchesOf(hub.conns[0]!).length >= 5, 'the kept batches');
  const seqs = batchesOf(hub.conns[0]!).map((b) => Number(b.seq));
  assert.ok(seqs[0]! > 1, 'the oldest went');
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), 'what was kept is contiguous (each drop took the oldest)');
});

test('device - a stuck handshake is closed after welcomeTimeoutMs, then it reconnects', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { welcomeTimeoutMs: 200 });
  d.start();
  await hub.until(() => hub.conns.length === 2, 'a second attempt', 4000);
  assert.equal(d.counters.closes['welcome-timeout'], 1);
});

test('device - commands: ConfigUpdate is applied and acknowledged, an unknown one answered ok=false', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { rate: 1, batchIntervalMs: 1000 });
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const c = hub.conns[0]!;
  welcome(c);
  c.ws.send(encodeHubMessage({ command: { id: 7, config: { sampleIntervalMs: 5, batchIntervalMs: 40 } } }));
  c.ws.send(encodeHubMessage({ command: { id: 8 } }));
  await hub.until(() => c.msgs.filter((m) => m.commandResult).length === 2, 'two results');
  const [r7, r8] = c.msgs.filter((m) => m.commandResult).map((m) => m.commandResult!);
  assert.deepEqual([Number(r7!.id), r7!.ok], [7, true]);
  assert.deepEqual([Number(r8!.id), r8!.ok], [8, false]);
  // 200 samples/s per metric in 40 ms batches: batches now come quickly.
  await hub.until(() => batchesOf(c).length >= 3, 'batches at the new rate', 2000);
  assert.equal(d.counters.readingsSkipped, 0, 'a new rate is not a backlog');
});
