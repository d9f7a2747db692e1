// GET /api/v1/history: validation (400 with a message, no injection), and
// downsampled series from a real influxd via InfluxQL on /query.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { influxQL, parseHistoryQuery, InfluxHistory } from '../src/http/history.ts';
import { MemoryHistory } from '../src/live/rollups.ts';
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
  const h = new MemoryHistory({ maxSeries: 7 });
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
  // Bounded: fleet + 2 devices + 2 groups = 5 series for one metric; a second metric would need 3 more.
  h.record({ ...mk('a', 'north', 4, [1], t0), metricNames: ['humidity'] });
  assert.ok(h.seriesCount <= 7);
  assert.ok(h.refused > 0);
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
