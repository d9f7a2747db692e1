// device-sim/: what both command lines (the simulator, cli.ts, and the lean
// load generator, lean-cli.ts) parse the same way: number flags, paths taken
// from where npm was run, the hub URL, credentials (--tokens FILE or
// SIM_TOKEN), --auth, --ca, --source-addresses and --processes.
// Imports: node, and this package's tokens.
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { envToken, expandAddresses, fleetCredentials, loadTokenFile, type DeviceCredentials } from './tokens.ts';

export class UsageError extends Error {
  override name = 'UsageError';
}

/** parseArgs' values. */
export type FlagValues = Record<string, string | boolean | undefined>;

/** A number flag in min..max (an integer when asked); `def` when absent. Throws UsageError naming the flag. */
export function numberFlag(values: Record<string, unknown>, name: string, def: number, min: number, max: number, integer = false): number {
  const raw = values[name];
  if (raw === undefined) return def;
  const v = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} in ${min}..${max} (got ${JSON.stringify(raw)})`);
  }
  return v;
}

/**
 * A path given on the command line, taken from where the user ran the
 * command: npm runs workspace scripts inside the workspace but sets INIT_CWD
 * to the directory npm was started in (the hub's tools do the same).
 */
export function fromInvocation(path: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.INIT_CWD && isAbsolute(env.INIT_CWD) ? env.INIT_CWD : process.cwd();
  return resolve(base, path);
}

/**
 * A command line's flags: CONNECTION_OPTIONS, `own`, and --json, --quiet,
 * --help; strict, no positionals. Throws UsageError for an unknown or
 * malformed flag.
 */
export function parseFlags(argv: string[], own: NonNullable<ParseArgsConfig['options']>): FlagValues {
  try {
    return parseArgs({
      args: argv,
      options: {
        ...CONNECTION_OPTIONS, ...own,
        json: { type: 'boolean', default: false }, quiet: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The parseArgs options both command lines share. */
export const CONNECTION_OPTIONS = {
  url: { type: 'string', default: 'ws://127.0.0.1:8080/v1/devices' },
  devices: { type: 'string' },
  tokens: { type: 'string' },
  prefix: { type: 'string', default: 'sim-' },
  offset: { type: 'string' },
  auth: { type: 'string', default: 'header' },
  ca: { type: 'string' },
  'source-addresses': { type: 'string' },
  processes: { type: 'string' },
} as const;

export interface ConnectionConfig {
  url: string;
  devices: DeviceCredentials[];
  auth: 'header' | 'subprotocol';
  caFile?: string;
  sourceAddresses?: string[];
  processes: number;
}

/** --url, --auth, credentials (--tokens/--devices/--prefix/--offset or SIM_TOKEN), --processes, --ca, --source-addresses. */
export function parseConnection(values: FlagValues, env: NodeJS.ProcessEnv): ConnectionConfig {
  const url = String(values.url);
  let parsed: URL;
  try { parsed = new URL(url); } catch { throw new UsageError(`--url is not a URL: ${JSON.stringify(url)}`); }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') throw new UsageError(`--url must be ws:// or wss:// (got ${parsed.protocol}//)`);
  const auth = values.auth;
  if (auth !== 'header' && auth !== 'subprotocol') throw new UsageError(`--auth must be header or subprotocol (got ${JSON.stringify(auth)})`);
  const offset = numberFlag(values, 'offset', 0, 0, 100_000_000, true);

  // Credentials: a tokens file for a fleet, or SIM_TOKEN for one device.
  let devices: DeviceCredentials[];
  const tokensFile = values.tokens === undefined ? undefined : fromInvocation(String(values.tokens), env);
  const single = tokensFile ? undefined : envToken(env);
  if (tokensFile) {
    const count = numberFlag(values, 'devices', 200, 1, 1_000_000, true);
    let tokens: Map<string, string>;
    try { tokens = loadTokenFile(tokensFile); } catch (err) { throw new UsageError(`--tokens: ${(err as Error).message}`); }
    try { devices = fleetCredentials(tokens, { prefix: String(values.prefix), count, offset }); } catch (err) { throw new UsageError((err as Error).message); }
  } else if (single) {
    if (numberFlag(values, 'devices', 1, 1, 1_000_000, true) !== 1) throw new UsageError('SIM_TOKEN runs exactly one device; use --tokens FILE for a fleet');
    const [id, token] = [...single][0]!;
    devices = [{ id, token }];
  } else {
    throw new UsageError('no credentials: give --tokens FILE ({"<deviceId>": "<token>"}) or set SIM_TOKEN=<token> for one device');
  }

  const processes = numberFlag(values, 'processes', 1, 1, 256, true);
  if (processes > devices.length) throw new UsageError(`--processes ${processes} is more than the ${devices.length} devices`);

  const caFile = values.ca === undefined ? undefined : fromInvocation(String(values.ca), env);
  if (caFile) {
    try { readFileSync(caFile); } catch (err) { throw new UsageError(`--ca: cannot read ${caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`); }
  }
  let sourceAddresses: string[] | undefined;
  if (values['source-addresses'] !== undefined) {
    try { sourceAddresses = expandAddresses(String(values['source-addresses'])); } catch (err) { throw new UsageError(`--source-addresses: ${(err as Error).message}`); }
    if (!sourceAddresses.length) throw new UsageError('--source-addresses is empty');
  }
  return { url, devices, auth, caFile, sourceAddresses, processes };
}
