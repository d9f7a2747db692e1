// LiveStore merge rules, driven by frames encoded and decoded with
// @telemetry/proto exactly as they cross the wire.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeLiveFrame, encodeLiveFrame, Presence, type LiveFrameProps } from '@telemetry/proto';
import { LiveStore, MAX_CLEARED_ALARMS } from '../src/lib/store.ts';
import { parseTopics } from '../src/lib/topics.ts';

const wire = (f: LiveFrameProps) => decodeLiveFrame(encodeLiveFrame(f));
const T0 = 1_764_000_000_000;

const dev = (id: string, value: number, timeMs: number, presence = Presence.ONLINE) => ({
  id, presence, presenceReason: 'connected', lastSeenMs: timeMs, tags: { site: 'north' },
  latest: [{ metric: 'temperature', unit: 'C', value, timeMs }],
});

test('snapshot fills the table; deltas upsert and remove; a snapshot replaces', () => {
  const s = new LiveStore();
  const t = parseTopics(['fleet', 'devices']);
  let a = s.apply(wire({ seq: 1, snapshot: true, devices: [dev('a', 1, T0), dev('b', 2, T0)] }), t);
  assert.equal(s.devices.size, 2);
  assert.ok(a.structureChanged);
  assert.deepEqual(a.fresh, [], 'a first snapshot is backlog, not fresh');
  assert.equal(s.devices.get('a')?.presence, 'online');
  assert.equal(s.devices.get('a')?.latest.get('temperature')?.value, 1);
  assert.equal(s.metricUnits.get('temperature'), 'C');
  assert.ok(s.devices.get('a')?.search.includes('site=north'));

  a = s.apply(wire({ seq: 2, devices: [dev('a', 5, T0 + 1000)], removedDevices: ['b'] }), t);
  assert.equal(s.devices.size, 1);
  assert.equal(s.devices.get('a')?.latest.get('temperature')?.value, 5);
  assert.deepEqual(a.fresh, [T0 + 1000]);

  // A late reading never replaces a newer one, and is not fresh.
  a = s.apply(wire({ seq: 3, devices: [dev('a', 9, T0 + 500)] }), t);
  assert.equal(s.devices.get('a')?.latest.get('temperature')?.value, 5);
  assert.deepEqual(a.fresh, []);

  // A new device in a delta is live, so fresh.
  a = s.apply(wire({ seq: 4, devices: [dev('c', 3, T0 + 2000)] }), t);
  assert.deepEqual(a.fresh, [T0 + 2000]);

  // A resync snapshot: newer values for held pairs count, the table is replaced.
  a = s.apply(wire({ seq: 5, snapshot: true, devices: [dev('a', 6, T0 + 3000)] }), t);
  assert.deepEqual([...s.devices.keys()], ['a']);
  assert.deepEqual(a.fresh, [T0 + 3000]);
});

test('entries for topics not subscribed are ignored; retain drops them', () => {
  const s = new LiveStore();
  s.apply(wire({ seq: 1, snapshot: true, devices: [dev('a', 1, T0)] }), parseTopics(['fleet', 'devices']));
  const fleetOnly = parseTopics(['fleet']);
  s.retain(fleetOnly);
  assert.equal(s.devices.size, 0);
  s.apply(wire({ seq: 2, devices: [dev('a', 2, T0 + 1)] }), fleetOnly);
  assert.equal(s.devices.size, 0);
});

test('health, scopes and details replace; alarms upsert by id', () => {
  const s = new LiveStore();
  const t = parseTopics(['fleet', 'device:a']);
  s.apply(wire({
    seq: 1, snapshot: true, hubTimeMs: T0,
    health: { devicesOnline: 9, devicesTotal: 10, readingsInPerS: 123.5, spoolBytes: 4096, sinkState: 'embedded' },
    scopes: [{ scope: 'fleet', metrics: [{ metric: 'temperature', unit: 'C', windows: [{ windowMs: 10000, startMs: T0, count: 3, mean: 20, min: 18, max: 22, p95: 21.9 }] }] }],
    alarms: [{ id: 'r1/a/1', ruleId: 'r1', ruleName: 'hot', device: 'a', value: 81, sinceMs: T0 }],
    deviceDetails: [{ state: dev('a', 1, T0), firmware: '1.2.3', address: '10.0.0.7', history: [{ presence: Presence.ONLINE, timeMs: T0, reason: 'connected' }] }],
  }), t);
  assert.equal(s.health?.devicesOnline, 9);
  assert.equal(s.health?.spoolBytes, 4096);
  assert.equal(s.scopes.get('fleet')?.metrics[0]?.windows[0]?.p95, 21.9);
  assert.equal(s.details.get('a')?.firmware, '1.2.3');
  assert.equal(s.details.get('a')?.history[0]?.presence, 'online');
  assert.equal(s.activeAlarms().length, 1);

  const a = s.apply(wire({
    seq: 2,
    alarms: [{ id: 'r1/a/1', ruleId: 'r1', ruleName: 'hot', device: 'a', value: 79, sinceMs: T0, untilMs: T0 + 5000 }],
    deviceDetails: [{ state: dev('a', 2, T0 + 1000), firmware: '1.2.4' }],
  }), t);
  assert.ok(a.alarmsChanged);
  assert.equal(s.activeAlarms().length, 0);
  assert.equal(s.clearedAlarms()[0]?.untilMs, T0 + 5000);
  assert.equal(s.details.get('a')?.firmware, '1.2.4');
  assert.deepEqual(a.fresh, [T0 + 1000]);
  assert.equal(s.health?.devicesOnline, 9, 'health without a new one stays');
});

test('cleared alarms are bounded, active ones never dropped', () => {
  const s = new LiveStore();
  const t = parseTopics(['fleet']);
  const alarms = Array.from({ length: MAX_CLEARED_ALARMS + 50 }, (_, i) => ({ id: `c${i}`, ruleId: 'r', sinceMs: T0 + i, untilMs: T0 + i + 1 }));
  s.apply(wire({ seq: 1, snapshot: true, alarms: [...alarms, { id: 'live', ruleId: 'r', sinceMs: T0 }] }), t);
  assert.equal(s.clearedAlarms().length, MAX_CLEARED_ALARMS);
  assert.equal(s.activeAlarms().length, 1);
  assert.equal(s.clearedAlarms().at(-1)?.id, 'c50', 'the oldest cleared go first');
});
