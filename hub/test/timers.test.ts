// buildApp has no side effects: the endpoints' timers (handshake sweep,
// credit refresh, live ticks) start at listen(), once, and a TLS reload,
// which mounts the same routes on a second app, starts none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeDevCert } from '../../scripts/dev-cert.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/core/config.ts';
import { createLogger } from '../src/core/log.ts';
import { tempDir } from '../../test/support/fs.ts';

test('app - buildApp starts no timers; listen() starts them once and a TLS reload starts none', async (t) => {
  const dir = tempDir(t, 'hub-timers-');
  const served = makeDevCert(join(dir, 'served'));
  const renewed = makeDevCert(join(dir, 'renewed'));
  const config = loadConfig({}, { host: '127.0.0.1', port: 0, tlsCert: served.certFile, tlsKey: served.keyFile, logLevel: 'silent' });
  const intervals = t.mock.method(globalThis, 'setInterval');
  const timeouts = t.mock.method(globalThis, 'setTimeout');
  const started = () => intervals.mock.callCount() + timeouts.mock.callCount();

  const hub = buildApp(config, { log: createLogger('silent') });
  t.after(() => hub.close({ deadlineMs: 1000 }));
  assert.equal(started(), 0, 'buildApp started a timer');

  await hub.listen();
  const afterListen = started();
  assert.ok(afterListen > 0, 'listen() starts the endpoint timers');
  await hub.listen();
  assert.equal(started(), afterListen, 'a second listen() starts nothing');

  copyFileSync(renewed.certFile, served.certFile);
  copyFileSync(renewed.keyFile, served.keyFile);
  assert.deepEqual(await hub.reloadTls(), { ok: true });
  assert.equal(started(), afterListen, 'a TLS reload starts no timer');
});
