// device-sim/ test helper (not a test file): a scripted fake hub, a real
// `ws` server on 127.0.0.1 port 0 that records every upgrade and frame, for
// the tests that need TCP (the ws connector, fleets, the CLI). Tests reply by
// hand, or with `auto` it speaks the happy path (Hello -> Welcome, Batch ->
// Ack, duplicates acked and not stored twice) like the real hub.
// Imports: node:test (types), node, ws, @telemetry/proto, this package's
// device and test helpers, and the repository's shared test/support/.
import type { TestContext } from 'node:test';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeDeviceMessage, encodeHubMessage, type DeviceMessage, type Limits } from '@telemetry/proto';
import { SimDevice } from '../src/device.ts';
import type { SimDeviceOptions } from '../src/device-options.ts';
import { until } from '../../test/support/wait.ts';
import { DEFAULT_LIMITS } from './fake-socket.ts';

export { DEFAULT_LIMITS };

export interface Frame { data: Buffer; isBinary: boolean }

export interface Conn {
  ws: WebSocket;
  req: IncomingMessage;
  frames: Frame[];
  /** Frames that decoded as a DeviceMessage. */
  msgs: DeviceMessage[];
  closed: boolean;
}

export interface Refusal { status: number; retryAfter?: number | string }

export interface FakeHubOptions {
  /** Called per upgrade attempt (1-based); a non-null answer refuses it with that HTTP status. */
  refuse?: (attempt: number, req: IncomingMessage) => Refusal | null;
  /** Speak the happy path by itself. */
  auto?: { window?: number; credit?: number; limits?: Limits; neverAck?: (deviceId: string) => boolean };
}

export async function fakeHub(t: TestContext, opts: FakeHubOptions = {}) {
  const conns: Conn[] = [];
  /** Auto mode: the seqs stored per device, in arrival order (each once). */
  const stored = new Map<string, number[]>();
  let attempts = 0;
  const waiters = new Set<() => void>();
  const wake = () => { for (const w of waiters) w(); };
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true });
  let closing = false;
  // Every raw socket, so teardown can destroy them all whatever state an upgrade was in.
  const sockets = new Set<Socket>();
  server.on('connection', (s) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  server.on('upgrade', (req, socket, head) => {
    if (closing) { socket.destroy(); return; }
    attempts++;
    const r = opts.refuse?.(attempts, req);
    if (r) {
      const ra = r.retryAfter !== undefined ? `Retry-After: ${r.retryAfter}\r\n` : '';
      socket.end(`HTTP/1.1 ${r.status} Refused\r\n${ra}Content-Length: 0\r\nConnection: close\r\n\r\n`);
      wake();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing) { ws.terminate(); return; }
      const c: Conn = { ws, req, frames: [], msgs: [], closed: false };
      conns.push(c);
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        c.frames.push({ data, isBinary });
        if (isBinary) {
          try { c.msgs.push(decodeDeviceMessage(data)); } catch { /* garbage stays in frames only */ }
        }
        if (opts.auto) autoReply(c);
        wake();
      });
      ws.on('close', () => { c.closed = true; wake(); });
      wake();
    });
  });

  const deviceOf = new WeakMap<Conn, string>();
  function autoReply(c: Conn): void {
    const m = c.msgs.at(-1);
    const a = opts.auto!;
    if (!m || c.frames.at(-1)?.isBinary !== true) return;
    if (m.hello) {
      const id = m.hello.deviceId ?? '';
      deviceOf.set(c, id);
      const seqs = stored.get(id) ?? [];
      stored.set(id, seqs);
      c.ws.send(encodeHubMessage({ welcome: {
        sessionId: `s${conns.length}`, protocolVersion: 1, serverTimeMs: Date.now(), echoDeviceTimeMs: m.hello.deviceTimeMs ?? 0,
        window: a.window ?? 32, credit: a.credit ?? a.window ?? 32, lastSeq: seqs.at(-1) ?? 0, limits: a.limits ?? DEFAULT_LIMITS,
      } }));
    } else if (m.batch) {
      // A scripted loss: this device's batches are never stored nor acked.
      if (a.neverAck?.(deviceOf.get(c) ?? '')) return;
      const seqs = stored.get(deviceOf.get(c) ?? '')!;
      const seq = Number(m.batch.seq);
      if (seq > (seqs.at(-1) ?? 0)) seqs.push(seq); // a resend is acked, not stored twice
      c.ws.send(encodeHubMessage({ ack: { seq: seqs.at(-1) ?? 0, credit: a.credit ?? a.window ?? 32 } }));
    }
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // Not awaited: server.close() would wait for sockets of devices the test has not stopped yet.
  t.after(() => {
    closing = true;
    for (const c of conns) c.ws.terminate();
    wss.close();
    server.close();
    server.closeAllConnections();
    for (const s of sockets) s.destroy();
  });
  const port = (server.address() as { port: number }).port;

  /** The next hub event, or 10 ms (device-side state changes without one). */
  const nextEvent = () => new Promise<void>((resolve) => {
    const done = () => { waiters.delete(done); clearTimeout(timer); resolve(); };
    const timer = setTimeout(done, 10);
    waiters.add(done);
  });

  return {
    url: `ws://127.0.0.1:${port}/v1/devices`, port, conns, stored,
    /**
     * Resolves when cond() holds, re-checked on every hub event (and every 10 ms
     * for device-side state); rejects after ms naming what it waited for.
     */
    until: (cond: () => boolean, what: string, ms = 3000): Promise<void> => until(cond, ms, what, nextEvent),
    get attempts() { return attempts; },
  };
}

/**
 * A ping round trip: once the pong is back, every frame the device sent
 * before it has arrived (one TCP stream, in order). Lets a test assert that
 * nothing more was sent without sleeping.
 */
export async function flush(c: Conn, ms = 2000): Promise<void> {
  c.ws.ping();
  await once(c.ws, 'pong', { signal: AbortSignal.timeout(ms) });
}

export function welcome(c: Conn, o: { lastSeq?: number; credit?: number; window?: number; limits?: Limits } = {}): void {
  const window = o.window ?? 32;
  c.ws.send(encodeHubMessage({ welcome: {
    sessionId: 's', protocolVersion: 1, serverTimeMs: Date.now(), window, credit: o.credit ?? window, lastSeq: o.lastSeq ?? 0,
    limits: o.limits ?? DEFAULT_LIMITS,
  } }));
}

/** A device with fast test timings (20 readings/s per metric, 50 ms batches, 20..100 ms backoff), stopped after the test. */
export function device(t: TestContext, url: string, extra: Partial<SimDeviceOptions> = {}): SimDevice {
  const d = new SimDevice({ id: 'dev-1', token: 'dev-1.secret', url, rate: 20, batchIntervalMs: 50, backoffBaseMs: 20, backoffCapMs: 100, ...extra });
  t.after(() => d.stop());
  return d;
}
