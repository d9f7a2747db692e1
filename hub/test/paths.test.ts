// Paths are resolved from where the user ran the command (INIT_CWD under
// npm, else the cwd), the same way by the hub and by its tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fromInvocation, hubPaths, invocationDir } from '../src/core/paths.ts';

const root = resolve(import.meta.dirname, '../..');

test('paths - relative paths resolve from INIT_CWD when npm set it, else from the cwd; absolute ones are kept', () => {
  assert.equal(invocationDir({ INIT_CWD: '/home/me/project' }, '/home/me/project/hub'), '/home/me/project');
  assert.equal(invocationDir({}, '/srv/hub'), '/srv/hub');
  assert.equal(invocationDir({ INIT_CWD: 'relative' }, '/srv/hub'), '/srv/hub', 'only an absolute INIT_CWD is one npm set');
  assert.equal(fromInvocation('certs/cert.pem', { INIT_CWD: '/home/me/project' }, '/home/me/project/hub'), '/home/me/project/certs/cert.pem');
  assert.equal(fromInvocation('/etc/hub/cert.pem', { INIT_CWD: '/home/me/project' }, '/x'), '/etc/hub/cert.pem');
});

test('paths - the registry, operators and alarm rules default to files in HUB_DATA_DIR; every HUB_* path is resolved', () => {
  const env = { INIT_CWD: '/work', HUB_DATA_DIR: 'state', HUB_TLS_CERT: 'certs/c.pem', HUB_TLS_KEY: '/keys/k.pem', HUB_DASHBOARD_DIR: 'ui' };
  assert.deepEqual(hubPaths(env, '/work/hub'), {
    dataDir: '/work/state', devicesFile: '/work/state/devices.json', operatorsFile: '/work/state/operators.json',
    alarmRulesFile: '/work/state/alarm-rules.json', tlsCert: '/work/certs/c.pem', tlsKey: '/keys/k.pem', dashboardDir: '/work/ui',
  });
  const own = hubPaths({ HUB_DEVICES_FILE: 'reg.json', HUB_OPERATORS_FILE: 'ops.json', HUB_ALARM_RULES_FILE: '', HUB_TLS_CERT: '' }, '/srv');
  assert.equal(own.dataDir, '/srv/data');
  assert.equal(own.devicesFile, '/srv/reg.json');
  assert.equal(own.operatorsFile, '/srv/ops.json');
  assert.equal(own.alarmRulesFile, '/srv/data/alarm-rules.json', 'empty means unset');
  assert.equal(own.tlsCert, undefined);
});

test('paths - device-token and operator take --file and the HUB_* defaults from INIT_CWD, not from the workspace npm runs them in', () => {
  const user = mkdtempSync(join(tmpdir(), 'paths-user-'));
  try {
    // As npm runs them: cwd is the hub workspace, INIT_CWD where the user typed the command.
    const run = (tool: string, args: string[], env: Record<string, string> = {}) => execFileSync(process.execPath, ['--import', 'tsx', `src/tools/${tool}.ts`, ...args], {
      cwd: join(root, 'hub'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HUB_DATA_DIR: '', HUB_DEVICES_FILE: '', HUB_OPERATORS_FILE: '', INIT_CWD: user, ...env },
    });
    run('device-token', ['--add', 'dev-a', '--file', 'reg/devices.json']);
    assert.ok(existsSync(join(user, 'reg', 'devices.json')));
    run('device-token', ['--add', 'dev-b'], { HUB_DATA_DIR: 'state' });
    assert.ok(existsSync(join(user, 'state', 'devices.json')), 'HUB_DEVICES_FILE defaults to HUB_DATA_DIR/devices.json');
    assert.match(run('device-token', ['--list'], { HUB_DATA_DIR: 'state' }), /^dev-b\tenabled/m);
    run('operator', ['alice', '--file', 'ops/operators.json']);
    assert.ok(existsSync(join(user, 'ops', 'operators.json')));
    run('operator', ['bob'], { HUB_DATA_DIR: 'state' });
    assert.ok(existsSync(join(user, 'state', 'operators.json')));
    assert.ok(!existsSync(join(root, 'hub', 'reg')) && !existsSync(join(root, 'hub', 'state')) && !existsSync(join(root, 'hub', 'ops')), 'nothing in the workspace');
  } finally {
    rmSync(user, { recursive: true, force: true });
  }
});

test('paths - scripts/sim-fleet.ts and scripts/dev-cert.ts write where the user ran them', () => {
  const user = mkdtempSync(join(tmpdir(), 'paths-scripts-'));
  try {
    const run = (script: string, args: string[]) => execFileSync(process.execPath, ['--import', 'tsx', `scripts/${script}.ts`, ...args], {
      cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HUB_DATA_DIR: 'state', HUB_DEVICES_FILE: '', INIT_CWD: user },
    });
    run('sim-fleet', ['--devices', '2']);
    assert.ok(existsSync(join(user, 'state', 'devices.json')) && existsSync(join(user, 'state', 'sim-tokens.json')), 'the hub\'s registry and HUB_DATA_DIR/sim-tokens.json');
    const printed = run('dev-cert', ['--out', 'certs']);
    assert.ok(existsSync(join(user, 'certs', 'dev-cert.pem')));
    assert.ok(printed.includes(join(user, 'state', 'sim-tokens.json')), 'the printed sim command names the tokens file by its full path');
    assert.ok(!existsSync(join(root, 'state')), 'nothing in the checkout');
  } finally {
    rmSync(user, { recursive: true, force: true });
  }
});
