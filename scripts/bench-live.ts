// npm run bench:live [-- --devices 1000,10000 --seconds 30 --rate 1]
// The live path, measured in a real browser. For each fleet size: a hub
// process (with --cpu-prof), simulator processes, and Debian's chromium
// signed in to the dashboard. Prints, per fleet size:
// - frame bytes/s the overview page receives (and the devices page);
// - time from a reading's device timestamp to its effect painted in the
//   browser (p50/p99 over every latest value the devices page painted);
// - hub CPU on the live path as a share of the hub's total CPU, from the
//   hub's CPU profile: samples whose stack passes through hub/dist/live/
//   (the compiled hub, built first when stale; hub/src/live/ for a hub run
//   from its sources).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { BENCH_METRICS_TOKEN, compiled, freePort, scrape, waitHealthy, type Launch } from './bench-lib.ts';
import { ensureSimFleet } from './sim-fleet.ts';

const { values } = parseArgs({ options: {
  devices: { type: 'string', default: '1000,10000' }, seconds: { type: 'string', default: '30' },
  rate: { type: 'string', default: '1' }, 'batch-ms': { type: 'string', default: '1000' },
} });
const sizes = values.devices.split(',').map(Number);
const seconds = Number(values.seconds);
const root = resolve(import.meta.dirname, '..');
const PASSWORD = 'bench-live-password';

interface CpuProfile { nodes: { id: number; callFrame: { url: string; functionName: string }; hitCount?: number; children?: number[] }[] }

/** Share of non-idle samples whose stack includes hub/dist/live/ (or hub/src/live/). */
function liveShare(file: string): { live: number; total: number; busy: number; top: [string, number][] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  let live = 0, total = 0, all = 0, idle = 0;
  const self = new Map<string, number>();
  const walk = (id: number, inLive: boolean): void => {
    const n = byId.get(id)!;
    const here = inLive || /\/hub\/(dist|src)\/live\//.test(n.callFrame.url);
    const fn = n.callFrame.functionName;
    all += n.hitCount ?? 0;
    if (fn === '(idle)') idle += n.hitCount ?? 0;
    if (fn !== '(idle)' && fn !== '(program)' && fn !== '(garbage collector)') {
      total += n.hitCount ?? 0;
      if (here) {
        live += n.hitCount ?? 0;
        const k = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}`;
        self.set(k, (self.get(k) ?? 0) + (n.hitCount ?? 0));
      }
    }
    for (const c of n.children ?? []) walk(c, here);
  };
  walk(p.nodes[0]!.id, false);
  return { live, total, busy: (all - idle) / all, top: [...self].sort((a, b) => b[1] - a[1]).slice(0, 8) };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function run(n: number, bin: { hub: Launch; sim: Launch }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-live-'));
  const profDir = join(dir, 'prof');
  const registry = join(dir, 'devices.json');
  const tokens = join(dir, 'tokens.json');
  ensureSimFleet(registry, tokens, n);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const hub = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', profDir, ...bin.hub.args], {
    cwd: root, stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...bin.hub.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: join(dir, 'data'), HUB_DEVICES_FILE: registry,
      HUB_ADMIN_PASSWORD: PASSWORD, HUB_METRICS_TOKEN: BENCH_METRICS_TOKEN, HUB_LOG_LEVEL: 'warn',
      HUB_MAX_CONN_PER_ADDRESS: '100000', HUB_MAX_READINGS_PER_SEC: '100000', HUB_READINGS_BURST: '1000000', HUB_ADMISSION_RATE: '5000', HUB_ADMISSION_BURST: '20000',
    },
  });
  const children: ChildProcess[] = [hub];
  try {
    await waitHealthy(base, hub);
    const procs = Math.max(1, Math.ceil(n / 5000));
    const sim = spawn(process.execPath, [...bin.sim.args, '--url', `ws://127.0.0.1:${port}/v1/devices`,
      '--devices', String(n), '--rate', values.rate, '--batch-ms', values['batch-ms'], '--tokens', tokens, '--ramp-ms', String(Math.max(2000, n / 2)), '--processes', String(procs), '--quiet'],
    { cwd: root, env: bin.sim.env, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(sim);

    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      await page.goto(`${base}/login`);
      await page.fill('#user', 'admin');
      await page.fill('#password', PASSWORD);
      await page.click('button[type=submit]');
      await page.waitForURL(`${base}/`);
      // Wait for the fleet to be up.
      for (let i = 0; ; i++) {
        const m = await scrape(port);
        if ((m.get('hub_device_sessions') ?? 0) >= n) break;
        if (i > 240) throw new Error(`only ${m.get('hub_device_sessions')} of ${n} devices connected`);
        await new Promise((r) => setTimeout(r, 500));
      }
      await new Promise((r) => setTimeout(r, 5000));
      type LiveStats = { frames: number; bytes: number; latencies: number[]; reset(): void };
      const measure = async (): Promise<{ frames: number; bytes: number; latencies: number[] }> => {
        await page.evaluate(() => (globalThis as unknown as { __live: LiveStats }).__live.reset());
        await new Promise((r) => setTimeout(r, seconds * 1000));
        return page.evaluate(() => { const l = (globalThis as unknown as { __live: LiveStats }).__live; return { frames: l.frames, bytes: l.bytes, latencies: [...l.latencies] }; });
      };
      const m0 = await scrape(port);
      const overview = await measure();
      const m1 = await scrape(port);
      await page.goto(`${base}/#/devices`);
      await new Promise((r) => setTimeout(r, 3000));
      const devices = await measure();
      const readings = ((m1.get('hub_readings_total{result="accepted"}') ?? 0) - (m0.get('hub_readings_total{result="accepted"}') ?? 0)) / seconds;
      console.log(`\n${n} devices (${procs} simulator process${procs > 1 ? 'es' : ''}, ${Math.round(readings)} readings/s accepted):`);
      console.log(`  overview page: ${overview.frames} frames in ${seconds} s, ${Math.round(overview.bytes / seconds)} B/s (${Math.round(overview.bytes / Math.max(1, overview.frames))} B/frame)`);
      console.log(`  devices page:  ${devices.frames} frames in ${seconds} s, ${Math.round(devices.bytes / seconds)} B/s (${Math.round(devices.bytes / Math.max(1, devices.frames))} B/frame)`);
      const l = devices.latencies;
      console.log(`  device timestamp -> painted in the browser: p50 ${Math.round(quantile(l, 0.5))} ms, p99 ${Math.round(quantile(l, 0.99))} ms (${l.length} readings)`);
      if (n === sizes[0]) {
        await page.goto(`${base}/#/`);
        await new Promise((r) => setTimeout(r, 5000));
        await page.screenshot({ path: join(root, 'test-results', `overview-${n}.png`) });
      }
    } finally {
      await browser.close();
    }
    sim.kill('SIGTERM');
    await new Promise((r) => sim.once('exit', r));
    hub.kill('SIGTERM');
    await new Promise((r) => hub.once('exit', r));
    const prof = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (prof) {
      const s = liveShare(join(profDir, prof));
      console.log(`  hub CPU on the live path: ${(100 * s.live / s.total).toFixed(1)} % of the hub's busy CPU samples (the whole run: ramp-up, overview, devices page); the hub's main thread was busy (not idle) in ${(100 * s.busy).toFixed(0)} % of its samples`);
      for (const [k, v] of s.top) console.log(`    ${(100 * v / s.total).toFixed(1).padStart(5)} %  ${k}`);
    }
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

// The compiled hub and simulator (built first when stale): what users run.
const bin = await compiled(root);
console.log(`hub: ${bin.hub.from}; simulator: ${bin.sim.from}`);
for (const n of sizes) await run(n, bin);
