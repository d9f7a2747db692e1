// buildApp's seams, with stand-ins that are not the hub's own classes: the
// store's `bytes` (BatchStore) reaches hub_spool_bytes and the live health,
// and any authenticator that lists its devices (`entries()`) has them shown
// before they connect; one that does not is simply not asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApp, type HubAuthenticator } from '../src/app.ts';
import { loadConfig } from '../src/core/config.ts';
import { createLogger } from '../src/core/log.ts';
import type { AcceptedBatch, BatchStore } from '../src/spool/store.ts';

/** A store that takes nothing and says it holds `bytes`. */
class FixedStore implements BatchStore {
  constructor(public bytes: number) {}
  readonly healthy = true;
  acceptedSeq(): number { return 0; }
  durableSeq(): number { return 0; }
  pressure(): number { return 0.25; }
  append(_batch: AcceptedBatch): Promise<void> { return Promise.resolve(); }
  close(): Promise<void> { return Promise.resolve(); }
}

const refuseAll: HubAuthenticator = {
  authenticate: () => ({ ok: false, status: 401, reason: 'no' }),
  onRevoked: () => () => {},
};

const config = () => loadConfig({}, { host: '127.0.0.1', port: 0, logLevel: 'silent' });

test('app - the store\'s bytes are what hub_spool_bytes and the live health show', async (t) => {
  const store = new FixedStore(4321);
  const hub = buildApp(config(), { store, auth: refuseAll, log: createLogger('silent') });
  t.after(() => hub.close({ deadlineMs: 500 }));
  assert.equal(await hub.metrics.value('hub_spool_bytes'), 4321);
  assert.equal(await hub.metrics.value('hub_spool_pressure'), 0.25);
  hub.live.advance();
  assert.equal(hub.live.health.spoolBytes, 4321);
  store.bytes = 99;
  assert.equal(await hub.metrics.value('hub_spool_bytes'), 99, 'read when scraped');
});

test('app - an authenticator that lists its devices has them shown before they connect; one that cannot is not asked', (t) => {
  const listing: HubAuthenticator = {
    ...refuseAll,
    *entries() { yield ['sensor-a', { site: 'north' }]; yield ['sensor-b', {}]; },
  };
  const hub = buildApp(config(), { auth: listing, log: createLogger('silent') });
  t.after(() => hub.close({ deadlineMs: 500 }));
  assert.ok(hub.live.device('sensor-a'), 'listed by a plain object, not a DeviceRegistry');
  assert.ok(hub.live.device('sensor-b'));

  const silent = buildApp(config(), { auth: refuseAll, log: createLogger('silent') });
  t.after(() => silent.close({ deadlineMs: 500 }));
  assert.equal(silent.live.device('sensor-a'), undefined);
});
