// Cluster mode's live path without NATS: a hub's own partials (takeLocal)
// merged into another hub's live state (mergeRemote) give that hub the same
// windows as if the batches had arrived there, nothing merged is sent back,
// and the wire codec refuses every malformed message whole.
import assert from 'node:assert/strict';
import test from 'node:test';
import { decodeLiveShare, encodeLiveShare, MAX_MESSAGE_BYTES } from '../src/cluster/live-share.ts';
import { Partial, partialFromWire, partialToWire } from '../src/live/aggregates.ts';
import { LiveState } from '../src/live/state.ts';
import type { AcceptedBatch } from '../src/spool/store.ts';

const T0 = 1_700_000_000_000;

function batch(deviceId: string, seq: number, values: number[], metric = 'temperature', tags: Record<string, string> = { site: 'north' }): AcceptedBatch {
  return {
    deviceId, seq, tags, receivedAtMs: 0, clockOffsetMs: 0, metricNames: [metric], metricUnits: ['degC'],
    metricIndex: new Uint16Array(values.length), timesMs: Float64Array.from(values, (_, i) => T0 + i), deviceTimesMs: null,
    values: Float64Array.from(values),
  };
}

function state(now: { t: number }, known: string[]): LiveState {
  return new LiveState({ maxSeries: 100, maxDevices: 100, alarmRulesFile: null, now: () => now.t, knownDevices: () => known.map((id) => [id, { site: 'north' }]) });
}

test('live share - partials from hub A merged into hub B give B the same 1 s window as A, and B sends nothing of them back', () => {
  const now = { t: T0 };
  const a = state(now, ['a-1']);
  const b = state(now, ['a-1', 'b-1']);
  a.enableSharing();
  b.enableSharing();
  const values = Array.from({ length: 500 }, (_, i) => 10 + Math.sin(i) * 5);
  a.durable(batch('a-1', 1, values.slice(0, 250)));
  a.durable(batch('a-1', 2, values.slice(250)));
  b.durable(batch('b-1', 1, [100, 200]));
  const fromA = decodeLiveShare(encodeLiveShare('hub-a', a.takeLocal())[0]!);
  assert.ok(fromA);
  b.mergeRemote(fromA, (id) => (id === 'a-1' ? { site: 'north' } : undefined));
  now.t = T0 + 1000;
  a.advance();
  b.advance();
  const wa = a.scope('fleet')!.series.get('temperature')!.stats.closed[0]!;
  const wb = b.scope('fleet')!.series.get('temperature')!.stats.closed[0]!;
  assert.equal(wb.count, wa.count + 2);
  assert.equal(wb.max, 200);
  assert.equal(wb.min, wa.min);
  assert.ok(Math.abs(wb.mean - (wa.mean * wa.count + 300) / (wa.count + 2)) < 1e-9);
  // The tag group too, and the device's latest value and presence cadence.
  assert.equal(b.scope('group:site=north')!.series.get('temperature')!.stats.closed[0]!.count, 502);
  assert.equal(b.device('a-1')!.values[0], a.device('a-1')!.values[0]);
  assert.ok(b.device('a-1')!.lastBatchAt > 0);
  // B's own share holds only b-1's two readings: A's partial is not echoed.
  const fromB = b.takeLocal();
  assert.deepEqual(fromB.series.map((s) => [s.tag?.value ?? 'fleet', s.partial.count]), [['fleet', 2], ['north', 2]]);
  assert.deepEqual(fromB.devices.map((d) => d.id), ['b-1']);
  // And a second take is empty until new batches arrive.
  assert.deepEqual(a.takeLocal(), { series: [], devices: [] });
});

test('live share - a partial survives the wire exactly (count, sum, min, max, quantiles)', () => {
  const p = new Partial();
  for (let i = -200; i <= 800; i++) p.add(i === 0 ? 0 : i * 1.37, T0 + i);
  const back = partialFromWire(JSON.parse(JSON.stringify(partialToWire(p))));
  assert.ok(back);
  const x = p.summary(1000, T0);
  const y = back.summary(1000, T0);
  assert.deepEqual(y, x);
});

test('live share - a device not in this hub\'s registry is not tracked from another hub\'s partials', () => {
  const now = { t: T0 };
  const a = state(now, ['ghost']);
  const b = state(now, []);
  a.enableSharing();
  a.durable(batch('ghost', 1, [1, 2, 3]));
  b.mergeRemote(a.takeLocal(), () => undefined);
  assert.equal(b.device('ghost'), undefined);
});

test('live share - big shares are split below the message cap, and every piece decodes', () => {
  const now = { t: T0 };
  const a = new LiveState({ maxSeries: 100_000, maxDevices: 100_000, alarmRulesFile: null, now: () => now.t });
  a.enableSharing();
  for (let d = 0; d < 3000; d++) a.durable(batch(`dev-${d}`, 1, [d, d + 0.5, d * 3], `m${d % 400}`, { site: `s${d % 50}` }));
  const msgs = encodeLiveShare('hub-a', a.takeLocal());
  assert.ok(msgs.length > 1, `${msgs.length} messages`);
  let devices = 0;
  for (const m of msgs) {
    assert.ok(m.length <= MAX_MESSAGE_BYTES, `${m.length} bytes`);
    const share = decodeLiveShare(m);
    assert.ok(share);
    devices += share.devices.length;
  }
  assert.equal(devices, 3000);
});

test('live share - malformed messages are refused whole', () => {
  const good = (): Record<string, unknown> => ({
    v: 1, hub: 'h', devices: [],
    series: [[null, null, 'temperature', 'degC', { n: 2, s: 3, lo: 1, hi: 2, l: 2, t: T0, z: 0, p: [0, 1, 35, 1], q: [] }]],
  });
  assert.ok(decodeLiveShare(Buffer.from(JSON.stringify(good()))));
  const bad: [string, (m: Record<string, unknown>) => unknown][] = [
    ['not JSON', () => '{'],
    ['wrong version', (m) => ({ ...m, v: 2 })],
    ['hub id too long', (m) => ({ ...m, hub: 'x'.repeat(65) })],
    ['bad metric name', (m) => ({ ...m, series: [[null, null, 'bad name!', '', (m.series as unknown[][])[0]![4]]] })],
    ['tag key without value', (m) => ({ ...m, series: [['site', null, 'temperature', '', (m.series as unknown[][])[0]![4]]] })],
    ['count that does not add up', (m) => ({ ...m, series: [[null, null, 'temperature', '', { n: 3, s: 3, lo: 1, hi: 2, l: 2, t: T0, z: 0, p: [0, 1, 35, 1], q: [] }]] })],
    ['NaN sum', (m) => ({ ...m, series: [[null, null, 'temperature', '', { n: 2, s: 'NaN', lo: 1, hi: 2, l: 2, t: T0, z: 0, p: [0, 1, 35, 1], q: [] }]] })],
    ['bins spanning too many keys (dense memory)', (m) => ({ ...m, series: [[null, null, 'temperature', '', { n: 2, s: 3, lo: 1, hi: 2, l: 2, t: T0, z: 0, p: [-20_000, 1, 20_000, 1], q: [] }]] })],
    ['too many bins', (m) => ({ ...m, series: [[null, null, 'temperature', '', { n: 5000, s: 3, lo: 1, hi: 2, l: 2, t: T0, z: 0, p: Array.from({ length: 5000 }, (_, i) => [i, 1]).flat(), q: [] }]] })],
    ['negative bin count', (m) => ({ ...m, series: [[null, null, 'temperature', '', { n: 0, s: 3, lo: 1, hi: 2, l: 2, t: T0, z: 0, p: [0, 1, 35, -1], q: [] }]] })],
    ['device columns of different lengths', (m) => ({ ...m, devices: [['d', ['temperature'], ['degC'], [1, 2], [T0]]] })],
    ['non-finite latest value', (m) => ({ ...m, devices: [['d', ['temperature'], ['degC'], ['Infinity'], [T0]]] })],
  ];
  for (const [what, change] of bad) {
    const msg = change(good());
    assert.equal(decodeLiveShare(Buffer.from(typeof msg === 'string' ? msg : JSON.stringify(msg))), null, what);
  }
  assert.equal(decodeLiveShare(Buffer.alloc(MAX_MESSAGE_BYTES + 8192, 0x20)), null, 'oversize');
});
