// The live path's health shows the device endpoint's open connections:
// ingest tells it the count each time a socket opens or closes (including
// sockets still waiting for Hello, as the upgrade caps count them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawDevice, connectDevice, startHub, until, within } from './helpers.ts';

test('live health - ingest reports its open connections on every open and close, replacements included', async (t) => {
  const th = await startHub(t);
  const live = th.hub.live;
  const counts: number[] = [];
  const record = live.connectionCount.bind(live);
  live.connectionCount = (n) => { counts.push(n); record(n); };

  const first = await connectDevice(th, 'dev-1');
  const waiting = new RawDevice(th.url, { token: th.tokens.get('dev-2') });
  await within(waiting.opened, 3000, 'dev-2 open, no Hello');
  const newer = await connectDevice(th, 'dev-1');
  await within(first.d.closed, 3000, 'the replaced session closed');
  assert.deepEqual(counts, [1, 2, 3, 2], 'the newer dev-1 opens (3), then the older one is closed (2)');
  live.advance();
  assert.equal(live.health.connections, 2);

  waiting.close();
  newer.d.close();
  await until(() => counts.at(-1) === 0, 3000, 'both closed');
  assert.deepEqual(counts, [1, 2, 3, 2, 1, 0]);
  live.advance();
  assert.equal(live.health.connections, 0);
});
