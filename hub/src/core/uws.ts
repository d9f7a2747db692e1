// core/: the only module that loads uWebSockets.js. It prefers an upstream
// `uWebSockets.js` the user installed (newer Node / glibc), else the npm
// build `@trufflesuite/uws-js-unofficial` (native for Node 16/18/20). That
// package silently falls back to a slow pure-JS implementation elsewhere; we
// load its native binary ourselves so the fallback can never be silent.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';
import { HubError } from './errors.ts';

export type Uws = typeof UwsTypes;
export type { UwsTypes };

export interface UwsBinding {
  uws: Uws;
  /** Human-readable: which implementation runs. */
  description: string;
  native: boolean;
}

export interface LoadUwsOptions {
  allowFallback: boolean;
  /** Injected in tests; defaults to Node's require. */
  require?: (id: string) => unknown;
  resolve?: (id: string) => string;
  platform?: string;
  arch?: string;
  modules?: string;
}

const UNOFFICIAL = '@trufflesuite/uws-js-unofficial';

export function loadUws(opts: LoadUwsOptions): UwsBinding {
  const req = createRequire(import.meta.url);
  const load = opts.require ?? req;
  const resolve = opts.resolve ?? ((id: string) => req.resolve(id));
  const platform = opts.platform ?? process.platform;
  const arch = opts.arch ?? process.arch;
  const modules = opts.modules ?? process.versions.modules;

  // 1. Upstream uWebSockets.js (installed from its GitHub releases). It has
  //    no JS fallback: if it is present but cannot load, say so and go on.
  let upstreamNote = '';
  try {
    const uws = load('uWebSockets.js') as Uws;
    return { uws, native: true, description: `uWebSockets.js (upstream, native, ABI ${modules})` };
  } catch (err) {
    // Installed but unloadable (wrong Node or glibc) is worth saying; absent is normal.
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') {
      upstreamNote = `; the installed upstream uWebSockets.js did not load: ${(err as Error).message.split('\n')[0]}`;
    }
  }

  // 2. The npm build: load its native binary directly.
  let pkgDir: string;
  try {
    pkgDir = dirname(resolve(`${UNOFFICIAL}/package.json`));
  } catch (err) {
    throw new HubError('HUB_ERR_UWS_LOAD', `neither uWebSockets.js nor ${UNOFFICIAL} is installed; run npm install`, { cause: err });
  }
  const binary = join(pkgDir, 'binaries', `uws_${platform}_${arch}_${modules}.node`);
  try {
    const uws = load(binary) as Uws;
    return { uws, native: true, description: `${UNOFFICIAL} 20.30.0 (native ${platform}-${arch}, ABI ${modules})${upstreamNote}` };
  } catch (nativeError) {
    const why = `no native uWebSockets.js binary for ${platform}-${arch} ABI ${modules} (Node ${process.version}): ${(nativeError as Error).message.split('\n')[0]}${upstreamNote}`;
    if (!opts.allowFallback) {
      throw new HubError('HUB_ERR_UWS_FALLBACK',
        `${why}. Only the slow pure-JS fallback would run. Use Node 20 (ABI 115), install an upstream uWebSockets.js build for this Node (see README), or set HUB_ALLOW_UWS_FALLBACK=1 to run slowly anyway.`,
        { cause: nativeError });
    }
    const uws = load(join(pkgDir, 'dist', 'index.js')) as Uws;
    return { uws, native: false, description: `${UNOFFICIAL} pure-JS fallback (SLOW; ${why})` };
  }
}
