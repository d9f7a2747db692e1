// RouteTable: routes recorded once, replayed in order on each app (the
// listening app and, after a TLS reload, its successor).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RouteTable } from '../src/route-table.ts';
import type { UwsTypes } from '../src/core/uws.ts';

test('routes - a RouteTable mounts the recorded routes in order on every app, and refuses what is not a route', () => {
  const table = new RouteTable();
  const handler = () => {};
  const behavior = { open: () => {} };
  table.app.ws('/v1/devices', behavior).get('/healthz', handler);
  table.app.any('/*', handler);
  assert.equal(table.size, 3);
  assert.throws(() => table.app.listen(0, () => {}), /records routes only, not app\.listen/);
  assert.throws(() => table.app.publish('t', 'm'), /not app\.publish/);

  const apps = [0, 1].map(() => {
    const calls: [string, ...unknown[]][] = [];
    const app = new Proxy({}, { get: (_t, method: string) => (...args: unknown[]) => { calls.push([method, ...args]); return app; } });
    return { app: app as UwsTypes.TemplatedApp, calls };
  });
  for (const { app } of apps) table.mount(app);
  for (const { calls } of apps) {
    assert.deepEqual(calls.map((c) => c[0]), ['ws', 'get', 'any']);
    assert.equal(calls[0]![2], behavior, 'the same behaviour object: one set of handlers and state');
    assert.equal(calls[1]![2], handler);
  }
});
