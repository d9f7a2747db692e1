// live/: the dashboard endpoint, /v1/live. A dashboard subscribes to topics
// and gets a snapshot, then one frame per tick with what changed. Frames
// carry a per-connection sequence number; a reconnect starts over with a
// snapshot. Slow sockets degrade before they are dropped: latest wins (skip
// ticks while more than HUB_LIVE_SKIP_BYTES is unsent), after 3 skips coarse
// updates (10 s and 1 min windows, every 10th tick, sent even while behind),
// and a close (4102) once more than HUB_LIVE_MAX_BACKPRESSURE is unsent. A
// socket that catches up on coarse updates returns to every tick. Requires an operator session
// cookie and an allowed Origin. Imports: proto, auth/operators, live/state.
//
// Nothing here runs on the ingest path: frames are built on a timer from
// state that ingest updated, and a socket's backlog only ever costs that
// socket frames.
import {
  LIVE_PATH, LIVE_SUBPROTOCOL, LiveCloseCode, decodeLiveRequest, encodeLiveFrame,
  type AlarmMsg, type DeviceDetail, type DeviceStateMsg, type LiveFrameProps, type MetricStats, type ScopeStats,
} from '@telemetry/proto';
import { servedOverHttps, sessionToken, type Operators } from '../auth/operators.ts';
import { originAllowed } from '../core/origin.ts';
import type { HubConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { AlarmRec } from './alarms.ts';
import type { TrackedDevice } from './devices.ts';
import type { LiveState, Scope } from './state.ts';

type WebSocket = UwsTypes.WebSocket<LiveSocket>;

const MAX_TOPICS = 32;
const TOPIC_RE = /^(fleet|devices|device:[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|group:[A-Za-z_][A-Za-z0-9_]{0,63}=[^\s=]{1,128})$/;
/** Consecutive skipped ticks before a socket gets coarse updates. */
const SKIPS_BEFORE_COARSE = 3;
/** A degraded socket gets a frame every this many ticks, with 10 s and 1 min windows only. */
const COARSE_EVERY = 10;
/** Coarse frames sent with nothing left unsent before a socket is back to every tick. */
const CLEAN_BEFORE_RECOVERY = 3;

interface LiveSocket {
  user: string;
  sessionHash: string;
  addr: string;
  ws: WebSocket | null;
  topics: string[];
  seq: number;
  /** Tick of the last frame sent (0: none yet, a snapshot is due). */
  lastTick: number;
  snapshotDue: boolean;
  skippedRun: number;
  skippedSince: number;
  degraded: boolean;
  clean: number;
}

export interface LiveEndpointDeps {
  config: HubConfig;
  state: LiveState;
  operators: Operators;
  metrics: HubMetrics;
  log: Logger;
  uws: { DISABLED: number };
  now: () => number;
}

export class LiveEndpoint {
  readonly #d: LiveEndpointDeps;
  readonly #sockets = new Set<LiveSocket>();
  #timer: NodeJS.Timeout | null = null;
  #closing = false;
  #unsubscribe: () => void;
  // Per-tick caches: built once per tick, shared by every socket.
  #cacheTick = -1;
  #scopeCache = new Map<string, ScopeStats>();
  #deviceCache = new Map<string, DeviceStateMsg>();

  constructor(d: LiveEndpointDeps) {
    this.#d = d;
    this.#unsubscribe = d.operators.onSessionEnded((hash) => {
      for (const s of this.#sockets) if (s.sessionHash === hash) this.#end(s, LiveCloseCode.SESSION_ENDED, 'operator session ended', 'session_ended');
    });
  }

  get dashboards(): number { return this.#sockets.size; }

  attach(app: UwsTypes.TemplatedApp): void {
    const c = this.#d.config;
    app.ws<LiveSocket>(LIVE_PATH, {
      compression: this.#d.uws.DISABLED,
      maxPayloadLength: 16 * 1024,
      idleTimeout: 60,
      sendPingsAutomatically: true,
      // The hub closes a socket itself at liveMaxBackpressure (4102), before uWS would.
      maxBackpressure: c.liveMaxBackpressure * 2,
      closeOnBackpressureLimit: 0,
      upgrade: (res, req, ctx) => this.#upgrade(res, req, ctx),
      open: (ws) => {
        const s = ws.getUserData();
        s.ws = ws;
        this.#sockets.add(s);
        this.#d.state.dashboards = this.#sockets.size;
        this.#d.metrics.liveDashboards.inc();
      },
      message: (ws, msg, isBinary) => this.#message(ws.getUserData(), msg, isBinary),
      close: (ws, code) => this.#closed(ws.getUserData(), code),
    });
    this.#schedule();
  }

  #upgrade(res: UwsTypes.HttpResponse, req: UwsTypes.HttpRequest, ctx: UwsTypes.us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const offered = req.getHeader('sec-websocket-protocol');
    const ext = req.getHeader('sec-websocket-extensions');
    const origin = req.getHeader('origin');
    const host = req.getHeader('host');
    const cookie = req.getHeader('cookie');
    const c = this.#d.config;
    const refuse = (status: string, text: string): void => {
      this.#d.metrics.liveRefusals.labels(status.slice(0, 3)).inc();
      res.cork(() => res.writeStatus(status).writeHeader('Content-Type', 'text/plain; charset=utf-8').end(text + '\n', true));
    };
    if (this.#closing) return refuse('503 Service Unavailable', 'hub is shutting down');
    if (!originAllowed(origin, host, c.liveOrigins)) return refuse('403 Forbidden', `origin ${origin} is not allowed (HUB_LIVE_ORIGINS)`);
    const who = this.#d.operators.check(sessionToken(cookie, servedOverHttps(c)));
    if (!who) return refuse('401 Unauthorized', 'sign in first (operator session cookie)');
    if (this.#sockets.size >= c.liveMaxDashboards) return refuse('503 Service Unavailable', 'too many dashboards connected (HUB_LIVE_MAX_DASHBOARDS)');
    const selected = offered.split(',').map((p) => p.trim()).includes(LIVE_SUBPROTOCOL) ? LIVE_SUBPROTOCOL : '';
    const data: LiveSocket = {
      user: who.user, sessionHash: who.hash, addr: Buffer.from(res.getRemoteAddressAsText()).toString(), ws: null,
      topics: [], seq: 0, lastTick: 0, snapshotDue: true, skippedRun: 0, skippedSince: 0, degraded: false, clean: 0,
    };
    res.cork(() => res.upgrade<LiveSocket>(data, key, selected, ext, ctx));
  }

  #message(s: LiveSocket, msg: ArrayBuffer, isBinary: boolean): void {
    if (!isBinary) return this.#end(s, LiveCloseCode.BAD_REQUEST, 'send binary LiveRequest messages', 'bad_request');
    let req;
    try {
      req = decodeLiveRequest(new Uint8Array(msg));
    } catch (err) {
      return this.#end(s, LiveCloseCode.BAD_REQUEST, `not a LiveRequest: ${(err as Error).message}`, 'bad_request');
    }
    const topics = req.subscribe?.topics;
    if (!topics) return this.#end(s, LiveCloseCode.BAD_REQUEST, 'empty LiveRequest', 'bad_request');
    if (topics.length > MAX_TOPICS) return this.#end(s, LiveCloseCode.BAD_REQUEST, `at most ${MAX_TOPICS} topics`, 'bad_request');
    const bad = topics.find((t) => !TOPIC_RE.test(t));
    if (bad !== undefined) return this.#end(s, LiveCloseCode.BAD_REQUEST, `unknown topic ${JSON.stringify(bad.slice(0, 60))}`, 'bad_request');
    s.topics = [...new Set(topics)];
    s.snapshotDue = true;
    // Answer at once with a snapshot of the current tick: no waiting for the next one.
    this.#send(s, this.#d.state.tick, true);
  }

  #closed(s: LiveSocket, code: number): void {
    if (!this.#sockets.delete(s)) return;
    s.ws = null;
    this.#d.state.dashboards = this.#sockets.size;
    this.#d.metrics.liveDashboards.dec();
    if (code === 1000 || code === 1001 || code === 1005) this.#d.metrics.liveCloses.labels('client').inc();
    else if (code === 1006) this.#d.metrics.liveCloses.labels('lost').inc();
  }

  #end(s: LiveSocket, code: number, reason: string, metric: string): void {
    const ws = s.ws;
    if (!ws) return;
    this.#d.metrics.liveCloses.labels(metric).inc();
    this.#d.log.info({ user: s.user, addr: s.addr, code, reason }, 'closing live connection');
    this.#closed(s, code);
    ws.end(code, reason);
  }

  // ---- ticks ------------------------------------------------------------------

  #schedule(): void {
    if (this.#closing) return;
    const tick = this.#d.config.liveTickMs;
    const now = this.#d.now();
    // Just after each boundary, so a 1 s window is published as soon as it closes.
    const wait = Math.ceil((now + 1) / tick) * tick + 15 - now;
    this.#timer = setTimeout(() => this.#tick(), wait);
    this.#timer.unref();
  }

  #tick(): void {
    const end = this.#d.metrics.liveTickSeconds.startTimer();
    try {
      this.#d.state.advance();
      const tick = this.#d.state.tick;
      const c = this.#d.config;
      for (const s of [...this.#sockets]) {
        const ws = s.ws;
        if (!ws || s.lastTick === 0 && s.topics.length === 0) continue;
        const buffered = ws.getBufferedAmount();
        if (buffered > c.liveMaxBackpressure) {
          this.#end(s, LiveCloseCode.TOO_SLOW, `more than ${c.liveMaxBackpressure} bytes unsent even on coarse updates`, 'too_slow');
          continue;
        }
        if (s.degraded) {
          // Coarse: one frame every COARSE_EVERY ticks, whatever is unsent, so
          // a client that stopped reading reaches the limit above and goes.
          if (tick % COARSE_EVERY !== 0) { s.skippedSince++; continue; }
          if (buffered > 0) s.clean = 0;
          else if (++s.clean >= CLEAN_BEFORE_RECOVERY) { s.degraded = false; s.clean = 0; s.skippedRun = 0; }
        } else if (buffered > c.liveSkipBytes) {
          // Latest wins: skip this tick; the next frame carries everything changed since the last one.
          s.skippedRun++;
          s.skippedSince++;
          this.#d.metrics.liveSkipped.inc();
          if (s.skippedRun >= SKIPS_BEFORE_COARSE) {
            s.degraded = true;
            s.clean = 0;
            this.#d.metrics.liveDegraded.inc();
            this.#d.log.info({ user: s.user, addr: s.addr, buffered }, 'slow dashboard: coarse updates');
          }
          continue;
        } else {
          s.skippedRun = 0;
        }
        this.#send(s, tick, false);
      }
    } catch (err) {
      this.#d.log.error({ err }, 'live tick failed');
    } finally {
      end();
      this.#schedule();
    }
  }

  #send(s: LiveSocket, tick: number, immediate: boolean): void {
    const ws = s.ws;
    if (!ws) return;
    const frame = this.#frame(s, tick, immediate);
    const bytes = encodeLiveFrame(frame);
    s.lastTick = tick;
    s.skippedSince = 0;
    s.snapshotDue = false;
    this.#d.metrics.liveFrames.inc();
    this.#d.metrics.liveFrameBytes.inc(bytes.byteLength);
    ws.send(bytes, true);
  }

  #frame(s: LiveSocket, tick: number, immediate: boolean): LiveFrameProps {
    const st = this.#d.state;
    if (this.#cacheTick !== tick) {
      this.#cacheTick = tick;
      this.#scopeCache.clear();
      this.#deviceCache.clear();
    }
    const snapshot = s.snapshotDue;
    const since = snapshot ? -1 : s.lastTick;
    const f: LiveFrameProps = {
      seq: ++s.seq, hubTimeMs: this.#d.now(), snapshot, tickMs: this.#d.config.liveTickMs,
      skippedTicks: immediate ? 0 : s.skippedSince, degraded: s.degraded,
    };
    const scopes: ScopeStats[] = [];
    for (const t of s.topics) {
      if (t === 'fleet') {
        f.health = { ...st.health, dashboards: this.#sockets.size };
        const sc = this.#scopeStats('fleet', s.degraded);
        if (sc) scopes.push(sc);
        f.alarms = this.#alarms(since);
      } else if (t.startsWith('group:')) {
        const sc = this.#scopeStats(t, s.degraded);
        scopes.push(sc ?? { scope: t });
      } else if (t === 'devices') {
        const list: DeviceStateMsg[] = [];
        for (const d of st.devices.devices.values()) if (d.changed > since) list.push(this.#device(d));
        f.devices = list;
        if (!snapshot) f.removedDevices = st.devices.removed.filter((r) => r.tick > since).map((r) => r.id);
      } else if (t.startsWith('device:')) {
        const d = st.devices.devices.get(t.slice(7));
        if (d) (f.deviceDetails ??= []).push(this.#detail(d));
      }
    }
    if (scopes.length) f.scopes = scopes;
    return f;
  }

  #scopeStats(name: string, coarse: boolean): ScopeStats | null {
    const key = coarse ? `${name}\0coarse` : name;
    let e = this.#scopeCache.get(key);
    if (!e) {
      const sc = this.#d.state.scopes.get(name);
      if (!sc) return null;
      e = scopeMsg(sc, coarse, this.#d.state);
      this.#scopeCache.set(key, e);
    }
    return e;
  }

  #device(d: TrackedDevice): DeviceStateMsg {
    let m = this.#deviceCache.get(d.id);
    if (!m) {
      m = deviceMsg(d);
      this.#deviceCache.set(d.id, m);
    }
    return m;
  }

  #detail(d: TrackedDevice): DeviceDetail {
    return {
      state: this.#device(d), firmware: d.firmware, address: d.address,
      history: d.history.map((h) => ({ presence: h.presence, timeMs: h.timeMs, reason: h.reason })),
    };
  }

  #alarms(since: number): AlarmMsg[] {
    const a = this.#d.state.alarms;
    const out: AlarmMsg[] = [];
    for (const r of a.active.values()) if (r.changed > since) out.push(alarmMsg(r));
    for (const r of a.recent) if (r.changed > since) out.push(alarmMsg(r));
    return out;
  }

  /** Closes every dashboard with 1001 and stops ticking. */
  shutdown(): void {
    this.#closing = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#unsubscribe();
    for (const s of [...this.#sockets]) {
      const ws = s.ws;
      this.#closed(s, 1001);
      ws?.end(1001, 'hub shutting down');
    }
  }
}

function scopeMsg(sc: Scope, coarse: boolean, st: LiveState): ScopeStats {
  const metrics: MetricStats[] = [];
  for (const [metric, e] of sc.series) {
    const windows = [];
    for (let i = coarse ? 1 : 0; i < e.ws.closed.length; i++) {
      const w = e.ws.closed[i];
      if (w) windows.push(w);
    }
    metrics.push({ metric, unit: e.unit, windows });
  }
  return {
    scope: sc.name, devicesOnline: sc.online, devicesTotal: sc.total, readingsPerS: sc.readingsPerS, metrics,
    alarmsActive: st.alarms.activeIn(sc.tag, st.devices),
  };
}

function deviceMsg(d: TrackedDevice): DeviceStateMsg {
  return {
    id: d.id, presence: d.presence, presenceSinceMs: d.since, presenceReason: d.reason, lastSeenMs: d.lastSeen,
    latest: d.metrics.map((m, i) => ({ metric: m, unit: d.units[i]!, value: d.values[i]!, timeMs: d.times[i]! })),
    tags: d.tags as Record<string, string>, cadenceMs: d.learnedCadenceMs,
  };
}

function alarmMsg(r: AlarmRec): AlarmMsg {
  return {
    id: r.id, ruleId: r.ruleId, ruleName: r.ruleName, device: r.device, metric: r.metric, condition: r.condition,
    value: r.value, sinceMs: r.sinceMs, untilMs: r.untilMs,
  };
}
