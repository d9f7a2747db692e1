// 100,000+ random and mutated frames at a running hub; afterwards it is
// healthy and a well-behaved device works. Deterministic: a seeded PRNG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { DEVICE_SUBPROTOCOL, encodeDeviceMessage } from '@telemetry/proto';
import { batchOf, connectDevice, metric, startHub } from './helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261125);
const TARGET = 100_000;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz - 100,000 random and mutated frames never crash the hub; a good device still works', async (t) => {
  const devices = Array.from({ length: 16 }, (_, i) => `fz-${i}`);
  const th = await startHub(t, {
    devices: [...devices, 'good'],
    config: { maxMessageBytes: 4096, maxConnectionsPerAddress: 10_000, admissionRate: 1_000_000, admissionBurst: 1_000_000, maxReadingsPerSecond: 10_000_000, readingsBurst: 100_000_000, handshakeTimeoutMs: 2000 },
  });
  const r = prng(SEED);
  const int = (n: number) => Math.floor(r() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const validBatch = (seq: number) => encodeDeviceMessage({ batch: {
    seq, baseTimeMs: Date.now() - int(1e6), sentTimeMs: r() < 0.5 ? Date.now() : 0,
    metricDefs: r() < 0.8 ? [{ id: 1 + int(3), name: ['temperature', 'x', 'a.b:c-d_e'][int(3)]!, unit: r() < 0.5 ? '°C' : '' }] : [],
    metricIds: Array.from({ length: int(20) }, () => 1 + int(3)),
    timeOffsetsMs: Array.from({ length: int(20) }, () => int(2e6) - 1e6),
    values: Array.from({ length: int(20) }, () => [r() * 100, Number.NaN, Number.POSITIVE_INFINITY, -0][int(4)]!),
  } });
  const mutate = (b: Buffer): Buffer => {
    const m = Buffer.from(b);
    switch (int(5)) {
      case 0: for (let i = 0; i < 1 + int(4); i++) if (m.length) m[int(m.length)]! ^= 1 << int(8); return m;
      case 1: return m.subarray(0, int(m.length + 1));
      case 2: { const at = int(m.length + 1); return Buffer.concat([m.subarray(0, at), bytes(1 + int(8)), m.subarray(at)]); }
      case 3: { const at = int(m.length + 1); return Buffer.concat([m.subarray(0, at), m.subarray(at + 1 + int(8))]); }
      default: if (m.length) m[int(m.length)] = 0xff; return m;
    }
  };
  const frame = (seq: number): { data: Buffer | string; binary: boolean } => {
    // Mostly valid or lightly mutated batches (sessions live on), some hostile frames.
    const k = r();
    if (k < 0.30) return { data: mutate(Buffer.from(validBatch(seq))), binary: true };
    if (k < 0.82) return { data: Buffer.from(validBatch(seq)), binary: true };
    if (k < 0.86) return { data: bytes(int(64)), binary: true };
    if (k < 0.87) return { data: Buffer.alloc(0), binary: true };
    if (k < 0.88) return { data: 'not protobuf', binary: false };
    if (k < 0.89) return { data: bytes(4096 + int(2048)), binary: true }; // over the limit
    if (k < 0.90) return { data: Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), binary: true }; // huge varint length
    if (k < 0.95) return { data: Buffer.from(encodeDeviceMessage({ hello: { deviceId: devices[int(devices.length)]!, protocolVersion: int(3), firmware: 'f'.repeat(int(200)) } })), binary: true };
    return { data: Buffer.from(encodeDeviceMessage({ commandResult: { id: int(1e6), ok: r() < 0.5, message: 'x'.repeat(int(50)) } })), binary: true };
  };

  // The bar is frames the hub processed (its own counter), not frames written:
  // frames pipelined behind a bad one are discarded when the hub closes.
  let sent = 0;
  let processed = 0;
  const worker = async (id: string): Promise<void> => {
    let seq = 1;
    while (processed < TARGET) {
      const ws = new WebSocket(th.url, [DEVICE_SUBPROTOCOL], { headers: { authorization: `Bearer ${th.tokens.get(id)}` }, perMessageDeflate: false });
      ws.on('error', () => undefined);
      const opened = await new Promise<boolean>((res) => { ws.once('open', () => res(true)); ws.once('close', () => res(false)); });
      if (!opened) continue;
      const closed = new Promise<void>((res) => ws.once('close', () => res()));
      if (r() < 0.7) ws.send(encodeDeviceMessage({ hello: { deviceId: id, protocolVersion: 1, firmware: 'fuzz', deviceTimeMs: Date.now() } }));
      // Pipeline frames until the hub closes us (on the first bad one), in bounded bursts.
      while (ws.readyState === WebSocket.OPEN && processed < TARGET) {
        for (let i = 0; i < 4 && ws.readyState === WebSocket.OPEN; i++) {
          const f = frame(seq++);
          ws.send(f.data, { binary: f.binary });
          sent++;
        }
        await new Promise((res) => setImmediate(res));
        if (ws.bufferedAmount > 1 << 20) await new Promise((res) => setTimeout(res, 5));
      }
      if (ws.readyState === WebSocket.OPEN) ws.close();
      await Promise.race([closed, new Promise((res) => setTimeout(res, 2000))]);
      ws.terminate();
      processed = await metric(th, 'hub_ingest_messages_total');
    }
  };
  await Promise.all(devices.map((id) => worker(id)));
  processed = await metric(th, 'hub_ingest_messages_total');
  t.diagnostic(`seed ${SEED}: ${sent} frames sent, ${processed} processed by the hub`);
  assert.ok(processed >= TARGET, `${processed} frames processed`);

  const h = await fetch(`http://127.0.0.1:${th.port}/healthz`);
  assert.equal(h.status, 200);
  assert.ok((await metric(th, 'hub_device_closes_total')) > 100, 'the hub closed many bad sessions');
  assert.ok((await metric(th, 'hub_limit_violations_total')) > 100, 'and counted why');
  // A well-behaved device works as if nothing happened.
  const { d } = await connectDevice(th, 'good');
  for (let seq = 1; seq <= 3; seq++) d.batch(batchOf(seq, 5, { defs: seq === 1 }));
  assert.equal((await d.ackFor(3)).seq, 3);
  d.close();
});
