// Device administration in a real browser (Debian's chromium, driven by
// playwright-core; never a downloaded browser) against a real hub process:
// an admin registers a device in the dashboard's dialog and reads its token
// (shown once), a real device connects with that token and shows online,
// the admin bulk-disables it (with confirmation) and sees it go offline with
// the 4008 reason, enables it again on its page, and finds it all in the
// audit trail. On its page the admin sets its sample interval to 250 ms
// (a simulated device with config + invoke now runs with its token), sees the
// report arrive, the device sample faster, and a ping succeed with its
// uptime. A viewer (created with `npm run operator -- --role viewer`)
// sees no register button, no selection, no bulk actions, no management
// panel, no configuration or command form and no audit page, and the hub
// refuses their writes.
// UPDATE_SCREENSHOTS=1 writes docs/screenshots/devices-register.png (the
// register dialog with its token) and docs/screenshots/device-config.png
// (the device page's configuration panel); other screenshots go to
// test-results/screenshots/ (git-ignored).
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import test from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Fleet, fleetCredentials, loadTokenFile } from '@telemetry/device-sim';
import { RawDevice, batchOf } from '../hub/test/helpers.ts';
import { waitHealthy } from '../scripts/bench-lib.ts';
import { ensureSimFleet } from '../scripts/sim-fleet.ts';
import { tempDir } from './support/fs.ts';
import { freePort } from './support/net.ts';
import { exitCode } from './support/proc.ts';
import { until, within } from './support/wait.ts';

const root = resolve(import.meta.dirname, '..');
const shots = join(root, 'test-results', 'screenshots');
const docShot = join(root, 'docs', 'screenshots', 'devices-register.png');
const configShot = join(root, 'docs', 'screenshots', 'device-config.png');
// As test/browser.test.ts (importing it would run its test too).
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
const ADMIN_PASSWORD = 'device-admin-test-password';
const VIEWER = { user: 'watcher', password: 'viewer-test-password' };
const FLEET = 6;
const NEW_ID = 'ui-dev-1';

/** test/support's until() on a page: `f` failing counts as false, polled every 200 ms; a timeout screenshots the page first. */
async function untilOnPage(page: Page, what: string, f: () => Promise<boolean>, ms = 20_000): Promise<void> {
  await until(() => f().catch(() => false), ms, what, 200).catch(async (err: unknown) => {
    await page.screenshot({ path: join(shots, `failed-admin-${what.replace(/\W+/g, '-')}.png`) }).catch(() => {});
    throw err;
  });
}

/** A fresh browser context (its own cookies) signed in as `user`, on the dashboard. */
async function signedIn(browser: Browser, base: string, user: string, password: string, errors: string[]): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${user}: ${e.message}`));
  await page.goto(`${base}/login`);
  await page.fill('#user', user);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/`);
  page.setDefaultTimeout(5000);
  await untilOnPage(page, `${user} role known`, async () => (await page.getAttribute('[data-testid=user]', 'data-role')) !== '');
  return page;
}

const count = (page: Page, selector: string): Promise<number> => page.locator(selector).count();

test('browser - device admin: register, connect, bulk disable, configure, command, audit; a viewer sees none of it', { timeout: 180_000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: apt-get install chromium (.ci/run does)`);
  assert.ok(existsSync(join(root, 'dashboard/dist/index.html')), 'dashboard not built: npm run build -w dashboard (npm test does)');
  mkdirSync(shots, { recursive: true });
  const dir = tempDir(t, 'device-admin-');
  const registry = join(dir, 'devices.json');
  const tokensFile = join(dir, 'tokens.json');
  const operatorsFile = join(dir, 'operators.json');
  ensureSimFleet(registry, tokensFile, FLEET);
  // The viewer account, the way an operator makes one (the hub reads the file at start; HUB_ADMIN_PASSWORD adds admin).
  execFileSync('npm', ['run', '--silent', 'operator', '--', VIEWER.user, '--role', 'viewer', '--password-stdin', '--file', operatorsFile], {
    cwd: root, input: `${VIEWER.password}\n`, stdio: ['pipe', 'ignore', 'pipe'],
  });

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let hubLog = '';
  const hub: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(root, 'hub/src/main.ts')], {
    cwd: root,
    env: {
      ...process.env, HUB_HOST: '127.0.0.1', HUB_PORT: String(port), HUB_DATA_DIR: join(dir, 'data'), HUB_DEVICES_FILE: registry,
      HUB_OPERATORS_FILE: operatorsFile, HUB_ADMIN_PASSWORD: ADMIN_PASSWORD, HUB_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  hub.stdout!.on('data', (c: Buffer) => { hubLog += c.toString(); });
  hub.stderr!.on('data', (c: Buffer) => { hubLog += c.toString(); });
  t.after(async () => {
    if (hub.exitCode !== null) return;
    hub.kill('SIGTERM');
    await exitCode(hub);
  });
  await waitHealthy(base, hub).catch((err: Error) => { throw new Error(`${err.message}:\n${hubLog.slice(-2000)}`); });

  // A few simulated devices, so the table looks like a fleet.
  const url = `ws://127.0.0.1:${port}/v1/devices`;
  const fleet = new Fleet({ url, devices: fleetCredentials(loadTokenFile(tokensFile), { prefix: 'sim-', count: FLEET }), rate: 1, batchIntervalMs: 500, rampMs: 500 });
  t.after(() => fleet.stop());

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const errors: string[] = [];

  // ---- admin: register a device in the dialog, read its token once
  const page = await signedIn(browser, base, 'admin', ADMIN_PASSWORD, errors);
  assert.equal(await page.getAttribute('[data-testid=user]', 'data-role'), 'admin');
  await page.goto(`${base}/#/devices`);
  await untilOnPage(page, 'fleet listed', async () => ((await page.textContent('[data-testid=device-count]')) ?? '').startsWith(`${FLEET} devices`));
  await untilOnPage(page, 'fleet online', async () => (await count(page, '[data-testid=device-row][data-presence=online]')) === FLEET);

  await page.click('[data-testid=register-open]');
  const dialog = page.locator('[role=dialog][data-testid=register-dialog]');
  await dialog.waitFor();
  const labelledBy = await dialog.getAttribute('aria-labelledby');
  assert.ok(labelledBy, 'the dialog is labelled');
  assert.equal(await page.textContent(`[id="${labelledBy}"]`), 'Register a device');
  // Strings, not functions: the root tsconfig has no DOM types.
  assert.equal(await page.evaluate("document.activeElement?.getAttribute('data-testid')"), 'register-id', 'focus moves into the dialog');
  // The hub's own error text surfaces: an id it refuses.
  await page.fill('[data-testid=register-id]', 'bad id!');
  await page.click('[data-testid=register-submit]');
  assert.match((await page.textContent('[data-testid=register-error]')) ?? '', /invalid device id/);
  await page.fill('[data-testid=register-id]', NEW_ID);
  await page.fill('[data-testid=register-tags]', 'site=lab\nkind=climate');
  await page.click('[data-testid=register-submit]');
  const tokenField = page.locator('[data-testid=token-value]');
  await tokenField.waitFor();
  const token = await tokenField.inputValue();
  assert.ok(token.length >= 20, `a token is shown (${token.length} characters)`);
  assert.match((await page.textContent('[data-testid=register-dialog]')) ?? '', /will not be shown again/);
  const command = (await page.textContent('[data-testid=token-command]')) ?? '';
  assert.ok(command.includes(token) && command.includes(`ws://127.0.0.1:${port}/v1/devices`), `the connect example carries the token and the URL: ${command}`);
  await page.click('[data-testid=token-copy]');
  await untilOnPage(page, 'copied', async () => (await count(page, '[data-testid=token-copied]')) === 1);
  if (((await page.textContent('[data-testid=token-copied]')) ?? '').includes('Copied')) {
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), token, 'the clipboard holds the token');
  } else {
    assert.equal(await page.evaluate('document.activeElement?.value.slice(document.activeElement.selectionStart, document.activeElement.selectionEnd)'), token, 'the fallback selects the token');
  }
  await untilOnPage(page, 'new device listed behind the dialog', async () => (await count(page, `[data-testid=device-row][data-id=${NEW_ID}]`)) === 1);
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(join(root, 'docs', 'screenshots'), { recursive: true });
    await page.screenshot({ path: docShot });
  }
  await page.screenshot({ path: join(shots, 'devices-register.png') });
  await page.click('[data-testid=register-done]');
  assert.equal(await count(page, '[role=dialog]'), 0, 'the dialog closed');
  const row = page.locator(`[data-testid=device-row][data-id=${NEW_ID}]`);
  assert.notEqual(await row.getAttribute('data-presence'), 'online');

  // ---- a real device connects with the token shown
  const dev = new RawDevice(url, { token });
  t.after(() => dev.ws.terminate());
  await within(dev.opened, 5000, `${NEW_ID} open`);
  dev.hello(NEW_ID);
  await dev.next('welcome');
  dev.batch(batchOf(1));
  await dev.ackFor(1);
  await untilOnPage(page, 'new device online', async () => (await row.getAttribute('data-presence')) === 'online');
  assert.equal(await row.getAttribute('data-disabled'), 'false');

  // ---- bulk: select it, Disable, confirm
  await row.locator('[data-testid=device-select]').check();
  assert.match((await page.textContent('[data-testid=bulk-count]')) ?? '', /1 device\b/);
  await page.click('[data-testid=bulk-disable]');
  const confirm = page.locator('[role=dialog][data-testid=confirm-dialog]');
  await confirm.waitFor();
  assert.match((await confirm.textContent()) ?? '', /Disable 1 device\?/);
  assert.equal(await row.getAttribute('data-presence'), 'online', 'nothing happens before the confirmation');
  await page.click('[data-testid=confirm-ok]');
  await confirm.waitFor({ state: 'detached' });
  const closed = await within(dev.closed, 5000, 'the session closed by the hub');
  assert.equal(closed.code, 4008);
  await untilOnPage(page, 'disabled device offline', async () => (await row.getAttribute('data-presence')) === 'offline');
  assert.match((await row.getAttribute('data-reason')) ?? '', /4008/);
  await untilOnPage(page, 'disabled badge', async () => (await row.getAttribute('data-disabled')) === 'true');
  assert.match((await page.textContent('[data-testid=bulk-result]')) ?? '', /Disabled 1 device\./);
  await page.screenshot({ path: join(shots, 'devices-disabled.png') });
  // The search and the tag filter go to the hub.
  await page.fill('[data-testid=device-tag-filter]', 'kind=climate');
  await untilOnPage(page, 'tag filter', async () => (await count(page, '[data-testid=device-row]')) === 1);
  await page.fill('[data-testid=device-tag-filter]', '');
  await page.fill('[data-testid=device-search]', 'sim-');
  await untilOnPage(page, 'search', async () => (await count(page, '[data-testid=device-row]')) === FLEET);
  await page.fill('[data-testid=device-search]', '');

  // ---- the device page: the reason, and Enable (a device.update)
  await untilOnPage(page, 'all listed again', async () => (await count(page, '[data-testid=device-row]')) === FLEET + 1);
  await row.locator('a').click();
  await page.waitForURL(new RegExp(`#/device/${NEW_ID}$`));
  await untilOnPage(page, 'reason on the device page', async () => /4008/.test((await page.textContent('[data-testid=presence-reason]')) ?? ''));
  await untilOnPage(page, 'registry entry', async () => (await page.getAttribute('[data-testid=device-admin-state]', 'data-disabled')) === 'true');
  await page.click('[data-testid=device-enable]');
  await untilOnPage(page, 'enabled', async () => (await page.getAttribute('[data-testid=device-admin-state]', 'data-disabled')) === 'false');
  await page.screenshot({ path: join(shots, 'device-admin.png') });

  // ---- configuration: a simulated device (it lists config + invoke) runs with the same token
  const sim = new Fleet({ url, devices: [{ id: NEW_ID, token }], rate: 1, batchIntervalMs: 1000 });
  t.after(() => sim.stop());
  const configRow = (key: string) => page.locator(`[data-testid=config-row-${key}]`);
  const reportedSample = async (): Promise<string> => ((await configRow('sampleIntervalMs').locator('[data-testid=config-reported]').textContent()) ?? '').trim();
  await untilOnPage(page, 'first config report', async () => (await reportedSample()) === '1000 ms');
  assert.match((await page.textContent('[data-testid=config-reported-version]')) ?? '', /version 0/);
  const generated = (): number => sim.stats().counters.readingsGenerated;
  const readingsOver = async (ms: number): Promise<number> => {
    const from = generated();
    await new Promise((r) => setTimeout(r, ms));
    return generated() - from;
  };
  const slow = await readingsOver(3000);
  // Client-side checks first: a custom value that is not an object is refused before any request.
  await page.fill('[data-testid=config-custom-input]', '[1, 2]');
  await page.click('[data-testid=config-save]');
  assert.match((await page.textContent('[data-testid=config-error]')) ?? '', /must be a JSON object/);
  await page.fill('[data-testid=config-custom-input]', '');
  await page.fill('[data-testid=config-sample-input]', '250');
  await page.click('[data-testid=config-save]');
  await page.locator('[data-testid=config-saved]').waitFor();
  await untilOnPage(page, 'desired 250', async () => ((await configRow('sampleIntervalMs').locator('[data-testid=config-desired]').textContent()) ?? '').trim() === '250 ms');
  await untilOnPage(page, 'reported 250', async () => (await reportedSample()) === '250 ms', 15_000);
  await untilOnPage(page, 'nothing pending', async () => (await configRow('sampleIntervalMs').getAttribute('data-pending')) === 'false' && (await count(page, '[data-testid=config-pending]')) === 0);
  assert.match((await page.textContent('[data-testid=config-desired-version]')) ?? '', /version \d+.*by admin/s);
  const fast = await readingsOver(3000);
  assert.ok(fast > slow * 2, `the device samples faster: ${fast} readings in 3 s at 250 ms against ${slow} at 1000 ms`);
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    await page.locator('[data-testid=device-config]').scrollIntoViewIfNeeded();
    await page.screenshot({ path: configShot });
  }

  // ---- a command: ping answers with the device's uptime
  await page.selectOption('[data-testid=command-name]', 'ping');
  await page.click('[data-testid=command-send]');
  const pingRow = page.locator('[data-testid=command-row][data-name=ping]').first();
  await untilOnPage(page, 'ping succeeded', async () => (await pingRow.getAttribute('data-state')) === 'succeeded', 15_000);
  assert.match((await pingRow.locator('[data-testid=command-result]').textContent()) ?? '', /"uptime_ms":\s*\d+/);
  await page.screenshot({ path: join(shots, 'device-config.png') });

  // ---- the audit trail
  await page.click('[data-testid=nav-audit]');
  await page.waitForURL(/#\/audit$/);
  const auditRow = (action: string, extra = '[data-outcome=ok]') => `[data-testid=audit-row][data-action="${action}"][data-actor=admin]${extra}`;
  await untilOnPage(page, 'audit entries', async () => (await count(page, auditRow('device.create'))) === 1);
  assert.match((await page.textContent(auditRow('device.create'))) ?? '', new RegExp(`id=${NEW_ID}`));
  assert.equal(await count(page, auditRow('device.bulk')), 1, 'the bulk disable');
  assert.match((await page.textContent(auditRow('device.bulk'))) ?? '', new RegExp(`action=disable.*ids=${NEW_ID}`));
  assert.equal(await count(page, auditRow('device.update', `[data-target="${NEW_ID}"][data-outcome=ok]`)), 1, 'the enable');
  assert.equal(await count(page, auditRow('device.create', '[data-outcome=failed]')), 1, 'the refused id');
  assert.ok((await count(page, auditRow('sign-in'))) >= 1);
  assert.equal(await count(page, '[data-testid=audit-hub]'), 0, 'one hub (embedded): no hub column');
  assert.equal(await count(page, auditRow('config.set', `[data-target="${NEW_ID}"][data-outcome=ok]`)), 1, 'the config change');
  assert.equal(await count(page, auditRow('command.send', `[data-target="${NEW_ID}"][data-outcome=ok]`)), 1, 'the ping');
  const attrs = async (name: string): Promise<string[]> => Promise.all((await page.locator('[data-testid=audit-row]').all()).map(async (r) => (await r.getAttribute(name)) ?? ''));
  const ids = (await attrs('data-id')).map(Number);
  assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
  await page.selectOption('[data-testid=audit-action]', 'device.');
  await page.click('[data-testid=audit-apply]');
  await untilOnPage(page, 'action filter', async () => (await count(page, auditRow('sign-in'))) === 0);
  const actions = await attrs('data-action');
  assert.ok(actions.length >= 3 && actions.every((a) => a.startsWith('device.')), `device.* only: ${actions.join(',')}`);
  await page.screenshot({ path: join(shots, 'audit.png') });

  // ---- a viewer: reads, but nothing to change is shown, and the hub refuses their writes
  const viewer = await signedIn(browser, base, VIEWER.user, VIEWER.password, errors);
  assert.equal(await viewer.getAttribute('[data-testid=user]', 'data-role'), 'viewer');
  await viewer.goto(`${base}/#/devices`);
  await untilOnPage(viewer, 'viewer sees the fleet', async () => (await count(viewer, '[data-testid=device-row]')) === FLEET + 1);
  for (const testid of ['register-open', 'device-select', 'device-select-all', 'bulk-bar', 'bulk-disable', 'nav-audit']) {
    assert.equal(await count(viewer, `[data-testid=${testid}]`), 0, `a viewer has no ${testid}`);
  }
  await viewer.goto(`${base}/#/device/${NEW_ID}`);
  await viewer.locator(`[data-testid=device-detail][data-id=${NEW_ID}]`).waitFor();
  await untilOnPage(viewer, 'viewer device page', async () => /\S/.test((await viewer.textContent('[data-testid=presence-reason]')) ?? ''));
  assert.equal(await count(viewer, '[data-testid=device-admin]'), 0, 'no management panel for a viewer');
  await untilOnPage(viewer, 'viewer sees the configuration', async () => ((await viewer.textContent('[data-testid=config-row-sampleIntervalMs]')) ?? '').includes('250 ms'));
  await untilOnPage(viewer, 'viewer sees the commands', async () => (await count(viewer, '[data-testid=command-row][data-name=ping]')) === 1);
  for (const testid of ['config-form', 'config-save', 'command-form', 'command-send']) {
    assert.equal(await count(viewer, `[data-testid=${testid}]`), 0, `a viewer has no ${testid}`);
  }
  await viewer.goto(`${base}/#/alarms`);
  await viewer.locator('h1', { hasText: 'Alarms' }).waitFor();
  assert.equal(await count(viewer, '[data-testid=rule-add]'), 0, 'no rule form for a viewer');
  await viewer.goto(`${base}/#/audit`);
  await untilOnPage(viewer, 'audit refused', async () => (await count(viewer, '[data-testid=audit-forbidden]')) === 1);
  await viewer.goto(`${base}/#/devices`);
  await viewer.screenshot({ path: join(shots, 'devices-viewer.png') });
  const refused = await viewer.request.post(`${base}/api/v1/devices`, { headers: { origin: base }, data: { id: 'viewer-made' } });
  assert.equal(refused.status(), 403);
  assert.match(((await refused.json()) as { error: string }).error, /viewer/);
  assert.equal((await viewer.request.get(`${base}/api/v1/audit`)).status(), 403);
  const refusedConfig = await viewer.request.put(`${base}/api/v1/devices/${NEW_ID}/config`, { headers: { origin: base }, data: { sampleIntervalMs: 500 } });
  assert.equal(refusedConfig.status(), 403);
  const refusedCommand = await viewer.request.post(`${base}/api/v1/devices/${NEW_ID}/commands`, { headers: { origin: base }, data: { name: 'reboot' } });
  assert.equal(refusedCommand.status(), 403);

  assert.deepEqual(errors, [], 'no errors in the pages');
});
