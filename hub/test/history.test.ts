// GET /api/v1/history: validation (400 with a message, no injection), and
// downsampled series from a real influxd via InfluxQL on /query.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parseHistoryQuery } from '../src/http/history.ts';
import { influxQL, InfluxHistory } from '../src/sinks/influx/history.ts';
import { MemoryHistory } from '../src/live/rollups.ts';
import { HubMetrics } from '../src/core/metrics.ts';
import type { AcceptedBatch } from '../src/spool/store.ts';
import { batchOf, connectDevice, signIn, startHub } from './helpers.ts';
import { Influxd } from './influxd.ts';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const q = (s: string) => parseHistoryQuery(new URLSearchParams(s), NOW);

test('history - parameters: defaults, relative times, scopes', () => {
  const a = q('metric=temperature');
  assert.deepEqual(a, { metric: 'temperature', scope: { kind: 'fleet' }, fromMs: NOW - 900_000, toMs: NOW, stepMs: 3000 });
  const b = q('metric=humidity&device=dev-1&from=-1h&to=now&step=1m');
  assert.deepEqual(b.scope, { kind: 'device', id: 'dev-1' });
  assert.equal(b.fromMs, NOW - 3_600_000);
  assert.equal(b.stepMs, 60_000);
  assert.deepEqual(q('metric=t&group=site:north side').scope, { kind: 'group', key: 'site', value: 'north side' });
  assert.equal(q(`metric=t&from=2026-11-25T11:00:00Z&to=${NOW}`).fromMs, NOW - 3_600_000);
});

test('history - bad parameters are refused with a message', () => {
  const bad: [string, RegExp][] = [
    ['', /metric: required/],
    ['metric=a b', /metric/],
    ['metric=t"; DROP DATABASE x', /metric/],
    ['metric=t&device=x\' OR 1=1', /not a device id/],
    ['metric=t&group=site', /tag:value/],
    ['metric=t&group=x"y:1', /tag:value/],
    ['metric=t&device=a&group=site:b', /not both/],
    ['metric=t&from=yesterday', /from=/],
    ['metric=t&from=-1h&to=-2h', /before/],
    ['metric=t&from=-40d', /31 days/],
    ['metric=t&step=10x', /duration/],
    ['metric=t&step=500ms', /at least 1s/],
    ['metric=t&from=-24h&step=1s', /at most 10000 points/],
  ];
  for (const [s, re] of bad) assert.throws(() => q(s), re, s);
});

test('history - InfluxQL quotes and escapes even validated values', () => {
  const sql = influxQL({ metric: 'a.b', scope: { kind: 'group', key: 'site', value: "o'brien \\ x" }, fromMs: 1, toMs: 2, stepMs: 1000 });
  assert.equal(sql, `SELECT count("value"), mean("value"), min("value"), max("value") FROM "a.b" WHERE time >= 1ms AND time < 2ms AND "site" = 'o\\'brien \\\\ x' GROUP BY time(1000ms) fill(none)`);
});

test('history - series from InfluxDB through the hub, per device, group and fleet; 400 and 503 paths', async (t) => {
  const influx = await Influxd.start('telemetry');
  t.after(() => influx.destroy());
  const t0 = Date.now() - 10 * 60_000;
  const lines: string[] = [];
  for (let i = 0; i < 60; i++) {
    lines.push(`temperature,device=dev-1,site=north value=${20 + (i % 10)} ${t0 + i * 1000}`);
    lines.push(`temperature,device=dev-2,site=south value=${30} ${t0 + i * 1000}`);
  }
  assert.equal((await fetch(`${influx.url}/write?db=telemetry&precision=ms`, { method: 'POST', body: lines.join('\n') })).status, 204);
  const th = await startHub(t, { deps: { history: new InfluxHistory({ url: influx.url, token: 'unused-by-1.x', database: 'telemetry' }) } });
  const base = `http://127.0.0.1:${th.port}/api/v1/history`;
  const cookie = await signIn(th);
  const get = async (qs: string) => { const r = await fetch(`${base}?${qs}`, { headers: { cookie } }); return { status: r.status, body: await r.json() as { points: { t: number; count: number; mean: number; min: number; max: number }[]; error?: string; source?: string } }; };
  const from = Math.floor(t0 / 10_000) * 10_000;
  const dev = await get(`metric=temperature&device=dev-1&from=${from}&to=${from + 80_000}&step=10s`);
  assert.equal(dev.status, 200);
  assert.equal(dev.body.source, 'influxdb');
  assert.equal(dev.body.points.reduce((a, p) => a + p.count, 0), 60);
  assert.ok(dev.body.points.every((p) => p.min >= 20 && p.max <= 29));
  const south = await get(`metric=temperature&group=site:south&from=${from}&to=${from + 80_000}&step=1m`);
  assert.ok(south.body.points.every((p) => p.mean === 30));
  const fleet = await get(`metric=temperature&from=${from}&to=${from + 80_000}&step=1h`);
  assert.equal(fleet.body.points.reduce((a, p) => a + p.count, 0), 120);
  const bad = await get(`metric=temperature&device=${encodeURIComponent("x' OR '1'='1")}`);
  assert.equal(bad.status, 400);
  assert.match(bad.body.error ?? '', /not a device id/);

});

test('history (memory) - rollups per fleet, group and device, aligned steps, late data and the series bound', async () => {
  const h = new MemoryHistory({ maxSeries: 4, maxDeviceSeries: 2 });
  const t0 = Math.floor(NOW / 60_000) * 60_000 - 30 * 60_000;
  const mk = (deviceId: string, site: string, seq: number, values: number[], start: number): AcceptedBatch => ({
    deviceId, seq, tags: { site }, receivedAtMs: start, clockOffsetMs: 0, metricNames: ['temperature'], metricUnits: ['degC'],
    metricIndex: new Uint16Array(values.length), timesMs: Float64Array.from(values, (_, i) => start + i * 1000), deviceTimesMs: null, values: Float64Array.from(values),
  });
  h.record(mk('a', 'north', 1, Array.from({ length: 120 }, (_, i) => i), t0)); // 2 min of 1 Hz
  h.record(mk('b', 'south', 1, [100, 200], t0));
  const range = (extra: string) => parseHistoryQuery(new URLSearchParams(`metric=temperature&from=${t0}&to=${t0 + 3_600_000 - 1}${extra}`), t0 + 3_600_000);
  const fleet = await h.query(range('&step=1m'));
  assert.deepEqual(fleet.map((p) => [p.t, p.count, p.min, p.max]), [[t0, 62, 0, 200], [t0 + 60_000, 60, 60, 119]]);
  assert.equal(fleet[1]!.mean, (60 + 119) / 2);
  const dev = await h.query(range('&device=a&step=1m'));
  assert.deepEqual(dev.map((p) => p.count), [60, 60]);
  const south = await h.query(range('&group=site:south&step=10s'));
  assert.deepEqual(south.map((p) => [p.t, p.count, p.mean]), [[t0, 2, 150]]);
  assert.deepEqual(await h.query(range('&device=nobody')), []);
  // Late data older than the ring's window is ignored, not mixed into newer buckets.
  h.record(mk('a', 'north', 2, [5], t0 + 3_600_000 * 2));
  h.record(mk('a', 'north', 3, [999], t0));
  const later = await h.query(parseHistoryQuery(new URLSearchParams(`metric=temperature&device=a&from=${t0}&to=${t0 + 3 * 3_600_000}&step=1h`), t0 + 3 * 3_600_000));
  assert.ok(later.every((p) => p.max !== 999));
  // Bounded: fleet + 2 groups and 2 devices for one metric; a second metric from a gets its fleet series only.
  h.record({ ...mk('a', 'north', 4, [1], t0), metricNames: ['humidity'] });
  assert.deepEqual([h.seriesOf('group'), h.seriesOf('device'), h.refused], [4, 2, 2]);
});

function batchAt(deviceId: string, tags: Record<string, string>, metric: string, t: number): AcceptedBatch {
  return {
    deviceId, seq: 1, tags, receivedAtMs: t, clockOffsetMs: 0, metricNames: [metric], metricUnits: [''],
    metricIndex: new Uint16Array(1), timesMs: Float64Array.of(t), deviceTimesMs: null, values: Float64Array.of(1),
  };
}

test('history (memory) - device series and fleet/group series have separate caps, counted by kind', async () => {
  const metrics = new HubMetrics();
  const h = new MemoryHistory({ maxSeries: 4, maxDeviceSeries: 3, metrics });
  const tags = { site: 'x' };
  // Five devices use up the device series; with one cap for both they would take the room of fleet series.
  for (let i = 0; i < 5; i++) h.record(batchAt(`d${i}`, tags, 'temperature', NOW));
  h.record(batchAt('d4', tags, 'humidity', NOW));
  const range = parseHistoryQuery(new URLSearchParams(`metric=humidity&from=${NOW - 60_000}&to=${NOW + 60_000}&step=1m`), NOW + 60_000);
  assert.equal((await h.query(range)).reduce((n, p) => n + p.count, 0), 1, 'the new metric has its fleet series');
  assert.deepEqual([h.seriesOf('group'), h.seriesOf('device')], [4, 3]);
  assert.equal(await metrics.value('hub_history_series', { kind: 'group' }), 4);
  assert.equal(await metrics.value('hub_history_series', { kind: 'device' }), 3);
  assert.equal(await metrics.value('hub_history_series_refused_total', { kind: 'device' }), 3, 'd3, d4 temperature and d4 humidity');
  assert.equal(await metrics.value('hub_history_series_refused_total', { kind: 'group' }), 0);
  h.record(batchAt('d0', tags, 'pressure', NOW));
  assert.equal(await metrics.value('hub_history_series_refused_total', { kind: 'group' }), 2, 'past HUB_HISTORY_MAX_SERIES: fleet and site=x pressure');
});

/** A full GC without --expose-gc, so memory figures do not depend on how the tests were started. */
function fullGc(): () => void {
  const { gc } = global;
  if (gc) return () => { void gc(); };
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Collects until buffers freed earlier (released off the main thread) are gone, so a figure taken next is only what follows. */
async function settledMemory(gc: () => void): Promise<NodeJS.MemoryUsage> {
  for (let last = -1; ;) {
    gc();
    const m = process.memoryUsage();
    if (m.arrayBuffers === last) return m;
    last = m.arrayBuffers;
    await new Promise((r) => setImmediate(r));
  }
}

test('history (memory) - memory per series is what the rollups header says: 14.4 KB of buckets a fleet/group series, 2.4 KB a device series', async (t) => {
  const gc = fullGc();
  const n = 2000;
  const keep: MemoryHistory[] = [];
  const measure = async (h: MemoryHistory, fill: () => void): Promise<{ heap: number; buffers: number }> => {
    keep.push(h); // nothing is freed while another figure is taken
    const before = await settledMemory(gc);
    fill();
    const after = await settledMemory(gc);
    return { heap: after.heapUsed - before.heapUsed, buffers: after.arrayBuffers - before.arrayBuffers };
  };
  // n fleet series: one device with n metrics (its device series capped at 1).
  const g = new MemoryHistory({ maxSeries: n, maxDeviceSeries: 1 });
  const group = await measure(g, () => { for (let i = 0; i < n; i++) g.record(batchAt('d', {}, `m${i}`, NOW)); });
  // n device series as devices have them, 4 metrics a device (4 fleet series in all).
  const d = new MemoryHistory({ maxSeries: 4, maxDeviceSeries: n });
  const names = ['m0', 'm1', 'm2', 'm3'];
  const device = await measure(d, () => {
    for (let i = 0; i < n / 4; i++) {
      d.record({ ...batchAt(`d${i}`, {}, 'm0', NOW), metricNames: names, metricUnits: ['', '', '', ''], metricIndex: Uint16Array.of(0, 1, 2, 3), timesMs: Float64Array.of(NOW, NOW, NOW, NOW), values: Float64Array.of(1, 2, 3, 4) });
    }
  });
  assert.equal([g.seriesOf('group'), d.seriesOf('device')].join(), `${n},${n}`);
  const groupBuffers = (group.buffers - 2400) / n, deviceBuffers = (device.buffers - 4 * 14_400) / n;
  t.diagnostic(`per series: fleet/group ${groupBuffers} B of buckets + ${Math.round(group.heap / n)} B heap; device ${deviceBuffers} B + ${Math.round(device.heap / n)} B heap (objects, keys, maps, its share of the route)`);
  assert.equal(groupBuffers, 360 * 5 * 8);
  assert.equal(deviceBuffers, 60 * 5 * 8);
  assert.ok(group.heap / n < 1024, `fleet/group series heap ${Math.round(group.heap / n)} B`);
  assert.ok(device.heap / n < 1024, `device series heap ${Math.round(device.heap / n)} B`);
});

test('history (memory) - the hub records durable batches once; resends are not counted twice', async (t) => {
  const rollups = new MemoryHistory();
  const th = await startHub(t, { deps: { history: rollups, onDurable: (b) => rollups.record(b) } });
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1, 5));
  await d.ackFor(1);
  d.batch(batchOf(1, 5)); // a resend
  await d.ackFor(1);
  const r = await fetch(`http://127.0.0.1:${th.port}/api/v1/history?metric=temperature&device=dev-1&from=-5m&step=5m`, { headers: { cookie: await signIn(th) } });
  assert.equal(r.status, 200);
  const body = await r.json() as { source: string; points: { count: number }[] };
  assert.equal(body.source, 'memory');
  assert.equal(body.points.reduce((a, p) => a + p.count, 0), 5);
  d.close();
});
