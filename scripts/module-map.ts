// npm run module-map: the hub's folder-level import graph, as dependency-cruiser
// sees it (only edges between the hub's own folders and root files). The
// same text is in docs/ARCHITECTURE.md; hub/test/docs.test.ts compares them.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(import.meta.dirname, '..');

export function moduleMap(): string {
  const out = execFileSync(resolve(root, 'node_modules/.bin/depcruise'), [
    'hub/src', '--config', '.dependency-cruiser.cjs', '--collapse', '^hub/src/[^/]+/', '--output-type', 'text',
  ], { cwd: root, encoding: 'utf8' });
  const ours = (p: string) => p.startsWith('hub/src/');
  const name = (p: string) => p.slice('hub/src/'.length);
  const edges = new Map<string, Set<string>>();
  for (const line of out.split('\n')) {
    const [from, to] = line.split(' → ');
    if (!from || !to || !ours(from) || !ours(to) || from === to) continue;
    const set = edges.get(name(from)) ?? new Set<string>();
    set.add(name(to));
    edges.set(name(from), set);
  }
  return [...edges.keys()].sort().map((from) => `${from.padEnd(16)} → ${[...(edges.get(from) ?? [])].sort().join(', ')}`).join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) console.log(moduleMap());
