// npm start (scripts/start.ts): comes up over TLS with the dev certificate,
// trusting SIM_CA for its own health check as the simulator does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { makeDevCert } from '../scripts/dev-cert.ts';

const root = resolve(import.meta.dirname, '..');

test('start - npm start over wss with the dev certificate comes up and prints the URLs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'start-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = makeDevCert(join(dir, 'certs'));
  const port = await new Promise<number>((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => res(p)); }); });
  const proc = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--no-sim', '--devices', '3'], {
    cwd: root,
    env: { ...process.env, HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: join(dir, 'data'), HUB_TLS_CERT: cert.certFile, HUB_TLS_KEY: cert.keyFile, SIM_CA: cert.caFile, HUB_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const up = await new Promise<boolean>((res) => {
    const timer = setTimeout(() => res(false), 40_000);
    proc.stdout!.on('data', () => { if (out.includes(`wss://127.0.0.1:${port}/v1/devices`) && out.includes('health')) { clearTimeout(timer); res(true); } });
    proc.once('exit', () => { clearTimeout(timer); res(false); });
  });
  assert.ok(up, `start did not come up over TLS:\n${out.slice(-1500)}`);
  assert.match(out, new RegExp(`dashboard\\s+https://127\\.0\\.0\\.1:${port}/`));
  assert.match(out, /First run: created operator "admin" with password  [A-Za-z0-9_-]{20}/);
  assert.match(out, new RegExp(`health\\s+https://127\\.0\\.0\\.1:${port}/healthz`));
  proc.kill('SIGINT');
  const code = await new Promise<number | null>((r) => proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', r));
  assert.equal(code, 0);
});
