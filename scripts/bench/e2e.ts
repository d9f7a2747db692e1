// scripts/bench/: comparison 4, end to end and the live path. Runs the
// existing benchmarks as children, loosely coupled: `npm run bench:storage`
// (simulator -> hub -> InfluxDB, with its ratio to InfluxDB's own ceiling
// measured in the same run) and `npm run bench:live` (hub -> dashboard in
// a real browser). A script that declares a --json flag is run with it and
// its last JSON line is folded in, flattened into figure/value rows;
// otherwise its stdout (its own tables) is printed as it is. --quick passes
// only the short-run flags the script declares (read from its parseArgs).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnTracked, stopChild } from './proc.ts';
import type { Table } from './table.ts';

export type E2eName = 'storage' | 'live';
export const E2E_NAMES: readonly E2eName[] = ['storage', 'live'];

const SCRIPT: Record<E2eName, { npm: string; file: string }> = {
  storage: { npm: 'bench:storage', file: 'scripts/bench-storage.ts' },
  live: { npm: 'bench:live', file: 'scripts/bench-live.ts' },
};

export interface E2eOptions {
  names: E2eName[];
  quick: boolean;
  /** Extra arguments, replacing the defaults (quick or full) of that script. */
  args: Partial<Record<E2eName, string[]>>;
  root: string;
}

export interface E2eResult {
  name: E2eName;
  command: string;
  exitCode: number | null;
  seconds: number;
  /** Its --json summary, when it has one. */
  json: unknown;
  /** [section, figure, value] from its JSON summary, flattened (empty without one). */
  figures: [string, string, string][];
  /** Its stdout as printed (without a JSON summary). */
  stdout: string;
  error?: string;
}

/** Short-run flags (--quick), each passed only when the script declares it. */
const QUICK: Record<E2eName, [string, string][]> = {
  storage: [['devices', '200'], ['rate', '25'], ['duration', '5'], ['outage', '0'], ['drain', '0'], ['ceiling-seconds', '3']],
  live: [['devices', '1000'], ['seconds', '5']],
};

/** Whether the script's parseArgs declares --flag (`flag: { type` or `'flag': { type` in its source; nothing else is assumed). */
export function declares(root: string, name: E2eName, flag: string): boolean {
  try {
    const src = readFileSync(join(root, SCRIPT[name].file), 'utf8');
    const f = flag.replace(/[-]/g, '\\-');
    return new RegExp(`(^|[\\s{,])(['"]?)${f}\\2\\s*:\\s*\\{\\s*type\\s*:`).test(src);
  } catch {
    return false;
  }
}

/** Arguments for a short run (--quick) or the script's own defaults (full). */
function defaultArgs(root: string, name: E2eName, quick: boolean): string[] {
  if (!quick) return [];
  return QUICK[name].filter(([f]) => declares(root, name, f)).flatMap(([f, v]) => [`--${f}`, v]);
}

function flatten(v: unknown, path: string, out: [string, string, string][]): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, path ? `${path}.${k}` : k, out);
  } else {
    const i = path.lastIndexOf('.');
    out.push([i < 0 ? '' : path.slice(0, i), i < 0 ? path : path.slice(i + 1), typeof v === 'number' ? String(Math.round(v * 1000) / 1000) : JSON.stringify(v)]);
  }
}

async function runOne(o: E2eOptions, name: E2eName, log: (s: string) => void): Promise<E2eResult> {
  const json = declares(o.root, name, 'json');
  const args = [...(o.args[name] ?? defaultArgs(o.root, name, o.quick)), ...(json ? ['--json'] : [])];
  const command = `npm run ${SCRIPT[name].npm}${args.length ? ` -- ${args.join(' ')}` : ''}`;
  log(`e2e: ${command}`);
  const started = performance.now();
  const c = spawnTracked('npm', ['run', '--silent', SCRIPT[name].npm, ...(args.length ? ['--', ...args] : [])], {
    cwd: o.root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  c.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
  c.stderr?.on('data', (b: Buffer) => { err = (err + b.toString()).slice(-8192); });
  // Bounded: a full bench:storage with its outage and drain takes minutes, never this long.
  const limitMs = (o.quick ? 10 : 30) * 60_000;
  const timer = setTimeout(() => { err += `\nstopped after ${limitMs / 60_000} min`; void stopChild(c, 10_000); }, limitMs);
  const exitCode = await new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  const res: E2eResult = { name, command, exitCode, seconds, json: null, figures: [], stdout: out };
  const line = json ? out.trim().split('\n').reverse().find((l) => l.trimStart().startsWith('{')) : undefined;
  if (line) {
    try {
      res.json = JSON.parse(line);
      flatten(res.json, '', res.figures);
      res.stdout = '';
    } catch { /* not JSON after all: keep the text */ }
  }
  if (exitCode !== 0) res.error = `exited ${exitCode}: ${err.trim().split('\n').slice(-3).join(' | ')}`;
  return res;
}

export async function runE2e(o: E2eOptions, log: (s: string) => void): Promise<E2eResult[]> {
  const results: E2eResult[] = [];
  for (const n of o.names) results.push(await runOne(o, n, log));
  return results;
}

export function e2eTable(results: E2eResult[]): Table {
  const rows: string[][] = [];
  const notes: string[] = [];
  const blocks: string[] = [];
  for (const r of results) {
    for (const [section, figure, value] of r.figures) rows.push([r.name, section, figure, value]);
    if (r.stdout.trim()) blocks.push(`--- ${r.command}`, ...r.stdout.trimEnd().split('\n'));
    notes.push(`${r.name}: ${r.command} (${r.seconds.toFixed(0)} s${r.json ? ', its --json summary' : ', its output as printed'})${r.error ? `: FAILED, ${r.error}` : ''}`);
  }
  return {
    title: 'end to end (bench:storage) and live path (bench:live), as those scripts report them',
    subtitle: [
      'storage: simulator -> hub -> InfluxDB confirmed, its ratio to InfluxDB\'s own ingest ceiling measured in the same run;',
      'live: hub -> dashboard in chromium: frame bytes/s, device timestamp -> painted, live-path share of hub CPU.',
    ],
    columns: ['bench', 'section', 'figure', 'value'],
    rows,
    block: blocks,
    notes,
  };
}
