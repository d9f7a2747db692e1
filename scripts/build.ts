// npm run build [-- --force] [--quiet] [proto|hub|device-sim|dashboard ...]
//
// Builds what the compiled runtime needs: proto, hub and device-sim with tsc
// (each workspace's tsconfig.build.json: emit only, src/ to dist/; types are
// checked by `npm run typecheck`), the dashboard with Vite. With no names,
// every target. A target is built only when it is stale: its dist/ is missing
// or older than the newest of its inputs, directories included, so a file
// that was deleted or moved (git mv keeps the file's mtime) counts as a
// change. --force builds anyway.
//
// Each build writes to a fresh directory that then replaces dist/ by rename,
// so dist/ never holds files of sources that are gone, and a build that
// fails leaves the previous dist/ as it was. Builds take a lock
// (node_modules/.cache/telemetry-build.lock): concurrent `npm start`s in one
// checkout wait for each other instead of building over each other.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

/**
 * The package.json `exports` condition that maps @telemetry/* to the
 * TypeScript sources (src/index.ts) instead of dist/. Tests, tsx-run scripts
 * and `tsc` (customConditions) use it; the compiled runtime must not. Scoped
 * so that no dependency's own "source" export can match it.
 */
export const SOURCE_CONDITION = '@telemetry/source';

export type TargetName = 'proto' | 'hub' | 'device-sim' | 'dashboard';
export const TARGETS: readonly TargetName[] = ['proto', 'hub', 'device-sim', 'dashboard'];

interface Target {
  name: TargetName;
  /** The workspace directory. */
  dir: string;
  /** Files and directories whose change makes dist/ stale. */
  inputs: string[];
  /** Directory entries under `inputs` that are not inputs. */
  skip: (name: string) => boolean;
  /** A file every good build writes; its mtime is set to when the build read its sources. */
  marker: string;
  /** Targets whose dist/ this one's dist/ imports at runtime. */
  needs: TargetName[];
  command: (outDir: string) => { args: string[]; cwd: string };
}

const OUTPUT = (name: string) => name === 'dist' || name === 'node_modules' || name.startsWith('.dist-');
const dashboardSkip = (name: string) => OUTPUT(name) || name === 'test';

function entries(dir: string, skip: (name: string) => boolean): string[] {
  try { return readdirSync(dir).filter((n) => !skip(n)).map((n) => join(dir, n)); } catch { return []; }
}

function targets(root: string): Map<TargetName, Target> {
  const req = createRequire(join(root, 'package.json'));
  const tsc = () => req.resolve('typescript/bin/tsc');
  // What every build depends on: the shared compiler options, this recipe,
  // and the installed dependencies (npm rewrites .package-lock.json on every install).
  const common = [join(root, 'tsconfig.base.json'), join(root, 'scripts', 'build.ts'), join(root, 'node_modules', '.package-lock.json')];
  const compiled = (name: TargetName, needs: TargetName[]): Target => {
    const dir = join(root, name);
    return {
      name, dir, needs, skip: OUTPUT, marker: 'index.js',
      inputs: [join(dir, 'src'), join(dir, 'package.json'), join(dir, 'tsconfig.build.json'), ...common],
      command: (outDir) => ({ args: [tsc(), '-p', join(dir, 'tsconfig.build.json'), '--outDir', outDir], cwd: root }),
    };
  };
  const dashboard = join(root, 'dashboard');
  return new Map<TargetName, Target>([
    ['proto', compiled('proto', [])],
    // The hub's and the simulator's dist import @telemetry/proto's dist.
    ['hub', compiled('hub', ['proto'])],
    ['device-sim', compiled('device-sim', ['proto'])],
    ['dashboard', {
      // Vite bundles proto's sources (the source condition in vite.config.ts),
      // so the dashboard needs no proto build, but its own inputs include them.
      name: 'dashboard', dir: dashboard, needs: [], marker: 'index.html',
      // What is in dashboard/ (not the folder's own mtime: replacing dist/ changes it).
      inputs: [...entries(dashboard, dashboardSkip), join(root, 'proto', 'src'), join(root, 'proto', 'gen'), join(root, 'proto', 'package.json'), ...common],
      skip: dashboardSkip,
      command: (outDir) => ({
        args: [join(dirname(createRequire(join(dashboard, 'package.json')).resolve('vite/package.json')), 'bin', 'vite.js'), 'build', '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'],
        cwd: dashboard,
      }),
    }],
  ]);
}

/** The newest modification time under `path` (files and directories), and where. */
function newest(path: string, skip: (name: string) => boolean, best = { mtimeMs: 0, path: '' }): { mtimeMs: number; path: string } {
  let st;
  try { st = statSync(path); } catch { return best; } // an optional input that does not exist
  if (st.mtimeMs > best.mtimeMs) best = { mtimeMs: st.mtimeMs, path };
  if (st.isDirectory()) {
    for (const name of readdirSync(path)) if (!skip(name)) best = newest(join(path, name), skip, best);
  }
  return best;
}

/** Why `t` must be built, or null when its dist/ is up to date. */
function staleness(root: string, t: Target): string | null {
  const marker = join(t.dir, 'dist', t.marker);
  if (!existsSync(marker)) return `no ${relative(root, marker)}`;
  const built = statSync(marker).mtimeMs;
  let input = { mtimeMs: 0, path: '' };
  for (const p of t.inputs) input = newest(p, t.skip, input);
  return input.mtimeMs > built ? `${relative(root, input.path) || '.'} changed` : null;
}

/** `names` and what they need at runtime, in build order. */
function withNeeds(all: Map<TargetName, Target>, names: readonly TargetName[]): Target[] {
  const out = new Set<TargetName>();
  const add = (n: TargetName): void => { for (const d of all.get(n)!.needs) add(d); out.add(n); };
  for (const n of names) add(n);
  return [...out].map((n) => all.get(n)!);
}

/** The targets among `names` (and what they need) that are stale, with the reason. */
export function staleTargets(root: string, names: readonly TargetName[] = TARGETS): { name: TargetName; reason: string }[] {
  const out: { name: TargetName; reason: string }[] = [];
  for (const t of withNeeds(targets(root), names)) {
    const reason = staleness(root, t);
    if (reason) out.push({ name: t.name, reason });
  }
  return out;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Runs `fn` holding the checkout's build lock; a lock whose process is gone is taken over. */
async function withLock<T>(root: string, log: (line: string) => void, fn: () => Promise<T>): Promise<T> {
  const file = join(root, 'node_modules', '.cache', 'telemetry-build.lock');
  mkdirSync(dirname(file), { recursive: true });
  const deadline = Date.now() + 10 * 60_000;
  let told = false;
  for (;;) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = Number(readFileSync(file, 'utf8').trim() || NaN);
    if (!Number.isInteger(holder) || !alive(holder)) { rmSync(file, { force: true }); continue; }
    if (Date.now() > deadline) throw new Error(`build: another build (pid ${holder}) still holds ${file} after 10 min`);
    if (!told) { log(`waiting for another build to finish (pid ${holder})`); told = true; }
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}

function run(args: string[], cwd: string): Promise<number | null> {
  return new Promise((res) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'], env: compiledEnv(process.env) });
    child.once('error', () => res(null));
    child.once('exit', (code) => res(code));
  });
}

/** Builds `t` into a fresh directory and swaps it in for dist/; returns seconds taken, or throws. */
async function buildOne(t: Target): Promise<number> {
  const started = Date.now();
  const dist = join(t.dir, 'dist');
  const tmp = join(t.dir, `.dist-tmp-${process.pid}`);
  const old = join(t.dir, `.dist-old-${process.pid}`);
  // Left behind by a build that was killed (this one holds the lock now).
  for (const name of readdirSync(t.dir)) if (name.startsWith('.dist-')) rmSync(join(t.dir, name), { recursive: true, force: true });
  const { args, cwd } = t.command(tmp);
  const code = await run(args, cwd);
  const marker = join(tmp, t.marker);
  if (code !== 0 || !existsSync(marker)) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`${t.name} did not build (exit ${code}${code === 0 ? `, no ${t.marker}` : ''})`);
  }
  // Sources changed while the build ran are newer than the marker: the next check rebuilds.
  utimesSync(marker, new Date(started), new Date(started));
  if (existsSync(dist)) renameSync(dist, old);
  renameSync(tmp, dist);
  rmSync(old, { recursive: true, force: true });
  return (Date.now() - started) / 1000;
}

export interface BuildOptions {
  force?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface BuildResult {
  built: { name: TargetName; seconds: number }[];
  failed: { name: TargetName; error: string }[];
  seconds: number;
}

/**
 * Builds the stale targets among `names` and what they need at runtime, at
 * most as many at once as there are CPUs (the tsc builds do not read each
 * other's output). A failed target is reported in `failed`; the others still build.
 */
export async function ensureBuilt(root: string, names: readonly TargetName[] = TARGETS, opts: BuildOptions = {}): Promise<BuildResult> {
  const log = opts.log ?? (() => {});
  const started = Date.now();
  const all = targets(root);
  const result: BuildResult = { built: [], failed: [], seconds: 0 };
  const pick = (): { t: Target; reason: string }[] => withNeeds(all, names)
    .map((t) => ({ t, reason: opts.force ? 'forced' : staleness(root, t) }))
    .filter((s): s is { t: Target; reason: string } => s.reason !== null);
  if (pick().length === 0) return result;
  await withLock(root, log, async () => {
    const todo = pick(); // again: a build we waited for may have done it
    if (todo.length === 0) return;
    log(`building ${todo.map((s) => `${s.t.name} (${s.reason})`).join(', ')}`);
    const queue = [...todo];
    const worker = async (): Promise<void> => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        try {
          const seconds = await buildOne(s.t);
          result.built.push({ name: s.t.name, seconds });
        } catch (err) {
          result.failed.push({ name: s.t.name, error: (err as Error).message });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(queue.length, availableParallelism()) }, worker));
  });
  result.seconds = (Date.now() - started) / 1000;
  if (result.built.length) log(`built ${result.built.map((b) => `${b.name} in ${b.seconds.toFixed(1)} s`).join(', ')}; ${result.seconds.toFixed(1)} s in all`);
  for (const f of result.failed) log(f.error);
  return result;
}

/**
 * The environment for a process that runs dist/: NODE_OPTIONS without the
 * source condition (npm test sets it for everything it starts; a compiled
 * hub given it would import proto's .ts sources, which plain node cannot run).
 */
export function compiledEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const opts = env.NODE_OPTIONS;
  if (!opts) return env;
  const tokens = opts.split(/\s+/).filter(Boolean);
  const kept: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i]!;
    if (tok === `--conditions=${SOURCE_CONDITION}` || tok === `-C=${SOURCE_CONDITION}`) continue;
    if ((tok === '--conditions' || tok === '-C') && tokens[i + 1] === SOURCE_CONDITION) { i++; continue; }
    kept.push(tok);
  }
  const out = { ...env };
  if (kept.length) out.NODE_OPTIONS = kept.join(' ');
  else delete out.NODE_OPTIONS;
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values, positionals } = parseArgs({
    options: { force: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  const unknown = positionals.filter((p) => !(TARGETS as readonly string[]).includes(p));
  if (unknown.length) {
    console.error(`build: unknown target ${unknown.join(', ')} (targets: ${TARGETS.join(', ')})`);
    process.exit(2);
  }
  const root = resolve(import.meta.dirname, '..');
  const names = positionals.length ? positionals as TargetName[] : TARGETS;
  const result = await ensureBuilt(root, names, { force: values.force, log: (line) => console.error(`build: ${line}`) });
  if (!values.quiet && result.built.length === 0 && result.failed.length === 0) console.error(`build: ${names.join(', ')} up to date`);
  process.exit(result.failed.length ? 1 : 0);
}
