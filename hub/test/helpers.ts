// Test helpers: a hub on port 0 with a registry of test devices, a raw
// protocol client (no simulator logic) that exposes every frame, and the hub
// as a process. until() and within() are test/support/wait.ts's, re-exported
// so the hub's tests import their helpers from one place.
import { resolve } from 'node:path';
import type { TestContext } from 'node:test';
import WebSocket from 'ws';
import {
  DEVICE_PATH, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, decodeHubMessage, encodeDeviceMessage,
  type Batch, type DeviceMessage, type HubMessage,
} from '@telemetry/proto';
import { buildApp, type Hub, type HubDeps } from '../src/app.ts';
import { DeviceRegistry, generateToken, hashToken, type RegistryFile } from '../src/auth/registry.ts';
import { loadConfig, type HubConfig } from '../src/core/config.ts';
import { createLogger } from '../src/core/log.ts';
import { MemoryBatchStore, type AcceptedBatch, type BatchStore } from '../src/spool/store.ts';
import { spawnCollecting, type Collecting } from '../../test/support/proc.ts';
import { within } from '../../test/support/wait.ts';

export { until, within } from '../../test/support/wait.ts';

const root = resolve(import.meta.dirname, '../..');

export interface TestHub {
  hub: Hub;
  url: string;
  port: number;
  tokens: Map<string, string>;
  registry: DeviceRegistry;
  store: MemoryBatchStore;
}

/** Starts a hub on 127.0.0.1:0 with `devices` registered; closed after the test. */
export async function startHub(
  t: TestContext,
  opts: { devices?: string[]; config?: Partial<HubConfig>; deps?: HubDeps } = {},
): Promise<TestHub> {
  const ids = opts.devices ?? ['dev-1', 'dev-2', 'dev-3'];
  const tokens = new Map<string, string>();
  const file: RegistryFile = { version: 1, devices: {} };
  for (const id of ids) {
    const token = generateToken(id);
    tokens.set(id, token);
    file.devices[id] = { tokenHash: hashToken(token), tags: { site: 'test' } };
  }
  const registry = new DeviceRegistry(file);
  const store = new MemoryBatchStore();
  const config = loadConfig({}, { host: '127.0.0.1', port: 0, logLevel: 'silent', ...opts.config });
  const hub = buildApp(config, { store, auth: registry, log: createLogger('silent'), ...opts.deps });
  const port = await hub.listen();
  t.after(() => hub.close({ deadlineMs: 2000 }));
  return { hub, url: `ws://127.0.0.1:${port}${DEVICE_PATH}`, port, tokens, registry, store: (opts.deps?.store as MemoryBatchStore) ?? store };
}

/** The hub process (hub/src/main.ts through tsx, from the repository root) with `env` over process.env; output collected, SIGKILLed after the test. */
export function spawnHub(t: TestContext, env: NodeJS.ProcessEnv): Collecting {
  return spawnCollecting(t, process.execPath, ['--import', 'tsx', 'hub/src/main.ts'], { cwd: root, env: { ...process.env, ...env }, name: 'hub' });
}

export interface Refusal { status: number; headers: Record<string, string | string[] | undefined>; body: string }

/**
 * A bare protocol client: every hub frame is queued; the test decides what
 * to send and when.
 */
export class RawDevice {
  readonly ws: WebSocket;
  readonly frames: HubMessage[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly refused: Promise<Refusal>;
  #waiters: (() => void)[] = [];

  constructor(url: string, opts: { token?: string; via?: 'header' | 'subprotocol'; protocols?: string[]; ca?: Buffer; localAddress?: string; autoPong?: boolean } = {}) {
    const protocols = opts.protocols ?? [DEVICE_SUBPROTOCOL];
    const headers: Record<string, string> = {};
    if (opts.token && (opts.via ?? 'header') === 'header') headers.authorization = `Bearer ${opts.token}`;
    if (opts.token && opts.via === 'subprotocol') protocols.push(`bearer.${opts.token}`);
    this.ws = new WebSocket(url, protocols, { headers, ca: opts.ca, localAddress: opts.localAddress, perMessageDeflate: false, autoPong: opts.autoPong ?? true });
    this.ws.binaryType = 'nodebuffer';
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.refused = new Promise((resolve) => {
      this.ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
    });
    this.ws.on('error', () => { /* surfaced through opened/closed/refused */ });
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) throw new Error('hub sent a text frame');
      this.frames.push(decodeHubMessage(data));
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  send(m: DeviceMessage | Parameters<typeof encodeDeviceMessage>[0]): void {
    this.ws.send(encodeDeviceMessage(m));
  }

  sendRaw(data: Buffer | Uint8Array | string, binary = true): void {
    this.ws.send(data, { binary });
  }

  hello(deviceId: string, extra: { protocolVersion?: number; deviceTimeMs?: number; firmware?: string } = {}): void {
    this.send({ hello: { deviceId, protocolVersion: PROTOCOL_VERSION, firmware: 'test/1', deviceTimeMs: Date.now(), ...extra } });
  }

  batch(b: Batch): void {
    this.send({ batch: b });
  }

  /** Waits for the next frame of the given kind (removing it and everything before it from the queue). */
  async next<K extends 'welcome' | 'ack' | 'notice' | 'command' | 'desired'>(kind: K, ms = 3000): Promise<NonNullable<HubMessage[K]>> {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.frames.findIndex((f) => f.msg === kind);
      if (i >= 0) {
        const f = this.frames.splice(0, i + 1)[i]!;
        return f[kind] as NonNullable<HubMessage[K]>;
      }
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no ${kind} within ${ms} ms (have: ${this.frames.map((f) => f.msg).join(',') || 'nothing'})`);
      await within(new Promise<void>((r) => this.#waiters.push(r)), left, kind).catch(() => undefined);
    }
  }

  /** Waits for an ack covering `seq`. */
  async ackFor(seq: number, ms = 3000): Promise<NonNullable<HubMessage['ack']>> {
    const end = Date.now() + ms;
    for (;;) {
      const a = await this.next('ack', Math.max(1, end - Date.now()));
      if ((a.seq ?? 0) >= seq) return a;
    }
  }

  close(): void { this.ws.close(1000); }
}

/** Connects, says Hello and returns the client with its Welcome. */
export async function connectDevice(th: TestHub, deviceId: string, opts: ConstructorParameters<typeof RawDevice>[1] = {}) {
  const d = new RawDevice(th.url, { token: th.tokens.get(deviceId), ...opts });
  await within(d.opened, 3000, `${deviceId} open`);
  d.hello(deviceId);
  const welcome = await d.next('welcome');
  return { d, welcome };
}

/** A batch of `n` readings of one metric (id 1, "temperature"), timestamps now. */
export function batchOf(seq: number, n = 3, opts: { defs?: boolean; base?: number; value?: (i: number) => number } = {}): Batch {
  const base = opts.base ?? Date.now();
  return {
    seq,
    baseTimeMs: base,
    metricDefs: opts.defs === false ? [] : [{ id: 1, name: 'temperature', unit: 'degC' }],
    metricIds: Array.from({ length: n }, () => 1),
    timeOffsetsMs: Array.from({ length: n }, (_, i) => i * 10),
    values: Array.from({ length: n }, (_, i) => (opts.value ? opts.value(i) : 20 + i)),
  };
}

export async function metric(th: TestHub, name: string, labels: Record<string, string> = {}): Promise<number> {
  return th.hub.metrics.value(name, labels);
}

/**
 * A BatchStore the test drives by hand: appends are accepted at once and
 * become durable only when the test calls commit(); pressure is settable.
 * Keeps the BatchStore guarantees (per-device FIFO durability).
 */
export class ManualStore implements BatchStore {
  readonly batches: AcceptedBatch[] = [];
  readonly #accepted = new Map<string, number>();
  readonly #durable = new Map<string, number>();
  #queue: { batch: AcceptedBatch; resolve: () => void; reject: (e: Error) => void }[] = [];
  #closed = false;
  pressureValue = 0;

  get healthy(): boolean { return !this.#closed; }
  get pending(): number { return this.#queue.length; }
  acceptedSeq(id: string): number { return this.#accepted.get(id) ?? 0; }
  durableSeq(id: string): number { return this.#durable.get(id) ?? 0; }
  pressure(): number { return this.pressureValue; }
  readonly bytes = 0;

  append(batch: AcceptedBatch): Promise<void> {
    this.#accepted.set(batch.deviceId, batch.seq);
    return new Promise((resolve, reject) => this.#queue.push({ batch, resolve, reject }));
  }

  /** Makes the oldest `n` pending appends durable (all by default). */
  commit(n = this.#queue.length): void {
    for (const { batch, resolve } of this.#queue.splice(0, n)) {
      this.#durable.set(batch.deviceId, batch.seq);
      this.batches.push(batch);
      resolve();
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    this.commit();
    return Promise.resolve();
  }
}

/** A hub with the test operator signed in, and `call` for its API (JSON in and out; the hub's own Origin). */
export interface SignedInApi {
  th: TestHub;
  cookie: string;
  origin: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON answers, read as each test expects them (a wrong shape fails its assertion)
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
}

export async function signedInApi(t: TestContext, opts: Parameters<typeof startHub>[1] = {}): Promise<SignedInApi> {
  const th = await startHub(t, opts);
  const cookie = await signIn(th);
  const origin = `http://127.0.0.1:${th.port}`;
  const call: SignedInApi['call'] = async (method, path, body, headers = {}) => {
    const r = await fetch(`${origin}${path}`, {
      method,
      headers: { cookie, origin, ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    return { status: r.status, body: parsed };
  };
  return { th, cookie, origin, call };
}

export const TEST_OPERATOR = { user: 'admin', password: 'test-operator-password' };

/** Creates the test operator on a hub and signs in; returns the Cookie header value. */
export async function signIn(th: { hub: Hub; port: number }, scheme: 'http' | 'https' = 'http'): Promise<string> {
  if (!th.hub.operators.names().includes(TEST_OPERATOR.user)) await th.hub.operators.setPassword(TEST_OPERATOR.user, TEST_OPERATOR.password);
  const r = await fetch(`${scheme}://127.0.0.1:${th.port}/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(TEST_OPERATOR),
  });
  if (r.status !== 200) throw new Error(`sign-in failed: ${r.status} ${await r.text()}`);
  const set = r.headers.get('set-cookie') ?? '';
  return set.split(';')[0]!;
}
