// /v1/live frames without sockets: what a snapshot and a delta carry, coarse
// frames, the per-tick caches shared by sockets, and the frame header fields.
import assert from 'node:assert/strict';
import test from 'node:test';
import { Presence } from '@telemetry/proto';
import type { AcceptedBatch } from '../src/core/batch.ts';
import { LiveFrames, type FrameSubscriber } from '../src/live/frames.ts';
import { KEEPING_UP, ladderStep } from '../src/live/ladder.ts';
import { LiveState } from '../src/live/state.ts';

const T0 = 1_700_000_040_000; // a whole minute: windows line up with the ticks below

function batch(deviceId: string, tags: Readonly<Record<string, string>>, value: number, timeMs: number): AcceptedBatch {
  return {
    deviceId, seq: 1, tags, receivedAtMs: timeMs, clockOffsetMs: 0, metricNames: ['temperature'], metricUnits: ['Cel'],
    metricIndex: Uint16Array.of(0), timesMs: Float64Array.of(timeMs), deviceTimesMs: null, values: Float64Array.of(value),
  };
}

function subscriber(...topics: string[]): FrameSubscriber & { lastTick: number; snapshotDue: boolean; skippedSince: number } {
  return { topics, seq: 0, lastTick: 0, snapshotDue: true, skippedSince: 0, ladder: KEEPING_UP };
}

/** What the endpoint does after sending a frame. */
function sent(s: ReturnType<typeof subscriber>, tick: number): void {
  s.lastTick = tick;
  s.snapshotDue = false;
  s.skippedSince = 0;
}

function hub() {
  let clock = T0;
  const north = { site: 'north' }, south = { site: 'south' };
  let known: [string, Readonly<Record<string, string>>][] = [['a', north], ['b', south], ['c', north]];
  const state = new LiveState({ maxSeries: 100, maxDevices: 100, alarmRulesFile: null, now: () => clock, knownDevices: () => known });
  const frames = new LiveFrames(state, 1000, () => clock);
  return {
    state, frames, north,
    /** One tick: the clock moves by `ms` and the state advances. */
    tick(ms = 1000): number { clock += ms; state.advance(); return state.tick; },
    feed(id: string, tags: Readonly<Record<string, string>>, value: number): void { state.durable(batch(id, tags, value, clock)); },
    forget(id: string): void { known = known.filter(([k]) => k !== id); state.syncRegistry(); },
    get clock() { return clock; },
  };
}

test('live frames - a snapshot carries every device and the complete scopes; a delta only what changed since the socket\'s last frame', () => {
  const h = hub();
  h.state.sessionOpened('a', h.north, 'fw/1', '10.0.0.1');
  h.feed('a', h.north, 21);
  const t1 = h.tick();
  const s = subscriber('fleet', 'devices', 'group:site=north', 'group:site=nowhere', 'device:a', 'device:nobody');
  const snap = h.frames.build(s, t1, true, 2);
  assert.equal(snap.seq, 1);
  assert.equal(snap.snapshot, true);
  assert.equal(snap.tickMs, 1000);
  assert.equal(snap.hubTimeMs, h.clock);
  assert.deepEqual(snap.devices!.map((d) => d.id), ['a', 'b', 'c'], 'registry devices too, before they connect');
  assert.equal(snap.devices![0]!.presence, Presence.ONLINE);
  assert.deepEqual(snap.devices![0]!.latest, [{ metric: 'temperature', unit: 'Cel', value: 21, timeMs: T0 }]);
  assert.equal(snap.removedDevices, undefined, 'a snapshot replaces everything: no removals');
  assert.deepEqual(snap.scopes!.map((x) => x.scope), ['fleet', 'group:site=north', 'group:site=nowhere']);
  assert.deepEqual(snap.scopes![2], { scope: 'group:site=nowhere' }, 'a group nobody is in: named, empty');
  assert.equal(snap.scopes![1]!.devicesTotal, 2);
  assert.equal(snap.health!.dashboards, 2, 'the endpoint\'s own count');
  assert.equal(snap.health!.devicesTotal, 3);
  assert.deepEqual(snap.deviceDetails!.map((d) => [d.state!.id, d.firmware, d.address]), [['a', 'fw/1', '10.0.0.1']], 'an unknown device: no detail');
  sent(s, t1);

  h.feed('a', h.north, 22);
  const t2 = h.tick();
  const delta = h.frames.build(s, t2, false, 2);
  assert.equal(delta.seq, 2);
  assert.equal(delta.snapshot, false);
  assert.deepEqual(delta.devices!.map((d) => d.id), ['a']);
  assert.deepEqual(delta.removedDevices, []);
  assert.deepEqual(delta.scopes!.map((x) => x.scope), ['fleet', 'group:site=north', 'group:site=nowhere'], 'scopes are complete in every frame');
  assert.equal(delta.deviceDetails!.length, 1, 'device details are complete in every frame');
  sent(s, t2);

  h.forget('c');
  const reloaded = h.tick();
  const removal = h.frames.build(s, reloaded, false, 2);
  assert.deepEqual(removal.removedDevices, ['c']);
  assert.deepEqual(removal.devices!.map((d) => d.id), ['a', 'b'], 'a registry reload sends the devices it lists again');
  sent(s, reloaded);

  const quiet = h.frames.build(s, h.tick(), false, 2);
  assert.deepEqual([quiet.devices, quiet.removedDevices, quiet.alarms], [[], [], []]);

  // Ticks the socket skipped: the next frame carries everything since its last frame, and says how many.
  h.feed('b', { site: 'south' }, 5);
  h.tick();
  h.tick();
  s.skippedSince = 2;
  const after = h.frames.build(s, h.tick(), false, 2);
  assert.deepEqual(after.devices!.map((d) => d.id), ['b']);
  assert.equal(after.skippedTicks, 2);
  assert.equal(h.frames.build(s, h.state.tick, true, 2).skippedTicks, 0, 'the answer to a subscribe is not a tick\'s frame');
});

test('live frames - alarms: a snapshot has the active and recent ones, a delta those that changed', async () => {
  const h = hub();
  await h.state.alarms.add({ name: 'Hot', metric: 'temperature', op: '>', threshold: 80 });
  h.feed('a', h.north, 90);
  const s = subscriber('fleet');
  const fired = h.tick();
  const first = h.frames.build(s, fired, true, 1);
  assert.deepEqual(first.alarms!.map((a) => [a.device, a.untilMs]), [['a', 0]]);
  assert.equal(first.scopes![0]!.alarmsActive, 1);
  sent(s, fired);
  assert.deepEqual(h.frames.build(s, h.tick(), false, 1).alarms, [], 'unchanged: not repeated');
  sent(s, h.state.tick);
  h.feed('a', h.north, 20);
  const cleared = h.frames.build(s, h.tick(), false, 1).alarms!;
  assert.equal(cleared.length, 1);
  assert.ok(Number(cleared[0]!.untilMs) > 0);
});

test('live frames - coarse frames (a degraded socket) carry only the 10 s and 1 min windows', () => {
  const h = hub();
  for (let i = 0; i < 60; i++) { h.feed('a', h.north, i); h.tick(); }
  let ladder = KEEPING_UP;
  for (let tick = 1; tick <= 3; tick++) ladder = ladderStep(ladder, 1 << 30, tick, { skipBytes: 0, maxBackpressure: 2 ** 31 }).ladder;
  assert.equal(ladder.degraded, true);
  const full = h.frames.build(subscriber('fleet', 'group:site=north'), h.state.tick, true, 1);
  const slow = { ...subscriber('fleet', 'group:site=north'), ladder };
  const coarse = h.frames.build(slow, h.state.tick, false, 1);
  const windows = (f: typeof full) => f.scopes!.map((x) => x.metrics!.map((m) => m.windows!.map((w) => w.windowMs)));
  assert.deepEqual(windows(full), [[[1000, 10_000, 60_000]], [[1000, 10_000, 60_000]]]);
  assert.deepEqual(windows(coarse), [[[10_000, 60_000]], [[10_000, 60_000]]]);
  assert.equal(full.degraded, false);
  assert.equal(coarse.degraded, true);
});

test('live frames - scope and device messages are built once per tick and shared by every socket', () => {
  const h = hub();
  h.feed('a', h.north, 1);
  const t1 = h.tick();
  const x = h.frames.build(subscriber('fleet', 'devices'), t1, true, 2);
  const y = h.frames.build(subscriber('devices', 'fleet'), t1, true, 2);
  assert.equal(x.scopes![0], y.scopes![0], 'the same fleet message');
  x.devices!.forEach((d, i) => assert.equal(d, y.devices![i], 'the same device message'));
  assert.equal(x.seq, 1, 'sequence numbers are per socket');
  assert.equal(y.seq, 1);
  h.feed('a', h.north, 2);
  const t2 = h.tick();
  const z = h.frames.build(subscriber('fleet', 'devices'), t2, true, 2);
  assert.notEqual(z.scopes![0], x.scopes![0], 'a new tick builds them again');
  assert.equal(z.devices![0]!.latest![0]!.value, 2);
});
