// npm start (scripts/start.ts): comes up over TLS with the dev certificate,
// trusting SIM_CA for its own health check as the simulator does; runs the
// compiled hub and simulator (dist/, plain node), not the sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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

/** The processes whose parent is `pid`: their argv and NODE_OPTIONS, from /proc. */
function childrenOf(pid: number): { pid: number; argv: string[]; nodeOptions: string }[] {
  const out: { pid: number; argv: string[]; nodeOptions: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const env = readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      out.push({ pid: Number(name), argv, nodeOptions: env.find((e) => e.startsWith('NODE_OPTIONS='))?.slice('NODE_OPTIONS='.length) ?? '' });
    } catch { /* exited meanwhile */ }
  }
  return out;
}

test('start - npm start runs the compiled hub and simulator: node hub/dist/main.js and node device-sim/dist/cli.js, no tsx', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'start-dist-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await new Promise<number>((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => res(p)); }); });
  // As npm test runs it: the source condition in NODE_OPTIONS, which the
  // compiled processes must not inherit. HUB_DASHBOARD_DIR keeps the shared
  // checkout's dashboard build out of this test.
  const proc = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--devices', '3'], {
    cwd: root,
    env: {
      ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=@telemetry/source`.trim(),
      HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: join(dir, 'data'), HUB_DASHBOARD_DIR: join(dir, 'no-dashboard'), HUB_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  // Up to a full build first (when run alone on a stale checkout), then the fleet connects.
  const up = await new Promise<boolean>((res) => {
    const timer = setTimeout(() => res(false), 180_000);
    const check = () => { if (/3\/3 connected/.test(out)) { clearTimeout(timer); res(true); } };
    proc.stdout!.on('data', check);
    proc.stderr!.on('data', check);
    proc.once('exit', () => { clearTimeout(timer); res(false); });
  });
  assert.ok(up, `the simulated fleet did not connect:\n${out.slice(-1500)}`);

  const kids = childrenOf(proc.pid!);
  const hub = kids.find((k) => k.argv.some((a) => a.includes('/hub/')));
  const sim = kids.find((k) => k.argv.some((a) => a.includes('/device-sim/')));
  assert.ok(hub && sim, `start.ts children: ${JSON.stringify(kids)}`);
  assert.deepEqual(hub.argv, [process.execPath, join(root, 'hub/dist/main.js')]);
  assert.deepEqual(sim.argv.slice(0, 2), [process.execPath, join(root, 'device-sim/dist/cli.js')]);
  for (const k of [hub, sim]) {
    assert.doesNotMatch(k.argv.join(' '), /tsx|--import|--conditions|\.ts\b/, `${k.pid}: ${k.argv.join(' ')}`);
    assert.doesNotMatch(k.nodeOptions, /tsx|--import|@telemetry\/source/, `${k.pid} NODE_OPTIONS: ${k.nodeOptions}`);
  }
  proc.kill('SIGINT');
  const code = await new Promise<number | null>((r) => proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', r));
  assert.equal(code, 0, out.slice(-1500));
});
