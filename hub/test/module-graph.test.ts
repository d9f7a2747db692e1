// The module graph rules (.dependency-cruiser.cjs) against a small tree laid
// out like this repository: allowed imports are not reported, and each rule
// reports the one violation planted for it. A rule whose paths stop matching,
// or a resolver that stops following `.ts` specifiers or `@telemetry/*`
// workspace packages, fails here instead of letting `npm run depcheck` pass
// silently.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../../test/support/fs.ts';

const root = resolve(import.meta.dirname, '../..');
const DEPCRUISE = join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const CONFIG = join(root, '.dependency-cruiser.cjs');

/** A workspace's package.json, with the `exports` the repository's own has (conditions and all). */
const pkg = (folder: string, extra: Record<string, unknown> = {}) => {
  const { name, exports } = JSON.parse(readFileSync(join(root, folder, 'package.json'), 'utf8')) as { name: string; exports: unknown };
  return JSON.stringify({ name, version: '1.0.0', private: true, type: 'module', exports, ...extra });
};

/** Files that only use what the rules allow. */
const ALLOWED: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'fixture', private: true, type: 'module', workspaces: ['proto', 'hub', 'device-sim', 'dashboard'] }),
  'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true, verbatimModuleSyntax: true } }),
  'node_modules/@trufflesuite/uws-js-unofficial/package.json': JSON.stringify({ name: '@trufflesuite/uws-js-unofficial', version: '1.0.0', main: 'uws.js' }),
  'node_modules/@trufflesuite/uws-js-unofficial/uws.js': 'module.exports = {};\n',
  'node_modules/uWebSockets.js/package.json': JSON.stringify({ name: 'uWebSockets.js', version: '1.0.0', main: 'uws.js' }),
  'node_modules/uWebSockets.js/uws.js': 'module.exports = {};\n',

  'proto/package.json': pkg('proto'),
  'proto/src/index.ts': "export const PROTO = 1;\nexport * from './codes.ts';\n",
  'proto/src/codes.ts': 'export const CODE = 1;\n',

  'hub/package.json': pkg('hub', { dependencies: { '@telemetry/proto': '1.0.0', '@trufflesuite/uws-js-unofficial': '1.0.0' } }),
  'hub/src/core/errors.ts': 'export const E = 1;\n',
  'hub/src/core/uws.ts': "import type * as Uws from '@trufflesuite/uws-js-unofficial';\nexport type { Uws };\nexport const loadUws = () => 1;\n",
  'hub/src/auth/registry.ts': "import { E } from '../core/errors.ts';\nexport interface DeviceAuthenticator { id: number }\nexport const R = E;\n",
  'hub/src/spool/reader.ts': "import { E } from '../core/errors.ts';\nexport const comparePos = () => E;\n",
  'hub/src/spool/store.ts': 'export interface BatchStore { bytes: number }\n',
  'hub/src/spool/spool.ts': "import { comparePos } from './reader.ts';\nimport type { BatchStore } from './store.ts';\nexport class Spool { s?: BatchStore; c = comparePos; }\n",
  'hub/src/sinks/influx/influx-sink.ts': "import { comparePos } from '../../spool/reader.ts';\nexport const sink = comparePos;\n",
  'hub/src/live/state.ts': "import { R } from '../auth/registry.ts';\nimport type { Uws } from '../core/uws.ts';\nimport { PROTO } from '@telemetry/proto';\nexport interface LiveFeed { u?: Uws }\nexport const live = R + PROTO;\n",
  'hub/src/ingest/endpoint.ts': "import type { BatchStore } from '../spool/store.ts';\nimport type { LiveFeed } from '../live/state.ts';\nimport type { DeviceAuthenticator } from '../auth/registry.ts';\nimport { E } from '../core/errors.ts';\nexport type T = [BatchStore, LiveFeed, DeviceAuthenticator, typeof E];\n",
  'hub/src/http/routes.ts': "import { live } from '../live/state.ts';\nimport { R } from '../auth/registry.ts';\nexport const routes = live + R;\n",
  'hub/src/tools/device-token.ts': "import { R } from '../auth/registry.ts';\nexport const tool = R;\n",
  'hub/src/app.ts': "import { loadUws } from './core/uws.ts';\nimport { Spool } from './spool/spool.ts';\nimport { routes } from './http/routes.ts';\nimport type { T } from './ingest/endpoint.ts';\nimport { sink } from './sinks/influx/influx-sink.ts';\nimport { tool } from './tools/device-token.ts';\nexport const app = [loadUws, Spool, routes, sink, tool] as unknown as T;\n",
  'hub/src/main.ts': "import { app } from './app.ts';\nexport default app;\n",
  'hub/src/index.ts': "export { app } from './app.ts';\n",
  'hub/test/helpers.ts': "import { app } from '../src/app.ts';\nimport { wait } from '../../test/support/wait.ts';\nexport const helper = [app, wait];\n",

  'device-sim/package.json': pkg('device-sim', { dependencies: { '@telemetry/proto': '1.0.0' } }),
  'device-sim/src/index.ts': "import { PROTO } from '@telemetry/proto';\nimport { local } from './local.ts';\nexport const sim = PROTO + local;\n",
  'device-sim/src/local.ts': 'export const local = 1;\n',

  'dashboard/package.json': pkg('dashboard', { dependencies: { '@telemetry/proto': '1.0.0' } }),
  'dashboard/src/main.ts': "import { PROTO } from '@telemetry/proto';\nexport const dash = PROTO;\n",

  'hub/dist/index.js': 'export const app = 1;\n',
  'scripts/ok.ts': "import { app } from '@telemetry/hub';\nimport { sim } from '@telemetry/device-sim';\nimport { helper } from '../hub/test/helpers.ts';\nexport const ok = [app, sim, helper];\n",
  'test/ok.test.ts': "import { app } from '@telemetry/hub';\nimport { PROTO } from '@telemetry/proto';\nimport { ok } from '../scripts/ok.ts';\nimport { spawned } from './support/proc.ts';\nexport const t = [app, PROTO, ok, spawned];\n",
  // test/support: node: builtins (type-only node:test included) and its own modules.
  'test/support/wait.ts': "import { setTimeout } from 'node:timers/promises';\nexport const wait = setTimeout;\n",
  'test/support/proc.ts': "import { spawn } from 'node:child_process';\nimport type { TestContext } from 'node:test';\nimport { wait } from './wait.ts';\nexport type T = TestContext;\nexport const spawned = [spawn, wait];\n",
};

/** One violation per rule: file, contents, and the dependency the rule must report. */
const VIOLATIONS: { rule: string; file: string; source: string; to: string }[] = [
  { rule: 'no-circular', file: 'hub/src/core/cycle-a.ts', source: "import { b } from './cycle-b.ts';\nexport const a = b;\n", to: 'hub/src/core/cycle-b.ts' },
  { rule: 'no-import-of-build-output', file: 'scripts/compiled.ts', source: "import { app } from '../hub/dist/index.js';\nexport const c = app;\n", to: 'hub/dist/index.js' },
  { rule: 'no-unresolvable', file: 'device-sim/src/broken.ts', source: "import { x } from './missing.ts';\nexport const y = x;\n", to: './missing.ts' },
  { rule: 'hub-core-imports-only-itself', file: 'hub/src/core/bad.ts', source: "import { R } from '../auth/registry.ts';\nexport const c = R;\n", to: 'hub/src/auth/registry.ts' },
  { rule: 'hub-auth-imports-only-core', file: 'hub/src/auth/bad.ts', source: "import type { BatchStore } from '../spool/store.ts';\nexport type A = BatchStore;\n", to: 'hub/src/spool/store.ts' },
  { rule: 'hub-spool-imports-only-core', file: 'hub/src/spool/bad.ts', source: "import { sink } from '../sinks/influx/influx-sink.ts';\nexport const s = sink;\n", to: 'hub/src/sinks/influx/influx-sink.ts' },
  { rule: 'hub-sinks-imports-only-spool-core', file: 'hub/src/sinks/bad.ts', source: "import { live } from '../live/state.ts';\nexport const s = live;\n", to: 'hub/src/live/state.ts' },
  { rule: 'hub-live-imports-only-auth-core', file: 'hub/src/live/bad.ts', source: "import type { T } from '../ingest/endpoint.ts';\nexport type L = T;\n", to: 'hub/src/ingest/endpoint.ts' },
  { rule: 'hub-ingest-imports-only-spool-live-auth-core', file: 'hub/src/ingest/bad-http.ts', source: "import { routes } from '../http/routes.ts';\nexport const i = routes;\n", to: 'hub/src/http/routes.ts' },
  { rule: 'hub-http-imports-only-auth-live-core', file: 'hub/src/http/bad.ts', source: "import { Spool } from '../spool/spool.ts';\nexport const h = Spool;\n", to: 'hub/src/spool/spool.ts' },
  { rule: 'hub-tools-imports-only-auth-core', file: 'hub/src/tools/bad.ts', source: "import { live } from '../live/state.ts';\nexport const t = live;\n", to: 'hub/src/live/state.ts' },
  { rule: 'hub-devices-imports-only-core', file: 'hub/src/devices/bad.ts', source: "import { R } from '../auth/registry.ts';\nexport const d = R;\n", to: 'hub/src/auth/registry.ts' },
  { rule: 'hub-cluster-imports-only-spool-ingest-live-auth-devices-core', file: 'hub/src/cluster/bad.ts', source: "import { routes } from '../http/routes.ts';\nexport const c = routes;\n", to: 'hub/src/http/routes.ts' },
  { rule: 'hub-sinks-read-the-spool-through-spool-reader', file: 'hub/src/sinks/influx/bad.ts', source: "import { Spool } from '../../spool/spool.ts';\nexport const s = Spool;\n", to: 'hub/src/spool/spool.ts' },
  { rule: 'hub-ingest-uses-spool-only-through-batch-store', file: 'hub/src/ingest/bad-store.ts', source: "import type { Spool } from '../spool/spool.ts';\nexport type S = Spool;\n", to: 'hub/src/spool/spool.ts' },
  { rule: 'hub-ingest-uses-spool-live-auth-as-types-only', file: 'hub/src/ingest/bad-value.ts', source: "import { live } from '../live/state.ts';\nexport const i = live;\n", to: 'hub/src/live/state.ts' },
  { rule: 'hub-folders-never-import-root-files', file: 'hub/src/live/bad-root.ts', source: "import { app } from '../app.ts';\nexport const l = app;\n", to: 'hub/src/app.ts' },
  { rule: 'nothing-imports-hub-main', file: 'hub/src/embed.ts', source: "import main from './main.ts';\nexport const e = main;\n", to: 'hub/src/main.ts' },
  { rule: 'only-core-uws-imports-the-uws-binding', file: 'hub/src/uws-direct.ts', source: "import type { TemplatedApp } from '@trufflesuite/uws-js-unofficial';\nexport type U = TemplatedApp;\n", to: 'node_modules/@trufflesuite/uws-js-unofficial/uws.js' },
  { rule: 'only-core-uws-imports-the-uws-binding', file: 'hub/src/uws-upstream.ts', source: "import uws from 'uWebSockets.js';\nexport const u = uws;\n", to: 'node_modules/uWebSockets.js/uws.js' },
  { rule: 'hub-folders-take-uws-types-only', file: 'hub/src/http/bad-uws.ts', source: "import { loadUws } from '../core/uws.ts';\nexport const h = loadUws;\n", to: 'hub/src/core/uws.ts' },
  { rule: 'hub-imports-only-proto-of-our-packages', file: 'hub/src/with-sim.ts', source: "import { sim } from '@telemetry/device-sim';\nexport const w = sim;\n", to: 'device-sim/src/index.ts' },
  { rule: 'device-sim-imports-only-proto-of-our-packages', file: 'device-sim/src/bad.ts', source: "import { app } from '@telemetry/hub';\nexport const b = app;\n", to: 'hub/src/index.ts' },
  { rule: 'dashboard-imports-only-proto-of-our-packages', file: 'dashboard/src/bad.ts', source: "import { sim } from '@telemetry/device-sim';\nexport const b = sim;\n", to: 'device-sim/src/index.ts' },
  { rule: 'packages-reach-proto-by-package-name', file: 'device-sim/src/by-path.ts', source: "import { CODE } from '../../proto/src/codes.ts';\nexport const c = CODE;\n", to: 'proto/src/codes.ts' },
  { rule: 'proto-imports-nothing-of-ours', file: 'proto/src/bad.ts', source: "import { app } from '../../hub/src/index.ts';\nexport const p = app;\n", to: 'hub/src/index.ts' },
  { rule: 'scripts-and-tests-reach-hub-src-through-its-exports', file: 'scripts/internal.ts', source: "import { R } from '../hub/src/auth/registry.ts';\nexport const s = R;\n", to: 'hub/src/auth/registry.ts' },
  // A deep import past the package's `exports` does not resolve, as in Node.
  { rule: 'no-unresolvable', file: 'test/deep.test.ts', source: "import { R } from '@telemetry/hub/src/auth/registry.ts';\nexport const d = R;\n", to: '@telemetry/hub/src/auth/registry.ts' },
  { rule: 'scripts-and-tests-reach-other-workspaces-through-their-exports', file: 'test/sim-by-path.test.ts', source: "import { local } from '../device-sim/src/local.ts';\nexport const t = local;\n", to: 'device-sim/src/local.ts' },
  // By package name (which the two rules above allow a root test), and a package's test helpers by path.
  { rule: 'test-support-imports-only-node-builtins', file: 'test/support/with-hub.ts', source: "import { app } from '@telemetry/hub';\nexport const s = app;\n", to: 'hub/src/index.ts' },
  { rule: 'test-support-imports-only-node-builtins', file: 'test/support/with-helpers.ts', source: "import { helper } from '../../hub/test/helpers.ts';\nexport const s = helper;\n", to: 'hub/test/helpers.ts' },
];

interface Violation { rule: { name: string }; from: string; to: string; cycle?: unknown[] }

async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  // What npm does for workspaces: node_modules/@telemetry/<name> -> the package folder.
  await mkdir(join(dir, 'node_modules/@telemetry'), { recursive: true });
  for (const name of ['proto', 'hub', 'device-sim', 'dashboard']) await symlink(`../../${name}`, join(dir, 'node_modules/@telemetry', name));
  // A compiled .svelte component imports svelte's runtime: the real one.
  await symlink(join(root, 'node_modules/svelte'), join(dir, 'node_modules/svelte'));
}

/** Runs depcruise in `dir` with the repository's rules; `json`: the machine-readable report instead of the text one. */
async function run(dir: string, json: boolean): Promise<{ exitCode: number; stdout: string }> {
  const args = [DEPCRUISE, 'hub/src', 'device-sim/src', 'dashboard/src', 'proto/src', 'scripts', 'test', '--config', CONFIG, ...(json ? ['--output-type', 'json'] : [])];
  try {
    const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: dir, maxBuffer: 64 << 20 });
    return { exitCode: 0, stdout };
  } catch (err) {
    const failed = err as { code?: unknown; stdout?: string };
    if (typeof failed.code !== 'number' || !failed.stdout) throw err;
    return { exitCode: failed.code, stdout: failed.stdout };
  }
}

async function depcheck(t: TestContext, files: Record<string, string>): Promise<{ exitCode: number; violations: Violation[] }> {
  const dir = tempDir(t, 'module-graph-');
  await writeTree(dir, files);
  // The exit code is the text reporter's (what `npm run depcheck` prints); the JSON one always exits 0.
  const [text, json] = await Promise.all([run(dir, false), run(dir, true)]);
  const result = JSON.parse(json.stdout) as { summary: { violations: Violation[] } };
  return { exitCode: text.exitCode, violations: result.summary.violations };
}

test('module graph - imports the rules allow are not reported', async (t) => {
  const { exitCode, violations } = await depcheck(t, ALLOWED);
  assert.deepEqual(violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`), []);
  assert.equal(exitCode, 0);
});

test('module graph - every rule reports its violation, and depcheck fails', async (t) => {
  const files: Record<string, string> = { ...ALLOWED, 'hub/src/core/cycle-b.ts': "import { a } from './cycle-a.ts';\nexport const b = a;\n" };
  for (const v of VIOLATIONS) files[v.file] = v.source;
  const { exitCode, violations } = await depcheck(t, files);
  // A cycle is reported on one of its edges, whichever the cruise meets first.
  const cycleEdge = 'no-circular: hub/src/core/cycle-b.ts -> hub/src/core/cycle-a.ts';
  const reported = new Set(violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)
    .map((r) => (r === cycleEdge ? 'no-circular: hub/src/core/cycle-a.ts -> hub/src/core/cycle-b.ts' : r)));
  for (const v of VIOLATIONS) assert.ok(reported.has(`${v.rule}: ${v.file} -> ${v.to}`), `${v.rule} not reported for ${v.file} -> ${v.to}; reported:\n${[...reported].join('\n')}`);
  // Nothing else: each planted import breaks exactly the rule it is for.
  const expected = new Set(VIOLATIONS.map((v) => `${v.rule}: ${v.file} -> ${v.to}`));
  assert.deepEqual([...reported].filter((r) => !expected.has(r)), []);
  assert.notEqual(exitCode, 0);
  // Every rule of the file is exercised here, so none can be dropped or renamed unnoticed.
  const config = (await import(CONFIG)) as { default: { forbidden: { name: string }[] } };
  assert.deepEqual(new Set(config.default.forbidden.map((r) => r.name)), new Set(VIOLATIONS.map((v) => v.rule)));
});

test('module graph - a .svelte component is parsed: its imports are checked too', async (t) => {
  const component = "<script lang=\"ts\">\n  import { app } from '@telemetry/hub';\n  const a = app;\n</script>\n<p>{a}</p>\n";
  const { violations } = await depcheck(t, { ...ALLOWED, 'dashboard/src/App.svelte': component });
  assert.deepEqual(violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`), ['dashboard-imports-only-proto-of-our-packages: dashboard/src/App.svelte -> hub/src/index.ts']);
});
