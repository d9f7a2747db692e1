// npm start: the hub plus a small simulated fleet, no other service, no
// setup. First run registers the fleet's devices (data/devices.json holds
// only token hashes; the simulator's tokens go to data/sim-tokens.json).
// Paths are resolved as the hub and its tools do (hub/src/core/paths.ts): data/
// and every relative HUB_* path are taken from where `npm start` was run.
// Runs the compiled hub and simulator (node hub/dist/main.js, node
// device-sim/dist/cli.js, no TypeScript loader), first building what is
// missing or older than its sources (scripts/build.ts: proto, hub,
// device-sim, and the dashboard unless HUB_DASHBOARD_DIR is set). Flags:
// --devices N (default 200), --rate R readings/s per metric (default 1),
// --no-sim (hub only). Every HUB_* variable is passed through.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CONFIG_KEYS, fromInvocation, hubPaths, invocationDir } from '@telemetry/hub';
import { compiledEnv, ensureBuilt, type TargetName } from './build.ts';
import { ensureSimFleet } from './sim-fleet.ts';

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '200' },
    rate: { type: 'string', default: '1' },
    'no-sim': { type: 'boolean', default: false },
  },
});
const devices = Number(values.devices);
if (!Number.isInteger(devices) || devices < 0 || devices > 10_000) {
  console.error('start: --devices must be an integer 0..10000 (use npm run sim for bigger fleets)');
  process.exit(2);
}

const root = resolve(import.meta.dirname, '..');
const from = invocationDir(process.env, process.cwd());
const { dataDir, devicesFile } = hubPaths(process.env, process.cwd());
const simCa = process.env.SIM_CA ? fromInvocation(process.env.SIM_CA, process.env, process.cwd()) : undefined;
const tokensFile = join(dataDir, 'sim-tokens.json');
const port = process.env.HUB_PORT ?? '8080';
mkdirSync(dataDir, { recursive: true });

// Register sim-0000.. once; re-runs reuse the same tokens.
const { added } = ensureSimFleet(devicesFile, tokensFile, devices);
if (added) console.log(`start: registered ${added} simulated devices in ${devicesFile}`);

// Build what is stale (seconds per package; nothing when all is up to date).
const sim = !values['no-sim'] && devices > 0;
const wanted: TargetName[] = ['hub'];
if (sim) wanted.push('device-sim');
if (!process.env.HUB_DASHBOARD_DIR) wanted.push('dashboard');
const build = await ensureBuilt(root, wanted, { log: (line) => console.log(`start: ${line}`) });
for (const f of build.failed) {
  if (f.name === 'dashboard') {
    console.error('start: the dashboard did not build; the hub will say so at /');
  } else {
    console.error(`start: ${f.name} did not build (see above); npm run dev -w hub runs the hub from its sources`);
    process.exit(1);
  }
}

// Plain node on dist/, without the source condition npm test may have set.
const runEnv = compiledEnv(process.env);

const children: ChildProcess[] = [];
const hub = spawn(process.execPath, [join(root, 'hub/dist/main.js')], {
  cwd: root,
  // INIT_CWD: the hub resolves the other relative HUB_* paths from where the
  // user ran this, also when this script was not started by npm.
  env: { ...runEnv, INIT_CWD: from, HUB_PORT: port, HUB_DATA_DIR: dataDir, HUB_DEVICES_FILE: devicesFile },
  stdio: 'inherit',
});
children.push(hub);

// A signal usually arrives twice: one sent to the process group (Ctrl-C in
// a terminal; systemd, Docker and CI runners stopping the job) reaches the
// children directly, and this script forwards SIGTERM for when it was sent
// to this process alone. The hub takes repeats as one signal (a second
// Ctrl-C in the terminal reaches it directly).
const shutdownMs = Math.min(Number(process.env.HUB_SHUTDOWN_TIMEOUT_MS) || CONFIG_KEYS.shutdownTimeoutMs.default, CONFIG_KEYS.shutdownTimeoutMs.max);
const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
let stopping = false;
let exitCode = 0;
function stopAll(code: number): void {
  if (stopping) return;
  stopping = true;
  exitCode = code;
  for (const c of children) if (running(c)) c.kill('SIGTERM');
  // The hub's own deadline plus a margin: then nothing is left behind.
  const t = setTimeout(() => {
    console.error('start: the hub or the simulator did not stop in time; killing them');
    for (const c of children) if (running(c)) c.kill('SIGKILL');
    process.exit(1);
  }, shutdownMs + 5000);
  t.unref();
  void Promise.all(children.filter(running).map((c) => new Promise((r) => c.once('exit', r)))).then(() => process.exit(exitCode));
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));
// SIGHUP to the group means the terminal went away. The hub takes SIGHUP as
// "reload the TLS certificate", so stop it here instead of leaving it behind.
process.on('SIGHUP', () => stopAll(0));

/** Reports a child that did not exit cleanly; npm start then exits non-zero. */
function watchExit(c: ChildProcess, name: string, whileRunning: (code: number | null) => void): void {
  c.once('exit', (code, signal) => {
    if (!stopping) return whileRunning(code);
    if (code !== 0) {
      console.error(`start: the ${name} exited (${signal ?? code}) while stopping`);
      if (exitCode === 0) exitCode = code ?? 1;
    }
  });
}
watchExit(hub, 'hub', (code) => {
  console.error(`start: the hub exited (${code}); stopping`);
  stopAll(code ?? 1);
});

const scheme = process.env.HUB_TLS_CERT ? 'https' : 'http';
const base = `${scheme}://127.0.0.1:${port}`;
/** GET /healthz; over TLS it trusts SIM_CA (the dev CA) as the simulator does. */
function healthy(): Promise<boolean> {
  return new Promise((resolve) => {
    const ca = scheme === 'https' && simCa ? readFileSync(simCa) : undefined;
    const req = (scheme === 'https' ? httpsGet : httpGet)(`${base}/healthz`, { ca, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

async function waitHealthy(): Promise<void> {
  const end = Date.now() + 30_000;
  while (!(await healthy())) {
    if (Date.now() > end || hub.exitCode !== null) {
      const hint = scheme === 'https' && !simCa ? ' (a private CA? set SIM_CA to its file, e.g. certs/dev-ca.pem)' : '';
      throw new Error(`the hub did not become healthy within 30 s${hint}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

waitHealthy().then(() => {
  if (stopping) return;
  const ws = `${scheme === 'https' ? 'wss' : 'ws'}://127.0.0.1:${port}/v1/devices`;
  console.log(`\n  dashboard  ${base}/   (operator admin: the first run printed its password; npm run operator -- admin sets a new one)\n  devices    ${ws}\n  health     ${base}/healthz\n  metrics    ${base}/metrics\n`);
  if (!sim) return;
  const simArgs = [join(root, 'device-sim/dist/cli.js'), '--url', ws, '--devices', String(devices), '--rate', values.rate, '--tokens', tokensFile, '--ramp-ms', '3000'];
  if (simCa) simArgs.push('--ca', simCa);
  const simProc = spawn(process.execPath, simArgs, { cwd: root, env: runEnv, stdio: 'inherit' });
  children.push(simProc);
  watchExit(simProc, 'simulator', (code) => console.error(`start: the simulator exited (${code}); the hub keeps running`));
}, (err: unknown) => {
  if (stopping) return;
  console.error(`start: ${(err as Error).message}`);
  stopAll(1);
});
