// A simulated device: the device side of the v1 protocol (proto/README.md)
// over `ws`. It samples its sensors into batches, keeps every batch until an
// Ack covers it (the outbox survives reconnects), sends only within credit,
// resends from the point Welcome names, and reconnects with exponential
// backoff and full jitter while honouring the hub's retry hints.
// Bad-actor behaviours exist so the simulator can load-test the hub's defences.
import WebSocket from 'ws';
import {
  CloseCode, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, TOKEN_SUBPROTOCOL_PREFIX, decodeHubMessage, encodeDeviceMessage,
  parseRetryAfterMs, type HubMessage, type MetricDef,
} from '@telemetry/proto';
import { defaultSensors, prng, type SensorModel } from './sensors.ts';
import { Reservoir, emptyCounters, type SimCounters } from './stats.ts';

export type Behaviour = 'good' | 'ignore-window' | 'text-frames' | 'garbage' | 'oversize' | 'nan' | 'skewed-clock' | 'flood' | 'no-hello';
export const BAD_BEHAVIOURS: readonly Behaviour[] = ['ignore-window', 'text-frames', 'garbage', 'oversize', 'nan', 'skewed-clock', 'flood', 'no-hello'];

/** Close codes that mean "fix the device", not "try again". */
const FATAL_CODES = new Set<number>([
  CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_PAYLOAD, CloseCode.MESSAGE_TOO_BIG, CloseCode.PROTOCOL_ERROR,
  CloseCode.WINDOW_EXCEEDED, CloseCode.BATCH_TOO_LARGE, CloseCode.INVALID_METRIC, CloseCode.UNSUPPORTED_VERSION,
  CloseCode.DEVICE_REVOKED,
]);

export interface SimDeviceOptions {
  id: string;
  token: string;
  url: string;
  /** Readings per second per metric; 0 = an idle device (session only). */
  rate?: number;
  batchIntervalMs?: number;
  authVia?: 'header' | 'subprotocol';
  ca?: Buffer;
  localAddress?: string;
  seed?: number;
  /** Added to the device clock (a wrong RTC). */
  clockOffsetMs?: number;
  behaviour?: Behaviour;
  /** Batches kept at most; beyond, the oldest unsent one is dropped (and counted). */
  outboxCap?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Keep reconnecting after a fatal close (bad actors in a fleet). */
  reconnectOnFatal?: boolean;
  sensors?: SensorModel[];
  /** Latency samples go here (shared by a fleet). */
  latency?: Reservoir;
  random?: () => number;
}

interface Kept {
  seq: number;
  base: number;
  sensor: Uint8Array;
  times: Float64Array;
  values: Float64Array;
  /** When it was sent in the current session (0 = not yet). */
  sentAt: number;
  everSent: boolean;
}

export class SimDevice {
  readonly id: string;
  readonly counters: SimCounters = emptyCounters();
  readonly latency: Reservoir;
  readonly #o: Required<Pick<SimDeviceOptions, 'rate' | 'batchIntervalMs' | 'authVia' | 'clockOffsetMs' | 'behaviour' | 'outboxCap' | 'backoffBaseMs' | 'backoffCapMs' | 'reconnectOnFatal'>> & SimDeviceOptions;
  readonly #sensors: SensorModel[];
  readonly #random: () => number;
  #ws: WebSocket | null = null;
  #state: 'idle' | 'connecting' | 'awaiting-welcome' | 'open' | 'stopped' = 'idle';
  #outbox: Kept[] = [];
  /** outbox[0..#next) have been sent in this session. */
  #next = 0;
  #seq = 0;
  #credit = 0;
  #window = 0;
  #maxMessageBytes = 0;
  #defined: boolean[] = [];
  #attempt = 0;
  #retryHintMs = 0;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #lastSampleAt = 0;
  #pending: { sensor: number[]; times: number[]; values: number[] } = { sensor: [], times: [], values: [] };
  #fatal = false;
  lastClose: { code: number; reason: string } | null = null;
  welcome: NonNullable<HubMessage['welcome']> | null = null;

  constructor(opts: SimDeviceOptions) {
    this.id = opts.id;
    this.#o = {
      rate: 1, batchIntervalMs: 1000, authVia: 'header', clockOffsetMs: 0, behaviour: 'good', outboxCap: 10_000,
      backoffBaseMs: 1000, backoffCapMs: 30_000, reconnectOnFatal: false, ...opts,
    };
    if (this.#o.behaviour === 'skewed-clock' && !opts.clockOffsetMs) this.#o.clockOffsetMs = 3_600_000;
    this.#random = opts.random ?? prng((opts.seed ?? hashId(opts.id)) ^ 0x9e3779b9);
    this.#sensors = opts.sensors ?? defaultSensors(opts.seed ?? hashId(opts.id));
    this.latency = opts.latency ?? new Reservoir(10_000, this.#random);
  }

  get connected(): boolean { return this.#state === 'open'; }
  get stopped(): boolean { return this.#state === 'stopped'; }
  get fatal(): boolean { return this.#fatal; }
  /** Batches kept (unacked), and those sent in this session awaiting an ack. */
  get outboxSize(): number { return this.#outbox.length; }
  get inflight(): number { return this.#next; }
  get credit(): number { return this.#credit; }
  get lastSeq(): number { return this.#seq; }
  /** Device clock. */
  now(): number { return Date.now() + this.#o.clockOffsetMs; }

  start(): void {
    if (this.#state !== 'idle') return;
    this.#lastSampleAt = this.now();
    this.#connect();
  }

  /** Closes cleanly (1000) and stops all activity. Kept batches are kept. */
  stop(): void {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const ws = this.#ws;
    this.#state = 'stopped';
    if (ws && ws.readyState === WebSocket.OPEN) ws.close(1000, 'device stopping');
    else ws?.terminate();
  }

  /** Stops producing readings (the open batch is closed); kept batches are still delivered. */
  stopSampling(): void {
    this.#closeBatch();
    this.#o.rate = 0;
    this.#pump();
  }

  /** Drops the connection without a close frame (a lost link); reconnects as usual. */
  dropConnection(): void {
    this.#ws?.terminate();
  }

  /**
   * Called by the fleet's ticker: samples sensors up to now and closes a
   * batch every batchIntervalMs; then sends what credit allows.
   */
  tick(): void {
    if (this.#state === 'stopped' || this.#lastSampleAt === 0 || this.#o.rate <= 0) return;
    const now = this.now();
    // A flooder sends far past the hub's default 1000 readings/s per device.
    const rate = this.#o.behaviour === 'flood' ? Math.max(this.#o.rate * 10, 500) : this.#o.rate;
    const step = 1000 / rate;
    // A saturated simulator skips what it cannot generate (and says so)
    // rather than building an unbounded backlog.
    const behind = now - this.#lastSampleAt;
    if (behind > 5 * this.#o.batchIntervalMs) {
      const skip = Math.floor((behind - this.#o.batchIntervalMs) / step);
      this.#lastSampleAt += skip * step;
      this.counters.readingsSkipped += skip * this.#sensors.length;
    }
    // Respect Welcome's limits: a batch closes early when it is full.
    const lim = this.welcome?.limits;
    const maxReadings = Math.min(lim?.maxBatchReadings || 10_000, Math.floor((lim?.maxMessageBytes || 262_144) / 16));
    while (this.#lastSampleAt + step <= now) {
      if (this.#pending.times.length + this.#sensors.length > maxReadings) this.#closeBatch();
      const p = this.#pending;
      this.#lastSampleAt += step;
      const t = Math.round(this.#lastSampleAt);
      for (let i = 0; i < this.#sensors.length; i++) {
        let v = this.#sensors[i]!.sample(t);
        if (this.#o.behaviour === 'nan' && this.#random() < 0.1) v = this.#random() < 0.5 ? Number.NaN : Number.POSITIVE_INFINITY;
        p.sensor.push(i);
        p.times.push(t);
        p.values.push(v);
      }
      this.counters.readingsGenerated += this.#sensors.length;
    }
    const first = this.#pending.times[0];
    if (first !== undefined && now - first >= this.#o.batchIntervalMs) this.#closeBatch();
    this.#pump();
  }

  #closeBatch(): void {
    const p = this.#pending;
    if (!p.times.length) return;
    const kept: Kept = {
      seq: ++this.#seq, base: p.times[0]!, sensor: Uint8Array.from(p.sensor), times: Float64Array.from(p.times),
      values: Float64Array.from(p.values), sentAt: 0, everSent: false,
    };
    this.#pending = { sensor: [], times: [], values: [] };
    if (this.#outbox.length >= this.#o.outboxCap) {
      // Finite device memory: drop the oldest batch not in flight.
      const i = Math.min(this.#next, this.#outbox.length - 1);
      const [dropped] = this.#outbox.splice(i, 1);
      this.counters.batchesDropped++;
      this.counters.readingsDropped += dropped!.values.length;
    }
    this.#outbox.push(kept);
  }

  #pump(): void {
    if (this.#state !== 'open' || !this.#ws) return;
    const limit = this.#o.behaviour === 'ignore-window' ? this.#window * 4 : this.#credit;
    const now = this.now();
    while (this.#next < this.#outbox.length && this.#next < limit) {
      const k = this.#outbox[this.#next]!;
      this.#ws.send(this.#encode(k, now));
      k.sentAt = Date.now();
      this.counters.batchesSent++;
      if (k.everSent) this.counters.batchesResent++;
      k.everSent = true;
      this.#next++;
    }
  }

  #encode(k: Kept, now: number): Uint8Array {
    const defs: MetricDef[] = [];
    const ids = new Array<number>(k.sensor.length);
    const offsets = new Array<number>(k.sensor.length);
    for (let i = 0; i < k.sensor.length; i++) {
      const s = k.sensor[i]!;
      if (!this.#defined[s]) {
        // protocol: metric ids are per session; define before (or in) first use.
        this.#defined[s] = true;
        defs.push({ id: s + 1, name: this.#sensors[s]!.name, unit: this.#sensors[s]!.unit });
      }
      ids[i] = s + 1;
      offsets[i] = k.times[i]! - k.base;
    }
    return encodeDeviceMessage({ batch: { seq: k.seq, baseTimeMs: k.base, metricDefs: defs, metricIds: ids, timeOffsetsMs: offsets, values: Array.from(k.values), sentTimeMs: now } });
  }

  // ---- connection -------------------------------------------------------------

  #connect(): void {
    if (this.#state === 'stopped') return;
    this.#state = 'connecting';
    const protocols = [DEVICE_SUBPROTOCOL];
    const headers: Record<string, string> = {};
    if (this.#o.authVia === 'subprotocol') protocols.push(TOKEN_SUBPROTOCOL_PREFIX + this.#o.token);
    else headers.authorization = `Bearer ${this.#o.token}`;
    const ws = new WebSocket(this.#o.url, protocols, {
      headers, ca: this.#o.ca, localAddress: this.#o.localAddress, perMessageDeflate: false, handshakeTimeout: 15_000,
    });
    ws.binaryType = 'nodebuffer';
    this.#ws = ws;
    let refused = false;
    ws.on('unexpected-response', (_req, res) => {
      refused = true;
      const status = res.statusCode ?? 0;
      this.#count(`http-${status}`);
      const ra = Number(res.headers['retry-after']);
      if (Number.isFinite(ra) && ra > 0) this.#retryHintMs = ra * 1000;
      if (status === 401 || status === 403) this.#fatal = true;
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      if (this.#state === 'stopped') return ws.close(1000);
      this.#state = 'awaiting-welcome';
      this.#defined = [];
      this.#next = 0;
      if (this.#o.behaviour === 'no-hello') return;
      ws.send(encodeDeviceMessage({ hello: { deviceId: this.id, protocolVersion: PROTOCOL_VERSION, firmware: 'device-sim/0.1', deviceTimeMs: this.now() } }));
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      let m: HubMessage;
      try { m = decodeHubMessage(data); } catch { return ws.terminate(); }
      this.#onMessage(ws, m);
    });
    ws.on('error', () => { if (!refused) this.#count('error'); });
    ws.on('close', (code, reasonBuf) => {
      if (this.#ws !== ws) return;
      const reason = reasonBuf.toString();
      if (!refused) {
        this.lastClose = { code, reason };
        this.#count(String(code));
        const hint = parseRetryAfterMs(reason);
        if (hint !== undefined) this.#retryHintMs = Math.max(this.#retryHintMs, hint);
        if (FATAL_CODES.has(code)) this.#fatal = true;
      }
      this.#ws = null;
      for (const k of this.#outbox) k.sentAt = 0;
      this.#next = 0;
      if (this.#state === 'stopped') return;
      this.#state = 'idle';
      this.#scheduleReconnect();
    });
  }

  #onMessage(ws: WebSocket, m: HubMessage): void {
    if (m.welcome) {
      const w = m.welcome;
      this.welcome = w;
      this.#window = w.window ?? 0;
      this.#credit = w.credit ?? 0;
      this.#maxMessageBytes = w.limits?.maxMessageBytes ?? 0;
      // protocol: what the hub stored needs no resend.
      this.#dropAcked(w.lastSeq ?? 0, false);
      this.#state = 'open';
      this.#attempt = 0;
      this.#retryHintMs = 0;
      this.counters.sessions++;
      this.#misbehave(ws);
      this.#pump();
    } else if (m.ack) {
      const a = m.ack;
      this.#credit = a.credit ?? 0;
      if (this.#credit < this.#window) this.counters.reducedCreditAcks++;
      for (const r of a.reports ?? []) {
        this.counters.hubNonFiniteDropped += r.nonFiniteDropped ?? 0;
        this.counters.hubSkewDropped += r.skewDropped ?? 0;
        this.counters.hubSkewCorrected += r.skewCorrected ?? 0;
      }
      this.#dropAcked(a.seq ?? 0, true);
      this.#pump();
    } else if (m.notice) {
      if (m.notice.retryAfterMs) this.#retryHintMs = Math.max(this.#retryHintMs, m.notice.retryAfterMs);
    } else if (m.command) {
      const c = m.command;
      if (c.config?.sampleIntervalMs) this.#o.rate = 1000 / c.config.sampleIntervalMs;
      if (c.config?.batchIntervalMs) this.#o.batchIntervalMs = c.config.batchIntervalMs;
      ws.send(encodeDeviceMessage({ commandResult: { id: c.id ?? 0, ok: true, message: 'applied' } }));
    }
  }

  #dropAcked(seq: number, measure: boolean): void {
    let n = 0;
    const now = Date.now();
    while (n < this.#outbox.length && this.#outbox[n]!.seq <= seq) {
      const k = this.#outbox[n]!;
      if (measure && k.sentAt) this.latency.add(now - k.sentAt);
      this.counters.batchesAcked++;
      this.counters.readingsAcked += k.values.length;
      n++;
    }
    if (n) {
      this.#outbox.splice(0, n);
      this.#next = Math.max(0, this.#next - n);
    }
  }

  #misbehave(ws: WebSocket): void {
    switch (this.#o.behaviour) {
      case 'text-frames': ws.send('{"hello":"I am JSON"}'); break;
      case 'garbage': ws.send(Buffer.from(Array.from({ length: 64 }, () => Math.floor(this.#random() * 256)))); break;
      case 'oversize': ws.send(Buffer.alloc((this.#maxMessageBytes || 262_144) + 1)); break;
      default: break;
    }
  }

  #scheduleReconnect(): void {
    if (this.#fatal && !this.#o.reconnectOnFatal) {
      this.#state = 'stopped';
      return;
    }
    this.counters.reconnects++;
    this.#attempt++;
    // Full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
    const cap = Math.min(this.#o.backoffCapMs, this.#o.backoffBaseMs * 2 ** Math.min(20, this.#attempt - 1));
    let delay = this.#random() * cap;
    if (this.#fatal) delay = this.#o.backoffCapMs;
    if (this.#retryHintMs) delay = Math.max(delay, this.#retryHintMs + this.#random() * Math.min(1000, this.#retryHintMs));
    this.#retryHintMs = 0;
    this.#fatal = false;
    this.#reconnectTimer = setTimeout(() => { this.#reconnectTimer = null; this.#connect(); }, delay);
  }

  #count(key: string): void {
    this.counters.closes[key] = (this.counters.closes[key] ?? 0) + 1;
  }
}

/** FNV-1a of the id: a stable per-device seed. */
export function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
