// device-sim/ test helper (not a test file): an in-memory SocketConnector.
// Each connection attempt is a FakeSocket whose hub side the test plays
// (accept or refuse the upgrade, deliver messages, close), and which records
// and decodes what the device sent. No TCP; with autoTick off the test also
// owns time, through a SimClock it ticks the device with.
// Imports: node:test (types), @telemetry/proto, and this package's device and socket.
import type { TestContext } from 'node:test';
import {
  decodeDeviceMessage, encodeHubMessage, type Batch, type DeviceMessage, type Limits, type iot,
} from '@telemetry/proto';
import { SimDevice } from '../src/device.ts';
import type { DeviceClock, SimDeviceOptions } from '../src/device-options.ts';
import { SocketState, type DeviceSocket, type SocketConnector, type SocketListener, type SocketRequest } from '../src/socket.ts';

export const DEFAULT_LIMITS: Limits = {
  maxMessageBytes: 262_144, maxBatchReadings: 10_000, maxReadingsPerSecond: 1_000_000, readingsBurst: 10_000_000,
  maxMetricsPerSession: 256, maxMetricNameBytes: 64, maxFutureSkewMs: 300_000, maxPastSkewMs: 604_800_000, idleTimeoutMs: 60_000,
};

export interface SentFrame { data: Uint8Array | string; isBinary: boolean }

export class FakeSocket implements DeviceSocket {
  readyState: number = SocketState.CONNECTING;
  /** Every frame the device sent, in order. */
  readonly frames: SentFrame[] = [];
  /** The binary frames that decoded as a DeviceMessage. */
  readonly msgs: DeviceMessage[] = [];
  /** What the device closed with (close() or terminate() = 1006). */
  closedByDevice: { code: number; reason: string } | null = null;

  constructor(readonly request: SocketRequest, readonly listener: SocketListener) {}

  // ---- the device's side (what SimDevice calls) ----

  send(data: Uint8Array | string): void {
    // As `ws`: sending before the upgrade throws; after a close it goes nowhere.
    if (this.readyState === SocketState.CONNECTING) throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    if (this.readyState !== SocketState.OPEN) return;
    const isBinary = typeof data !== 'string';
    this.frames.push({ data, isBinary });
    if (isBinary) {
      try { this.msgs.push(decodeDeviceMessage(data)); } catch { /* garbage stays in frames only */ }
    }
  }

  close(code: number, reason = ''): void {
    if (this.readyState >= SocketState.CLOSING) return;
    this.readyState = SocketState.CLOSING;
    this.closedByDevice = { code, reason };
    // The hub echoes the close frame; like `ws`, the event comes later, never inside the call.
    queueMicrotask(() => this.#end(code, reason));
  }

  terminate(): void {
    if (this.readyState === SocketState.CLOSED) return;
    this.readyState = SocketState.CLOSING;
    this.closedByDevice ??= { code: 1006, reason: '' };
    queueMicrotask(() => this.#end(1006, ''));
  }

  // ---- the hub's side (what the test calls) ----

  /** The upgrade succeeds (101). */
  accept(): this {
    this.readyState = SocketState.OPEN;
    this.listener.onOpen();
    return this;
  }

  /** The upgrade is refused with an HTTP status (then the connection ends, as the `ws` connector ends it). */
  refuse(status: number, retryAfter?: string): void {
    this.listener.onRefused(status, retryAfter);
    this.#end(1006, '');
  }

  /** No connection at all: a network error, then the close. */
  fail(code = 'ECONNREFUSED'): void {
    this.listener.onError(code);
    this.#end(1006, '');
  }

  deliver(m: iot.telemetry.v1.HubMessage.$Properties): void {
    this.listener.onMessage(encodeHubMessage(m), true);
  }

  deliverRaw(data: Uint8Array, isBinary: boolean): void {
    this.listener.onMessage(data, isBinary);
  }

  ping(): void { this.listener.onPing(); }

  /** The hub closes the session with a close frame. */
  hubClose(code: number, reason = ''): void { this.#end(code, reason); }

  /** The link dies without a close frame. */
  drop(): void { this.#end(1006, ''); }

  welcome(o: { lastSeq?: number; credit?: number; window?: number; limits?: Limits } = {}): void {
    const window = o.window ?? 32;
    this.deliver({ welcome: {
      sessionId: 's', protocolVersion: 1, serverTimeMs: Date.now(), window, credit: o.credit ?? window, lastSeq: o.lastSeq ?? 0,
      limits: o.limits ?? DEFAULT_LIMITS,
    } });
  }

  ack(seq: number, credit = 32, reports?: iot.telemetry.v1.BatchReport.$Properties[]): void {
    this.deliver({ ack: { seq, credit, reports } });
  }

  get batches(): Batch[] { return this.msgs.filter((m) => m.batch).map((m) => m.batch!); }
  get seqs(): number[] { return this.batches.map((b) => Number(b.seq)); }

  #end(code: number, reason: string): void {
    if (this.readyState === SocketState.CLOSED) return;
    this.readyState = SocketState.CLOSED;
    this.listener.onClose(code, reason);
  }
}

/** A connector that hands out FakeSockets and keeps them, in attempt order. */
export function fakeConnector() {
  const sockets: FakeSocket[] = [];
  const connect: SocketConnector = (request, listener) => {
    const s = new FakeSocket(request, listener);
    sockets.push(s);
    return s;
  };
  return {
    connect, sockets,
    get last(): FakeSocket { return sockets.at(-1)!; },
  };
}

/** A hand-driven DeviceClock: advance() moves wall and monotonic time together and ticks the device. */
export class SimClock implements DeviceClock {
  wall = Date.parse('2026-06-01T12:00:00Z');
  mono = 1_000_000;
  device: SimDevice | null = null;

  wallMs(): number { return this.wall; }
  monotonicMs(): number { return this.mono; }

  /** Ticks every stepMs until ms have passed (the last tick lands exactly on it). */
  advance(ms: number, stepMs = 10): void {
    for (let done = 0; done < ms;) {
      const step = Math.min(stepMs, ms - done);
      this.wall += step;
      this.mono += step;
      done += step;
      this.device?.tick();
    }
  }
}

/**
 * A device on the in-memory connector and a hand-driven clock, ticked by
 * hand (20 readings/s per metric, 50 ms batches, 20..100 ms backoff),
 * stopped after the test.
 */
export function fakeDevice(t: TestContext, extra: Partial<SimDeviceOptions> = {}) {
  const hub = fakeConnector();
  const clock = new SimClock();
  const device = new SimDevice({
    id: 'dev-1', token: 'dev-1.secret', url: 'ws://hub.test/v1/devices', rate: 20, batchIntervalMs: 50,
    backoffBaseMs: 20, backoffCapMs: 100, autoTick: false, connect: hub.connect, clock, ...extra,
  });
  clock.device = device;
  t.after(async () => {
    const stopped = device.stop();
    // An attempt the test left mid-upgrade ends as the test's hub goes away (stop() waits for it).
    for (const s of hub.sockets) if (s.readyState === SocketState.CONNECTING) s.fail('ECONNRESET');
    await stopped;
  });
  return { device, hub, clock };
}
