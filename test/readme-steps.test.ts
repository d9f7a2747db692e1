// The README's steps, typed from the repo root as a user would: register a
// device (`npm run device-token -- --add ID`, "Connecting a real device"),
// add an operator (`npm run operator -- NAME`), then `npm start -- --no-sim`
// (quick start). npm runs the two tools in the hub workspace (cwd hub/) and
// npm start at the root, so this holds only if every command resolves paths
// from where the user ran it.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RawDevice, within } from '../hub/test/helpers.ts';
import { tempDir } from './support/fs.ts';
import { freePort } from './support/net.ts';
import { exitCode, spawnCollecting, waitForOutput } from './support/proc.ts';

const root = resolve(import.meta.dirname, '..');

/**
 * A relative HUB_DATA_DIR unique to this run, under tmp/ (git-ignored), as
 * a user would export it in their shell; removed afterwards wherever a
 * command put it (with the bug, under hub/ too).
 */
function relativeDataDir(t: TestContext): string {
  const rel = join('tmp', `readme-steps-${process.pid}-${Date.now().toString(36)}`);
  const parents = [root, join(root, 'hub')].map((d) => ({ tmp: join(d, 'tmp'), existed: existsSync(join(d, 'tmp')) }));
  t.after(() => {
    for (const p of parents) {
      rmSync(join(p.tmp, '..', rel), { recursive: true, force: true });
      if (!p.existed && existsSync(p.tmp) && readdirSync(p.tmp).length === 0) rmSync(p.tmp, { recursive: true, force: true });
    }
  });
  return rel;
}

/** The user's shell: nothing of this test runner's npm or hub settings leaks in. */
function shellEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(HUB_|INFLUX_|SIM_|npm_|INIT_CWD$)/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

function npm(args: string[], env: NodeJS.ProcessEnv, input?: string): { stdout: string; stderr: string } {
  const r = spawnSync('npm', args, { cwd: root, env, encoding: 'utf8', input, timeout: 60_000 });
  assert.equal(r.status, 0, `npm ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

test('start - the README steps from the repo root: a device registered with npm run device-token connects to npm start, an operator added with npm run operator signs in', async (t) => {
  const rel = relativeDataDir(t);
  const port = await freePort();
  const dashboard = tempDir(t, 'readme-dash-');
  // HUB_DASHBOARD_DIR: npm start would otherwise build the shared checkout's dashboard.
  const env = shellEnv({ HUB_DATA_DIR: rel, HUB_PORT: String(port), HUB_HOST: '127.0.0.1', HUB_LOG_LEVEL: 'warn', HUB_DASHBOARD_DIR: dashboard });

  const reg = npm(['run', 'device-token', '--', '--add', 'greenhouse-7', '--tag', 'site=north', '--tag', 'model=th-2'], env);
  const token = /^greenhouse-7\.[A-Za-z0-9_-]{43}$/m.exec(reg.stdout)?.[0];
  assert.ok(token, `no token printed:\n${reg.stdout}`);
  const op = npm(['run', 'operator', '--', 'alice'], env);
  const password = /^[A-Za-z0-9_-]{20,}$/m.exec(op.stdout.split('\n').filter((l) => !l.startsWith('>')).join('\n'))?.[0];
  assert.ok(password, `no password printed:\n${op.stdout}`);

  // Its own process group, killed as a whole after the test.
  const start = spawnCollecting(t, 'npm', ['start', '--', '--no-sim'], { cwd: root, env, name: 'npm start', group: true });
  const proc = start.proc;
  await waitForOutput(start, `ws://127.0.0.1:${port}/v1/devices`, 60_000, 'npm start');

  const d = new RawDevice(`ws://127.0.0.1:${port}/v1/devices`, { token });
  t.after(() => d.ws.terminate());
  const refused = d.refused.then((r) => { throw new Error(`device refused with ${r.status}: ${r.body}`); });
  await within(Promise.race([d.opened, refused]), 10_000, 'device open');
  d.hello('greenhouse-7');
  const welcome = await d.next('welcome', 5000);
  assert.ok(welcome.sessionId, 'Welcome names a session');

  const login = await fetch(`http://127.0.0.1:${port}/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user: 'alice', password }),
  });
  assert.equal(login.status, 200, await login.text());
  assert.ok(existsSync(join(root, rel, 'devices.json')) && existsSync(join(root, rel, 'operators.json')), 'state is where the user ran the commands');
  assert.ok(!existsSync(join(root, 'hub', rel)), 'nothing under hub/');

  d.close();
  process.kill(-proc.pid!, 'SIGTERM');
  await within(exitCode(proc), 20_000, 'npm start exit');
});
