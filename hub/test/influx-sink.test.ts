// The InfluxDB sink against a real influxd (1.6.7 behind the test-only
// /api/v2/write adapter): every reading lands exactly once with its tags and
// timestamp, an outage loses nothing and ends as soon as InfluxDB answers
// again, and a data error dead-letters exactly the offending lines, cheaply.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { DeviceRegistry, generateToken, hashToken } from '../src/auth/registry.ts';
import { MetricNames, MetricTable, defineMetrics } from '../src/ingest/validate.ts';
import { createLogger } from '../src/core/log.ts';
import { HubMetrics } from '../src/core/metrics.ts';
import { InfluxSink, type InfluxSinkOptions } from '../src/sinks/influx/influx-sink.ts';
import { batchToLines } from '../src/sinks/influx/lines.ts';
import { comparePos, type Position, type SpoolReader } from '../src/spool/reader.ts';
import { Spool } from '../src/spool/spool.ts';
import { T0, batch } from './influx-batches.ts';
import { Influxd, startV2WriteAdapter } from './influxd.ts';
import { until } from '../../test/support/wait.ts';

/** until()'s pause here: most conditions query InfluxDB. */
const POLL_MS = 50;

/** A logger whose JSON lines are kept for inspection. */
function capturingLogger(level: string) {
  const records: { msg: string; kind?: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) records.push(JSON.parse(l) as { msg: string });
      cb();
    },
  });
  return { log: createLogger(level, stream), records };
}

interface SetupOpts { batchLines?: number; maxBytes?: number; start?: boolean; sink?: Partial<InfluxSinkOptions> }

async function setup(t: TestContext, opts: SetupOpts = {}) {
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
  const sinkOptions: InfluxSinkOptions = {
    url: adapter.url, token: 'test-token', org: 'test-org', bucket: 'telemetry', spool, log, metrics,
    deadLetterFile: join(dir, 'dead-letter.ndjson'), batchLines: opts.batchLines ?? 500, backoffBaseMs: 50, backoffCapMs: 500, probeIntervalMs: 200,
    ...opts.sink,
  };
  const sink = new InfluxSink(sinkOptions);
  if (opts.start !== false) sink.start();
  cleanup.push(async () => { await sink.close(Date.now() + 2000); await spool.close(); });
  const count = async (measurement = 'temperature') => {
    const s = await influx.query(`SELECT count("value") FROM "${measurement}"`, 'telemetry');
    return Number(s[0]?.values[0]?.[1] ?? 0);
  };
  const deadLetters = async () => {
    const path = join(dir, 'dead-letter.ndjson');
    if (!existsSync(path)) return [];
    return (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { status: number | null; reason: string; line: string });
  };
  return { influx, adapter, spool, sink, sinkOptions, metrics, dir, count, deadLetters };
}

// ---- against InfluxDB -----------------------------------------------------------

/** Units and tag values the hub accepts that line protocol treats specially, or that a careless escaper alters. */
function hostileUnits(): string[] {
  const limits = { maxBatchReadings: 10_000, maxMetricsPerSession: 10, maxMetricNameBytes: 64, maxMetricsPerDevice: 10, maxFutureSkewMs: 1, maxPastSkewMs: 1, skewPolicy: 'drop' as const };
  // Ingest's own rule decides which units are in play.
  const accepted = (unit: string) => defineMetrics(new MetricTable(), [{ id: 1, name: 'm', unit }], limits, new Set(), new MetricNames(10)) === null;
  const candidates: string[] = [];
  for (let c = 0x00; c <= 0xff; c++) candidates.push(String.fromCharCode(c));
  // Every Unicode space and separator (\s matches them; InfluxDB does not separate on them).
  for (let c = 0x100; c <= 0xffff; c++) if (/[\s\p{Z}]/u.test(String.fromCharCode(c))) candidates.push(String.fromCharCode(c));
  // A stride through the BMP (no surrogates), and characters outside it.
  for (let c = 0x100; c <= 0xffff; c += 251) if (c < 0xd800 || c > 0xdfff) candidates.push(String.fromCharCode(c));
  candidates.push('\u200d', '\u200f', '\ufeff', '\ufffd', '\uffff', '🛰', '👩‍🚀', '\u{10ffff}', 'e\u0301');
  const chars = candidates.filter(accepted);
  assert.ok(chars.length > 200);
  const units: string[] = [];
  // Alone, leading, trailing, doubled; then packed into 16-byte units.
  for (const ch of chars.filter((c) => /[,= "'#]/.test(c))) units.push(ch, `${ch}x`, `x${ch}`, `${ch}${ch}`);
  let cur = '';
  for (const ch of chars) {
    if (Buffer.byteLength(cur + ch) > 16) { units.push(cur); cur = ''; }
    cur += ch;
  }
  if (cur) units.push(cur);
  const distinct = [...new Set(units)];
  for (const u of distinct) assert.ok(accepted(u), JSON.stringify(u));
  return distinct;
}

const HOSTILE_TAG_VALUES = [
  'a,b', 'a=b', 'a b', ' lead', 'trail ', ' ', '=', ',', '==,, ', "'single'", '"double"', '#hash', '# comment?',
  'nbsp\u00a0here', 'ideographic\u3000space', 'thin\u2009space', 'line\u2028sep', '\ufeffbom', 'emoji 🛰️👩‍🚀', '中文 名称', 'עברית\u200f', 'e\u0301',
  'key=value,other=x', 'value=1 1000', 'ü'.repeat(128),
];

test('influx sink - hostile but accepted units, tag values, device ids and metric names round-trip exactly through InfluxDB', async (t) => {
  const { influx, spool, sink, count, deadLetters } = await setup(t, { batchLines: 1000 });
  const units = hostileUnits();
  // Device ids and metric names: the hub's own rules, at their edges.
  const devices = ['d.e:v-1_x', '9lives', 'a'.repeat(128)];
  const metric = 'a.b:c-d_e9';
  const expected = new Set<string>();
  const series = (name: string, tags: Record<string, string>) => JSON.stringify([name, Object.fromEntries(Object.entries(tags).sort())]);
  // Registry tags: what the registry accepts is what must round-trip.
  const registryFile = { version: 1 as const, devices: {} as Record<string, { tokenHash: string; tags: Record<string, string> }> };
  HOSTILE_TAG_VALUES.forEach((v, i) => { registryFile.devices[`tag-dev-${i}`] = { tokenHash: hashToken(generateToken('x')), tags: { site: v, zone: HOSTILE_TAG_VALUES[(i + 7) % HOSTILE_TAG_VALUES.length]! } }; });
  const registry = new DeviceRegistry(registryFile);
  let seq = 0;
  for (const [id, tags] of registry.entries()) {
    await spool.append({ ...batch(id, ++seq, { n: 2, metric: 'tagged', tags, units: ['', ''] }) });
    expected.add(series('tagged', { device: id, site: tags.site!, zone: tags.zone! }));
    expected.add(series('humidity', { device: id, site: tags.site!, zone: tags.zone! }));
  }
  for (let i = 0; i < units.length; i++) {
    await spool.append(batch(devices[i % devices.length]!, ++seq, { n: 2, metric, tags: { site: 's' }, units: [units[i]!, units[(i + 1) % units.length]!] }));
    expected.add(series(metric, { device: devices[i % devices.length]!, site: 's', unit: units[i]! }));
    expected.add(series('humidity', { device: devices[i % devices.length]!, site: 's', unit: units[(i + 1) % units.length]! }));
  }
  const readings = seq * 2;
  await until(async () => (await count(metric)) + (await count('humidity')) + (await count('tagged')) === readings, 30_000, `all ${readings} readings`, POLL_MS);
  assert.equal(sink.status().linesDeadLettered, 0);
  assert.deepEqual(await deadLetters(), []);
  // GROUP BY * gives every series with its exact tags ("" for a key the series lacks).
  const got = new Set<string>();
  for (const s of await influx.query('SELECT count("value") FROM /.*/ GROUP BY *', 'telemetry')) {
    got.add(series(s.name, Object.fromEntries(Object.entries(s.tags ?? {}).filter(([, v]) => v !== ''))));
  }
  const missing = [...expected].filter((x) => !got.has(x));
  const extra = [...got].filter((x) => !expected.has(x));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] });
  const shown = await influx.query(`SHOW TAG VALUES FROM "${metric}" WITH KEY = "unit"`, 'telemetry');
  assert.deepEqual(new Set(shown[0]!.values.map((v) => v[1])), new Set(units));
});

test('influx sink - shipping the same spool records again (a second sink from the old checkpoint) changes no count and no value', async (t) => {
  const { influx, adapter, spool, sink, sinkOptions, count } = await setup(t);
  // Built now, so its cursor is the checkpoint before anything was shipped:
  // what a hub that crashed before persisting the checkpoint restarts from.
  const replay = new InfluxSink({ ...sinkOptions, metrics: new HubMetrics() });
  for (let seq = 1; seq <= 40; seq++) await spool.append(batch('dev-1', seq, { corrected: seq % 3 === 0 }));
  for (let seq = 1; seq <= 20; seq++) await spool.append(batch('dev-2', seq));
  // 60 batches x 10 readings, half temperature.
  await until(async () => (await count()) === 300, 20_000, 'all temperature points', POLL_MS);
  assert.equal(await count('humidity'), 300);
  const rows = await influx.query(`SELECT "value", "site", "model", "unit" FROM "temperature" WHERE "device" = 'dev-1' ORDER BY time ASC LIMIT 2`, 'telemetry');
  assert.deepEqual(rows[0]!.columns, ['time', 'value', 'site', 'model', 'unit']);
  assert.deepEqual(rows[0]!.values[0], [T0 + 1000, 1, 'north side', 'th-2', 'degC']);
  assert.deepEqual(rows[0]!.values[1], [T0 + 1100, 1.5, 'north side', 'th-2', 'degC']);
  await until(() => spool.pressure() === 0, 5000, 'checkpoint at the head', POLL_MS);
  const everything = 'SELECT * FROM /.*/ GROUP BY * ORDER BY time ASC';
  const before = await influx.query(everything, 'telemetry');
  await sink.close(Date.now() + 2000);
  const requests = adapter.requests;
  replay.start();
  try {
    await until(() => replay.status().linesWritten === 600, 20_000, 'the replaying sink shipped every line again', POLL_MS);
  } finally {
    await replay.close(Date.now() + 1000);
  }
  assert.ok(adapter.requests > requests, 'the replay reached InfluxDB');
  assert.equal(await count(), 300);
  assert.equal(await count('humidity'), 300);
  assert.deepEqual(await influx.query(everything, 'telemetry'), before, 'every point, tag and field unchanged');
});

test('influx sink - InfluxDB down mid-stream: data waits in the spool, nothing is committed, then it all lands', async (t) => {
  const { influx, spool, sink, metrics, count } = await setup(t);
  for (let seq = 1; seq <= 10; seq++) await spool.append(batch('dev-1', seq));
  await until(async () => (await count()) === 50, 20_000, 'first points', POLL_MS);
  await influx.stop();
  for (let seq = 11; seq <= 60; seq++) await spool.append(batch('dev-1', seq));
  await until(() => sink.status().state === 'retrying', 10_000, 'sink retrying', POLL_MS);
  const cp = spool.checkpoint;
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(spool.checkpoint, cp, 'nothing committed while InfluxDB is down');
  assert.ok(spool.pressure() > 0, 'the backlog is in the spool');
  assert.ok((await metrics.value('hub_sink_errors_total', { kind: 'retry' })) >= 1);
  await influx.run();
  await until(async () => (await count()) === 300, 30_000, 'backlog drained', POLL_MS);
  await until(() => spool.pressure() === 0, 5000, 'checkpoint caught up', POLL_MS);
  assert.equal(sink.status().state, 'ok');
});

test('influx sink - after an outage, writing resumes as soon as /ping answers, not when the (60 s) backoff ends', async (t) => {
  // Every backoff is the full 60 s: only the /ping probe can end it sooner.
  const { influx, adapter, spool, sink, count } = await setup(t, { sink: { backoffBaseMs: 60_000, backoffCapMs: 60_000, random: () => 0.99, probeIntervalMs: 200 } });
  for (let seq = 1; seq <= 5; seq++) await spool.append(batch('dev-1', seq));
  await until(async () => (await count()) === 25, 20_000, 'first points', POLL_MS);
  await influx.stop();
  for (let seq = 6; seq <= 20; seq++) await spool.append(batch('dev-1', seq));
  await until(() => sink.status().state === 'retrying', 10_000, 'sink retrying', POLL_MS);
  const pings = adapter.pings;
  await until(() => adapter.pings >= pings + 2, 10_000, 'the probe finding InfluxDB down', POLL_MS);
  const writes = adapter.requests;
  await influx.run();
  await until(async () => (await count()) === 100, 20_000, 'the backlog landing well before the 59 s backoff would end', POLL_MS);
  assert.ok(adapter.requests > writes);
  assert.equal(sink.status().state, 'ok');
});

/** A stand-in InfluxDB for what influxd 1.6.7 cannot be made to answer (Retry-After, writes failing while /ping works). */
async function fakeInflux(t: TestContext, answer: { write: (n: number) => { status: number; headers?: Record<string, string> }; ping: (n: number) => number }) {
  const log = { writes: [] as number[], pings: 0 };
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url?.startsWith('/ping')) { res.writeHead(answer.ping(log.pings++)).end(); return; }
      log.writes.push(Date.now());
      const a = answer.write(log.writes.length);
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers }).end(a.status >= 400 ? JSON.stringify({ code: 'unavailable', message: 'try later' }) : undefined);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const dir = await mkdtemp(join(tmpdir(), 'sink-fake-'));
  const spool = await Spool.open({ dir: join(dir, 'spool'), maxBytes: 1 << 20, segmentBytes: 64 << 10, commitDelayMs: 2, mode: 'sink', log: createLogger('silent') });
  t.after(async () => { await spool.close(); await rm(dir, { recursive: true, force: true }); });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, log, spool, dir };
}

test('influx sink - Retry-After is honoured (seconds), even when /ping answers sooner', async (t) => {
  // First write: 503 + Retry-After: 2; /ping fails once, then answers. The
  // backoff itself is 59 s: the probe ends it, but not before the 2 s.
  const f = await fakeInflux(t, { write: (n) => n === 1 ? { status: 503, headers: { 'retry-after': '2' } } : { status: 204 }, ping: (n) => n === 0 ? 503 : 204 });
  const sink = new InfluxSink({
    url: f.url, token: 't', org: 'o', bucket: 'b', spool: f.spool, log: createLogger('silent'), metrics: new HubMetrics(),
    deadLetterFile: join(f.dir, 'dl.ndjson'), backoffBaseMs: 60_000, backoffCapMs: 60_000, random: () => 0.99, probeIntervalMs: 100,
  });
  sink.start();
  t.after(() => sink.close(Date.now() + 1000));
  await f.spool.append(batch('dev-1', 1));
  await until(() => sink.status().linesWritten === 10, 10_000, 'the write after Retry-After', POLL_MS);
  assert.equal(f.log.writes.length, 2);
  assert.ok(f.log.pings >= 2, 'the probe saw InfluxDB fail and answer');
  const waited = f.log.writes[1]! - f.log.writes[0]!;
  assert.ok(waited >= 1950, `retried after ${waited} ms, before Retry-After: 2`);
});

test('influx sink - writes failing while /ping answers keep the exponential backoff (the probe ends only outages)', async (t) => {
  const f = await fakeInflux(t, { write: () => ({ status: 500 }), ping: () => 204 });
  const sink = new InfluxSink({
    url: f.url, token: 't', org: 'o', bucket: 'b', spool: f.spool, log: createLogger('silent'), metrics: new HubMetrics(),
    deadLetterFile: join(f.dir, 'dl.ndjson'), backoffBaseMs: 30_000, backoffCapMs: 30_000, random: () => 0.99, probeIntervalMs: 50,
  });
  sink.start();
  t.after(() => sink.close(Date.now()));
  await f.spool.append(batch('dev-1', 1));
  await until(() => f.log.pings >= 6, 10_000, 'several probes while backing off', POLL_MS);
  assert.equal(f.log.writes.length, 1, 'no retry before the 29.7 s backoff ends');
});

test('influx sink - a field type conflict dead-letters exactly the offending lines; the rest lands', async (t) => {
  const { influx, spool, sink, count, deadLetters } = await setup(t, { batchLines: 100 });
  // "pressure" already holds strings: floats for it are a type conflict.
  const seed = await fetch(`${influx.url}/write?db=telemetry&precision=ms`, { method: 'POST', body: `pressure,device=seed value="text" ${T0}` });
  assert.equal(seed.status, 204);
  for (let seq = 1; seq <= 10; seq++) await spool.append(batch('dev-1', seq, { metric: seq === 4 ? 'pressure' : 'temperature' }));
  await until(() => sink.status().linesDeadLettered === 5, 20_000, 'dead letters', POLL_MS);
  await until(async () => (await count()) === 45, 20_000, 'good lines', POLL_MS);
  assert.equal(await count('humidity'), 50);
  const dead = await deadLetters();
  assert.equal(dead.length, 5);
  for (const d of dead) {
    assert.equal(d.status, 400);
    assert.match(d.line, /^pressure,device=dev-1,/);
    assert.match(d.reason, /field type conflict/);
  }
  await until(() => spool.pressure() === 0, 5000, 'checkpoint past the bad lines', POLL_MS);
});

test('influx sink - lines InfluxDB names as unparseable are taken out in one step: 2 requests for a chunk with 3 of them, not a bisection', async (t) => {
  // One chunk: every record fits one read (~40 spool bytes a line of budget).
  const { adapter, spool, sink, count, deadLetters } = await setup(t, { batchLines: 10_000, start: false });
  // A series key over InfluxDB's 64 KiB limit: no registry allows it, but a
  // spool can hold one, and InfluxDB names such a line in its 400.
  const huge = { site: 'x'.repeat(40_000), zone: 'z'.repeat(40_000) };
  let seq = 0;
  for (let i = 0; i < 100; i++) {
    await spool.append(batch('dev-1', ++seq));
    if (i % 40 === 7) await spool.append(batch('dev-poison', seq, { n: 1, tags: huge }));
  }
  sink.start();
  await until(() => spool.pressure() === 0, 20_000, 'the chunk committed', POLL_MS);
  assert.equal(await count(), 500);
  assert.equal(await count('humidity'), 500);
  assert.equal(sink.status().linesDeadLettered, 3);
  assert.equal(adapter.requests, 2, 'one rejected write, one rewrite of the rest');
  const dead = await deadLetters();
  assert.equal(dead.length, 3);
  for (const d of dead) {
    assert.equal(d.status, 400);
    assert.ok(d.line.startsWith(`temperature,device=dev-poison,site=${huge.site},zone=${huge.zone},unit=degC value=`), d.line.slice(0, 80));
    assert.match(d.reason, /max key length exceeded/);
  }
});

test('influx sink - readings the hub cannot write exactly are dead-lettered without a request; the rest lands', async (t) => {
  const { adapter, spool, sink, count, deadLetters } = await setup(t, { start: false });
  // A spool written before ingest refused these units.
  await spool.append(batch('dev-1', 1, { units: ['deg\\', '%'] }));
  await spool.append(batch('dev-1', 2));
  sink.start();
  await until(() => spool.pressure() === 0, 20_000, 'committed', POLL_MS);
  assert.equal(await count(), 5);
  assert.equal(await count('humidity'), 10);
  assert.equal(adapter.requests, 1);
  const dead = await deadLetters();
  assert.equal(dead.length, 5);
  for (const d of dead) {
    assert.equal(d.status, null);
    assert.equal(d.reason, 'not representable in line protocol: unit contains a backslash');
  }
});

test('influx sink - a flood of rejected lines: log lines bounded by HUB_LOG_LINES_PER_MIN, dead letters by HUB_DEAD_LETTER_MAX_BYTES', async (t) => {
  const { log, records } = capturingLogger('info');
  const { spool, sink, metrics, dir, count } = await setup(t, { batchLines: 200, start: false, sink: { log, logLinesPerMinute: 5, deadLetterMaxBytes: 16 << 10 } });
  let seq = 0;
  // 3000 rejected lines: 2700 refused by the hub, 300 by InfluxDB (named in its 400).
  for (let i = 0; i < 150; i++) {
    await spool.append(batch('dev-bad', ++seq, { n: 18, units: ['bad\\', 'bad\\'] }));
    if (i % 3 === 0) await spool.append(batch('dev-huge', seq, { n: 6, tags: { site: 'y'.repeat(40_000), zone: 'z'.repeat(40_000) } }));
    await spool.append(batch('dev-ok', seq, { n: 2 }));
  }
  sink.start();
  // 10-15 s alone on 2 cores; npm test runs two files at once, and beside the soak or a scenario run it has taken over 60 s.
  try {
    await until(() => spool.pressure() === 0, 240_000, 'everything committed', POLL_MS);
  } catch (err) {
    // A stall rather than a slow machine: say where the sink stood.
    (err as Error).message += `; sink status ${JSON.stringify(sink.status())}, spool pressure ${spool.pressure()}`;
    throw err;
  }
  assert.equal(sink.status().linesDeadLettered, 3000);
  assert.equal(await count(), 150);
  const deadLetterLines = records.filter((r) => r.kind === 'dead_letter');
  assert.ok(deadLetterLines.length <= 5, `${deadLetterLines.length} dead-letter log lines`);
  assert.ok((await metrics.value('hub_log_lines_suppressed_total', { kind: 'dead_letter' })) > 0);
  // 3000 records of 200 B to 80 KB: the files rotated and stayed at the cap.
  const current = await stat(join(dir, 'dead-letter.ndjson'));
  const rotated = await stat(join(dir, 'dead-letter.1.ndjson'));
  assert.ok(current.size <= 16 << 10 && rotated.size <= 16 << 10, `${current.size} + ${rotated.size} bytes`);
  assert.equal(current.mode & 0o777, 0o600);
  assert.equal(rotated.mode & 0o777, 0o600);
  assert.ok((await metrics.value('hub_sink_dead_letter_rotations_total')) > 10);
  assert.equal(await metrics.value('hub_sink_dead_letter_bytes'), current.size + rotated.size);
});

test('influx sink - a spool record larger than the read window (a 10,000-reading batch, small HUB_SINK_BATCH_LINES) is shipped, not stalled on', async (t) => {
  const { spool, sink, count } = await setup(t, { batchLines: 10 });
  await spool.append(batch('dev-1', 1, { n: 10_000, corrected: true }));
  await spool.append(batch('dev-2', 1));
  await until(async () => (await count()) === 5005, 20_000, 'the big batch and the one after it', POLL_MS);
  await until(() => spool.pressure() === 0, 5000, 'committed past it', POLL_MS);
  assert.equal(sink.status().linesDeadLettered, 0);
});

test('influx sink - after a restart with everything committed, shipping resumes (no spin on an empty segment tail)', async (t) => {
  const { adapter, spool, sink, dir, count } = await setup(t);
  for (let seq = 1; seq <= 5; seq++) await spool.append(batch('dev-1', seq));
  await until(async () => (await count()) === 25, 20_000, 'first points', POLL_MS);
  await until(() => spool.pressure() === 0, 5000, 'all committed', POLL_MS);
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
  await until(async () => (await count()) === 50, 20_000, 'points after the restart', POLL_MS);
  await sink2.close(Date.now() + 1000);
  await spool2.close();
});

// ---- several writes in flight, the HTTP client -----------------------------------

/** A stand-in /api/v2/write that answers each request when `delayMs(n)` says (n: 1, 2, ... in arrival order), and notes what it confirmed. */
async function slowInflux(t: TestContext, delayMs: (n: number) => number, answer: (n: number) => { status: number; headers?: Record<string, string>; body?: string } = () => ({ status: 204 })) {
  const state = { arrived: 0, inFlight: 0, maxInFlight: 0, connections: 0, confirmed: new Set<string>(), answerOrder: [] as number[], encodings: [] as (string | undefined)[] };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (!req.url?.startsWith('/api/v2/write')) { res.writeHead(204).end(); return; }
      const n = ++state.arrived;
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      state.encodings.push(req.headers['content-encoding']);
      const raw = Buffer.concat(chunks);
      const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8');
      setTimeout(() => {
        state.inFlight--;
        const a = answer(n);
        if (a.status === 204) {
          for (const line of text.split('\n')) if (line) state.confirmed.add(line);
          state.answerOrder.push(n);
        }
        res.writeHead(a.status, a.headers).end(a.body);
      }, delayMs(n));
    });
  });
  server.on('connection', () => { state.connections++; });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const dir = await mkdtemp(join(tmpdir(), 'sink-slow-'));
  const spool = await Spool.open({ dir: join(dir, 'spool'), maxBytes: 16 << 20, segmentBytes: 256 << 10, commitDelayMs: 2, mode: 'sink', log: createLogger('silent') });
  t.after(async () => { await spool.close(); await rm(dir, { recursive: true, force: true }); });
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, state, spool, dir };
}

/** The spool's records from its checkpoint (the test's view), with each one's lines. */
async function recordsWithLines(spool: Spool): Promise<{ end: Position; lines: string[] }[]> {
  const { records } = await spool.readFrom(spool.checkpoint, 1 << 30);
  return records.map((r) => { const out: string[] = []; batchToLines(r.batch, out, []); return { end: r.end, lines: out }; });
}

test('influx sink - several writes in flight, answered out of order: the checkpoint moves only over a prefix InfluxDB confirmed, in order', async (t) => {
  // Requests 1 and 3 are answered late (3 after 1), the others at once: 2
  // and 4.. land first. Nothing may be committed until 1 is confirmed, then
  // only up to 2 until 3 is.
  const f = await slowInflux(t, (n) => (n === 1 ? 500 : n === 3 ? 1000 : 0));
  for (let seq = 1; seq <= 24; seq++) await f.spool.append(batch(`dev-${seq % 3}`, seq, { n: 10 }));
  const records = await recordsWithLines(f.spool);
  assert.equal(records.length, 24);
  // What a commit may cover: every line of every record before it, confirmed.
  const commits: { upTo: Position; unconfirmed: number; confirmedRecords: number }[] = [];
  const reader: SpoolReader = {
    get checkpoint() { return f.spool.checkpoint; },
    get head() { return f.spool.head; },
    readFrom: (from, maxBytes) => f.spool.readFrom(from, maxBytes),
    onDurable: (listener) => f.spool.onDurable(listener),
    commit: (upTo) => {
      const covered = records.filter((r) => comparePos(r.end, upTo) <= 0);
      commits.push({
        upTo,
        unconfirmed: covered.flatMap((r) => r.lines).filter((l) => !f.state.confirmed.has(l)).length,
        confirmedRecords: records.filter((r) => r.lines.every((l) => f.state.confirmed.has(l))).length,
      });
      f.spool.commit(upTo);
    },
  };
  // One record (10 lines) per chunk, 4 requests at once.
  const sink = new InfluxSink({
    url: f.url, token: 't', org: 'o', bucket: 'b', spool: reader, log: createLogger('silent'), metrics: new HubMetrics(),
    deadLetterFile: join(f.dir, 'dl.ndjson'), batchLines: 10, maxInFlight: 4,
  });
  sink.start();
  t.after(() => sink.close(Date.now() + 1000));
  await until(() => comparePos(f.spool.checkpoint, records.at(-1)!.end) === 0, 20_000, 'the checkpoint at the last record', POLL_MS);
  for (let i = 0; i < commits.length; i++) {
    assert.equal(commits[i]!.unconfirmed, 0, `commit ${i} to ${JSON.stringify(commits[i]!.upTo)} covers lines InfluxDB had not confirmed`);
    if (i > 0) assert.ok(comparePos(commits[i - 1]!.upTo, commits[i]!.upTo) < 0, 'commits move forward');
    assert.ok(records.some((r) => comparePos(r.end, commits[i]!.upTo) === 0), 'each commit at a record end');
  }
  assert.equal(f.state.maxInFlight, 4, 'four writes in flight at once');
  assert.ok(f.state.answerOrder.indexOf(2) < f.state.answerOrder.indexOf(1), `answered out of order: ${f.state.answerOrder.join(',')}`);
  assert.ok(f.state.answerOrder.indexOf(1) < f.state.answerOrder.indexOf(3));
  assert.equal(f.state.answerOrder.at(-1), 3, 'request 3 answered last');
  // Records after the first were confirmed before it: nothing was committed
  // until it was, and then the confirmed prefix, up to the gap at record 3.
  assert.ok(commits[0]!.confirmedRecords >= 3, `${commits[0]!.confirmedRecords} records confirmed at the first commit`);
  assert.deepEqual(commits[0]!.upTo, records[1]!.end, 'the first commit: records 1 and 2, not past record 3 (unconfirmed)');
  assert.deepEqual(commits.at(-1)!.upTo, records.at(-1)!.end, 'once record 3 was confirmed: everything');
  assert.equal(f.state.confirmed.size, 240);
  assert.equal(sink.status().linesWritten, 240);
});

test('influx sink - writes go over kept-alive connections (one per write in flight), uncompressed unless gzip is asked for', async (t) => {
  const f = await slowInflux(t, () => 5);
  for (let seq = 1; seq <= 30; seq++) await f.spool.append(batch('dev-1', seq, { n: 10 }));
  const sink = new InfluxSink({
    url: f.url, token: 't', org: 'o', bucket: 'b', spool: f.spool, log: createLogger('silent'), metrics: new HubMetrics(),
    deadLetterFile: join(f.dir, 'dl.ndjson'), batchLines: 10, maxInFlight: 2,
  });
  sink.start();
  t.after(() => sink.close(Date.now() + 1000));
  await until(() => sink.status().linesWritten === 300, 20_000, 'every line', POLL_MS);
  assert.equal(f.state.arrived, 30);
  assert.ok(f.state.connections <= 2, `${f.state.connections} connections for 30 requests`);
  assert.deepEqual(new Set(f.state.encodings), new Set([undefined]));
});

test('influx sink - gzip: large bodies compressed, small ones not; InfluxDB gets every point', async (t) => {
  const { adapter, spool, sink, count } = await setup(t, { batchLines: 2000, sink: { gzip: true } });
  // One large chunk (~2000 lines, > 64 KiB), then a small one.
  for (let seq = 1; seq <= 10; seq++) await spool.append(batch(`dev-${seq}`, 1, { n: 200 }));
  await until(async () => (await count()) === 1000, 20_000, 'the large chunk', POLL_MS);
  await spool.append(batch('dev-11', 1, { n: 2 }));
  await until(async () => (await count()) === 1001, 20_000, 'the small chunk', POLL_MS);
  assert.equal(await count('humidity'), 1001);
  assert.ok(adapter.requests >= 2);
  assert.equal(sink.status().linesDeadLettered, 0);
});

test('influx sink - answers as the client read them: a 2xx other than 204 is retried, an empty 400 gives X-Influxdb-Error as the reason', async (t) => {
  // 1: 200 (not a confirmation: retried), 2: 400 with the reason only in a header (dead-lettered), then 204.
  const f = await slowInflux(t, () => 0, (n) => n === 1 ? { status: 200 } : n === 2 ? { status: 400, headers: { 'x-influxdb-error': 'bad timestamp' } } : { status: 204 });
  await f.spool.append(batch('dev-1', 1, { n: 1 }));
  const sink = new InfluxSink({
    url: `${f.url}/api/v2/`, token: 't', org: 'o', bucket: 'b', spool: f.spool, log: createLogger('silent'), metrics: new HubMetrics(),
    deadLetterFile: join(f.dir, 'dl.ndjson'), backoffBaseMs: 10, backoffCapMs: 10,
  });
  sink.start();
  t.after(() => sink.close(Date.now() + 1000));
  await until(() => sink.status().linesDeadLettered === 1, 10_000, 'the line dead-lettered', POLL_MS);
  assert.equal(f.state.arrived, 2, 'the 200 was retried once');
  const dead = (await readFile(join(f.dir, 'dl.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { status: number; reason: string });
  assert.deepEqual(dead.map((d) => [d.status, d.reason]), [[400, 'HTTP 400: bad timestamp']]);
  await f.spool.append(batch('dev-1', 2, { n: 1 }));
  await until(() => sink.status().linesWritten === 1, 10_000, 'the next line', POLL_MS);
});
