// device-sim/: where simulated devices get their ids and tokens: a JSON file
// {deviceId: token} (what `npm start` and scripts/sim-fleet.ts write), or one
// token in SIM_TOKEN for a single device. Also the fleet's id scheme and the
// source-address ranges the CLI spreads connections over.
// Imports: node.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

export interface DeviceCredentials { id: string; token: string }

/** Tokens by device id. */
export type TokenSource = ReadonlyMap<string, string>;

/** Reads a tokens file: a JSON object {deviceId: token}. Throws with the file name on any problem. */
export function loadTokenFile(file: string): Map<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read tokens file ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`tokens file ${file} must be a JSON object {"<deviceId>": "<token>"}`);
  const out = new Map<string, string>();
  for (const [id, token] of Object.entries(parsed)) {
    if (typeof token !== 'string' || !token) throw new Error(`tokens file ${file}: the token of ${JSON.stringify(id)} must be a non-empty string`);
    out.set(id, token);
  }
  return out;
}

/**
 * The device a single token belongs to. Tokens are `<deviceId>.<secret>`
 * and the id may itself contain dots, so split at the last one (proto/README.md §2.1).
 */
export function tokenDeviceId(token: string): string {
  const i = token.lastIndexOf('.');
  if (i <= 0) throw new Error('a device token has the form <deviceId>.<secret>');
  return token.slice(0, i);
}

/** SIM_TOKEN as a one-device source, or undefined when unset. */
export function envToken(env: NodeJS.ProcessEnv = process.env): Map<string, string> | undefined {
  const token = env.SIM_TOKEN?.trim();
  if (!token) return undefined;
  return new Map<string, string>([[tokenDeviceId(token), token]]);
}

/** The tokens file if given, else SIM_TOKEN, else an empty source. */
export function loadTokens(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  if (file) return loadTokenFile(file);
  return envToken(env) ?? new Map<string, string>();
}

/** Fleet device ids: `${prefix}${index}` with the index padded to 4 digits (sim-0000, sim-0001, ...). */
export function deviceId(prefix: string, index: number): string {
  return `${prefix}${String(index).padStart(4, '0')}`;
}

/** Ids offset..offset+count-1 with their tokens; throws naming the first id without one. */
export function fleetCredentials(tokens: TokenSource, o: { prefix: string; count: number; offset?: number }): DeviceCredentials[] {
  const out: DeviceCredentials[] = [];
  const first = o.offset ?? 0;
  for (let i = first; i < first + o.count; i++) {
    const id = deviceId(o.prefix, i);
    const token = tokens.get(id);
    if (!token) throw new Error(`no token for ${id} (${tokens.size} tokens loaded; register the fleet with: npx tsx scripts/sim-fleet.ts --prefix ${o.prefix} --devices ${first + o.count})`);
    out.push({ id, token });
  }
  return out;
}

/**
 * Expands "127.0.0.2-127.0.0.40", "127.0.0.2-40" or "a,b,c" into IPv4/IPv6
 * addresses. Throws on anything that is not an address or a last-octet range.
 */
export function expandAddresses(spec: string): string[] {
  const out: string[] = [];
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\d+\.\d+\.\d+)\.(\d+)-(?:(\d+\.\d+\.\d+)\.)?(\d+)$/.exec(part);
    if (!m) {
      if (!isIP(part)) throw new Error(`not an IP address or range: ${JSON.stringify(part)}`);
      out.push(part);
      continue;
    }
    const [, net, lo, net2, hi] = m as unknown as [string, string, string, string | undefined, string];
    if (net2 !== undefined && net2 !== net) throw new Error(`a range must stay within one /24: ${part}`);
    const a = Number(lo);
    const b = Number(hi);
    if (!isIP(`${net}.${a}`) || !isIP(`${net}.${b}`) || a > b) throw new Error(`bad address range: ${part}`);
    for (let i = a; i <= b; i++) out.push(`${net}.${i}`);
  }
  return out;
}
