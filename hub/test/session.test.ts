// Session rules: Hello/Welcome, acks, duplicates, replacement, protocol errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, encodeDeviceMessage, parseRetryAfterMs } from '@telemetry/proto';
import { ManualStore, RawDevice, batchOf, connectDevice, metric, startHub, until, within } from './helpers.ts';

test('session - Welcome carries window, credit, limits, server time and the echoed device time', async (t) => {
  const th = await startHub(t, { config: { window: 8 } });
  const d = new RawDevice(th.url, { token: th.tokens.get('dev-1') });
  await d.opened;
  const before = Date.now();
  d.hello('dev-1', { deviceTimeMs: 1234567 });
  const w = await d.next('welcome');
  assert.equal(w.window, 8);
  assert.equal(w.credit, 8);
  assert.equal(w.protocolVersion, 1);
  assert.equal(w.echoDeviceTimeMs, 1234567);
  assert.ok((w.serverTimeMs ?? 0) >= before - 5);
  assert.equal(w.lastSeq ?? 0, 0);
  assert.equal(w.limits?.maxBatchReadings, 10_000);
  assert.ok(w.sessionId);
  d.close();
});

test('session - batches are acked cumulatively once stored, and the stored readings are exact', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  const base = Date.now();
  d.batch({ seq: 1, baseTimeMs: base, metricDefs: [{ id: 7, name: 'temperature', unit: 'degC' }, { id: 9, name: 'humidity', unit: '%' }], metricIds: [7, 9, 7], timeOffsetsMs: [0, 0, 1000], values: [21.5, 40, 21.75] });
  d.batch({ seq: 2, baseTimeMs: base + 2000, metricIds: [9], timeOffsetsMs: [-5], values: [41] });
  const ack = await d.ackFor(2);
  assert.equal(ack.seq, 2);
  assert.equal(ack.credit, 32);
  const stored = th.store.recent();
  assert.equal(stored.length, 2);
  const b1 = stored[0]!;
  assert.deepEqual([b1.deviceId, b1.seq], ['dev-1', 1]);
  assert.deepEqual(b1.tags, { site: 'test' }, 'registry tags travel with the batch');
  assert.deepEqual([...b1.metricIndex].map((i) => b1.metricNames[i]), ['temperature', 'humidity', 'temperature']);
  assert.deepEqual([...b1.timesMs], [base, base, base + 1000]);
  assert.deepEqual([...b1.values], [21.5, 40, 21.75]);
  assert.equal(b1.deviceTimesMs, null);
  assert.deepEqual([...stored[1]!.timesMs], [base + 1995]);
  assert.equal(await metric(th, 'hub_readings_total', { result: 'accepted' }), 4);
  d.close();
});

test('session - a resent batch is acked and counted, not stored twice', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1));
  await d.ackFor(1);
  d.batch(batchOf(1));
  const again = await d.ackFor(1);
  assert.equal(again.seq, 1);
  assert.equal(th.store.recent().length, 1);
  assert.equal(await metric(th, 'hub_batches_total', { result: 'duplicate' }), 1);
  d.close();
});

test('session - resend after a forced disconnect: Welcome names the last stored seq, nothing lost, nothing doubled', async (t) => {
  const th = await startHub(t);
  const first = await connectDevice(th, 'dev-1');
  for (let seq = 1; seq <= 5; seq++) first.d.batch(batchOf(seq, 2));
  await first.d.ackFor(5);
  // Two more sent, then the link dies before the device sees their acks.
  first.d.batch(batchOf(6, 2, { defs: false }));
  first.d.batch(batchOf(7, 2, { defs: false }));
  await until(() => th.store.recent().length === 7, 3000, 'seq 7 stored');
  first.d.ws.terminate();
  await first.d.closed;

  const second = await connectDevice(th, 'dev-1');
  assert.equal(second.welcome.lastSeq, 7);
  // A device that did not trust its acks resends 5..8; 5..7 are duplicates.
  for (let seq = 5; seq <= 8; seq++) second.d.batch(batchOf(seq, 2));
  const ack = await second.d.ackFor(8);
  assert.equal(ack.seq, 8);
  assert.deepEqual(th.store.recent().map((b) => b.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(await metric(th, 'hub_batches_total', { result: 'duplicate' }), 3);
  second.d.close();
});

test('session - gaps in sequence numbers are allowed; lower numbers later are duplicates', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(10));
  d.batch(batchOf(20, 3, { defs: false }));
  await d.ackFor(20);
  d.batch(batchOf(15, 3, { defs: false }));
  assert.equal((await d.ackFor(20)).seq, 20);
  assert.deepEqual(th.store.recent().map((b) => b.seq), [10, 20]);
  d.close();
});

test('session - a second session for the same device replaces the first with 4002', async (t) => {
  const th = await startHub(t);
  const a = await connectDevice(th, 'dev-1');
  const b = await connectDevice(th, 'dev-1');
  const closed = await within(a.d.closed, 3000, 'old session closed');
  assert.equal(closed.code, CloseCode.SESSION_REPLACED);
  const notice = await a.d.next('notice');
  assert.equal(notice.code, CloseCode.SESSION_REPLACED);
  b.d.batch(batchOf(1));
  assert.equal((await b.d.ackFor(1)).seq, 1);
  b.d.close();
});

test('session - a batch that becomes durable after the device reconnected is acked on the new session', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { deps: { store } });
  const a = await connectDevice(th, 'dev-1');
  a.d.batch(batchOf(1));
  await until(() => store.pending === 1, 3000, 'append pending');
  const b = await connectDevice(th, 'dev-1');
  // Not durable yet: Welcome must not claim it.
  assert.equal(b.welcome.lastSeq, 0);
  b.d.batch(batchOf(1)); // the device resends it: a duplicate of a pending append
  await until(async () => (await metric(th, 'hub_batches_total', { result: 'duplicate' })) === 1, 3000, 'duplicate seen');
  assert.equal(b.d.frames.filter((f) => f.msg === 'ack').length, 0, 'no ack before durable');
  store.commit();
  assert.equal((await b.d.ackFor(1)).seq, 1);
  assert.equal(store.batches.length, 1);
  b.d.close();
});

test('session - no ack is sent before the store says durable', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { deps: { store } });
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1));
  d.batch(batchOf(2, 3, { defs: false }));
  d.batch(batchOf(3, 3, { defs: false }));
  await until(() => store.pending === 3, 3000, 'appends pending');
  assert.equal(d.frames.filter((f) => f.msg === 'ack').length, 0);
  store.commit(2);
  assert.equal((await d.ackFor(2)).seq, 2);
  store.commit();
  assert.equal((await d.ackFor(3)).seq, 3);
  d.close();
});

test('session - protocol errors close with a Notice and a close code, and are counted', async (t) => {
  const th = await startHub(t, { devices: ['dev-1'], config: { maxConnectionsPerAddress: 100 } });
  const token = th.tokens.get('dev-1')!;
  const cases: { name: string; run: (d: RawDevice) => void; code: number; hello?: boolean }[] = [
    { name: 'batch before hello', hello: false, run: (d) => d.batch(batchOf(1)), code: CloseCode.PROTOCOL_ERROR },
    { name: 'hello twice', run: (d) => d.hello('dev-1'), code: CloseCode.PROTOCOL_ERROR },
    { name: 'hello for another device', hello: false, run: (d) => d.hello('dev-2'), code: CloseCode.PROTOCOL_ERROR },
    { name: 'unsupported version', hello: false, run: (d) => d.hello('dev-1', { protocolVersion: 2 }), code: CloseCode.UNSUPPORTED_VERSION },
    { name: 'missing version', hello: false, run: (d) => d.hello('dev-1', { protocolVersion: 0 }), code: CloseCode.UNSUPPORTED_VERSION },
    { name: 'firmware too long', hello: false, run: (d) => d.hello('dev-1', { firmware: 'x'.repeat(129) }), code: CloseCode.PROTOCOL_ERROR },
    { name: 'empty envelope', run: (d) => d.sendRaw(Buffer.alloc(0)), code: CloseCode.PROTOCOL_ERROR },
    { name: 'seq 0', run: (d) => d.batch({ ...batchOf(1), seq: 0 }), code: CloseCode.PROTOCOL_ERROR },
    { name: 'undefined metric id', run: (d) => d.batch({ ...batchOf(1, 2, { defs: false }) }), code: CloseCode.PROTOCOL_ERROR },
    { name: 'column lengths differ', run: (d) => d.batch({ ...batchOf(1, 2), values: [1] }), code: CloseCode.PROTOCOL_ERROR },
    { name: 'command result before hello', hello: false, run: (d) => d.send({ commandResult: { id: 1, ok: true } }), code: CloseCode.PROTOCOL_ERROR },
    { name: 'text frame', run: (d) => d.sendRaw('{"hello":1}', false), code: CloseCode.UNSUPPORTED_DATA },
    { name: 'malformed protobuf', run: (d) => d.sendRaw(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])), code: CloseCode.INVALID_PAYLOAD },
  ];
  for (const c of cases) {
    const d = new RawDevice(th.url, { token });
    await within(d.opened, 3000, `${c.name}: open`);
    if (c.hello !== false) {
      d.hello('dev-1');
      await d.next('welcome');
    }
    c.run(d);
    const closed = await within(d.closed, 3000, `${c.name}: close`);
    assert.equal(closed.code, c.code, `${c.name}: ${closed.reason}`);
    const notice = await d.next('notice');
    assert.equal(notice.code, c.code, c.name);
    assert.ok(notice.reason, c.name);
  }
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'protocol' }), 9);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'text_frame' }), 1);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'malformed' }), 1);
  assert.equal(await metric(th, 'hub_limit_violations_total', { limit: 'version' }), 2);
  assert.equal(await metric(th, 'hub_device_closes_total', { code: '4000' }), 9);
  // The hub is still fine.
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1));
  await d.ackFor(1);
  d.close();
});

test('session - command results are accepted and counted; commands reach an online device', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  const id = th.hub.devices.sendCommand('dev-1', { config: { sampleIntervalMs: 5000 } });
  assert.ok(id);
  const cmd = await d.next('command');
  assert.equal(cmd.id, id);
  assert.equal(cmd.config?.sampleIntervalMs, 5000);
  d.send({ commandResult: { id: cmd.id ?? 0, ok: true, message: 'applied' } });
  await until(async () => (await metric(th, 'hub_command_results_total', { result: 'ok' })) === 1, 3000, 'result counted');
  assert.equal(th.hub.devices.sendCommand('dev-2', { config: {} }), null);
  d.close();
});

test('session - a seq above 2^53-1 closes with 4000 and a reason that names the range', async (t) => {
  const th = await startHub(t);
  for (const seq of [2 ** 53, 2 ** 63]) {
    const { d } = await connectDevice(th, 'dev-1');
    d.batch({ ...batchOf(1), seq });
    const closed = await within(d.closed, 3000, `seq ${seq}: close`);
    assert.equal(closed.code, CloseCode.PROTOCOL_ERROR);
    assert.match(closed.reason, /^Batch\.seq must be 1\.\.2\^53-1 \(9007199254740991\)/);
    assert.match((await d.next('notice')).reason ?? '', /^Batch\.seq must be 1\.\.2\^53-1 \(9007199254740991\)/);
  }
  assert.equal(th.store.recent().length, 0);
});

test('session - a store failure closes with 1011 and a retry hint, and nothing is acked', async (t) => {
  const { MemoryBatchStore } = await import('../src/spool/store.ts');
  const { StoreError } = await import('../src/core/errors.ts');
  class FailingStore extends MemoryBatchStore {
    override append(): Promise<void> { return Promise.reject(new StoreError('HUB_ERR_STORE', 'disk full')); }
  }
  const th = await startHub(t, { deps: { store: new FailingStore() } });
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1));
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.INTERNAL_ERROR);
  assert.ok((parseRetryAfterMs(closed.reason) ?? 0) > 0);
  assert.equal(d.frames.filter((f) => f.msg === 'ack').length, 0);
  assert.equal(await metric(th, 'hub_store_errors_total'), 1);
});

test('session - a frame is exactly one envelope: trailing garbage after a valid message is malformed', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  const good = encodeDeviceMessage({ batch: batchOf(1) });
  d.sendRaw(Buffer.concat([good, Buffer.from([0xff])]));
  const closed = await within(d.closed, 3000, 'close');
  assert.equal(closed.code, CloseCode.INVALID_PAYLOAD);
});
