// Health: /healthz and /readyz are public and say status words only (never
// an internal address from a sink error); /readyz is not ready while
// shutting down, while the spool is not writable and while it is full, and
// names which; the detail is on /api/v1/status for operators and monitoring.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import test from 'node:test';
import type { SinkStatus } from '../src/sinks/sink.ts';
import { batchOf, connectDevice, ManualStore, signIn, startHub, until, within } from './helpers.ts';

const SECRET_ADDRESS = '10.20.30.40:8086';
const retrying: SinkStatus = { name: 'influxdb', state: 'retrying', linesWritten: 0, linesDeadLettered: 0, errors: 3, lastError: `connect ECONNREFUSED ${SECRET_ADDRESS}` };

async function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { headers });
  return { status: r.status, text: await r.text() };
}

/** One HTTP/1.1 request on a socket that is already open (a keep-alive client of a closing hub). */
function rawGet(sock: Socket, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (c: Buffer): void => {
      buf += c.toString();
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      sock.off('data', onData);
      resolve({ status: Number(buf.slice(9, 12)), body: buf.slice(end + 4, end + 4 + length) });
    };
    sock.on('data', onData);
    sock.once('error', reject);
    sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

test('health - /healthz and /readyz show status words only; InfluxDB down alone leaves the hub ready; operators get the detail on /api/v1/status', async (t) => {
  const th = await startHub(t, { config: { metricsToken: 'monitor-secret' }, deps: { sinkStatus: () => retrying } });
  const h = await get(th.port, '/healthz');
  assert.equal(h.status, 200);
  assert.deepEqual(JSON.parse(h.text), { status: 'ok' });
  const r = await get(th.port, '/readyz');
  assert.equal(r.status, 200, 'the spool absorbs an unreachable database');
  assert.deepEqual(JSON.parse(r.text), { status: 'ready', reasons: [], sink: 'retrying' });
  for (const x of [h, r]) assert.ok(!x.text.includes(SECRET_ADDRESS) && !x.text.includes('ECONNREFUSED'), 'no sink error in public health');

  const anon = await get(th.port, '/api/v1/status');
  assert.equal(anon.status, 401);
  assert.ok(!anon.text.includes(SECRET_ADDRESS));
  assert.equal((await get(th.port, '/api/v1/status', { authorization: 'Bearer wrong' })).status, 401);
  const asOperator: Record<string, string>[] = [{ authorization: 'Bearer monitor-secret' }, { cookie: await signIn(th) }];
  for (const headers of asOperator) {
    const s = await get(th.port, '/api/v1/status', headers);
    assert.equal(s.status, 200);
    const body = JSON.parse(s.text) as { status: string; ready: boolean; binding: string; connections: number; store: string; sink: SinkStatus };
    assert.equal(body.status, 'ok');
    assert.equal(body.ready, true);
    assert.match(body.binding, /uWebSockets|uws/);
    assert.equal(body.connections, 0);
    assert.equal(body.store, 'ok');
    assert.equal(body.sink.lastError, retrying.lastError);
  }
});

test('health - /readyz: not ready while the spool is full, ready again below it', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { deps: { store } });
  store.pressureValue = 1;
  const full = await get(th.port, '/readyz');
  assert.equal(full.status, 503);
  assert.deepEqual(JSON.parse(full.text), { status: 'not ready', reasons: ['spool full'], sink: 'embedded' });
  assert.equal((await get(th.port, '/healthz')).status, 200, 'a full spool is not a dead hub');
  store.pressureValue = 0.99;
  assert.equal((await get(th.port, '/readyz')).status, 200);
});

test('health - /readyz and /healthz: 503 while the spool is not writable', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { deps: { store } });
  await store.close(); // healthy is false from now on
  const r = await get(th.port, '/readyz');
  assert.equal(r.status, 503);
  assert.deepEqual(JSON.parse(r.text), { status: 'not ready', reasons: ['spool not writable'], sink: 'embedded' });
  const h = await get(th.port, '/healthz');
  assert.equal(h.status, 503);
  assert.deepEqual(JSON.parse(h.text), { status: 'unavailable' });
});

test('health - /readyz: 503 "shutting down" to a client that is still connected while the hub shuts down', async (t) => {
  const store = new ManualStore();
  const th = await startHub(t, { deps: { store } });
  const { d } = await connectDevice(th, 'dev-1');
  d.batch(batchOf(1));
  await until(() => store.pending === 1, 3000, 'an append waiting to be durable');
  const sock = connect(th.port, '127.0.0.1');
  t.after(() => { sock.destroy(); });
  await within(new Promise<void>((res) => sock.once('connect', () => res())), 3000, 'connect');
  assert.equal((await rawGet(sock, '/readyz')).status, 200);
  // Shutdown waits for the pending append (up to its deadline).
  const closing = th.hub.close({ deadlineMs: 10_000 });
  const r = await within(rawGet(sock, '/readyz'), 3000, '/readyz during shutdown');
  assert.equal(r.status, 503);
  assert.deepEqual(JSON.parse(r.body), { status: 'not ready', reasons: ['shutting down'], sink: 'embedded' });
  store.commit();
  await closing;
});
