// Registers a simulated fleet: device ids `${prefix}0000`.., token hashes in
// the hub's registry, the tokens themselves in a file the simulator reads.
// Idempotent: devices whose token still matches are left alone.
//   npx tsx scripts/sim-fleet.ts [--registry FILE] [--tokens FILE] --devices 200
// Defaults: the hub's registry and HUB_DATA_DIR/sim-tokens.json; relative
// paths are taken from where the command was run (hub/src/core/paths.ts).
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { fromInvocation, generateToken, hashToken, hubPaths, readRegistryFile, writeRegistryFile } from '@telemetry/hub';

const SITES = ['north', 'south', 'east', 'west', 'lab'];

export function ensureSimFleet(registryFile: string, tokensFile: string, devices: number, prefix = 'sim-'): { added: number } {
  const tokens: Record<string, string> = existsSync(tokensFile) ? JSON.parse(readFileSync(tokensFile, 'utf8')) as Record<string, string> : {};
  const registry = readRegistryFile(registryFile);
  let added = 0;
  for (let i = 0; i < devices; i++) {
    const id = `${prefix}${String(i).padStart(4, '0')}`;
    const have = tokens[id];
    if (have && registry.devices[id]?.tokenHash === hashToken(have)) continue;
    const token = generateToken(id);
    tokens[id] = token;
    registry.devices[id] = { tokenHash: hashToken(token), tags: { site: SITES[i % SITES.length]!, model: i % 3 === 0 ? 'th-2' : 'thp-1' }, createdAt: new Date().toISOString() };
    added++;
  }
  if (added) {
    writeRegistryFile(registryFile, registry);
    mkdirSync(dirname(tokensFile), { recursive: true });
    writeFileSync(tokensFile, JSON.stringify(tokens, null, 2) + '\n', { mode: 0o600 });
  }
  return { added };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      registry: { type: 'string' },
      tokens: { type: 'string' },
      devices: { type: 'string', default: '200' },
      prefix: { type: 'string', default: 'sim-' },
    },
  });
  const n = Number(values.devices);
  if (!Number.isInteger(n) || n < 0) {
    console.error('sim-fleet: --devices must be a non-negative integer');
    process.exit(2);
  }
  const paths = hubPaths(process.env, process.cwd());
  const given = (v: string | undefined) => v === undefined ? undefined : fromInvocation(v, process.env, process.cwd());
  const { added } = ensureSimFleet(given(values.registry) ?? paths.devicesFile, given(values.tokens) ?? join(paths.dataDir, 'sim-tokens.json'), n, values.prefix);
  console.log(`sim-fleet: ${added} devices registered, ${n} in the fleet`);
}
