// Sends to a device that stops reading: every send that does not go out at
// once is counted (send_backpressure), acks included, and uWS drops the
// device once MAX_SEND_BACKPRESSURE_BYTES are queued (proto/README.md §1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { encodeHubMessage } from '@telemetry/proto';
import { HubMetrics } from '../src/core/metrics.ts';
import { MAX_SEND_BACKPRESSURE_BYTES } from '../src/ingest/endpoint.ts';
import { SEND_BACKPRESSURE, SEND_DROPPED, SEND_OK, sendToDevice } from '../src/ingest/send.ts';
import { batchOf, connectDevice, metric, startHub, until } from './helpers.ts';

test('send backpressure - a send that is queued or dropped is counted, one that went out is not', async () => {
  const metrics = new HubMetrics();
  const bytes = new Uint8Array([1, 2, 3]);
  let result = SEND_OK;
  const sent: Uint8Array[] = [];
  const ws = { send(message: Uint8Array, isBinary?: boolean): number { assert.equal(isBinary, true); sent.push(message); return result; } };
  sendToDevice(ws, bytes, metrics);
  assert.equal(await metrics.value('hub_limit_violations_total', { limit: 'send_backpressure' }), 0);
  for (result of [SEND_BACKPRESSURE, SEND_DROPPED]) sendToDevice(ws, bytes, metrics);
  assert.equal(await metrics.value('hub_limit_violations_total', { limit: 'send_backpressure' }), 2);
  assert.deepEqual(sent, [bytes, bytes, bytes]);
});

const COMMAND = { config: { sampleIntervalMs: 1000 } };

test('send backpressure - a device that stops reading is counted on every queued send, acks too, and dropped at 256 KiB', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  t.after(() => d.ws.terminate());
  d.batch(batchOf(1));
  await d.ackFor(1);
  d.ws.pause(); // stops reading; it still writes
  const counted = (): Promise<number> => metric(th, 'hub_limit_violations_total', { limit: 'send_backpressure' });
  const connected = async (): Promise<boolean> => (await metric(th, 'hub_device_connections')) === 1;
  const acked = async (): Promise<number> => (await th.hub.metrics.ackLatency.get()).values.find((v) => v.metricName === 'hub_ack_latency_seconds_count')?.value ?? 0;

  // The kernel's socket buffers take a few MB before uWS queues anything:
  // fill them with commands, which need no round trip.
  let commands = 0;
  for (; (await counted()) === 0; commands += 1000) {
    assert.ok(commands < 2_000_000, 'the kernel buffers fill within 2,000,000 commands');
    for (let i = 0; i < 1000; i++) th.hub.devices.sendCommand('dev-1', COMMAND);
    await nextTurn();
  }

  // Then acks keep coming while what is queued grows to the limit (commands
  // make up the bulk). An ack is counted when it is queued behind unread
  // bytes; the kernel may still take a queue now and then (it compacts the
  // many small segments it holds), so not every ack is behind one.
  let seq = 1;
  let acks = 0;
  let acksCountedWhileConnected = 0;
  while (await connected()) {
    for (let i = 0; i < 1000; i++) if (th.hub.devices.sendCommand('dev-1', COMMAND) === null) break;
    await nextTurn();
    const beforeAck = await counted();
    d.batch(batchOf(++seq, 3, { defs: false }));
    await until(async () => (await acked()) >= seq || !(await connected()), 3000, `the ack of ${seq}, or the drop`);
    if ((await acked()) < seq) break;
    acks++;
    // Nothing else is sent to the device meanwhile: the ack is the only send in between.
    if ((await counted()) === beforeAck + 1 && (await connected())) acksCountedWhileConnected++;
  }
  const total = await counted();
  t.diagnostic(`${commands} commands before the first queued send; ${acksCountedWhileConnected} of ${acks} acks queued and counted; dropped after ${total} queued sends`);
  assert.ok(acksCountedWhileConnected >= 1, 'acks queued behind unread bytes are counted before the drop');
  // Every byte uWS queued came from a counted send (the last one, dropped, queued nothing).
  const largestFrame = encodeHubMessage({ command: { ...COMMAND, id: 2 ** 31 } }).length + 2;
  assert.ok((total - 1) * largestFrame >= MAX_SEND_BACKPRESSURE_BYTES, 'not dropped before 256 KiB were queued');
  await until(async () => (await metric(th, 'hub_device_closes_total', { code: '1006' })) === 1, 3000, 'the drop accounted as 1006');
});
