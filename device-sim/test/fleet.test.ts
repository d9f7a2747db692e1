// device-sim/ tests: fleets against a fake hub that speaks the happy path,
// plus the pieces a fleet is assembled from (ids, tokens, addresses,
// bad-actor assignment).
// Imports: node:test, node, and this package's behaviours, fleet, tokens and test helpers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BAD_BEHAVIOURS } from '../src/behaviours.ts';
import { Fleet, behaviourFor } from '../src/fleet.ts';
import { deviceId, envToken, expandAddresses, fleetCredentials, loadTokenFile, loadTokens, tokenDeviceId } from '../src/tokens.ts';
import { tempDir } from '../../test/support/fs.ts';
import { fakeHub } from './fake-hub.ts';

const creds = (n: number, prefix = 'f-') => Array.from({ length: n }, (_, i) => ({ id: deviceId(prefix, i), token: `${deviceId(prefix, i)}.secret` }));

test('fleet - streams, every batch is acked once, and the stats add up', async (t) => {
  const hub = await fakeHub(t, { auto: {} });
  const fleet = new Fleet({ url: hub.url, devices: creds(10), rate: 20, batchIntervalMs: 50, device: { backoffBaseMs: 20, backoffCapMs: 100 } });
  t.after(() => fleet.stop());
  await hub.until(() => fleet.connected === 10, 'all connected');
  await hub.until(() => fleet.counters().batchesAcked >= 60, 'acks');
  fleet.stopSampling();
  await hub.until(() => fleet.pending === 0, 'outboxes drained');
  const c = fleet.counters();
  let stored = 0;
  for (const d of fleet.devices) {
    const seqs = hub.stored.get(d.id) ?? [];
    assert.deepEqual(seqs, Array.from({ length: d.lastSeq }, (_, i) => i + 1), `${d.id}: each batch stored once, in order`);
    stored += seqs.length;
  }
  assert.equal(c.batchesAcked, stored);
  assert.equal(c.batchesSent, stored, 'no resends without a dropped link');
  assert.equal(c.readingsAcked, c.readingsGenerated);
  const s = fleet.stats();
  assert.equal(s.devices, 10);
  assert.equal(s.started, 10);
  assert.equal(s.latencyMs.samples, stored);
  assert.ok(s.latencyMs.p50 <= s.latencyMs.p95 && s.latencyMs.p95 <= s.latencyMs.p99 && s.latencyMs.p99 < 3000);
  await fleet.stop();
  await hub.until(() => hub.conns.every((k) => k.closed), 'every socket closed');
  assert.equal(fleet.counters().closes['1000'], 10, 'clean closes');
});

test('fleet - ramp starts devices over rampMs from one ticker', async (t) => {
  const hub = await fakeHub(t, { auto: {} });
  const fleet = new Fleet({ url: hub.url, devices: creds(4), rate: 0, rampMs: 400 });
  t.after(() => fleet.stop());
  assert.equal(fleet.stats().started, 1, 'device 0 at once, the rest later');
  await hub.until(() => fleet.connected === 4, 'all connected');
  assert.equal(fleet.counters().readingsGenerated, 0, 'rate 0: sessions only');
});

test('fleet - churn drops links and the devices come back', async (t) => {
  const hub = await fakeHub(t, { auto: {} });
  const fleet = new Fleet({ url: hub.url, devices: creds(5), rate: 10, batchIntervalMs: 100, churn: 120, device: { backoffBaseMs: 10, backoffCapMs: 20 } });
  t.after(() => fleet.stop());
  await hub.until(() => fleet.churned >= 4, 'churn', 4000);
  await hub.until(() => fleet.counters().sessions >= 9, 'devices reconnected');
  assert.ok((fleet.counters().closes['1006'] ?? 0) >= 4);
});

test('fleet - bad actors get every behaviour round-robin, spread evenly, and keep coming back', async (t) => {
  const all = Array.from({ length: 100 }, (_, i) => behaviourFor(i, 0.1));
  assert.equal(all.filter((b) => b !== 'good').length, 10);
  assert.deepEqual(all.filter((b) => b !== 'good').slice(0, 8), BAD_BEHAVIOURS);
  assert.ok(all.every((b, i) => b === 'good' || i % 10 === 9), 'evenly spaced');
  assert.equal(Array.from({ length: 30 }, (_, i) => behaviourFor(i, 0.4)).filter((b) => b !== 'good').length, 12);
  assert.ok(Array.from({ length: 8 }, (_, i) => behaviourFor(i, 1)).every((b) => b !== 'good'));
  assert.equal(behaviourFor(3, 0), 'good');

  const hub = await fakeHub(t, { auto: {} });
  const fleet = new Fleet({ url: hub.url, devices: creds(4), rate: 0, badActors: 0.5, badActorBackoffMs: 5000 });
  t.after(() => fleet.stop());
  assert.deepEqual(fleet.devices.map((d) => d.behaviour), ['good', 'ignore-window', 'good', 'text-frames']);
});

test('fleet - source addresses are assigned round-robin', async (t) => {
  const hub = await fakeHub(t, { auto: {} });
  const fleet = new Fleet({ url: hub.url, devices: creds(4), rate: 0, sourceAddresses: ['127.0.0.1', '127.0.0.2'] });
  t.after(() => fleet.stop());
  await hub.until(() => hub.conns.length === 4, 'four connections');
  const byDevice = new Map(hub.conns.map((c) => [/Bearer (\S+)\./.exec(c.req.headers.authorization!)![1], c.req.socket.remoteAddress]));
  assert.deepEqual([0, 1, 2, 3].map((i) => byDevice.get(deviceId('f-', i))), ['127.0.0.1', '127.0.0.2', '127.0.0.1', '127.0.0.2']);
});

test('tokens - a tokens file, SIM_TOKEN, and ids padded to 4 digits', (t) => {
  const dir = tempDir(t, 'sim-tokens-');
  const file = join(dir, 'tokens.json');
  writeFileSync(file, JSON.stringify({ 'sim-0000': 'sim-0000.aaa', 'sim-0001': 'sim-0001.bbb' }));
  assert.equal(deviceId('sim-', 7), 'sim-0007');
  assert.equal(deviceId('sim-', 12345), 'sim-12345');
  const tokens = loadTokenFile(file);
  assert.deepEqual(fleetCredentials(tokens, { prefix: 'sim-', count: 2 }), [{ id: 'sim-0000', token: 'sim-0000.aaa' }, { id: 'sim-0001', token: 'sim-0001.bbb' }]);
  assert.deepEqual(fleetCredentials(tokens, { prefix: 'sim-', count: 1, offset: 1 }), [{ id: 'sim-0001', token: 'sim-0001.bbb' }]);
  assert.throws(() => fleetCredentials(tokens, { prefix: 'sim-', count: 3 }), /no token for sim-0002/);
  writeFileSync(file, '[1,2]');
  assert.throws(() => loadTokenFile(file), /must be a JSON object/);
  assert.throws(() => loadTokenFile(join(dir, 'missing.json')), /cannot read tokens file/);
  // SIM_TOKEN: the device id is everything before the last dot.
  assert.equal(tokenDeviceId('greenhouse.7.c2VjcmV0'), 'greenhouse.7');
  assert.deepEqual([...envToken({ SIM_TOKEN: 'greenhouse-7.c2VjcmV0' })!], [['greenhouse-7', 'greenhouse-7.c2VjcmV0']]);
  assert.equal(envToken({}), undefined);
  assert.equal(loadTokens(undefined, {}).size, 0);
});

test('tokens - source address ranges expand; anything else is refused', () => {
  assert.deepEqual(expandAddresses('127.0.0.2-127.0.0.4,::1'), ['127.0.0.2', '127.0.0.3', '127.0.0.4', '::1']);
  assert.deepEqual(expandAddresses('127.0.0.8-9'), ['127.0.0.8', '127.0.0.9']);
  assert.throws(() => expandAddresses('127.0.0.9-127.0.0.2'), /bad address range/);
  assert.throws(() => expandAddresses('127.0.0.1-127.0.1.5'), /one \/24/);
  assert.throws(() => expandAddresses('localhost'), /not an IP/);
});
