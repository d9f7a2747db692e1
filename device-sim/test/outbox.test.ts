// device-sim/ tests: the outbox on its own (no sockets): cap policy, cumulative acks, sessions.
// Imports: node:test, and this package's outbox.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox, type KeptBatch } from '../src/outbox.ts';

const batch = (seq: number, readings = 4): KeptBatch => ({
  seq, baseTimeMs: 1_700_000_000_000 + seq * 1000, metrics: new Uint16Array(readings), offsets: new Int32Array(readings),
  values: new Float64Array(readings), sentAt: 0, everSent: false,
});
const seqs = (o: Outbox) => Array.from({ length: o.length }, (_, i) => o.at(i)!.seq);

test('outbox - when full, drops the oldest batch not in flight', () => {
  const o = new Outbox(4);
  for (let s = 1; s <= 4; s++) assert.equal(o.push(batch(s)), undefined);
  o.markSent(1); // 1 and 2 in flight
  o.markSent(2);
  assert.equal(o.push(batch(5))?.seq, 3, 'the oldest unsent');
  assert.deepEqual(seqs(o), [1, 2, 4, 5]);
  assert.equal(o.inflight, 2);
  assert.equal(o.nextUnsent?.seq, 4);
  assert.equal(o.push(batch(6))?.seq, 4);
  assert.deepEqual(seqs(o), [1, 2, 5, 6]);
});

test('outbox - with nothing in flight the oldest goes; with everything in flight, the new batch', () => {
  const o = new Outbox(3);
  for (let s = 1; s <= 3; s++) o.push(batch(s));
  assert.equal(o.push(batch(4))?.seq, 1);
  assert.deepEqual(seqs(o), [2, 3, 4]);
  for (let i = 0; i < 3; i++) o.markSent(i);
  assert.equal(o.push(batch(5))?.seq, 5, 'never a batch in flight');
  assert.deepEqual(seqs(o), [2, 3, 4]);
});

test('outbox - a cumulative ack removes through its seq; a session end turns what was in flight into resends', () => {
  const o = new Outbox(100);
  for (let s = 1; s <= 6; s++) o.push(batch(s));
  for (let i = 0; i < 4; i++) o.markSent(10 + i);
  const acked: number[] = [];
  assert.equal(o.ackThrough(2, (b) => acked.push(b.seq)), 2);
  assert.deepEqual(acked, [1, 2]);
  assert.equal(o.inflight, 2);
  assert.equal(o.ackThrough(2), 0, 'a repeated ack removes nothing');
  o.endSession();
  assert.equal(o.inflight, 0);
  assert.deepEqual([o.at(0)!.everSent, o.at(1)!.everSent, o.at(2)!.everSent], [true, true, false]);
  assert.equal(o.at(0)!.sentAt, 0);
  // Welcome.last_seq beyond what was sent (stored before the acks got out).
  assert.equal(o.ackThrough(5), 3);
  assert.deepEqual(seqs(o), [6]);
});

test('outbox - long runs keep order through compaction', () => {
  const o = new Outbox(50);
  let next = 1;
  let acked = 0;
  for (let round = 0; round < 2000; round++) {
    for (let k = 0; k < 3; k++) o.push(batch(next++));
    while (o.inflight < 5 && o.nextUnsent) o.markSent(round);
    acked = o.at(1)?.seq ?? acked;
    o.ackThrough(acked);
  }
  const s = seqs(o);
  assert.ok(s.length <= 50);
  assert.deepEqual(s, s.slice().sort((a, b) => a - b));
  assert.ok(s.every((x) => x > acked));
});
