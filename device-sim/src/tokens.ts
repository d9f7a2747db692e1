// Where simulated devices get their tokens: a JSON file {deviceId: token}
// (what `npm start` and scripts/sim-fleet.ts write), or SIM_TOKEN for one.
import { readFileSync } from 'node:fs';

export function loadTokens(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  const out = new Map<string, string>();
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read tokens file ${file}: ${(err as Error).message}`);
    }
    if (!parsed || typeof parsed !== 'object') throw new Error(`tokens file ${file} must be a JSON object {deviceId: token}`);
    for (const [id, token] of Object.entries(parsed)) if (typeof token === 'string') out.set(id, token);
  } else if (env.SIM_TOKEN) {
    const token = env.SIM_TOKEN;
    out.set(token.slice(0, token.lastIndexOf('.')), token);
  }
  return out;
}

/** Expands "127.0.0.2-127.0.0.40" or "a,b,c" into addresses. */
export function expandAddresses(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+\.\d+\.\d+)\.(\d+)-(?:\d+\.\d+\.\d+\.)?(\d+)$/.exec(part);
    if (!m) { out.push(part); continue; }
    for (let i = Number(m[2]); i <= Number(m[3]); i++) out.push(`${m[1]}.${i}`);
  }
  return out;
}
