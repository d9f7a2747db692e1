// npm run profile:summary -- FILE.cpuprofile [--top 25]
//
// Summarises a V8 CPU profile (node --cpu-prof; bench:ingest --hub-cpu-prof
// writes one): self time per function, as a share of the busy (non-idle)
// time, and inclusive time for the hub's own functions, so an optimisation
// can quote the profile it came from. Imports: node builtins only.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } });
const top = Number(values.top);
if (positionals.length === 0) {
  console.error('usage: npm run profile:summary -- FILE.cpuprofile [--top N]');
  process.exit(2);
}

const IDLE = new Set(['(idle)', '(program)']);

for (const file of positionals) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const label = (f: CallFrame): string => `${f.functionName || '(anonymous)'} ${f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
  let total = 0;
  let busy = 0;
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    if (IDLE.has(node.callFrame.functionName)) continue;
    busy += us;
    const key = label(node.callFrame);
    self.set(key, (self.get(key) ?? 0) + us);
    // Inclusive: every distinct frame on the stack gets the sample once.
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame) break;
      const k = label(frame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)} %`;
  console.log(`${basename(file)}: ${(total / 1e6).toFixed(1)} s sampled, busy ${(busy / 1e6).toFixed(1)} s (${((100 * busy) / total).toFixed(0)} %)`);
  console.log(`  self time (share of busy):`);
  for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${pct(us)}  ${k}`);
  console.log(`  inclusive, our code (share of busy):`);
  const ours = [...inclusive].filter(([k]) => /\.js:|\.ts:/.test(k) && !k.includes('node_modules') && !k.startsWith('(anonymous) ') && !/^\S+ node:/.test(k));
  for (const [k, us] of ours.sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`    ${pct(us)}  ${k}`);
}
