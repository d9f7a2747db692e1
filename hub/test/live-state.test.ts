// Live path state without sockets: windowed aggregates and their sketches,
// latest values by event time, presence with reasons, alarms, memory bounds.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { Presence } from '@telemetry/proto';
import { Digest, Partial, WindowedSeries } from '../src/live/aggregates.ts';
import { Alarms, MAX_RULES, parseRule } from '../src/live/alarms.ts';
import { closeExplanation, DeviceTracker, HISTORY } from '../src/live/devices.ts';
import { LiveState } from '../src/live/state.ts';
import type { AcceptedBatch } from '../src/spool/store.ts';

function batch(deviceId: string, seq: number, readings: [string, number, number][], tags: Record<string, string> = { site: 'north' }): AcceptedBatch {
  const names = [...new Set(readings.map((r) => r[0]))];
  return {
    deviceId, seq, tags, receivedAtMs: 0, clockOffsetMs: 0,
    metricNames: names, metricUnits: names.map(() => 'u'),
    metricIndex: Uint16Array.from(readings.map((r) => names.indexOf(r[0]))),
    timesMs: Float64Array.from(readings.map((r) => r[2])), deviceTimesMs: null,
    values: Float64Array.from(readings.map((r) => r[1])),
  };
}

test('aggregates - 1 s windows close on time; 10 s and 1 min windows are merges of them', () => {
  const t0 = 1_700_000_000_000;
  const s = new WindowedSeries(t0);
  for (let sec = 0; sec < 10; sec++) {
    for (let i = 1; i <= 100; i++) s.add(sec * 100 + i, t0 + sec * 1000);
    s.roll(t0 + (sec + 1) * 1000);
    const w = s.closed[0]!;
    assert.equal(w.count, 100);
    assert.equal(w.startMs, t0 + sec * 1000);
    assert.equal(w.min, sec * 100 + 1);
    assert.equal(w.max, sec * 100 + 100);
    assert.equal(w.mean, sec * 100 + 50.5);
    assert.equal(w.last, sec * 100 + 100);
  }
  const ten = s.closed[1]!;
  assert.equal(ten.windowMs, 10_000);
  assert.equal(ten.count, 1000);
  assert.equal(ten.min, 1);
  assert.equal(ten.max, 1000);
  // DDSketch: 1 % relative accuracy on quantiles.
  for (const [q, want] of [[ten.p50, 500], [ten.p95, 950], [ten.p99, 990]] as const) {
    assert.ok(Math.abs(q - want) / want <= 0.015, `quantile ${q} vs ${want}`);
  }
  assert.equal(s.closed[2], null, 'the minute has not ended yet');
  s.roll(t0 + 60_000);
  assert.equal(s.closed[2]!.count, 1000);
  // A silent second: the most recent closed window is an empty one, not an old one.
  s.roll(t0 + 62_000);
  assert.equal(s.closed[0]!.count, 0);
  assert.equal(s.closed[0]!.startMs, t0 + 61_000);
});

test('aggregates - partials from two hubs merge to the same stats as one hub seeing everything', () => {
  const a = new Partial(), b = new Partial(), all = new Partial();
  for (let i = 0; i < 5000; i++) {
    const v = Math.exp(Math.sin(i) * 3);
    (i % 3 ? a : b).add(v, i);
    all.add(v, i);
  }
  a.merge(b);
  const x = a.summary(1000, 0), y = all.summary(1000, 0);
  assert.equal(x.count, y.count);
  assert.equal(x.min, y.min);
  assert.equal(x.max, y.max);
  assert.ok(Math.abs(x.mean - y.mean) < 1e-9);
  assert.equal(x.p50, y.p50);
  assert.equal(x.p99, y.p99);
});

test('aggregates - a digest folds readings in the same bin into runs, and still equals adding each reading', () => {
  const viaDigest = new Partial();
  const alone = new Partial();
  const d = new Digest();
  for (let batch = 0; batch < 20; batch++) {
    d.reset();
    // Sensor-like: a slow drift (long runs in one bin), a sign change, zeros and a spike.
    for (let j = 0; j < 250; j++) {
      const i = batch * 250 + j;
      const v = j === 100 ? 1e6 : j % 50 === 0 ? 0 : (i < 2500 ? 1 : -1) * (20 + i * 0.0004);
      d.add(v, i);
      alone.add(v, i);
    }
    assert.ok(d.npos + d.nneg < 40, `runs, not one entry per reading (${d.npos + d.nneg})`);
    viaDigest.addDigest(d);
  }
  const { mean: m1, ...a } = viaDigest.summary(1000, 0);
  const { mean: m2, ...b } = alone.summary(1000, 0);
  assert.deepEqual(a, b);
  assert.ok(Math.abs(m1 - m2) < 1e-9);
  for (const q of [0.01, 0.25, 0.5, 0.9, 0.999]) assert.equal(viaDigest.sketch.getValueAtQuantile(q), alone.sketch.getValueAtQuantile(q));
});

test('aggregates - a batch digest added to a partial equals adding each reading (negative, zero and positive values)', () => {
  const viaDigest = [new Partial(), new Partial()];
  const alone = new Partial();
  const d = new Digest();
  for (let batch = 0; batch < 30; batch++) {
    d.reset();
    for (let j = 0; j < 100; j++) {
      const i = batch * 100 + j;
      const v = i % 7 === 0 ? 0 : Math.sin(i) * 10 ** ((i % 5) - 2);
      d.add(v, i);
      alone.add(v, i);
    }
    for (const p of viaDigest) p.addDigest(d);
  }
  for (const p of viaDigest) {
    // Sums are added batch by batch, so the mean may differ in the last bits.
    const { mean: m1, ...a } = p.summary(1000, 0);
    const { mean: m2, ...b } = alone.summary(1000, 0);
    assert.deepEqual(a, b);
    assert.ok(Math.abs(m1 - m2) < 1e-12);
    assert.equal(p.sketch.zeroCount, alone.sketch.zeroCount);
    assert.equal(p.sketch.count, alone.sketch.count);
    for (const q of [0.01, 0.25, 0.5, 0.9, 0.999]) assert.equal(p.sketch.getValueAtQuantile(q), alone.sketch.getValueAtQuantile(q));
  }
});

test('devices - latest value by event time: a late reading never replaces a newer one', () => {
  const st = new LiveState({ maxSeries: 100, maxDevices: 100, alarmRulesFile: null });
  st.durable(batch('d1', 1, [['temperature', 20, 2000], ['temperature', 25, 3000], ['humidity', 50, 3000]]));
  st.durable(batch('d1', 2, [['temperature', 99, 1000]])); // late
  const d = st.devices.devices.get('d1')!;
  assert.equal(d.values[d.metricIndex('temperature')], 25);
  assert.equal(d.times[d.metricIndex('temperature')], 3000);
  st.durable(batch('d1', 3, [['temperature', 30, 4000]]));
  assert.equal(d.values[d.metricIndex('temperature')], 30);
  assert.equal(d.values[d.metricIndex('humidity')], 50);
  assert.equal(d.metricIndex('pressure'), -1);
  assert.deepEqual(d.metrics, ['temperature', 'humidity'], 'one row per metric, in first-seen order');
});

test('devices - presence explains itself: online, offline with the close reason, flapping, stale', () => {
  let now = 1_000_000;
  const tr = new DeviceTracker({ maxDevices: 10 });
  tr.opened('d1', {}, now, 'fw/1', '127.0.0.1');
  assert.equal(tr.devices.get('d1')!.presence, Presence.ONLINE);
  const expect: [number, boolean, RegExp][] = [
    [1000, false, /clean close/], [1006, false, /keepalive timeout/], [1013, true, /backpressure close: storage full/],
    [4004, true, /backpressure close/], [4008, true, /auth: registration revoked/], [1001, true, /hub shutting down/],
  ];
  for (const [code, byHub, re] of expect) assert.match(closeExplanation(code, byHub), re);

  tr.closed('d1', 1000, false, ++now);
  const d = tr.devices.get('d1')!;
  assert.equal(d.presence, Presence.OFFLINE);
  assert.equal(d.reason, 'clean close (1000)');
  assert.equal(d.since, now);
  // A replaced session is not a disconnect.
  tr.opened('d1', {}, ++now, 'fw/1', 'a');
  tr.closed('d1', 4002, true, ++now);
  assert.equal(d.disconnects.length, 1);
  // Third disconnect within 5 min: flapping on the next connect.
  tr.opened('d1', {}, ++now, 'fw/1', 'a');
  tr.closed('d1', 1006, false, ++now);
  tr.opened('d1', {}, ++now, 'fw/1', 'a');
  tr.closed('d1', 1006, false, ++now);
  tr.opened('d1', {}, ++now, 'fw/1', 'a');
  assert.equal(d.presence, Presence.FLAPPING);
  assert.match(d.reason, /3 disconnects in 5 min/);
  const history = d.history();
  assert.ok(history.length === 7 && history.every((h, i) => i === 0 || h.timeMs >= history[i - 1]!.timeMs));
  assert.deepEqual(history.at(-1), { presence: d.presence, timeMs: d.since, reason: d.reason }, 'the current presence ends the history');
  // Calms down after 5 quiet minutes.
  now += 5 * 60_000 + 1;
  d.lastSeen = now;
  tr.sweep(now);
  assert.equal(d.presence, Presence.ONLINE);

  // Stale: learned cadence of 1 s, then silence.
  const e = tr.get('d2')!;
  tr.opened('d2', {}, now, 'fw', 'a');
  for (let i = 0; i < 10; i++) e.sawBatch((now += 1000));
  assert.equal(e.learnedCadenceMs, 1000);
  tr.sweep(now + 5_000);
  assert.equal(e.presence, Presence.ONLINE, '5 s is within max(3 x 1 s, 1 s + 5 s)');
  tr.sweep(now + 6_500);
  assert.equal(e.presence, Presence.STALE);
  assert.match(e.reason, /silent for 6\.5 s \(usually every 1\.0 s\)/);
  e.sawBatch(now + 7_000);
  tr.sweep(now + 7_000);
  assert.equal(e.presence, Presence.ONLINE);
  assert.equal(e.reason, 'reporting again');
});

test('devices - connection history: none before any change, then the last HISTORY changes with the current presence last', () => {
  const tr = new DeviceTracker({ maxDevices: 10 });
  const d = tr.get('d1')!;
  assert.deepEqual(d.history(), [], 'the state the hub started with is not a change');
  let now = 1000;
  tr.opened('d1', {}, now, 'fw', 'a');
  assert.deepEqual(d.history(), [{ presence: Presence.ONLINE, timeMs: now, reason: 'connected' }]);
  for (let i = 0; i < 3 * HISTORY; i++) {
    tr.closed('d1', 1000, false, ++now);
    tr.opened('d1', {}, ++now, 'fw', 'a');
  }
  const history = d.history();
  assert.equal(history.length, HISTORY);
  assert.deepEqual(history.at(-1), { presence: d.presence, timeMs: now, reason: d.reason });
  assert.ok(history.every((h, i) => i === 0 || h.timeMs === history[i - 1]!.timeMs + 1), 'the newest HISTORY, in order, none lost in between');
});

test('alarms - rules are validated; a rule fires after its duration, per device in its group, and clears', async () => {
  for (const [bad, re] of [
    [{}, /name/], [{ name: 'x', metric: 'bad metric!' }, /metric/], [{ name: 'x', metric: 'm', op: '==' }, /op/],
    [{ name: 'x', metric: 'm', op: '>', threshold: 'hot' }, /threshold/], [{ name: 'x', metric: 'm', op: '>', threshold: 1, forS: -1 }, /forS/],
    [{ name: 'x', metric: 'm', op: '>', threshold: 1, group: 'no-equals' }, /group/],
  ] as const) assert.throws(() => parseRule(bad), re);

  const dir = mkdtempSync(join(tmpdir(), 'alarms-'));
  const file = join(dir, 'rules.json');
  const now0 = Date.now();
  let clock = now0;
  const st = new LiveState({ maxSeries: 100, maxDevices: 100, alarmRulesFile: file, now: () => clock });
  const rule = await st.alarms.add({ name: 'Hot north', metric: 'temperature', group: 'site=north', op: '>', threshold: 80, forS: 2 });
  assert.deepEqual((JSON.parse(readFileSync(file, 'utf8')) as { rules: { metric: string }[] }).rules[0]!.metric, 'temperature');
  assert.equal(new Alarms(file).rules[0]!.id, rule.id, 'rules survive a restart');

  st.durable(batch('n1', 1, [['temperature', 85, now0]], { site: 'north' }));
  st.durable(batch('s1', 1, [['temperature', 95, now0]], { site: 'south' }));
  clock = now0 + 1000;
  st.advance(); // tick 1 evaluates the rules
  assert.equal(st.alarms.active.size, 0, 'not yet: 2 s duration');
  clock = now0 + 2000;
  st.advance();
  assert.equal(st.alarms.active.size, 1);
  const a = [...st.alarms.active.values()][0]!;
  assert.equal(a.device, 'n1', 'the south device is outside the group');
  assert.equal(a.condition, 'temperature > 80 for 2 s in site=north');
  assert.equal(a.sinceMs, now0);
  st.durable(batch('n1', 2, [['temperature', 70, now0 + 2500]], { site: 'north' }));
  clock = now0 + 3000;
  st.advance();
  assert.equal(st.alarms.active.size, 0);
  assert.equal(st.alarms.recent.length, 1);
  assert.equal(st.alarms.recent[0]!.untilMs, now0 + 3000);
  assert.ok(await st.alarms.remove(rule.id));
  assert.equal(await st.alarms.remove(rule.id), false);
});

test('alarms - a rule that cannot be saved is not in force; at most MAX_RULES rules', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'alarms-'));
  const file = join(dir, 'rules.json');
  const a = new Alarms(file);
  const kept = await a.add({ name: 'kept', metric: 'temperature', op: '>', threshold: 1 });
  // The rules file becomes a directory: the next save fails.
  rmSync(file);
  mkdirSync(file);
  await assert.rejects(a.add({ name: 'lost', metric: 'temperature', op: '>', threshold: 2 }));
  assert.deepEqual(a.rules.map((r) => r.name), ['kept']);
  await assert.rejects(a.remove(kept.id));
  assert.deepEqual(a.rules.map((r) => r.name), ['kept'], 'a failed delete leaves the rule in force too');

  const mem = new Alarms(null);
  for (let i = 0; i < MAX_RULES; i++) await mem.add({ name: `r${i}`, metric: 'm', op: '<', threshold: i });
  await assert.rejects(mem.add({ name: 'one more', metric: 'm', op: '<', threshold: 0 }), new RegExp(`at most ${MAX_RULES} rules`));
});

test('live state - memory is bounded: 20,000 devices x 4 metrics, series capped', (t) => {
  if (!global.gc) t.diagnostic('run with --expose-gc for a steadier figure');
  const st = new LiveState({ maxSeries: 40, maxDevices: 15_000, alarmRulesFile: null });
  const metrics = ['temperature', 'humidity', 'pressure', 'battery'];
  global.gc?.();
  const before = process.memoryUsage().heapUsed;
  const now = Date.now();
  for (let i = 0; i < 20_000; i++) {
    const tags = { site: `site-${i % 50}`, model: `m${i % 3}` };
    st.sessionOpened(`dev-${i}`, tags, 'sim/1', '127.0.0.1');
    st.durable(batch(`dev-${i}`, 1, metrics.map((m, k) => [m, i + k, now] as [string, number, number]), tags));
  }
  st.advance();
  global.gc?.();
  const used = process.memoryUsage().heapUsed - before;
  assert.equal(st.devices.devices.size, 15_000, 'devices past HUB_LIVE_MAX_DEVICES are not tracked');
  assert.equal(st.devices.refused, 10_000, 'counted instead (each of them twice: open and batch)');
  assert.equal(st.seriesCount, 40, 'series past HUB_LIVE_MAX_SERIES are not created');
  assert.ok(st.seriesRefused > 0);
  assert.equal(st.health.seriesRefused, st.seriesRefused, 'and the dashboard is told');
  const perDevice = (used - 40 * 10_000) / 15_000;
  t.diagnostic(`heap: ${(used / 1048576).toFixed(1)} MiB for 15,000 devices x 4 metrics + 40 series: ~${Math.round(perDevice)} B per device`);
  assert.ok(perDevice < 4096, `~${Math.round(perDevice)} B per device`);
});

test('live state - health counts the device connections ingest reports and the dashboards the endpoint reports, as of the last tick', () => {
  const st = new LiveState({ maxSeries: 10, maxDevices: 10, alarmRulesFile: null });
  st.connectionCount(3);
  st.setDashboardCount(2);
  assert.equal(st.health.connections, undefined, 'health is computed by the tick');
  st.advance();
  assert.equal(st.health.connections, 3);
  assert.equal(st.health.dashboards, 2);
  st.connectionCount(2);
  st.connectionCount(0);
  st.advance();
  assert.equal(st.health.connections, 0, 'the latest count wins');
});

test('live state - reads: devices changed after a tick, one device by id, ids removed after a tick, a scope by name', () => {
  let known: [string, Record<string, string>][] = [['r1', { site: 'north' }], ['r2', { site: 'south' }]];
  const st = new LiveState({ maxSeries: 10, maxDevices: 10, alarmRulesFile: null, knownDevices: () => known });
  const changed = (since: number): string[] => {
    const ids: string[] = [];
    st.forEachDeviceChangedSince(since, (d) => ids.push(d.id));
    return ids;
  };
  st.advance(); // tick 1
  assert.deepEqual(changed(-1), ['r1', 'r2'], '-1: every device');
  st.durable(batch('r2', 1, [['temperature', 20, 1000]], { site: 'south' }));
  st.advance(); // tick 2: r2's batch is stamped 2
  assert.deepEqual(changed(1), ['r2']);
  assert.deepEqual(changed(2), []);
  assert.equal(st.device('r2')!.values[0], 20);
  assert.equal(st.device('nobody'), undefined, 'a lookup does not start tracking');
  assert.equal(st.devices.devices.size, 2);
  known = [['r2', { site: 'south' }]];
  st.syncRegistry(); // stamped 3
  st.advance();
  assert.deepEqual(st.removedDeviceIdsSince(2), ['r1']);
  assert.deepEqual(st.removedDeviceIdsSince(3), []);
  assert.equal(st.device('r1'), undefined);
  assert.equal(st.scope('group:site=south')!.total, 1);
  assert.equal(st.scope('group:site=nowhere'), undefined);
  assert.equal(st.scopes.get('fleet')!.series.get('temperature')!.unit, 'u');
});
