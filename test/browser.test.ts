// The dashboard in a real browser (Debian's chromium, driven by
// playwright-core; never a downloaded browser) against a real hub process
// and a simulated fleet: sign in, the device count matches the fleet, a chart
// moves, a device opens, an alarm fires when a device pushes a metric over
// the threshold, and the connection indicator goes to "reconnecting" while
// the hub restarts and back to "live". Screenshots of every page go to
// test-results/screenshots/ (git-ignored).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import test from 'node:test';
import { chromium, type Page } from 'playwright-core';
import { Fleet, SimDevice, fleetCredentials, loadTokenFile, type SensorModel } from '@telemetry/device-sim';
import { waitHealthy } from '../scripts/bench-lib.ts';
import { ensureSimFleet } from '../scripts/sim-fleet.ts';
import { tempDir } from './support/fs.ts';
import { freePort } from './support/net.ts';
import { exitCode } from './support/proc.ts';
import { until } from './support/wait.ts';

const root = resolve(import.meta.dirname, '..');
const shots = join(root, 'test-results', 'screenshots');
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const PASSWORD = 'browser-test-password';
const FLEET = 24;

/** A temperature the test sets: how "the simulator pushes a metric over a threshold". */
class Heater implements SensorModel {
  readonly name = 'temperature';
  readonly unit = 'degC';
  level = 21;
  sample(): number { return this.level; }
}

/** test/support's until() on a page: `f` failing counts as false, polled every 200 ms; a timeout screenshots the page first. */
async function untilOnPage(page: Page, what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  await until(() => f().catch(() => false), ms, what, 200).catch(async (err: unknown) => {
    await page.screenshot({ path: join(shots, `failed-${what.replace(/\W+/g, '-')}.png`) }).catch(() => {});
    throw err;
  });
}

test('browser - sign in, fleet, charts, device, alarm, reconnect', { timeout: 180_000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium (.ci/run does)`);
  assert.ok(existsSync(join(root, 'dashboard/dist/index.html')), 'dashboard not built: npm run build -w dashboard (npm test does)');
  mkdirSync(shots, { recursive: true });
  const dir = tempDir(t, 'browser-');
  const registry = join(dir, 'devices.json');
  const tokensFile = join(dir, 'tokens.json');
  ensureSimFleet(registry, tokensFile, FLEET + 1);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;

  let hub: ChildProcess | null = null;
  let hubLog = '';
  const startHub = async (): Promise<void> => {
    hub = spawn(process.execPath, ['--import', 'tsx', join(root, 'hub/src/main.ts')], {
      cwd: root,
      env: { ...process.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: join(dir, 'data'), HUB_DEVICES_FILE: registry, HUB_ADMIN_PASSWORD: PASSWORD, HUB_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    hub.stdout!.on('data', (c: Buffer) => { hubLog += c.toString(); });
    hub.stderr!.on('data', (c: Buffer) => { hubLog += c.toString(); });
    const h = hub;
    await waitHealthy(base, h).catch((err: Error) => { throw new Error(`${err.message}:\n${hubLog.slice(-2000)}`); });
  };
  const stopHub = async (): Promise<void> => {
    const h = hub;
    if (!h || h.exitCode !== null) return;
    h.kill('SIGTERM');
    await exitCode(h);
  };
  t.after(stopHub);
  await startHub();

  const tokens = loadTokenFile(tokensFile);
  const creds = fleetCredentials(tokens, { prefix: 'sim-', count: FLEET + 1 });
  const url = `ws://127.0.0.1:${port}/v1/devices`;
  const fleet = new Fleet({ url, devices: creds.slice(0, FLEET), rate: 1, batchIntervalMs: 500, rampMs: 1000 });
  t.after(() => fleet.stop());
  const heater = new Heater();
  const probe = new SimDevice({ ...creds[FLEET]!, url, rate: 2, batchIntervalMs: 250, sensors: [heater] });
  probe.start();
  t.after(() => probe.stop());

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Every page (sign-in and dashboard) reports Content-Security-Policy violations here.
  const cspViolations: string[] = [];
  await page.exposeFunction('reportCspViolation', (v: string) => { cspViolations.push(v); });
  await page.addInitScript({
    content: "document.addEventListener('securitypolicyviolation', (e) => window.reportCspViolation(e.violatedDirective + ' ' + e.blockedURI + ' at ' + e.sourceFile + ':' + e.lineNumber));",
  });

  // Sign in: / sends an anonymous browser to /login.
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.match((await page.request.get(`${base}/login`)).headers()['content-security-policy'] ?? '', /default-src 'none'/);
  await page.screenshot({ path: join(shots, 'login.png') });
  await page.fill('#password', 'wrong-password');
  await page.click('button[type=submit]');
  assert.match(await page.textContent('[data-testid=login-error]') ?? '', /wrong name or password/);
  await page.fill('#user', 'admin');
  await page.fill('#password', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/`);
  page.setDefaultTimeout(2000);
  const index = await page.request.get(`${base}/`);
  assert.match(index.headers()['content-security-policy'] ?? '', /default-src 'self';.* connect-src 'self'/, 'the dashboard is served with its CSP');
  const conn = page.locator('[data-testid=conn]');
  await untilOnPage(page, 'live', async () => (await conn.getAttribute('data-state')) === 'live');

  // Overview: the device count matches the fleet, and the throughput chart moves.
  const all = FLEET + 1;
  await untilOnPage(page, `${all} / ${all} online`, async () => ((await page.textContent('[data-testid=kpi-online]')) ?? '').replace(/\s+/g, ' ').includes(`${all} / ${all}`));
  const chart = page.locator('[data-testid=chart-throughput]');
  const points0 = Number(await chart.getAttribute('data-points'));
  await untilOnPage(page, 'throughput chart to grow', async () => Number(await chart.getAttribute('data-points')) >= points0 + 3);
  await untilOnPage(page, 'throughput above zero', async () => Number(await chart.getAttribute('data-last')) > 0);
  const temp = page.locator('[data-testid=chart-metric-temperature]');
  await untilOnPage(page, 'temperature chart', async () => Number(await temp.getAttribute('data-points')) >= 1, 30_000);

  // Devices: every device listed, search narrows it, a row opens the device.
  await page.goto(`${base}/#/devices`);
  await untilOnPage(page, 'device table', async () => ((await page.textContent('[data-testid=device-count]')) ?? '').includes(String(all)));
  await page.screenshot({ path: join(shots, 'devices.png') });
  await page.fill('[data-testid=device-search]', 'sim-0003');
  await untilOnPage(page, 'search', async () => (await page.locator('[data-testid=device-row]').count()) === 1);
  assert.equal(await page.locator('[data-testid=device-row]').getAttribute('data-presence'), 'online');
  await page.click('[data-testid=device-row][data-id=sim-0003]');
  await page.waitForURL(/#\/device\/sim-0003$/);
  await untilOnPage(page, 'device detail', async () => (await page.locator('[data-testid=device-detail][data-id=sim-0003]').count()) === 1);
  await untilOnPage(page, 'latest temperature', async () => /\d/.test((await page.textContent('[data-testid=latest-temperature]')) ?? ''));
  await untilOnPage(page, 'connection history', async () => (await page.locator('[data-testid=presence-row]').count()) >= 1);
  await page.screenshot({ path: join(shots, 'device.png') });

  // Alarms: add a rule in the UI, push the probe's temperature over it, see it fire.
  await page.goto(`${base}/#/alarms`);
  await page.fill('[data-testid=rule-name]', 'Overheat');
  await page.fill('[data-testid=rule-metric]', 'temperature');
  await page.selectOption('[data-testid=rule-op]', '>');
  await page.fill('[data-testid=rule-threshold]', '80');
  await page.fill('[data-testid=rule-for]', '2');
  await page.click('[data-testid=rule-add]');
  await untilOnPage(page, 'rule listed', async () => (await page.locator('[data-testid=rule-row]').count()) === 1);
  assert.equal(await page.locator(`[data-testid=alarm-active]`).count(), 0, 'nothing is over 80 yet');
  heater.level = 95;
  const probeId = creds[FLEET]!.id;
  await untilOnPage(page, 'alarm', async () => (await page.locator(`[data-testid=alarm-active][data-device=${probeId}]`).count()) >= 1);
  assert.match((await page.textContent('[data-testid=alarm-badge]')) ?? '', /1/);
  await page.screenshot({ path: join(shots, 'alarms.png') });
  await page.goto(`${base}/#/`);
  await untilOnPage(page, 'alarm on the overview', async () => (await page.locator(`[data-testid=alarm-active][data-device=${probeId}]`).count()) >= 1);
  // A few 10 s windows on the metric charts before the picture (it is the README's).
  await untilOnPage(page, 'three temperature windows', async () => Number(await temp.getAttribute('data-points')) >= 3, 40_000);
  await page.screenshot({ path: join(shots, 'overview.png') });
  heater.level = 21;

  // The hub restarts: the indicator says so, then comes back by itself (the session survives).
  await stopHub();
  await untilOnPage(page, 'reconnecting', async () => (await conn.getAttribute('data-state')) === 'reconnecting');
  await page.screenshot({ path: join(shots, 'reconnecting.png') });
  await startHub();
  await untilOnPage(page, 'live again', async () => (await conn.getAttribute('data-state')) === 'live', 30_000);
  await untilOnPage(page, 'fleet back', async () => ((await page.textContent('[data-testid=kpi-online]')) ?? '').replace(/\s+/g, ' ').includes(`/ ${all}`));

  assert.deepEqual(errors, [], 'no errors in the page');
  assert.deepEqual(cspViolations, [], 'the dashboard works within its Content-Security-Policy');
});
