// End to end: the real simulator against the real hub (in this process, on
// port 0), with links dropped mid-stream. Every batch a device generated is
// stored exactly once, and every stored batch was acked to its device.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEVICE_PATH } from '@telemetry/proto';
import { Fleet } from '@telemetry/device-sim';
import { DeviceRegistry, buildApp, createLogger, generateToken, hashToken, loadConfig, type AcceptedBatch, type BatchStore, type RegistryFile } from '@telemetry/hub';
import { sleep, until } from './support/wait.ts';

/**
 * Durable `delayMs` after append, in order (the BatchStore contract), so a
 * dropped link reliably catches batches in flight.
 */
class SlowStore implements BatchStore {
  readonly batches: AcceptedBatch[] = [];
  readingsStored = 0;
  readonly #accepted = new Map<string, number>();
  readonly #durable = new Map<string, number>();
  constructor(readonly delayMs: number) {}
  readonly healthy = true;
  readonly bytes = 0;
  acceptedSeq(id: string): number { return this.#accepted.get(id) ?? 0; }
  durableSeq(id: string): number { return this.#durable.get(id) ?? 0; }
  pressure(): number { return 0; }
  append(b: AcceptedBatch): Promise<void> {
    this.#accepted.set(b.deviceId, b.seq);
    return new Promise((resolve) => setTimeout(() => {
      this.#durable.set(b.deviceId, b.seq);
      this.batches.push(b);
      this.readingsStored += b.values.length;
      resolve();
    }, this.delayMs));
  }
  async close(): Promise<void> { await sleep(this.delayMs + 10); }
}

/** until()'s pause between checks in this file. */
const POLL_MS = 20;

test('e2e - a fleet with dropped links: nothing lost, nothing stored twice, everything acked', async (t) => {
  const n = 50;
  const file: RegistryFile = { version: 1, devices: {} };
  const devices: { id: string; token: string }[] = [];
  for (let i = 0; i < n; i++) {
    const id = `e2e-${i}`;
    const token = generateToken(id);
    devices.push({ id, token });
    file.devices[id] = { tokenHash: hashToken(token), tags: { site: `s${i % 3}` } };
  }
  const store = new SlowStore(40);
  const hub = buildApp(loadConfig({}, { host: '127.0.0.1', port: 0, logLevel: 'silent' }), { store, auth: new DeviceRegistry(file), log: createLogger('silent') });
  const port = await hub.listen();
  t.after(() => hub.close({ deadlineMs: 2000 }));

  const fleet = new Fleet({
    url: `ws://127.0.0.1:${port}${DEVICE_PATH}`, devices, rate: 20, batchIntervalMs: 100, rampMs: 200,
    device: { backoffBaseMs: 20, backoffCapMs: 200 },
  });
  t.after(() => fleet.stop());
  await until(() => fleet.connected === n, 10_000, 'all connected', POLL_MS);
  // Drop links mid-stream, several times, while batches are in flight. A
  // batch is resent only when the link dropped while it was on its way (the
  // hub had not received it): at least 5 rounds, more until that happened.
  for (let round = 0; round < 40; round++) {
    if (round >= 5 && fleet.counters().batchesResent > 0) break;
    await new Promise((r) => setTimeout(r, 300));
    for (let i = round % 3; i < n; i += 3) fleet.devices[i]!.dropConnection();
  }
  await new Promise((r) => setTimeout(r, 300));
  // Stop sampling, then let every device drain its outbox.
  fleet.stopSampling();
  await until(() => fleet.pending === 0, 20_000, 'outboxes drained', POLL_MS);

  const c = fleet.counters();
  assert.ok(c.reconnects >= 5 * Math.floor(n / 3), `reconnects ${c.reconnects}`);
  assert.ok(c.batchesResent > 0, 'some batches were resent after a dropped link');
  const stored = new Map<string, number[]>();
  for (const b of store.batches) {
    const list = stored.get(b.deviceId) ?? [];
    list.push(b.seq);
    stored.set(b.deviceId, list);
  }
  let total = 0;
  for (const d of fleet.devices) {
    const seqs = stored.get(d.id) ?? [];
    // Exactly once and in order: 1..lastSeq.
    assert.deepEqual(seqs, Array.from({ length: d.lastSeq }, (_, i) => i + 1), `${d.id}: stored ${seqs.length} of ${d.lastSeq}`);
    total += seqs.length;
  }
  assert.equal(c.batchesAcked, total, 'every stored batch was acked once');
  assert.equal(c.readingsAcked, store.readingsStored);
  assert.ok(store.readingsStored > 0);
});
