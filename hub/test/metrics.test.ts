// The hot path's plain-number counts and the ack-latency histogram reach
// /metrics exactly as prom-client's own counters and histograms would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Histogram, Registry } from 'prom-client';
import { FastHistogram, HubMetrics } from '../src/core/metrics.ts';

test('metrics - the hot counts are added to their counters when scraped, again and again', async () => {
  const m = new HubMetrics();
  m.hot.messages += 3; m.hot.bytes += 300; m.hot.batchesAccepted += 2; m.hot.readingsAccepted += 40;
  assert.equal(await m.value('hub_ingest_messages_total'), 3);
  assert.equal(await m.value('hub_batches_total', { result: 'accepted' }), 2);
  m.hot.messages += 1; m.hot.readingsAccepted += 8;
  const text = await m.registry.metrics();
  assert.match(text, /^hub_ingest_messages_total 4$/m);
  assert.match(text, /^hub_ingest_bytes_total 300$/m);
  assert.match(text, /^hub_readings_total\{result="accepted"\} 48$/m);
  assert.equal(await m.value('hub_readings_total', { result: 'accepted' }), 48, 'not added twice');
});

test('metrics - FastHistogram exposes what a prom-client Histogram with the same buckets exposes', async () => {
  const bounds = [0.001, 0.01, 0.1, 1];
  const ours = new Registry();
  const theirs = new Registry();
  const fast = new FastHistogram('lat_seconds', 'latency', bounds, ours);
  const reference = new Histogram({ name: 'lat_seconds', help: 'latency', buckets: bounds, registers: [theirs] });
  for (const v of [0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 0.5, 1, 1.5, 30]) { fast.observe(v); reference.observe(v); }
  assert.equal(await ours.metrics(), await theirs.metrics());
  fast.reset(); reference.reset();
  fast.observe(0.02); reference.observe(0.02);
  assert.equal(await ours.metrics(), await theirs.metrics(), 'after a reset: only what came since');
});
