// wss with the development certificate, and TLS configuration errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeDevCert } from '../../scripts/dev-cert.ts';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/core/config.ts';
import { HubError } from '../src/core/errors.ts';
import { createLogger } from '../src/core/log.ts';
import { RawDevice, batchOf, startHub, within } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'hub-tls-'));
const cert = makeDevCert(dir);
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

test('tls - a device completes a session over wss with the dev certificate', async (t) => {
  const th = await startHub(t, { config: { tlsCert: cert.certFile, tlsKey: cert.keyFile } });
  assert.equal(th.hub.tls, true);
  const d = new RawDevice(`wss://127.0.0.1:${th.port}/v1/devices`, { token: th.tokens.get('dev-1'), ca: readFileSync(cert.caFile) });
  await within(d.opened, 5000, 'wss open');
  d.hello('dev-1');
  await d.next('welcome');
  d.batch(batchOf(1));
  assert.equal((await d.ackFor(1)).seq, 1);
  d.close();
  const h = await fetch(`https://127.0.0.1:${th.port}/healthz`).catch((e: Error) => e);
  assert.ok(h instanceof Error, 'an untrusting HTTPS client is refused too');
});

test('tls - a client that does not trust the certificate cannot connect', async (t) => {
  const th = await startHub(t, { config: { tlsCert: cert.certFile, tlsKey: cert.keyFile } });
  const d = new RawDevice(`wss://127.0.0.1:${th.port}/v1/devices`, { token: th.tokens.get('dev-1') });
  await assert.rejects(within(d.opened, 5000, 'open'), /self[- ]signed|unable to verify|certificate/i);
});

test('tls - a missing certificate file fails with HUB_ERR_TLS naming the variable', () => {
  const config = loadConfig({}, { port: 0, tlsCert: join(dir, 'nope.pem'), tlsKey: cert.keyFile });
  assert.throws(() => buildApp(config, { log: createLogger('silent') }), (err: unknown) => err instanceof HubError && err.code === 'HUB_ERR_TLS' && /HUB_TLS_CERT/.test(err.message));
});

test('tls - HUB_TLS_CERT without HUB_TLS_KEY is a config error', () => {
  assert.throws(() => loadConfig({ HUB_TLS_CERT: cert.certFile }), (err: unknown) => err instanceof HubError && err.code === 'HUB_ERR_CONFIG' && /HUB_TLS_KEY/.test(err.message));
});

test('dev-cert - refuses to overwrite without force', () => {
  assert.throws(() => makeDevCert(dir), /already has a development certificate/);
  const again = makeDevCert(dir, { force: true });
  assert.ok(readFileSync(again.certFile, 'utf8').includes('BEGIN CERTIFICATE'));
});
