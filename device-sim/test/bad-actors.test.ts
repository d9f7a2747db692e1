// The bad-actor behaviours: each one sends what it says it sends, so the
// hub's defences can be load-tested with them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeviceMessage } from '@telemetry/proto';
import { batchesOf, device, fakeHub, flush, welcome, DEFAULT_LIMITS } from './fake-hub.ts';

test('bad actors - text-frames sends a text frame after Welcome', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { behaviour: 'text-frames' }).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await hub.until(() => hub.conns[0]!.frames.some((f) => !f.isBinary), 'a text frame');
});

test('bad actors - garbage sends binary bytes that are not a DeviceMessage', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { behaviour: 'garbage', rate: 0 }).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await hub.until(() => hub.conns[0]!.frames.length === 2, 'the garbage');
  const g = hub.conns[0]!.frames[1]!;
  assert.equal(g.isBinary, true);
  assert.throws(() => decodeDeviceMessage(g.data));
});

test('bad actors - oversize sends a message over Welcome.max_message_bytes', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { behaviour: 'oversize', rate: 0 }).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!, { limits: { ...DEFAULT_LIMITS, maxMessageBytes: 4096 } });
  await hub.until(() => hub.conns[0]!.frames.length === 2, 'the big frame');
  assert.equal(hub.conns[0]!.frames[1]!.data.length, 4097);
});

test('bad actors - nan puts NaN and Infinity among the values', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { behaviour: 'nan', rate: 200, batchIntervalMs: 50 }).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await hub.until(() => batchesOf(hub.conns[0]!).flatMap((b) => Array.from(b.values!)).filter((v) => !Number.isFinite(v)).length >= 3, 'non-finite values');
});

test('bad actors - skewed-clock runs the device clock an hour ahead', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { behaviour: 'skewed-clock' });
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  const skew = Number(hub.conns[0]!.msgs[0]!.hello!.deviceTimeMs) - Date.now();
  assert.ok(Math.abs(skew - 3_600_000) < 2000, `skew ${skew} ms`);
  welcome(hub.conns[0]!);
  await hub.until(() => batchesOf(hub.conns[0]!).length >= 1, 'a batch');
  assert.ok(Number(batchesOf(hub.conns[0]!)[0]!.baseTimeMs) - Date.now() > 3_500_000);
});

test('bad actors - flood samples at 10x the rate (at least 500 per metric per second)', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { behaviour: 'flood', rate: 1, batchIntervalMs: 100 }).start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!);
  await hub.until(() => batchesOf(hub.conns[0]!).length >= 3, 'three batches');
  // At 1 reading/s per metric a 100 ms batch holds one instant (4 readings); flooding, ~50.
  const sizes = batchesOf(hub.conns[0]!).slice(1).map((b) => b.values!.length);
  assert.ok(sizes.every((n) => n >= 80), `readings per batch ${sizes.join(', ')}`);
});

test('bad actors - ignore-window sends past its credit, up to 4x the window', async (t) => {
  const hub = await fakeHub(t);
  const d = device(t, hub.url, { behaviour: 'ignore-window', rate: 0 });
  d.start();
  await hub.until(() => hub.conns[0]?.msgs.length === 1, 'hello');
  welcome(hub.conns[0]!, { window: 4, credit: 1 });
  await hub.until(() => batchesOf(hub.conns[0]!).length === 16, '16 batches without an ack');
  await flush(hub.conns[0]!);
  assert.equal(batchesOf(hub.conns[0]!).length, 16);
  assert.equal(d.inflight, 16);
});

test('bad actors - no-hello connects and stays silent', async (t) => {
  const hub = await fakeHub(t);
  device(t, hub.url, { behaviour: 'no-hello' }).start();
  await hub.until(() => hub.conns.length === 1, 'the connection');
  await flush(hub.conns[0]!); // anything sent on open would be here before the pong
  assert.equal(hub.conns[0]!.frames.length, 0);
});
