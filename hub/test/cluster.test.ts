/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-argument -- JSON answers of the API, read as the test expects them (a wrong shape fails the assertion) */
// Cluster mode against a real nats-server (JetStream): hubs built in this
// process, each with its own NATS connection, as separate hubs would be.
// One session per device across hubs (4002 to the older one, Welcome's
// last_seq from the stream), resends stored once whichever hub they reach,
// a device flapping between hubs, NATS down (no acks, 503 with Retry-After,
// /readyz), the stream at its cap (1013), the sink's shared consumer, and a
// dashboard's live state on one hub seeing a device on the other.
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { DEVICE_PATH, CloseCode, FEATURE_CONFIG, FEATURE_INVOKE, PROTOCOL_VERSION } from '@telemetry/proto';
import { Kvm } from '@nats-io/kv';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { buildApp, membersOf, type Hub } from '../src/app.ts';
import { DeviceRegistry, generateToken, hashToken, type RegistryFile } from '../src/auth/registry.ts';
import { Cluster } from '../src/cluster/cluster.ts';
import { ClusterLink, clusterNames } from '../src/cluster/link.ts';
import { Publisher, PublishError } from '../src/cluster/publisher.ts';
import { StreamReader } from '../src/cluster/stream-reader.ts';
import { SEQ_HEADER, StreamStore } from '../src/cluster/stream-store.ts';
import { loadConfig, type HubConfig } from '../src/core/config.ts';
import { LogLimiter, createLogger } from '../src/core/log.ts';
import { Operators } from '../src/auth/operators.ts';
import { SharedState } from '../src/cluster/shared-state.ts';
import { SharedConfigs, configBucket, deviceKey, groupKey } from '../src/cluster/shared-configs.ts';
import { CommandTracker } from '../src/devices/commands.ts';
import { SharedCommands, commandKey, commandsBucket } from '../src/cluster/shared-commands.ts';
import { SharedAudit } from '../src/cluster/shared-audit.ts';
import { AuditLog } from '../src/auth/audit.ts';
import { DeviceConfigs } from '../src/devices/configs.ts';
import { LiveState } from '../src/live/state.ts';
import { HubMetrics } from '../src/core/metrics.ts';
import type { AcceptedBatch } from '../src/core/batch.ts';
import { RawDevice, TEST_OPERATOR, batchOf, signIn, until, within, type SignedInApi, type TestHub } from './helpers.ts';
import { NatsServer } from './nats-server.ts';

const log = createLogger('silent');
let nats: NatsServer;
let streams = 0;

before(async () => { nats = await NatsServer.start({ name: 'cluster-test' }); });
after(async () => { await nats.stop(); });

/** A fleet registry shared by the hubs of one test. */
function fleet(ids: string[]): { registry: RegistryFile; tokens: Map<string, string> } {
  const tokens = new Map<string, string>();
  const registry: RegistryFile = { version: 1, devices: {} };
  for (const id of ids) {
    const token = generateToken(id);
    tokens.set(id, token);
    registry.devices[id] = { tokenHash: hashToken(token), tags: { site: 'test' } };
  }
  return { registry, tokens };
}

interface ClusterHub extends TestHub { cluster: Cluster; config: HubConfig; shared: SharedState; configs: DeviceConfigs; sharedConfigs: SharedConfigs; sharedCommands: SharedCommands; sharedAudit: SharedAudit; audit: AuditLog }

/** Device configuration on the shared bucket, as main.ts wires it. */
async function sharedConfigsOf(link: ClusterLink, config: HubConfig, registry: DeviceRegistry, metrics?: HubMetrics): Promise<{ configs: DeviceConfigs; sharedConfigs: SharedConfigs }> {
  const sharedConfigs = new SharedConfigs({ link, config, log: new LogLimiter(log, { perMinute: 60 }), metrics });
  await sharedConfigs.open();
  const configs = new DeviceConfigs({ membersOf: (k, v) => membersOf(registry, k, v), tagsOf: (id) => registry.get(id)?.tags, persistence: sharedConfigs });
  await sharedConfigs.start(configs);
  return { configs, sharedConfigs };
}

/**
 * A stream name of its own for each test (one server for the file). The
 * streams and KV buckets of the tests before are deleted first (their hubs
 * are closed by then): JetStream reserves each stream's max_bytes (1 GiB by
 * default) against the server's store limit, 75 % of the free disk, so a
 * dozen tests' leftovers would make a small disk refuse the next stream.
 */
async function streamName(): Promise<string> {
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    for await (const s of jsm.streams.list()) {
      if (s.config.name.startsWith(`T${process.pid}x`) || s.config.name.startsWith(`KV_T${process.pid}x`)) await jsm.streams.delete(s.config.name);
    }
  } finally {
    await nc.close();
  }
  return `T${process.pid}x${++streams}`;
}

/** Waits for the WebSocket to open; a refused upgrade fails at once with its status and why. */
async function opened(d: RawDevice, what: string): Promise<void> {
  const refusal = d.refused.then((r) => { throw new Error(`${what}: refused ${r.status} ${r.body.trim()}`); });
  await within(Promise.race([d.opened, refusal]), 3000, what);
}

async function startClusterHub(t: TestContext, o: { hubId: string; stream: string; fleet: ReturnType<typeof fleet>; config?: Partial<HubConfig>; withSink?: boolean; auditFile?: string }): Promise<ClusterHub> {
  const config = loadConfig({}, {
    host: '127.0.0.1', port: 0, logLevel: 'silent', natsUrl: nats.url, natsStream: o.stream, hubId: o.hubId, liveTickMs: 200, ...o.config,
  });
  const metrics = new HubMetrics();
  const cluster = await Cluster.open({ config, log, metrics, withSink: o.withSink ?? false });
  const registry = new DeviceRegistry(o.fleet.registry);
  const operators = new Operators({ file: null, sessionsFile: null, sessionTtlMs: config.sessionTtlS * 1000, limits: config });
  const live = new LiveState({ maxSeries: 1000, maxDevices: 1000, alarmRulesFile: null, knownDevices: () => registry.entries() });
  const shared = new SharedState({ link: cluster.link, config, registry, operators, alarms: live.alarms, log: new LogLimiter(log, { perMinute: 60 }), onRegistry: () => live.syncRegistry() }, o.fleet.registry);
  await shared.start();
  const { configs, sharedConfigs } = await sharedConfigsOf(cluster.link, config, registry);
  const sharedCommands = new SharedCommands({ link: cluster.link, config, log: new LogLimiter(log, { perMinute: 60 }), onlineElsewhere: (id) => cluster.onlineElsewhere(id) });
  await sharedCommands.open();
  const commands = new CommandTracker({ share: sharedCommands });
  await sharedCommands.start(commands);
  const audit = await AuditLog.open({ file: o.auditFile ?? null, maxBytes: config.auditMaxBytes });
  const sharedAudit = new SharedAudit({ link: cluster.link, config, log: new LogLimiter(log, { perMinute: 60 }) });
  await sharedAudit.start(audit);
  const hub: Hub = buildApp(config, {
    store: cluster.store, auth: registry, log, metrics, operators, live, ownership: cluster.ownership, clusterHealth: () => cluster.health(),
    management: { configs, commands }, audit,
  });
  await cluster.start({ devices: hub.devices, live: hub.live, tagsOf: (id) => registry.tagsOf(id), shareEveryMs: config.liveTickMs });
  const port = await hub.listen();
  t.after(async () => { await hub.close({ deadlineMs: 2000, keepStore: true }); await configs.close(); sharedAudit.stop(); await audit.close(); sharedConfigs.stop(); sharedCommands.stop(); shared.stop(); await cluster.close(); });
  return { hub, url: `ws://127.0.0.1:${port}${DEVICE_PATH}`, port, tokens: o.fleet.tokens, registry, store: null as never, cluster, config, shared, configs, sharedConfigs, sharedCommands, sharedAudit, audit };
}

async function welcomeOn(h: ClusterHub, deviceId: string): Promise<{ d: RawDevice; lastSeq: number }> {
  const d = new RawDevice(h.url, { token: h.tokens.get(deviceId) });
  await opened(d, `${deviceId} open`);
  d.hello(deviceId);
  const welcome = await d.next('welcome', 5000);
  return { d, lastSeq: welcome.lastSeq ?? 0 };
}

/** Every stored message of the device's subject: its Telemetry-Seq header, in stream order. */
async function storedSeqs(stream: string, deviceId: string): Promise<number[]> {
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const subject = clusterNames(stream).batchSubject(deviceId);
    const info = await jsm.streams.info(stream);
    const seqs: number[] = [];
    for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) {
      const m = await jsm.streams.getMessage(stream, { seq: s }).catch(() => null);
      if (m && m.subject === subject) seqs.push(Number(m.header.get(SEQ_HEADER)));
    }
    return seqs;
  } finally {
    await nc.close();
  }
}

function accepted(deviceId: string, seq: number): AcceptedBatch {
  return {
    deviceId, seq, tags: {}, receivedAtMs: Date.now(), clockOffsetMs: 0, metricNames: ['t'], metricUnits: [''],
    metricIndex: new Uint16Array([0, 0]), timesMs: new Float64Array([Date.now(), Date.now() + 1]), deviceTimesMs: null, values: new Float64Array([1, 2]),
  };
}

test('cluster - acks only once JetStream stored the batch; the device on another hub resumes at the same seq and the first hub ends its session with 4002', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1']);
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const { d: onA, lastSeq } = await welcomeOn(a, 'dev-1');
  assert.equal(lastSeq, 0);
  for (let seq = 1; seq <= 5; seq++) onA.batch(batchOf(seq, 3, { defs: seq === 1 }));
  assert.equal((await onA.ackFor(5)).seq, 5);
  assert.deepEqual(await storedSeqs(stream, 'dev-1'), [1, 2, 3, 4, 5]);

  const { d: onB, lastSeq: resumed } = await welcomeOn(b, 'dev-1');
  assert.equal(resumed, 5, 'Welcome.last_seq on hub B is what hub A stored');
  const closed = await within(onA.closed, 5000, 'session on hub A closed');
  assert.equal(closed.code, CloseCode.SESSION_REPLACED);
  assert.match(closed.reason, /hub hub-b/);
  onB.batch(batchOf(6));
  assert.equal((await onB.ackFor(6)).seq, 6);
  assert.deepEqual(await storedSeqs(stream, 'dev-1'), [1, 2, 3, 4, 5, 6]);
  assert.equal(a.cluster.owners.held, 0);
  assert.equal(b.cluster.owners.held, 1);
  onB.close();
});

test('cluster - a resend that reaches another hub is stored once (Nats-Msg-Id within the duplicate window)', async (t) => {
  const stream = await streamName();
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'x' });
  const links: ClusterLink[] = [];
  t.after(async () => { for (const l of links) await l.close(); });
  for (const hubId of ['hub-a', 'hub-b']) links.push(await ClusterLink.open({ config: { ...config, hubId }, log, withSink: true }));
  const [sa, sb] = links.map((link) => new StreamStore({ link, log, maxBytes: config.natsMaxBytes, ackTimeoutMs: 2000 }));
  t.after(async () => { await sa!.close(); await sb!.close(); });
  await sa!.append(accepted('dev-9', 1));
  await sb!.append(accepted('dev-9', 1));
  await sb!.append(accepted('dev-9', 2));
  assert.equal(sb!.duplicates, 1);
  assert.equal(sb!.durableSeq('dev-9'), 2);
  assert.deepEqual(await storedSeqs(stream, 'dev-9'), [1, 2]);
  // A third hub learns the device's seq from the stream.
  const sc = new StreamStore({ link: links[0]!, log, maxBytes: config.natsMaxBytes, ackTimeoutMs: 2000 });
  t.after(() => sc.close());
  assert.equal(await sc.resume('dev-9'), 2);
  assert.equal(sc.acceptedSeq('dev-9'), 2);
});

test('cluster - a device flapping between two hubs: one session at a time, every batch acked and stored exactly once', async (t) => {
  const stream = await streamName();
  const f = fleet(['flap']);
  const hubs = [await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f }), await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f })];
  let seq = 0;
  let previous: RawDevice | null = null;
  for (let round = 0; round < 10; round++) {
    const h = hubs[round % 2]!;
    const { d, lastSeq } = await welcomeOn(h, 'flap');
    assert.equal(lastSeq, seq, `round ${round}: Welcome.last_seq`);
    if (previous) {
      const closed: { code: number } = await within(previous.closed, 5000, `round ${round}: older session closed`);
      assert.equal(closed.code, CloseCode.SESSION_REPLACED, `round ${round}`);
    }
    for (let i = 0; i < 3; i++) d.batch(batchOf(++seq, 2, { defs: i === 0 }));
    assert.equal((await d.ackFor(seq, 5000)).seq, seq);
    previous = d;
  }
  previous?.close();
  assert.deepEqual(await storedSeqs(stream, 'flap'), Array.from({ length: 30 }, (_, i) => i + 1));
});

test('cluster - NATS unreachable: no ack, the session ends with 1013, new devices get 503 with Retry-After, /readyz says why; after NATS is back the device resumes and is acked', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1', 'dev-2']);
  const h = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const { d } = await welcomeOn(h, 'dev-1');
  d.batch(batchOf(1));
  await d.ackFor(1, 5000);
  await nats.kill('SIGKILL');
  let restarted = false;
  t.after(async () => { if (!restarted) await nats.restart(); });
  await until(() => !h.cluster.link.connected, 5000, 'hub sees NATS gone');
  d.batch(batchOf(2));
  const closed = await within(d.closed, 5000, 'session closed');
  assert.equal(closed.code, CloseCode.TRY_AGAIN_LATER);
  assert.ok(!d.frames.some((m) => m.msg === 'ack' && (m.ack?.seq ?? 0) >= 2), 'batch 2 was never acked');
  const ready = await fetch(`http://127.0.0.1:${h.port}/readyz`);
  assert.equal(ready.status, 503);
  assert.deepEqual(((await ready.json()) as { reasons: string[] }).reasons, ['NATS unreachable']);
  const second = new RawDevice(h.url, { token: f.tokens.get('dev-2') });
  const refused = await within(second.refused, 5000, 'refused');
  assert.equal(refused.status, 503);
  assert.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After');

  await nats.restart();
  restarted = true;
  await until(() => h.cluster.link.connected, 15_000, 'hub reconnected');
  const again = await welcomeOn(h, 'dev-1');
  assert.equal(again.lastSeq, 1);
  again.d.batch(batchOf(2));
  assert.equal((await again.d.ackFor(2, 5000)).seq, 2);
  assert.equal((await fetch(`http://127.0.0.1:${h.port}/readyz`)).status, 200);
  assert.deepEqual(await storedSeqs(stream, 'dev-1'), [1, 2]);
  again.d.close();
});

test('cluster - a batch in flight while NATS restarts is sent again with the same id: stored once, acked', async (t) => {
  const stream = await streamName();
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'hub-a' });
  const link = await ClusterLink.open({ config, log, withSink: true });
  t.after(() => link.close());
  const store = new StreamStore({ link, log, maxBytes: config.natsMaxBytes, ackTimeoutMs: 500 });
  t.after(() => store.close());
  await store.append(accepted('dev-r', 1));
  await nats.pause();
  let resumed = false;
  t.after(() => { if (!resumed) nats.resume(); });
  const pending = store.append(accepted('dev-r', 2));
  let settled = false;
  void pending.then(() => { settled = true; }, () => { settled = true; });
  // The first attempt times out (500 ms) and the batch is sent again while the server still does not answer.
  await until(() => store.retries >= 1, 15_000, 'a second attempt');
  assert.equal(settled, false, 'not durable while the server does not answer');
  assert.equal(store.durableSeq('dev-r'), 1);
  nats.resume();
  resumed = true;
  await within(pending, 15_000, 'stored after the server answers again');
  assert.equal(store.durableSeq('dev-r'), 2);
  assert.ok(store.retries >= 1, `sent again (${store.retries} retries)`);
  assert.deepEqual(await storedSeqs(stream, 'dev-r'), [1, 2]);
});

test('cluster - the stream at its cap (work queue, nothing shipped): credit shrinks past half of the cap, then batches are refused with 1013', async (t) => {
  const stream = await streamName();
  const f = fleet(['big']);
  const h = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f, withSink: true, config: { natsMaxBytes: 1 << 20, maxBatchReadings: 10_000, maxReadingsPerSecond: 10_000_000, readingsBurst: 100_000_000 } });
  const { d } = await welcomeOn(h, 'big');
  let seq = 0;
  let closed: { code: number } | null = null;
  void d.closed.then((c) => { closed = c; });
  // ~80 KiB per batch (10,000 readings of noise): the 1 MiB cap is reached in
  // about a dozen; slowly enough that the stream's fill (read every second)
  // is seen on the way: past half of the cap, acks carry less credit.
  for (; seq < 40 && !closed; seq++) {
    d.batch(batchOf(seq + 1, 10_000, { defs: seq === 0, value: () => Math.random() }));
    await new Promise((r) => setTimeout(r, 300));
  }
  const c = await within(d.closed, 10_000, 'closed at the cap');
  assert.equal(c.code, CloseCode.TRY_AGAIN_LATER);
  const credits = d.frames.filter((m) => m.msg === 'ack').map((m) => m.ack?.credit ?? 0);
  assert.ok(credits.some((x) => x > 0 && x < h.config.window), `credit shrank before the cap: ${credits.join(',')}`);
  assert.equal(h.cluster.store.pressure(), 1);
  const ready = await (await fetch(`http://127.0.0.1:${h.port}/readyz`)).json() as { reasons: string[] };
  assert.deepEqual(ready.reasons, ['JetStream stream full']);
});

test('cluster - the sink consumer is shared: each batch goes to one reader; what a closed reader held goes to the other', async (t) => {
  const stream = await streamName();
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream });
  const links = [await ClusterLink.open({ config: { ...config, hubId: 'a' }, log, withSink: true }), await ClusterLink.open({ config: { ...config, hubId: 'b' }, log, withSink: true })];
  t.after(async () => { for (const l of links) await l.close(); });
  const store = new StreamStore({ link: links[0]!, log, maxBytes: config.natsMaxBytes, ackTimeoutMs: 2000 });
  t.after(() => store.close());
  for (let seq = 1; seq <= 50; seq++) await store.append(accepted('dev-s', seq));
  const ra = new StreamReader({ link: links[0]!, log });
  await ra.start();
  await until(() => ra.heldMessages === 50, 10_000, 'reader a got the batches');
  const first = await ra.readFrom(ra.checkpoint, 1 << 20);
  assert.deepEqual(first.records.map((r) => r.batch.seq), Array.from({ length: 50 }, (_, i) => i + 1));
  // Commit the first 20 (InfluxDB confirmed them); close with 30 held.
  ra.commit(first.records[19]!.end);
  await ra.close();
  const rb = new StreamReader({ link: links[1]!, log });
  await rb.start();
  t.after(() => rb.close());
  await until(() => rb.heldMessages === 30, 10_000, 'reader b got what a held');
  const rest = await rb.readFrom(rb.checkpoint, 1 << 20);
  assert.deepEqual(rest.records.map((r) => r.batch.seq).sort((x, y) => x - y), Array.from({ length: 30 }, (_, i) => i + 21));
  assert.equal(rb.redelivered, 30);
  rb.commit(rest.records.at(-1)!.end);
  await until(async () => (await links[0]!.jsm.streams.info(stream)).state.messages === 0, 5000, 'acked batches leave the work queue');
});

test('cluster - a dashboard on hub A sees a device connected to hub B (presence and its latest value) within a tick', async (t) => {
  const stream = await streamName();
  const f = fleet(['far-1']);
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const { d } = await welcomeOn(b, 'far-1');
  d.batch(batchOf(1, 3, { value: () => 42.5 }));
  await d.ackFor(1);
  // liveTickMs is 200 here: well within a second.
  await until(() => a.hub.live.device('far-1')?.connected === true, 1000, 'online on hub A');
  await until(() => a.hub.live.device('far-1')?.values.includes(42.5) === true, 1000, 'value on hub A');
  assert.match(a.hub.live.device('far-1')!.address, /hub hub-b/);
  await until(() => a.cluster.hubs().filter((x) => x.up).length === 2, 5000, 'hub A lists both hubs');
  // What the overview's Hubs card shows (Health.hubs in every frame).
  await until(() => a.hub.live.health.hubs?.length === 2, 3000, 'health lists both hubs');
  assert.deepEqual(a.hub.live.health.hubs?.map((x) => [x.id, x.up, x.self]), [['hub-a', true, true], ['hub-b', true, false]]);
  await until(() => a.hub.live.health.hubs?.find((x) => x.id === 'hub-b')?.devices === 1, 5000, 'hub B holds the device (its heartbeat says)');
  // The connection lost on hub B: hub A shows the device offline with the close hub B saw.
  d.ws.terminate();
  await until(() => a.hub.live.device('far-1')?.connected === false, 3000, 'offline on hub A once it left hub B');
  assert.match(a.hub.live.device('far-1')!.reason, /1006/);
});

test('cluster - shared state: a sign-in on hub A works on hub B, a sign-out on B ends it on A; a rule added on A is in force on B', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1']);
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const cookie = await signIn(a);
  await until(() => b.hub.operators.names().includes(TEST_OPERATOR.user), 3000, 'account on hub B');
  const me = (h: ClusterHub) => fetch(`http://127.0.0.1:${h.port}/api/v1/me`, { headers: { cookie } }).then((r) => r.status);
  await until(async () => (await me(b)) === 200, 3000, 'the session of hub A works on hub B');
  assert.equal(await me(a), 200);

  const origin = `http://127.0.0.1:${a.port}`;
  const added = await fetch(`${origin}/api/v1/alarms/rules`, {
    method: 'POST', headers: { cookie, origin, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'hot', metric: 'temperature', op: '>', threshold: 80, forS: 0 }),
  });
  assert.equal(added.status, 201, await added.text());
  await until(() => b.hub.live.alarms.rules.some((r) => r.name === 'hot'), 3000, 'rule in force on hub B');

  const out = await fetch(`http://127.0.0.1:${b.port}/api/v1/logout`, { method: 'POST', headers: { cookie, origin: `http://127.0.0.1:${b.port}` } });
  assert.ok(out.status < 300, `logout ${out.status}`);
  await until(async () => (await me(a)) === 401, 3000, 'signed out on hub A too');
});

test('cluster - shared registry: a device of the hub\'s own file is accepted as soon as start() resolves (not once the watch brings its own put back)', async (t) => {
  const stream = await streamName();
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'hub-a' });
  const link = await ClusterLink.open({ config, log, withSink: false });
  t.after(() => link.close());
  const f = fleet(Array.from({ length: 50 }, (_, i) => `first-${i}`));
  const registry = new DeviceRegistry(f.registry);
  const operators = new Operators({ file: null, sessionsFile: null, sessionTtlMs: 60_000, limits: config });
  const live = new LiveState({ maxSeries: 100, maxDevices: 100, alarmRulesFile: null, knownDevices: () => registry.entries() });
  // Every registry the shared state puts in force holds the file's devices (a
  // hub takes devices from the moment start() resolves, and must not refuse
  // one of its own for the moment between its put and the watch's echo).
  const missing: string[] = [];
  const onRegistry = (): void => { for (const [id, token] of f.tokens) if (!registry.authenticate(token).ok) missing.push(id); };
  const shared = new SharedState({ link, config, registry, operators, alarms: live.alarms, log: new LogLimiter(log, { perMinute: 60 }), onRegistry }, f.registry);
  t.after(() => shared.stop());
  await shared.start();
  assert.deepEqual(missing, []);
  for (const [id, token] of f.tokens) assert.equal(registry.authenticate(token).ok, true, `${id} accepted right after start`);
});

test('cluster - shared registry: a device removed from hub A\'s file is closed (4008) on hub B, where its session lives; one added there can connect to B', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1', 'dev-2']);
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const { d } = await welcomeOn(b, 'dev-1');
  const extra = fleet(['dev-3']);
  const next = { version: 1 as const, devices: { 'dev-2': f.registry.devices['dev-2']!, 'dev-3': extra.registry.devices['dev-3']! } };
  await a.shared.fileChanged(next);
  const closed = await within(d.closed, 5000, 'dev-1 closed on hub B');
  assert.equal(closed.code, CloseCode.DEVICE_REVOKED);
  await until(() => b.registry.tagsOf('dev-3') !== undefined, 3000, 'dev-3 known on hub B');
  const third = await welcomeOn({ ...b, tokens: extra.tokens }, 'dev-3');
  assert.equal(third.lastSeq, 0);
  third.d.close();
  const refused = new RawDevice(b.url, { token: f.tokens.get('dev-1') });
  assert.equal((await within(refused.refused, 3000, 'dev-1 refused')).status, 401);
});

test('cluster - a session that ends while its claim is in flight hands the claim back (no device left "online" on a hub that has no session)', async (t) => {
  const stream = await streamName();
  const f = fleet(['slow']);
  const h = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f, config: { handshakeTimeoutMs: 300 } });
  const d = new RawDevice(h.url, { token: f.tokens.get('slow') });
  await opened(d, 'open');
  await nats.pause();
  let resumed = false;
  t.after(() => { if (!resumed) nats.resume(); });
  d.hello('slow');
  const closed = await within(d.closed, 5000, 'handshake timeout while the claim hangs');
  assert.equal(closed.code, 4001);
  nats.resume();
  resumed = true;
  const owners = h.cluster.link.owners;
  await until(async () => {
    const e = await owners.get(Buffer.from('slow').toString('base64url'));
    return e !== null && (JSON.parse(e.string()) as { online: boolean }).online === false;
  }, 10_000, 'owner entry offline', 100);
  assert.equal(h.cluster.owners.held, 0);
});

test('cluster - the publisher: PubAcks matched to their publish, duplicates flagged, no stream (503) and a silent server (timeout) are errors', async (t) => {
  const stream = await streamName();
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'p' });
  const link = await ClusterLink.open({ config, log, withSink: true });
  t.after(() => link.close());
  const pub = new Publisher(link.nc, 400);
  t.after(() => pub.close());
  const subject = link.names.batchSubject('dev-p');
  const acks = await Promise.all([1, 2, 3, 1].map((n) => pub.publish(subject, new Uint8Array([n]), [['Nats-Msg-Id', `p:${n}`]])));
  assert.deepEqual(acks.map((a) => a.duplicate), [false, false, false, true]);
  assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3, 1]);
  await assert.rejects(pub.publish('no-stream-here.x', new Uint8Array([1]), []), (err: Error) => err instanceof PublishError && err.code === 503);
  await nats.pause();
  t.after(() => nats.resume());
  await assert.rejects(pub.publish(subject, new Uint8Array([4]), [['Nats-Msg-Id', 'p:4']]), /not acknowledged within 400 ms/);
  nats.resume();
  assert.equal(pub.waiting, 0);
});

/** The test operator signed in on hub `h`: its API, JSON in and out, with the hub's own Origin. */
async function apiOf(h: ClusterHub): Promise<SignedInApi['call']> {
  const cookie = await signIn(h);
  const origin = `http://127.0.0.1:${h.port}`;
  return async (method, path, body) => {
    const r = await fetch(`${origin}${path}`, { method, headers: { cookie, origin, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) as unknown : null };
  };
}

const configReport = (version: number, sample: number, batch: number) =>
  ({ reported: { version, sampleIntervalMs: sample, batchIntervalMs: batch, customJson: '', ok: true, error: '' } });

test('cluster - device configuration: a change through hub A reaches the device whose session is on hub B, B\'s report shows on A, a group change too; a hub started later reads it all from the bucket', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1', 'dev-2']);
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const api = await apiOf(a);

  const d = new RawDevice(b.url, { token: f.tokens.get('dev-1') });
  await opened(d, 'dev-1 open on hub B');
  d.send({ hello: { deviceId: 'dev-1', protocolVersion: PROTOCOL_VERSION, deviceTimeMs: Date.now(), features: [FEATURE_CONFIG] } });
  await d.next('welcome', 5000);
  d.send(configReport(0, 1000, 5000));

  const put = await api('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 2000 });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const v = put.body.desired.version as number;
  assert.ok(v >= 1);
  const desired = await d.next('desired', 5000);
  assert.equal(desired.version, v);
  assert.equal(desired.sampleIntervalMs, 2000);
  d.send(configReport(v, 2000, 5000));
  await until(async () => {
    const view = (await api('GET', '/api/v1/devices/dev-1/config')).body;
    return view.reported?.version === v && view.reported?.sampleIntervalMs === 2000 && view.delta === null;
  }, 5000, 'the report made on hub B shown by hub A');

  const group = await api('PUT', `/api/v1/config-groups/${encodeURIComponent('site=test')}`, { batchIntervalMs: 9000 });
  assert.equal(group.status, 200, JSON.stringify(group.body));
  const next = await d.next('desired', 5000);
  assert.ok((next.version ?? 0) > v, `version ${next.version} above ${v}`);
  assert.equal(next.batchIntervalMs, 9000);
  assert.notEqual(typeof next.sampleIntervalMs, 'number', 'only what differs from the report');
  d.send(configReport(next.version ?? 0, 2000, 9000));
  await until(() => a.configs.view('dev-1').reported?.version === next.version, 5000, 'second report on hub A');
  assert.deepEqual(a.configs.view('dev-2').desired?.values, { batchIntervalMs: 9000 }, 'the other member has the group default');
  d.close();

  // A hub that starts now: everything from the bucket, nothing from a file.
  await b.configs.close();
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'hub-c' });
  const link = await ClusterLink.open({ config, log, withSink: false });
  t.after(() => link.close());
  const c = await sharedConfigsOf(link, config, new DeviceRegistry(f.registry));
  t.after(async () => { await c.configs.close(); c.sharedConfigs.stop(); });
  const view = c.configs.view('dev-1');
  assert.equal(view.desired?.version, next.version);
  assert.deepEqual(view.desired?.values, { sampleIntervalMs: 2000, batchIntervalMs: 9000 });
  assert.equal(view.desired?.by, TEST_OPERATOR.user);
  assert.equal(view.reported?.batchIntervalMs, 9000);
  assert.equal(view.delta, null);
  assert.deepEqual(c.configs.groups().map((g) => g.key), ['site=test']);
});

test('cluster - device configuration: two hubs changing one device at once both answer, with two versions (never one version for two configurations), and end with the same state; bad entries in the bucket are skipped', async (t) => {
  const stream = await streamName();
  const f = fleet(['x']);
  const hubs = await Promise.all(['hub-a', 'hub-b'].map(async (hubId) => {
    const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId });
    const link = await ClusterLink.open({ config, log, withSink: false });
    const metrics = new HubMetrics();
    const s = await sharedConfigsOf(link, config, new DeviceRegistry(f.registry), metrics);
    t.after(async () => { await s.configs.close(); s.sharedConfigs.stop(); await link.close(); });
    return { ...s, metrics };
  }));
  const [a, b] = hubs as [typeof hubs[0], typeof hubs[0]];
  const told: string[] = [];
  b.configs.onChange((ids) => told.push(...ids));

  // Both start from the same revision: one of the puts is refused and planned again.
  const [va, vb] = await Promise.all([a.configs.setDesired('x', { sampleIntervalMs: 500 }, 'alice'), b.configs.setDesired('x', { sampleIntervalMs: 700 }, 'bob')]);
  assert.notEqual(va.version, vb.version, 'two changes, two versions');
  assert.ok(a.sharedConfigs.conflicts + b.sharedConfigs.conflicts >= 1, 'the race was seen');
  const exported = async (h: typeof a, event: string): Promise<number> => Number(new RegExp(`event="${event}"} (\\d+)`).exec(await h.metrics.registry.getSingleMetricAsString('hub_cluster_config_events_total'))?.[1] ?? NaN);
  assert.equal((await exported(a, 'conflict')) + (await exported(b, 'conflict')), a.sharedConfigs.conflicts + b.sharedConfigs.conflicts, 'counted in /metrics');
  const last = va.version > vb.version ? va : vb;
  const same = (): boolean => [a, b].every((h) => h.configs.view('x').desired?.version === last.version && h.configs.view('x').desired?.values.sampleIntervalMs === last.values.sampleIntervalMs);
  await until(same, 10_000, 'both hubs hold the later change');
  assert.ok(told.includes('x'), 'hub B was told of hub A\'s change');

  // Many at once from both sides: every one answered, versions all distinct per hub, one state at the end.
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).configs.setDesired('x', { sampleIntervalMs: 1000 + i }, `op-${i}`)));
  assert.equal(results.length, 20);
  await until(() => a.configs.view('x').desired?.version === b.configs.view('x').desired?.version
    && a.configs.view('x').desired?.values.sampleIntervalMs === b.configs.view('x').desired?.values.sampleIntervalMs, 10_000, 'one state on both hubs');
  const max = Math.max(...results.map((r) => r.version));
  assert.ok((a.configs.view('x').desired?.version ?? 0) >= max, 'at least the highest version answered');

  // Hostile or broken entries written straight into the bucket.
  const nc = await connect({ servers: nats.url });
  t.after(() => nc.close());
  const kv = await new Kvm(nc).open(configBucket(stream));
  const before = a.sharedConfigs.rejected;
  await kv.put(deviceKey('bad-json'), '{nope');
  await kv.put(deviceKey('bad-version'), JSON.stringify({ version: -1 }));
  await kv.put(deviceKey('bad-values'), JSON.stringify({ version: 1, desired: { values: { sampleIntervalMs: 1 }, changedAt: 1, by: 'x' } }));
  await kv.put(groupKey('no-equals-sign'), JSON.stringify({ values: {}, changedAt: 1, by: 'x' }));
  // Values are bounded by the bucket itself (64 KiB): a bigger one is refused by JetStream.
  await assert.rejects(kv.put(deviceKey('huge'), JSON.stringify({ version: 1, pad: 'x'.repeat(70_000) })));
  await kv.put('d.not base64!'.replace(/[ !]/g, '_') + '.extra', '{}');
  await until(() => a.sharedConfigs.rejected - before >= 5, 3000, 'the bad entries skipped');
  assert.equal(await exported(a, 'rejected'), a.sharedConfigs.rejected);
  for (const id of ['bad-json', 'bad-version', 'bad-values']) assert.equal(a.configs.view(id).desired, null, id);
  assert.deepEqual(a.configs.groups(), []);
  assert.ok((a.configs.view('x').desired?.version ?? 0) >= max, 'the good entry untouched');
});

test('cluster - commands: one taken by hub A for a device on hub B is delivered by B and its result shows on A; one for an offline device waits in the bucket for it to connect; ttlMs 0: delivered on another hub, refused when offline everywhere', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1', 'dev-2', 'dev-3']);
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const api = await apiOf(a);
  const stateOnA = async (id: string, want: string): Promise<Record<string, unknown>> => {
    let last: Record<string, unknown> = {};
    await until(async () => { last = (await api('GET', `/api/v1/commands/${id}`)).body.command ?? {}; return last.state === want; }, 5000, `command ${id} ${want} on hub A`);
    return last;
  };
  const deviceOnB = async (id: string): Promise<RawDevice> => {
    const d = new RawDevice(b.url, { token: f.tokens.get(id) });
    await opened(d, `${id} open on hub B`);
    d.send({ hello: { deviceId: id, protocolVersion: PROTOCOL_VERSION, deviceTimeMs: Date.now(), features: [FEATURE_INVOKE] } });
    await d.next('welcome', 5000);
    return d;
  };

  const d1 = await deviceOnB('dev-1');
  await until(() => a.cluster.onlineElsewhere('dev-1'), 5000, 'hub A sees dev-1 online on hub B');
  const sent = await api('POST', '/api/v1/devices/dev-1/commands', { name: 'ping' });
  assert.equal(sent.status, 202, JSON.stringify(sent.body));
  // Queued here for the hub that holds the session (or delivered already: that hub's put can come back first).
  assert.ok(['queued', 'delivered'].includes(sent.body.command.state as string), sent.body.command.state as string);
  const cmd = await d1.next('command', 5000);
  assert.equal(cmd.invoke?.name, 'ping');
  d1.send({ commandResult: { id: cmd.id, ok: true, message: 'pong', resultJson: '{"uptime_ms":5}' } });
  const done = await stateOnA(sent.body.command.id, 'succeeded');
  assert.deepEqual(done.result, { uptime_ms: 5 });
  assert.ok((done.deliveredAt as number) > 0);
  assert.equal(b.hub.management?.commands.get(sent.body.command.id)?.state, 'succeeded');
  assert.equal(d1.frames.filter((m) => m.msg === 'command').length, 0, 'sent once, by hub B only');

  const now = await api('POST', '/api/v1/devices/dev-1/commands', { name: 'now', ttlMs: 0 });
  assert.equal(now.status, 202);
  assert.equal(now.body.command.ttlMs, 5000, 'ttlMs 0 on another hub: that hub gets 5 s to deliver it');
  const cmd2 = await d1.next('command', 5000);
  assert.equal(cmd2.invoke?.name, 'now');

  const queued = await api('POST', '/api/v1/devices/dev-2/commands', { name: 'reboot', ttlMs: 60_000 });
  assert.equal(queued.body.command.state, 'queued');
  await until(() => b.hub.management?.commands.get(queued.body.command.id)?.state === 'queued', 3000, 'hub B mirrors the queued command');
  const d2 = await deviceOnB('dev-2');
  const cmd3 = await d2.next('command', 5000);
  assert.equal(cmd3.invoke?.name, 'reboot');
  d2.send({ commandResult: { id: cmd3.id, ok: false, message: 'busy' } });
  assert.equal((await stateOnA(queued.body.command.id, 'failed')).message, 'busy');

  const refused = await api('POST', '/api/v1/devices/dev-3/commands', { name: 'ping', ttlMs: 0 });
  assert.equal(refused.body.command.state, 'refused');
  assert.equal((await api('GET', '/api/v1/devices/dev-1/commands')).body.commands.length, 2);

  // A hub started later has them all (the bucket, not its memory).
  const config = loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'hub-c' });
  const link = await ClusterLink.open({ config, log, withSink: false });
  t.after(() => link.close());
  const lateMetrics = new HubMetrics();
  const late = new SharedCommands({ link, config, log: new LogLimiter(log, { perMinute: 60 }), onlineElsewhere: () => false, metrics: lateMetrics });
  await late.open();
  const tracker = new CommandTracker({ share: late });
  await late.start(tracker);
  t.after(() => { late.stop(); tracker.close(); });
  assert.equal(tracker.get(sent.body.command.id)?.state, 'succeeded');
  assert.equal(tracker.get(queued.body.command.id)?.state, 'failed');
  assert.equal(tracker.forDevice('dev-3')[0]?.state, 'refused');

  // Bad entries written straight into the bucket are skipped.
  const nc = await connect({ servers: nats.url });
  t.after(() => nc.close());
  const kv = await new Kvm(nc).open(commandsBucket(stream));
  const before = late.rejected;
  const good = JSON.stringify({ ...done, argsJson: '' });
  await kv.put(commandKey('dev-2', done.id as string), good); // under another device's key
  await kv.put(commandKey('dev-1', 'x1'), '{nope');
  await kv.put(commandKey('dev-1', 'x2'), JSON.stringify({ ...done, id: 'x2', state: 'exploded', argsJson: '' }));
  await kv.put(commandKey('dev-1', 'x3'), JSON.stringify({ ...done, id: 'x3', name: 'bad name!', argsJson: '' }));
  await until(() => late.rejected - before >= 4, 3000, 'the bad entries skipped');
  assert.match(await lateMetrics.registry.getSingleMetricAsString('hub_cluster_command_entries_rejected_total'), new RegExp(`_total ${late.rejected}$`, 'm'));
  assert.equal(tracker.get('x2'), undefined);
  d1.close(); d2.close();
});

test('cluster - one audit trail: what was done on hub A shows on hub B and the other way, with the hub; a trail reopened resumes after the last entry it copied (none twice); messages that are not entries are skipped, fields bounded', async (t) => {
  const stream = await streamName();
  const f = fleet(['dev-1']);
  const dir = mkdtempSync(join(tmpdir(), 'cluster-audit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = await startClusterHub(t, { hubId: 'hub-a', stream, fleet: f, auditFile: join(dir, 'a.jsonl') });
  const b = await startClusterHub(t, { hubId: 'hub-b', stream, fleet: f });
  const onA = await apiOf(a);
  assert.equal((await onA('PUT', '/api/v1/devices/dev-1/config', { sampleIntervalMs: 700 })).status, 200);
  const onB = await apiOf(b);
  assert.equal((await onB('POST', '/api/v1/devices', { id: 'made-on-b', tags: {} })).status, 201);
  const trail = async (api: SignedInApi['call']): Promise<{ hub?: string; action: string; target: string }[]> => (await api('GET', '/api/v1/audit?limit=1000')).body.entries as { hub?: string; action: string; target: string }[];
  for (const [name, api] of [['hub A', onA], ['hub B', onB]] as const) {
    await until(async () => {
      const entries = await trail(api);
      return entries.some((e) => e.hub === 'hub-a' && e.action === 'config.set' && e.target === 'dev-1')
        && entries.some((e) => e.hub === 'hub-b' && e.action === 'device.create' && e.target === 'made-on-b')
        && entries.filter((e) => e.action === 'sign-in').length >= 2;
    }, 5000, `${name} shows the entries of both hubs`);
  }

  // Hub A's trail on disk, reopened (a restart): it resumes after the last entry it copied.
  await a.audit.flush();
  const reopened = await AuditLog.open({ file: join(dir, 'a.jsonl'), maxBytes: a.config.auditMaxBytes });
  const copiedBefore = (await reopened.query({ limit: 1000 })).entries.filter((e) => e.hub === 'hub-b').length;
  assert.ok(reopened.lastSharedSeq() > 0, 'the copied entries carry their stream sequence');
  const link = await ClusterLink.open({ config: loadConfig({}, { natsUrl: nats.url, natsStream: stream, hubId: 'hub-a' }), log, withSink: false });
  t.after(() => link.close());
  const again = new SharedAudit({ link, config: a.config, log: new LogLimiter(log, { perMinute: 60 }) });
  await again.start(reopened);
  t.after(async () => { again.stop(); await reopened.close(); });
  assert.equal((await onB('PATCH', '/api/v1/devices/made-on-b', { tags: { room: 'r1' } })).status, 200);
  await until(async () => (await reopened.query({ limit: 1000 })).entries.some((e) => e.action === 'device.update'), 5000, 'a new entry of hub B reaches the reopened trail');
  const copiedAfter = (await reopened.query({ limit: 1000 })).entries.filter((e) => e.hub === 'hub-b');
  assert.equal(copiedAfter.length, copiedBefore + 1, 'nothing copied twice');
  assert.equal(new Set(copiedAfter.map((e) => e.seq)).size, copiedAfter.length);

  // Straight into the stream: not entries, or hostile sizes.
  const nc = await connect({ servers: nats.url });
  t.after(() => nc.close());
  const js = jetstream(nc);
  const subject = `${stream.toLowerCase()}.audit.intruder`;
  const before = b.sharedAudit.rejected;
  // Messages are bounded by the stream itself (16 KiB): a bigger one is refused by JetStream.
  await assert.rejects(js.publish(subject, 'x'.repeat(20_000)));
  await js.publish(subject, '{nope');
  await js.publish(subject, JSON.stringify({ time: 1, id: 1, actor: 'x', action: 'a' }));
  await js.publish(subject, JSON.stringify({ time: Date.now(), id: 1, actor: 'm'.repeat(5000), address: '1.2.3.4', action: 'x\ny', target: '', outcome: 'ok', detail: { k: 'v'.repeat(5000) }, hub: 'h'.repeat(500) }));
  await until(() => b.sharedAudit.rejected - before >= 2, 3000, 'the two non-entries skipped');
  await until(async () => (await b.audit.query({ limit: 5 })).entries.some((e) => e.actor.startsWith('mmm')), 3000, 'the oversize entry copied, cut');
  const cut = (await b.audit.query({ limit: 5 })).entries.find((e) => e.actor.startsWith('mmm'))!;
  assert.ok(cut.actor.length <= 64 && (cut.hub ?? '').length <= 64 && String(cut.detail.k).length <= 200, JSON.stringify(cut).slice(0, 300));
  assert.equal(cut.action.includes('\n'), false, 'one line each');
});
