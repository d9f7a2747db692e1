// device-sim/ tests: the lean load generator's wire path and accounting,
// without sockets: the template encoder (what the generated decoder reads,
// byte for byte what the generated encoder writes), readPlainAck, the
// FrameWriter's WebSocket frames, and the SeqLedger's checks of every Ack.
// Imports: node:test, @telemetry/proto, and this package's lean-batch, lean-ledger, lean-socket and stats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeviceMessage, encodeDeviceMessage, encodeHubMessage, type v1 } from '@telemetry/proto';
import { LeanBatchFrame, leanColumns, leanFrames, leanMetricDefs, readPlainAck, varintLength, type AckFields } from '../src/lean-batch.ts';
import { SeqLedger } from '../src/lean-ledger.ts';
import { FrameWriter, readClientFrames } from '../src/lean-socket.ts';
import { LatencyHistogram } from '../src/stats.ts';

/** A decoded Batch (defaults filled in). */
const batchOf = (bytes: Uint8Array) => decodeDeviceMessage(bytes).batch as InstanceType<typeof v1.Batch> | null | undefined;

const NOW = 1_764_633_600_123; // 2025-12-02, a real-clock-sized time (6-byte varint)

test('lean encoder - a template frame decodes to the intended Batch and is byte for byte the generated encoding', () => {
  const shape = { readings: 20, metrics: 4, valueSeed: 7 };
  const columns = leanColumns(shape);
  const { first, steady } = leanFrames(shape);
  // Seqs of every varint width up to 2^53 - 1, and times around the widths too.
  const seqs = [1, 2, 127, 128, 16_383, 16_384, 2_097_152, 2 ** 31, 2 ** 35 + 3, 2 ** 53 - 1];
  for (const [frame, defs] of [[first, leanMetricDefs(4)], [steady, []]] as const) {
    for (const seq of seqs) {
      for (const now of [NOW, 1, 127, 2 ** 31 - 1, 2 ** 42 + 5]) {
        const bytes = frame.frame(seq, now);
        const expected = encodeDeviceMessage({ batch: { seq, baseTimeMs: now, metricDefs: [...defs], ...columns, sentTimeMs: now } });
        assert.deepEqual(Buffer.from(bytes), Buffer.from(expected), `seq ${seq}, time ${now}, ${defs.length} defs`);
        assert.equal(frame.byteLength(seq, now), bytes.length);
        const b = batchOf(bytes);
        assert.ok(b);
        assert.equal(Number(b.seq), seq);
        assert.equal(Number(b.baseTimeMs), now);
        assert.equal(Number(b.sentTimeMs), now);
        assert.deepEqual(b.metricIds, columns.metricIds);
        assert.deepEqual(b.timeOffsetsMs.map(Number), columns.timeOffsetsMs);
        assert.deepEqual(b.values, columns.values);
        assert.deepEqual(b.metricDefs.map((d) => ({ id: d.id, name: d.name })), defs.map((d) => ({ id: d.id, name: d.name })));
      }
    }
  }
});

test('lean encoder - the columns: R readings over M metrics, offsets up to the base time, finite values; defined ids only', () => {
  const c = leanColumns({ readings: 10, metrics: 4 });
  assert.deepEqual(c.metricIds, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
  assert.deepEqual(c.timeOffsetsMs, [-2, -2, -2, -2, -1, -1, -1, -1, 0, 0]);
  assert.ok(c.values.every(Number.isFinite));
  assert.equal(new Set(c.values).size, c.values.length, 'distinct values per metric and sample');
  assert.deepEqual(leanMetricDefs(3).map((d) => d.name), ['lean_0', 'lean_1', 'lean_2']);
  // One reading, one metric: a batch of one.
  const one = new LeanBatchFrame(leanColumns({ readings: 1, metrics: 1 }), leanMetricDefs(1));
  const b = batchOf(one.frame(5, NOW));
  assert.deepEqual([b?.metricIds, b?.timeOffsetsMs.map(Number), b?.metricDefs.length], [[0], [0], 1]);
});

test('lean encoder - patching in place: each frame() overwrites the last one; the view is reused while the widths stay', () => {
  const { steady } = leanFrames({ readings: 20, metrics: 4 });
  const a = steady.frame(200, NOW);
  const copy = Buffer.from(a);
  const b = steady.frame(201, NOW + 1);
  assert.equal(a, b, 'the same view object while the header width stays');
  assert.notDeepEqual(Buffer.from(b), copy);
  assert.equal(Number(decodeDeviceMessage(b).batch?.seq), 201);
  const c = steady.frame(20_000, NOW); // seq one byte wider: the header starts a byte earlier
  assert.equal(c.length, copy.length + 1);
  assert.equal(Number(decodeDeviceMessage(c).batch?.seq), 20_000);
  assert.deepEqual([varintLength(0), varintLength(127), varintLength(128), varintLength(2 ** 53 - 1)], [1, 1, 2, 8]);
});

test('lean acks - readPlainAck reads seq and credit of a plain Ack, and leaves everything else to the decoder', () => {
  const out: AckFields = { seq: -1, credit: -1 };
  // proto/README.md §5.12: Ack{seq 1, credit 32}.
  assert.equal(readPlainAck(Uint8Array.from([0x12, 0x04, 0x08, 0x01, 0x10, 0x20]), out), true);
  assert.deepEqual(out, { seq: 1, credit: 32 });
  for (const [seq, credit] of [[0, 32], [0, 0], [5, 0], [127, 1], [128, 1024], [2 ** 31, 7], [2 ** 53 - 1, 32]] as const) {
    assert.equal(readPlainAck(encodeHubMessage({ ack: { seq, credit } }), out), true, `${seq}/${credit}`);
    assert.deepEqual(out, { seq, credit });
  }
  const others = [
    encodeHubMessage({ ack: { seq: 7, credit: 32, reports: [{ seq: 6, skewCorrected: 3, clockOffsetMs: 3_600_000 }] } }),
    encodeHubMessage({ welcome: { sessionId: 's', protocolVersion: 1, window: 32, credit: 32, lastSeq: 0 } }),
    encodeHubMessage({ notice: { code: 4004, reason: 'over', retryAfterMs: 1500 } }),
    encodeHubMessage({ command: { id: 3, config: { sampleIntervalMs: 1000 } } }),
    Uint8Array.from([0x12, 0x04, 0x08, 0x01, 0x10, 0x20, 0x00]), // trailing bytes
    Uint8Array.from([0x12, 0x05, 0x08, 0x01, 0x10, 0x20]), // length past the end
    Uint8Array.from([0x12, 0x02, 0x08, 0x80]), // varint cut short
    Uint8Array.from([0x12, 0x0a, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // a seq over 8 bytes
    Uint8Array.from([0x12, 0x02, 0x18, 0x01]), // an unknown field
    new Uint8Array(0),
  ];
  for (const m of others) assert.equal(readPlainAck(m, out), false, Buffer.from(m).toString('hex'));
});

test('lean frames - FrameWriter writes masked binary frames, a fresh key each, that unmask to the messages; a held burst is never overwritten', () => {
  const chunks: Buffer[] = [];
  const kept: Buffer[] = [];
  let keep = false;
  const sink = { write: (b: Buffer) => { chunks.push(b); if (keep) kept.push(Buffer.from(b)); return !keep; } };
  const w = new FrameWriter(4096);
  const messages = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(125, 1), Buffer.alloc(126, 2), Buffer.alloc(1000, 3), Buffer.alloc(70_000, 4), Buffer.from('tail')];
  w.begin(sink);
  for (const m of messages) w.add(m);
  w.end();
  const payloads = chunks.flatMap((c) => readClientFrames(c));
  assert.deepEqual(payloads, messages, 'a message larger than the slab goes in a slab of its own, in order');
  // A fresh key per frame.
  const keys = new Set<string>();
  for (const c of chunks) {
    for (let p = 0; p < c.length;) {
      let len = c[p + 1]! & 0x7f;
      let h = 2;
      if (len === 126) { len = c.readUInt16BE(p + 2); h = 4; } else if (len === 127) { len = c.readUIntBE(p + 4, 6); h = 10; }
      keys.add(c.subarray(p + h, p + h + 4).toString('hex'));
      p += h + 4 + len;
    }
  }
  assert.equal(keys.size, messages.length);
  // A sink that keeps its bytes (a socket with writes queued): later bursts must not touch them.
  chunks.length = 0;
  keep = true;
  w.begin(sink); w.add(Buffer.from('held')); w.end();
  keep = false;
  for (let i = 0; i < 20; i++) { w.begin(sink); w.add(Buffer.alloc(300, i)); w.end(); }
  assert.deepEqual(chunks[0], kept[0], 'the held burst is intact');
  assert.deepEqual(readClientFrames(chunks[0]!), [Buffer.from('held')]);
  assert.deepEqual(readClientFrames(chunks.at(-1)!), [Buffer.alloc(300, 19)]);
});

test('lean ledger - every seq acked in order: latency per batch, nothing lost', () => {
  const latency = new LatencyHistogram();
  const l = new SeqLedger(latency);
  l.welcome(0, 32);
  for (let i = 0; i < 5; i++) l.markSent(100); // one burst at t=100
  l.markSent(110);
  assert.equal(l.inflight, 6);
  assert.equal(l.ack(3, 150), 3);
  assert.equal(l.ack(3, 155), 0, 'a credit-only ack repeats the seq');
  assert.equal(l.ack(6, 160), 3);
  assert.equal(l.inflight, 0);
  l.finish();
  assert.deepEqual([l.sent, l.acked, l.lost, l.ackedByWelcome], [6, 6, 0, 0]);
  assert.equal(latency.count, 6);
  assert.equal(latency.maxMs, 60);
  // 1..3 and 6 at 50 ms, 4 and 5 (sent at 100, acked at 160) at 60 ms; within the histogram's 0.1 %.
  assert.ok(Math.abs(latency.percentile(66) - 50) < 0.1, `p66 ${latency.percentile(66)}`);
  assert.ok(Math.abs(latency.percentile(67) - 60) < 0.1, `p67 ${latency.percentile(67)}`);
  assert.deepEqual(l.violations, { ackRegressed: 0, ackUnknownSeq: 0, welcomeRegressed: 0, creditOverWindow: 0 });
});

test('lean ledger - a seq never acked by the end is lost; an Ack going down or past what was sent is flagged', () => {
  const l = new SeqLedger();
  l.welcome(40, 32); // the hub already holds 1..40: this device starts at 41
  assert.equal(l.nextSeq, 41);
  for (let i = 0; i < 4; i++) l.markSent(0);
  assert.equal(l.ack(40, 1), 0, 'Welcome.last_seq repeated: fine');
  assert.equal(l.ack(42, 1), 2);
  assert.equal(l.ack(41, 1), 0);
  assert.equal(l.violations.ackRegressed, 1, 'an Ack below an earlier one');
  assert.equal(l.ack(50, 1), 2, 'covers what was sent, no more');
  assert.equal(l.violations.ackUnknownSeq, 1, 'an Ack of a seq never sent');
  l.markSent(0); // 45, never acked
  l.markSent(0); // 46, never acked
  assert.equal(l.credit(33, 32), 32);
  assert.equal(l.violations.creditOverWindow, 1);
  l.finish();
  assert.deepEqual([l.sent, l.acked, l.lost], [6, 4, 2]);
  assert.equal(l.outstanding, 0);
});

test('lean ledger - after a close: Welcome.last_seq acks what it covers, the rest is resent, a Welcome below an Ack is flagged', () => {
  const l = new SeqLedger();
  l.welcome(0, 8);
  for (let i = 0; i < 6; i++) l.markSent(0); // 1..6
  l.ack(2, 0);
  l.close(); // 3..6 unacked
  assert.equal(l.inflight, 0);
  assert.equal(l.outstanding, 4);
  l.welcome(4, 8); // 3 and 4 were stored after all; 5 and 6 were not
  assert.equal(l.ackedByWelcome, 2);
  assert.equal(l.nextSeq, 5);
  assert.equal(l.resendsPending, 2);
  l.markSent(0); l.markSent(0); l.markSent(0); // 5, 6 again, then 7
  assert.deepEqual([l.sent, l.resent, l.resendsPending], [9, 2, 0]);
  l.ack(7, 0);
  l.close();
  l.welcome(3, 8); // below 7, which an Ack covered: the hub forgot durable batches
  assert.equal(l.violations.welcomeRegressed, 1);
  assert.equal(l.nextSeq, 8, 'acked seqs are not sent again');
  l.finish();
  assert.deepEqual([l.acked, l.ackedByWelcome, l.lost], [5, 2, 0]);
  assert.equal(l.acked + l.ackedByWelcome + l.lost, l.sent - l.resent, 'every seq accounted for once');
});
