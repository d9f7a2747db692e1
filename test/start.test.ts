// npm start (scripts/start.ts): comes up over TLS with the dev certificate,
// trusting SIM_CA for its own health check as the simulator does; runs the
// compiled hub and simulator (dist/, plain node), not the sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { makeDevCert } from '../scripts/dev-cert.ts';
import { tempDir } from './support/fs.ts';
import { freePort } from './support/net.ts';
import { exitCode, spawnCollecting, waitForOutput } from './support/proc.ts';

const root = resolve(import.meta.dirname, '..');

test('start - npm start over wss with the dev certificate comes up and prints the URLs', async (t) => {
  const dir = tempDir(t, 'start-tls-');
  const cert = makeDevCert(join(dir, 'certs'));
  const port = await freePort();
  const start = spawnCollecting(t, process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--no-sim', '--devices', '3'], {
    cwd: root, name: 'start',
    env: { ...process.env, HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: join(dir, 'data'), HUB_TLS_CERT: cert.certFile, HUB_TLS_KEY: cert.keyFile, SIM_CA: cert.caFile, HUB_LOG_LEVEL: 'warn' },
  });
  // The URL block start.ts prints once its own health check over TLS passed (devices, then health).
  await waitForOutput(start, new RegExp(`wss://127\\.0\\.0\\.1:${port}/v1/devices[\\s\\S]*health`), 40_000, 'start to come up over TLS');
  const out = start.out();
  assert.match(out, new RegExp(`dashboard\\s+https://127\\.0\\.0\\.1:${port}/`));
  assert.match(out, /First run: created operator "admin" with password {2}[A-Za-z0-9_-]{20}/);
  assert.match(out, new RegExp(`health\\s+https://127\\.0\\.0\\.1:${port}/healthz`));
  start.proc.kill('SIGINT');
  assert.equal(await exitCode(start.proc), 0);
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
  const dir = tempDir(t, 'start-dist-');
  const port = await freePort();
  // As npm test runs it: the source condition in NODE_OPTIONS, which the
  // compiled processes must not inherit. HUB_DASHBOARD_DIR keeps the shared
  // checkout's dashboard build out of this test.
  const start = spawnCollecting(t, process.execPath, ['--import', 'tsx', 'scripts/start.ts', '--devices', '3'], {
    cwd: root, name: 'start',
    env: {
      ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=@telemetry/source`.trim(),
      HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_DATA_DIR: join(dir, 'data'), HUB_DASHBOARD_DIR: join(dir, 'no-dashboard'), HUB_LOG_LEVEL: 'warn',
    },
  });
  const proc = start.proc;
  // Up to a full build first (when run alone on a stale checkout), then the fleet connects.
  await waitForOutput(start, /3\/3 connected/, 180_000, 'the simulated fleet to connect');

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
  assert.equal(await exitCode(proc), 0, start.out().slice(-1500));
});
