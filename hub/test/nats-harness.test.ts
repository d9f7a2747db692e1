// The NATS test harness (nats-server.ts) against real nats-servers: one
// JetStream server keeps its stream across a SIGKILL and restart, and a
// 3-node cluster keeps acknowledging publishes to an R3 stream with its
// stream leader SIGKILLed, then takes the killed server back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { NatsCluster, NatsServer } from './nats-server.ts';
import { sleep, until } from '../../test/support/wait.ts';

/** Publishes until a PubAck arrives (the same msgID, so a retry cannot duplicate); rejects with the last error after `ms`. */
async function publishAcked(js: JetStreamClient, subject: string, data: string, msgID: string, ms: number): Promise<PubAck> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await js.publish(subject, data, { msgID, timeout: 2_000 });
    } catch (err) {
      if (Date.now() > end) throw new Error(`no PubAck for ${subject} within ${ms} ms`, { cause: err });
      await sleep(100);
    }
  }
}

test('one server: JetStream on, ports on loopback, the stream survives SIGKILL and restart, stop removes the store', async (t) => {
  const t0 = performance.now();
  const s = await NatsServer.start({ name: 'solo' });
  t.after(() => s.stop());
  const started = performance.now() - t0;
  assert.match(s.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s.url, `nats://127.0.0.1:${s.port}`);
  assert.match(s.log, /Starting JetStream/);

  let nc = await connect({ servers: s.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'SOLO', subjects: ['solo.>'] });
  const ack = await jetstream(nc).publish('solo.a', 'one');
  assert.equal(ack.seq, 1);
  await nc.close();

  const pid = s.pid;
  await s.kill('SIGKILL');
  assert.equal(s.running, false);
  const t1 = performance.now();
  await s.restart();
  const restarted = performance.now() - t1;
  assert.notEqual(s.pid, pid);
  nc = await connect({ servers: s.url });
  const info = await (await jetstreamManager(nc)).streams.info('SOLO');
  assert.equal(info.state.messages, 1, 'the store dir is kept across restart');
  await nc.close();

  await s.stop();
  assert.equal(existsSync(s.dir), false);
  t.diagnostic(`single server: start ${started.toFixed(0)} ms, restart after SIGKILL ${restarted.toFixed(0)} ms`);
});

test('3-node cluster: an R3 stream acks publishes with its leader SIGKILLed, and the server rejoins', async (t) => {
  const t0 = performance.now();
  const c = await NatsCluster.start(3);
  t.after(() => c.stop());
  const started = performance.now() - t0;
  assert.equal(c.servers.length, 3);
  assert.deepEqual(c.servers.map((s) => s.name), ['nats-1', 'nats-2', 'nats-3']);
  assert.equal(c.urls, c.servers.map((s) => s.url).join(','));
  assert.ok(await c.metaLeader(), 'a meta leader');

  const nc = await connect({ servers: c.urlList, name: 'harness-admin' });
  t.after(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const created = await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
  assert.equal(created.config.num_replicas, 3);
  assert.equal(created.cluster?.replicas?.length, 2, 'a leader and two replicas');
  const js = jetstream(nc);
  assert.equal((await js.publish('r3.a', 'one', { msgID: 'a' })).seq, 1);

  // The hardest case: kill the stream's leader, with a second client
  // connected to exactly that server (the other urls after it).
  const leaderName = (await jsm.streams.info('R3')).cluster?.leader;
  assert.ok(leaderName, 'the stream has a leader');
  const victim = c.server(leaderName);
  const order = [victim.url, ...c.urlList.filter((u) => u !== victim.url)];
  const nc2 = await connect({ servers: order, noRandomize: true, reconnectTimeWait: 100, maxReconnectAttempts: -1, name: 'harness-publisher' });
  t.after(() => nc2.close());
  assert.equal(nc2.getServer(), victim.url.replace('nats://', ''));
  const js2 = jetstream(nc2);
  assert.equal((await js2.publish('r3.b', 'two', { msgID: 'b' })).seq, 2);

  await victim.kill('SIGKILL');
  assert.equal(victim.running, false);
  const t1 = performance.now();
  // A SIGKILLed raft leader is noticed after an election timeout (4-9 s in 2.9): seconds, not at once.
  const ack = await publishAcked(js2, 'r3.c', 'three', 'c', 20_000);
  const failover = performance.now() - t1;
  assert.equal(ack.stream, 'R3');
  assert.equal(ack.seq, 3);
  assert.equal(ack.duplicate, false);
  assert.notEqual(nc2.getServer(), victim.url.replace('nats://', ''), 'the client reconnected to another server');
  const during = await jsm.streams.info('R3');
  assert.ok(during.cluster?.leader && during.cluster.leader !== victim.name, `a new stream leader (${during.cluster?.leader})`);

  const t2 = performance.now();
  await victim.restart();
  await c.waitReady();
  // The restarted replica catches up: every peer current again, the messages all there.
  await until(async () => {
    const si = await jsm.streams.info('R3');
    return si.state.messages === 3 && (si.cluster?.replicas ?? []).length === 2 && (si.cluster?.replicas ?? []).every((r) => r.current && !r.offline);
  }, 15_000, 'the R3 stream to be fully replicated again', 100);
  const rejoined = performance.now() - t2;

  await nc2.close();
  await nc.close();
  const t3 = performance.now();
  await c.stop();
  const stopped = performance.now() - t3;
  assert.ok(c.servers.every((s) => !s.running && !existsSync(s.dir)));
  t.diagnostic(`cluster: start+ready ${started.toFixed(0)} ms; PubAck ${failover.toFixed(0)} ms after SIGKILL of stream leader ${victim.name}`
    + ` (new leader ${during.cluster?.leader}); restart+rejoin+caught up ${rejoined.toFixed(0)} ms; stop ${stopped.toFixed(0)} ms`);
});
