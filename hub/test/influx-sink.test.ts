// The InfluxDB sink against a real influxd (1.6.7 behind the test-only
// /api/v2/write adapter): every reading lands exactly once with its tags and
// timestamp, an outage loses nothing, and a data error dead-letters exactly
// the offending lines.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../src/log.ts';
import { HubMetrics } from '../src/metrics.ts';
import { InfluxSink } from '../src/sinks/influx/influx-sink.ts';
import { batchToLines, tagSet } from '../src/sinks/influx/lines.ts';
import { Spool } from '../src/spool/spool.ts';
import type { AcceptedBatch } from '../src/spool/store.ts';
import { Influxd, startV2WriteAdapter } from './influxd.ts';

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);

function batch(deviceId: string, seq: number, opts: { metric?: string; n?: number; corrected?: boolean } = {}): AcceptedBatch {
  const n = opts.n ?? 10;
  const times = Float64Array.from({ length: n }, (_, i) => T0 + seq * 1000 + i * 50);
  return {
    deviceId, seq, tags: { site: 'north side', model: 'th-2' }, receivedAtMs: T0, clockOffsetMs: 0,
    metricNames: [opts.metric ?? 'temperature', 'humidity'], metricUnits: ['degC', '%'],
    metricIndex: Uint16Array.from({ length: n }, (_, i) => i % 2),
    timesMs: times,
    deviceTimesMs: opts.corrected ? times.map((t) => t + 3_600_000) : null,
    values: Float64Array.from({ length: n }, (_, i) => seq + i / 4),
  };
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function setup(t: TestContext, opts: { batchLines?: number; maxBytes?: number } = {}) {
  const cleanup: (() => Promise<unknown>)[] = [];
  // One hook, newest first: the sink and spool close before their dir goes.
  t.after(async () => { for (const f of cleanup.reverse()) await f(); });
  const influx = await Influxd.start('telemetry');
  cleanup.push(() => influx.destroy());
  const adapter = await startV2WriteAdapter(() => influx.url);
  cleanup.push(() => adapter.close());
  const dir = await mkdtemp(join(tmpdir(), 'sink-test-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const log = createLogger('silent');
  const spool = await Spool.open({ dir: join(dir, 'spool'), maxBytes: opts.maxBytes ?? 64 << 20, segmentBytes: 256 << 10, commitDelayMs: 2, mode: 'sink', log });
  const metrics = new HubMetrics();
  const sink = new InfluxSink({
    url: adapter.url, token: 'test-token', org: 'test-org', bucket: 'telemetry', spool, log, metrics,
    deadLetterFile: join(dir, 'dead-letter.ndjson'), batchLines: opts.batchLines ?? 500, backoffBaseMs: 50, backoffCapMs: 500,
  });
  sink.start();
  cleanup.push(async () => { await sink.close(Date.now() + 2000); await spool.close(); });
  const count = async (measurement = 'temperature') => {
    const s = await influx.query(`SELECT count("value") FROM "${measurement}"`, 'telemetry');
    return Number(s[0]?.values[0]?.[1] ?? 0);
  };
  return { influx, adapter, spool, sink, metrics, dir, count };
}

test('influx lines - schema and escaping', () => {
  const out: string[] = [];
  batchToLines({ ...batch('dev 1,x', 1, { n: 2, metric: 'temp,c' }), tags: { 'site': 'a=b c', device: 'spoof', empty: '' } }, out);
  assert.deepEqual(out, [
    `temp\\,c,device=dev\\ 1\\,x,site=a\\=b\\ c,unit=degC value=1 ${T0 + 1000}`,
    `humidity,device=dev\\ 1\\,x,site=a\\=b\\ c,unit=% value=1.25 ${T0 + 1050}`,
  ]);
  const corrected: string[] = [];
  batchToLines(batch('d', 2, { n: 1, corrected: true }), corrected);
  assert.match(corrected[0]!, new RegExp(`value=2,device_time_ms=${T0 + 2000 + 3_600_000}i ${T0 + 2000}$`));
  assert.equal(tagSet('d', { b: '2', a: '1' }), 'device=d,a=1,b=2', 'sorted tag keys');
});

test('influx sink - every reading lands once, with tags, fields and timestamps; replays are idempotent', async (t) => {
  const { influx, spool, count } = await setup(t);
  for (let seq = 1; seq <= 40; seq++) await spool.append(batch('dev-1', seq));
  for (let seq = 1; seq <= 20; seq++) await spool.append(batch('dev-2', seq));
  // 60 batches x 10 readings, half temperature.
  await until(async () => (await count()) === 300, 20_000, 'all temperature points');
  assert.equal(await count('humidity'), 300);
  const rows = await influx.query(`SELECT "value", "site", "model", "unit" FROM "temperature" WHERE "device" = 'dev-1' ORDER BY time ASC LIMIT 2`, 'telemetry');
  assert.deepEqual(rows[0]!.columns, ['time', 'value', 'site', 'model', 'unit']);
  assert.deepEqual(rows[0]!.values[0], [T0 + 1000, 1, 'north side', 'th-2', 'degC']);
  assert.deepEqual(rows[0]!.values[1], [T0 + 1100, 1.5, 'north side', 'th-2', 'degC']);
  await until(() => spool.pressure() === 0, 5000, 'checkpoint at the head');
  // Replaying the same batches (a crash before the checkpoint was persisted) rewrites, never duplicates.
  const again = batch('dev-1', 1);
  const lines: string[] = [];
  batchToLines(again, lines);
  const res = await fetch(`${influx.url}/write?db=telemetry&precision=ms`, { method: 'POST', body: lines.join('\n') });
  assert.equal(res.status, 204);
  assert.equal(await count(), 300);
});

test('influx sink - InfluxDB down mid-stream: data waits in the spool, nothing is committed, then it all lands', async (t) => {
  const { influx, spool, sink, metrics, count } = await setup(t);
  for (let seq = 1; seq <= 10; seq++) await spool.append(batch('dev-1', seq));
  await until(async () => (await count()) === 50, 20_000, 'first points');
  await influx.stop();
  for (let seq = 11; seq <= 60; seq++) await spool.append(batch('dev-1', seq));
  await until(() => sink.status().state === 'retrying', 10_000, 'sink retrying');
  const cp = spool.checkpoint;
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(spool.checkpoint, cp, 'nothing committed while InfluxDB is down');
  assert.ok(spool.pressure() > 0, 'the backlog is in the spool');
  assert.ok((await metrics.value('hub_sink_errors_total', { kind: 'retry' })) >= 1);
  await influx.run();
  await until(async () => (await count()) === 300, 30_000, 'backlog drained');
  await until(() => spool.pressure() === 0, 5000, 'checkpoint caught up');
  assert.equal(sink.status().state, 'ok');
});

test('influx sink - a field type conflict dead-letters exactly the offending lines; the rest lands', async (t) => {
  const { influx, spool, sink, dir, count } = await setup(t, { batchLines: 100 });
  // "pressure" already holds strings: floats for it are a type conflict.
  const seed = await fetch(`${influx.url}/write?db=telemetry&precision=ms`, { method: 'POST', body: `pressure,device=seed value="text" ${T0}` });
  assert.equal(seed.status, 204);
  for (let seq = 1; seq <= 10; seq++) await spool.append(batch('dev-1', seq, { metric: seq === 4 ? 'pressure' : 'temperature' }));
  await until(() => sink.status().linesDeadLettered === 5, 20_000, 'dead letters');
  await until(async () => (await count()) === 45, 20_000, 'good lines');
  assert.equal(await count('humidity'), 50);
  const dead = (await readFile(join(dir, 'dead-letter.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { status: number; reason: string; line: string });
  assert.equal(dead.length, 5);
  for (const d of dead) {
    assert.equal(d.status, 400);
    assert.match(d.line, /^pressure,device=dev-1,/);
    assert.match(d.reason, /field type conflict/);
  }
  await until(() => spool.pressure() === 0, 5000, 'checkpoint past the bad lines');
});

test('influx sink - after a restart with everything committed, shipping resumes (no spin on an empty segment tail)', async (t) => {
  const { influx, adapter, spool, sink, dir, count } = await setup(t);
  for (let seq = 1; seq <= 5; seq++) await spool.append(batch('dev-1', seq));
  await until(async () => (await count()) === 25, 20_000, 'first points');
  await until(() => spool.pressure() === 0, 5000, 'all committed');
  await sink.close(Date.now() + 2000);
  await spool.close();
  const log = createLogger('silent');
  const spool2 = await Spool.open({ dir: join(dir, 'spool'), maxBytes: 64 << 20, segmentBytes: 256 << 10, commitDelayMs: 2, mode: 'sink', log });
  const sink2 = new InfluxSink({ url: adapter.url, token: 't', org: 'o', bucket: 'telemetry', spool: spool2, log, metrics: new HubMetrics(), deadLetterFile: join(dir, 'dl.ndjson'), backoffBaseMs: 50 });
  sink2.start();
  // The event loop must stay free: a timer fires on time while the sink idles.
  const lag = await new Promise<number>((r) => { const at = Date.now(); setTimeout(() => r(Date.now() - at), 100); });
  assert.ok(lag < 1000, `event loop starved for ${lag} ms`);
  for (let seq = 6; seq <= 10; seq++) await spool2.append(batch('dev-1', seq));
  await until(async () => (await count()) === 50, 20_000, 'points after the restart');
  await sink2.close(Date.now() + 1000);
  await spool2.close();
  void influx;
  void t;
});
