// device-sim/ tests: the bad-actor behaviours on a whole device (in-memory
// socket, hand-driven clock): each one sends what it says it sends, so the
// hub's defences can be load-tested with them.
// Imports: node:test, @telemetry/proto, and this package's test helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeviceMessage } from '@telemetry/proto';
import { DEFAULT_LIMITS, fakeDevice } from './fake-socket.ts';

test('bad actors - text-frames sends a text frame after Welcome', (t) => {
  const { device: d, hub } = fakeDevice(t, { behaviour: 'text-frames' });
  d.start();
  const c = hub.last.accept();
  assert.ok(c.frames.every((f) => f.isBinary), 'nothing but Hello before Welcome');
  c.welcome();
  assert.deepEqual(c.frames.filter((f) => !f.isBinary).map((f) => f.data), ['{"hello":"I am JSON"}']);
});

test('bad actors - garbage sends binary bytes that are not a DeviceMessage', (t) => {
  const { device: d, hub } = fakeDevice(t, { behaviour: 'garbage', rate: 0 });
  d.start();
  const c = hub.last.accept();
  c.welcome();
  assert.equal(c.frames.length, 2, 'Hello, then the garbage');
  const g = c.frames[1]!;
  assert.equal(g.isBinary, true);
  assert.equal(g.data.length, 64);
  assert.throws(() => decodeDeviceMessage(g.data as Uint8Array));
});

test('bad actors - oversize sends a message over Welcome.max_message_bytes', (t) => {
  const { device: d, hub } = fakeDevice(t, { behaviour: 'oversize', rate: 0 });
  d.start();
  const c = hub.last.accept();
  c.welcome({ limits: { ...DEFAULT_LIMITS, maxMessageBytes: 4096 } });
  assert.equal(c.frames.length, 2);
  assert.equal(c.frames[1]!.data.length, 4097);
});

test('bad actors - nan puts NaN and Infinity among the values', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { behaviour: 'nan', rate: 200, batchIntervalMs: 50 });
  d.start();
  const c = hub.last.accept();
  c.welcome();
  clock.advance(500);
  const values = c.batches.flatMap((b) => Array.from(b.values!));
  const bad = values.filter((v) => !Number.isFinite(v));
  assert.ok(bad.length >= 3, 'non-finite values');
  assert.ok(bad.length / values.length > 0.05 && bad.length / values.length < 0.15, `about 10 %: ${bad.length} of ${values.length}`);
  assert.ok(bad.some(Number.isNaN) && bad.some((v) => v === Infinity) && bad.some((v) => v === -Infinity));
});

test('bad actors - skewed-clock runs the device clock an hour ahead', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { behaviour: 'skewed-clock' });
  d.start();
  const c = hub.last.accept();
  assert.equal(Number(c.msgs[0]!.hello!.deviceTimeMs) - clock.wall, 3_600_000);
  c.welcome();
  clock.advance(110);
  assert.ok(c.batches.length >= 1, 'a batch');
  assert.ok(Number(c.batches[0]!.baseTimeMs) - clock.wall > 3_500_000);
});

test('bad actors - flood samples at 10x the rate (at least 500 per metric per second)', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { behaviour: 'flood', rate: 1, batchIntervalMs: 100 });
  d.start();
  const c = hub.last.accept();
  c.welcome({ limits: { ...DEFAULT_LIMITS, maxReadingsPerSecond: 100, readingsBurst: 100 } });
  clock.advance(1000);
  assert.ok(c.batches.length >= 3, 'three batches');
  // At 1 reading/s per metric a 100 ms batch holds one instant (4 readings); flooding, ~50.
  const sizes = c.batches.slice(1).map((b) => b.values!.length);
  assert.ok(sizes.every((n) => n >= 80), `readings per batch ${sizes.join(', ')}`);
  // Unpaced: far past the 100 readings/s Welcome allows.
  assert.ok(c.batches.reduce((n, b) => n + b.values!.length, 0) > 1000);
});

test('bad actors - ignore-window sends past its credit, up to 4x the window', (t) => {
  const { device: d, hub } = fakeDevice(t, { behaviour: 'ignore-window', rate: 0 });
  d.start();
  const c = hub.last.accept();
  c.welcome({ window: 4, credit: 1 });
  assert.equal(c.batches.length, 16, '16 batches without an ack');
  assert.equal(d.inflight, 16);
  assert.ok(c.batches.every((b) => b.values!.length === 4 && Number(b.baseTimeMs) === Number(c.batches[0]!.baseTimeMs)), 'one instant each');
});

test('bad actors - no-hello connects and stays silent, and does not time out its own handshake', (t) => {
  const { device: d, hub, clock } = fakeDevice(t, { behaviour: 'no-hello', welcomeTimeoutMs: 200 });
  d.start();
  const c = hub.last.accept();
  clock.advance(1000);
  assert.equal(c.frames.length, 0);
  assert.equal(c.closedByDevice, null, "the hub's 4001 ends it, not the device");
  assert.equal(d.counters.closes['welcome-timeout'], undefined);
  // A good device in the same spot gives up on the handshake.
  const good = fakeDevice(t, { welcomeTimeoutMs: 200 });
  good.device.start();
  good.hub.last.accept();
  good.clock.advance(200);
  assert.equal(good.device.counters.closes['welcome-timeout'], 1);
});
