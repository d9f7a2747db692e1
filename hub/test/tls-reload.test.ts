// TLS certificate reload without a restart: hub.reloadTls() in-process, and
// the hub process reloading on SIGHUP and when the files are replaced.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { CloseCode, DEVICE_PATH } from '@telemetry/proto';
import { makeDevCert, type DevCert } from '../../scripts/dev-cert.ts';
import { addDevice } from '../src/auth/registry.ts';
import { tempDir } from '../../test/support/fs.ts';
import { freePort } from '../../test/support/net.ts';
import { exitCode, waitForOutput } from '../../test/support/proc.ts';
import { RawDevice, batchOf, spawnHub, startHub, until, within } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'hub-tls-reload-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
// Two certificates from two development CAs: A to start with, B to renew to.
const certA = makeDevCert(join(dir, 'a'));
const certB = makeDevCert(join(dir, 'b'));
const fingerprint = (c: DevCert): string => new X509Certificate(readFileSync(c.certFile)).fingerprint256;

/** The files the hub is configured with (HUB_TLS_CERT/HUB_TLS_KEY), starting as A. */
function servedFiles(t: TestContext): { certFile: string; keyFile: string } {
  const live = tempDir(t, 'live-', dir);
  const files = { certFile: join(live, 'cert.pem'), keyFile: join(live, 'key.pem') };
  install(files, certA);
  return files;
}

/** Replaces the served files the way certbot-style renewals do: write aside, rename over. */
function install(files: { certFile: string; keyFile: string }, from: { certFile: string; keyFile: string }): void {
  for (const [src, dst] of [[from.certFile, files.certFile], [from.keyFile, files.keyFile]] as const) {
    copyFileSync(src, `${dst}.new`);
    renameSync(`${dst}.new`, dst);
  }
}

/** The certificate a new TLS connection to the port is given. */
function servedFingerprint(port: number): Promise<string> {
  return within(new Promise<string>((res, rej) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      res(fp);
    });
    s.once('error', rej);
  }), 5000, 'TLS handshake');
}

function httpsStatus(port: number, path: string, ca: Buffer): Promise<number> {
  return new Promise((res, rej) => {
    httpsGet({ host: '127.0.0.1', port, path, ca, agent: false }, (r) => { r.resume(); res(r.statusCode ?? 0); }).once('error', rej);
  });
}

async function session(port: number, token: string | undefined, id: string, ca: Buffer): Promise<RawDevice> {
  const d = new RawDevice(`wss://127.0.0.1:${port}${DEVICE_PATH}`, { token, ca });
  await within(d.opened, 5000, `${id} open`);
  d.hello(id);
  await d.next('welcome');
  return d;
}

test('tls - reloadTls: new connections get the new certificate, an open device session keeps streaming and getting acks', async (t) => {
  const files = servedFiles(t);
  const port = await freePort();
  const th = await startHub(t, { config: { tlsCert: files.certFile, tlsKey: files.keyFile, port } });
  const d1 = await session(port, th.tokens.get('dev-1'), 'dev-1', readFileSync(certA.caFile));
  t.after(() => d1.ws.terminate());
  d1.batch(batchOf(1));
  assert.equal((await d1.ackFor(1)).seq, 1);
  assert.equal(await servedFingerprint(port), fingerprint(certA));
  assert.deepEqual(await th.hub.reloadTls(), { ok: true, unchanged: true }, 'the same files change nothing');

  install(files, certB);
  assert.deepEqual(await th.hub.reloadTls(), { ok: true });
  assert.equal(await servedFingerprint(port), fingerprint(certB), 'a new connection gets B');
  assert.equal(th.hub.port, port, 'same port');

  // The session from before the reload stays on its connection (certificate A).
  for (let seq = 2; seq <= 5; seq++) d1.batch(batchOf(seq));
  assert.equal((await d1.ackFor(5)).seq, 5);
  // Devices, HTTP and the metrics of both apps are one hub.
  const d2 = await session(port, th.tokens.get('dev-2'), 'dev-2', readFileSync(certB.caFile));
  t.after(() => d2.ws.terminate());
  d2.batch(batchOf(1));
  assert.equal((await d2.ackFor(1)).seq, 1);
  assert.equal(th.hub.devices.stats().sessions, 2);
  assert.equal(await httpsStatus(port, '/healthz', readFileSync(certB.caFile)), 200);
  assert.equal(await th.hub.metrics.value('hub_tls_reloads_total', { result: 'ok' }), 1);
  assert.equal(await th.hub.metrics.value('hub_tls_certificate_expiry_timestamp_seconds'), Date.parse(new X509Certificate(readFileSync(certB.certFile)).validTo) / 1000);
  assert.equal(th.store.durableSeq('dev-1'), 5);
  assert.equal(th.store.durableSeq('dev-2'), 1);
});

test('tls - a broken new certificate keeps the previous one and reloadTls says why', async (t) => {
  const files = servedFiles(t);
  const port = await freePort();
  const th = await startHub(t, { config: { tlsCert: files.certFile, tlsKey: files.keyFile, port } });
  const d1 = await session(port, th.tokens.get('dev-1'), 'dev-1', readFileSync(certA.caFile));
  t.after(() => d1.ws.terminate());

  writeFileSync(files.certFile, 'not a certificate\n');
  let r = await th.hub.reloadTls();
  assert.equal(r.ok, false);
  assert.match(r.error ?? '', /cannot load HUB_TLS_CERT=.*cert\.pem/);
  assert.equal(await servedFingerprint(port), fingerprint(certA));

  // Half a renewal: B's certificate with A's key.
  copyFileSync(certB.certFile, files.certFile);
  r = await th.hub.reloadTls();
  assert.equal(r.ok, false);
  assert.match(r.error ?? '', /key values mismatch/i);
  assert.equal(await servedFingerprint(port), fingerprint(certA));

  rmSync(files.keyFile);
  r = await th.hub.reloadTls();
  assert.equal(r.ok, false);
  assert.match(r.error ?? '', /HUB_TLS_KEY=.*file not found/);
  assert.equal(await servedFingerprint(port), fingerprint(certA));
  assert.equal(await th.hub.metrics.value('hub_tls_reloads_total', { result: 'error' }), 3);

  d1.batch(batchOf(1));
  assert.equal((await d1.ackFor(1)).seq, 1, 'the open session is untouched');
  install(files, certB);
  assert.deepEqual(await th.hub.reloadTls(), { ok: true });
  assert.equal(await servedFingerprint(port), fingerprint(certB));
});

test('tls - reloadTls on a hub without TLS says so', async (t) => {
  const th = await startHub(t);
  assert.deepEqual(await th.hub.reloadTls(), { ok: false, error: 'TLS is not configured (HUB_TLS_CERT, HUB_TLS_KEY)' });
});

test('tls - with HUB_PORT=0 a reload keeps the port the hub was given', async (t) => {
  const files = servedFiles(t);
  const th = await startHub(t, { config: { tlsCert: files.certFile, tlsKey: files.keyFile, port: 0 } });
  install(files, certB);
  assert.deepEqual(await th.hub.reloadTls(), { ok: true });
  assert.equal(await servedFingerprint(th.port), fingerprint(certB));
  const d = await session(th.port, th.tokens.get('dev-1'), 'dev-1', readFileSync(certB.caFile));
  d.close();
});

test('tls - close after a reload closes the old app too: its sessions get 1001, its idle connections close, nothing listens', async (t) => {
  const files = servedFiles(t);
  const port = await freePort();
  const th = await startHub(t, { config: { tlsCert: files.certFile, tlsKey: files.keyFile, port } });
  const d1 = await session(port, th.tokens.get('dev-1'), 'dev-1', readFileSync(certA.caFile));
  // An idle keep-alive HTTPS connection on the old app.
  const idle: TLSSocket = await new Promise((res, rej) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(certA.caFile) }, () => {
      s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      s.once('data', () => res(s));
    });
    s.once('error', rej);
  });
  t.after(() => idle.destroy());
  const idleClosed = new Promise<void>((r) => idle.once('close', () => r()));

  install(files, certB);
  assert.deepEqual(await th.hub.reloadTls(), { ok: true });
  const d2 = await session(port, th.tokens.get('dev-2'), 'dev-2', readFileSync(certB.caFile));

  await th.hub.close({ deadlineMs: 2000 });
  assert.equal((await within(d1.closed, 2000, 'old-app session close')).code, CloseCode.GOING_AWAY);
  assert.equal((await within(d2.closed, 2000, 'new-app session close')).code, CloseCode.GOING_AWAY);
  // uWS would keep an idle HTTP connection for 10 s; closing the app ends it now.
  await within(idleClosed, 2000, 'idle connection on the old app closed');
  await assert.rejects(servedFingerprint(port), /ECONNREFUSED/);
  assert.deepEqual(await th.hub.reloadTls(), { ok: false, error: 'the hub is shutting down' });
});

// ---- the hub process (main.ts) -------------------------------------------------

interface HubProcess { proc: ChildProcess; port: number; out: () => string }

async function startHubProcess(t: TestContext, files: { certFile: string; keyFile: string }): Promise<HubProcess & { token: string }> {
  const data = tempDir(t, 'data-', dir);
  mkdirSync(data, { recursive: true });
  const token = addDevice(join(data, 'devices.json'), 'dev-1');
  const port = await freePort();
  const hub = spawnHub(t, { HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: data, HUB_TLS_CERT: files.certFile, HUB_TLS_KEY: files.keyFile });
  await waitForOutput(hub, `wss://127.0.0.1:${port}${DEVICE_PATH}`, 20_000, 'hub listening');
  return { proc: hub.proc, port, out: hub.out, token };
}

/**
 * Served files that are symlinks into another directory: replacing their
 * targets there is a renewal the hub's directory watch cannot see.
 */
function linkedFiles(t: TestContext): { served: { certFile: string; keyFile: string }; targets: { certFile: string; keyFile: string } } {
  const base = tempDir(t, 'linked-', dir);
  mkdirSync(join(base, 'live'));
  mkdirSync(join(base, 'store'));
  const targets = { certFile: join(base, 'store', 'cert.pem'), keyFile: join(base, 'store', 'key.pem') };
  const served = { certFile: join(base, 'live', 'cert.pem'), keyFile: join(base, 'live', 'key.pem') };
  install(targets, certA);
  symlinkSync(targets.certFile, served.certFile);
  symlinkSync(targets.keyFile, served.keyFile);
  return { served, targets };
}

/** Renewal while a device streams: `renew` installs B, the running hub must notice. */
async function renewWhileStreaming(t: TestContext, files: { certFile: string; keyFile: string }, renew: (hub: HubProcess) => void): Promise<void> {
  const hub = await startHubProcess(t, files);
  const d = await session(hub.port, hub.token, 'dev-1', readFileSync(certA.caFile));
  t.after(() => d.ws.terminate());
  d.batch(batchOf(1));
  await d.ackFor(1);
  assert.equal(await servedFingerprint(hub.port), fingerprint(certA));

  renew(hub);
  let seq = 1;
  await until(async () => {
    // The device keeps streaming on its connection while the hub reloads.
    d.batch(batchOf(++seq));
    await d.ackFor(seq);
    return await servedFingerprint(hub.port) === fingerprint(certB);
  }, 10_000, 'certificate B served');
  assert.match(hub.out(), /TLS certificate reloaded/);

  hub.proc.kill('SIGTERM');
  const closed = await within(d.closed, 10_000, 'device close');
  assert.equal(closed.code, CloseCode.GOING_AWAY);
  const code = await exitCode(hub.proc);
  assert.equal(code, 0, hub.out());
  assert.match(hub.out(), /shutdown complete/);
}

test('tls - SIGHUP makes the running hub reload its certificate files', async (t) => {
  const { served, targets } = linkedFiles(t);
  await renewWhileStreaming(t, served, (hub) => {
    install(targets, certB);
    hub.proc.kill('SIGHUP');
  });
});

test('tls - the running hub reloads its certificate when the files are replaced, without a signal', async (t) => {
  const files = servedFiles(t);
  await renewWhileStreaming(t, files, () => install(files, certB));
});
