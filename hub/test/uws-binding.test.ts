// The one module that loads uWebSockets.js: never a silent pure-JS fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadUws } from '../src/core/uws.ts';
import { HubError } from '../src/core/errors.ts';

const fakeNative = { App: () => null, native: true };
const fakeFallback = { App: () => null, fallback: true };
const resolve = (id: string) => {
  if (id === '@trufflesuite/uws-js-unofficial/package.json') return '/pkg/package.json';
  throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
};
function requireFrom(available: Record<string, unknown>) {
  return (id: string) => {
    if (id in available) return available[id];
    throw Object.assign(new Error(`Cannot find module '${id}'`), { code: 'MODULE_NOT_FOUND' });
  };
}
const env = { resolve, platform: 'linux', arch: 'x64' };

test('uws - on this Node the native binding loads', () => {
  const b = loadUws({ allowFallback: false });
  assert.equal(b.native, true);
  assert.match(b.description, /native/);
  assert.equal(typeof b.uws.App, 'function');
});

test('uws - prefers an installed upstream uWebSockets.js', () => {
  const b = loadUws({ allowFallback: false, ...env, modules: '127', require: requireFrom({ 'uWebSockets.js': fakeNative }) });
  assert.equal(b.native, true);
  assert.match(b.description, /upstream/);
  assert.equal(b.uws, fakeNative);
});

test('uws - loads the npm build\'s native binary for this ABI when there is no upstream', () => {
  const b = loadUws({ allowFallback: false, ...env, modules: '115', require: requireFrom({ '/pkg/binaries/uws_linux_x64_115.node': fakeNative }) });
  assert.equal(b.native, true);
  assert.match(b.description, /uws-js-unofficial 20\.30\.0 \(native linux-x64, ABI 115\)/);
});

test('uws - refuses the pure-JS fallback unless allowed (HUB_ERR_UWS_FALLBACK)', () => {
  // Node 22 (ABI 127): the npm build has no binary for it.
  assert.throws(
    () => loadUws({ allowFallback: false, ...env, modules: '127', require: requireFrom({ '/pkg/dist/index.js': fakeFallback }) }),
    (err: unknown) => err instanceof HubError && err.code === 'HUB_ERR_UWS_FALLBACK' && /HUB_ALLOW_UWS_FALLBACK=1/.test(err.message) && /ABI 127/.test(err.message)
      && /uws_linux_x64_127\.node/.test(String((err.cause as Error).message)),
  );
});

test('uws - an installed upstream build that cannot load is reported, not silently skipped', () => {
  const broken = (id: string) => {
    if (id === 'uWebSockets.js') throw new Error('This version of uWS.js supports only Node.js versions 22, 23');
    return requireFrom({ '/pkg/binaries/uws_linux_x64_115.node': fakeNative })(id);
  };
  const b = loadUws({ allowFallback: false, ...env, modules: '115', require: broken });
  assert.equal(b.native, true);
  assert.match(b.description, /installed upstream uWebSockets\.js did not load: This version of uWS\.js supports only/);
});

test('uws - with HUB_ALLOW_UWS_FALLBACK the fallback loads and says it is slow', () => {
  const b = loadUws({ allowFallback: true, ...env, modules: '127', require: requireFrom({ '/pkg/dist/index.js': fakeFallback }) });
  assert.equal(b.native, false);
  assert.match(b.description, /pure-JS fallback \(SLOW/);
  assert.equal(b.uws, fakeFallback);
});

test('uws - neither package installed is a clear error', () => {
  assert.throws(
    () => loadUws({ allowFallback: true, resolve: () => { throw new Error('nope'); }, require: requireFrom({}) }),
    (err: unknown) => err instanceof HubError && err.code === 'HUB_ERR_UWS_LOAD',
  );
});
