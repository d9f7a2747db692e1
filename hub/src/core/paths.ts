// core/: where the hub and its command-line tools find their files. A relative path
// means "relative to where the user ran the command": npm runs workspace
// scripts (npm run device-token, npm run operator) with the workspace as cwd
// but sets INIT_CWD to the directory npm was run in, so INIT_CWD wins over
// process.cwd(). main.ts, the tools and scripts/start.ts all use this one
// helper, so they agree on every file.
// Imports: config (variable names and defaults) only.
import { isAbsolute, join, resolve } from 'node:path';
import { CONFIG_KEYS } from './config.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** The directory the user ran the command in: INIT_CWD when npm set it, else `cwd`. */
export function invocationDir(env: Env, cwd: string): string {
  const init = env.INIT_CWD;
  return init && isAbsolute(init) ? init : cwd;
}

/** `path` made absolute against the directory the user ran the command in. */
export function fromInvocation(path: string, env: Env, cwd: string): string {
  return resolve(invocationDir(env, cwd), path);
}

export interface HubPaths {
  readonly dataDir: string;
  readonly devicesFile: string;
  readonly operatorsFile: string;
  readonly alarmRulesFile: string;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly dashboardDir: string | undefined;
}

type PathKey = 'dataDir' | 'devicesFile' | 'operatorsFile' | 'alarmRulesFile' | 'tlsCert' | 'tlsKey' | 'dashboardDir';

/**
 * Every file the hub's HUB_* variables name, absolute; the registry,
 * operators and alarm rules default to files in HUB_DATA_DIR.
 */
export function hubPaths(env: Env, cwd: string): HubPaths {
  const get = (key: PathKey): string | undefined => {
    const v = env[CONFIG_KEYS[key].env];
    // Empty means unset, as in loadConfig.
    return v ? fromInvocation(v, env, cwd) : undefined;
  };
  const dataDir = get('dataDir') ?? fromInvocation(CONFIG_KEYS.dataDir.default, env, cwd);
  return {
    dataDir,
    devicesFile: get('devicesFile') ?? join(dataDir, 'devices.json'),
    operatorsFile: get('operatorsFile') ?? join(dataDir, 'operators.json'),
    alarmRulesFile: get('alarmRulesFile') ?? join(dataDir, 'alarm-rules.json'),
    tlsCert: get('tlsCert'),
    tlsKey: get('tlsKey'),
    dashboardDir: get('dashboardDir'),
  };
}
