// live/: the dashboard endpoint, /v1/live: the upgrade (operator session
// cookie, allowed Origin, dashboard cap), subscriptions and the sockets. A
// dashboard subscribes to topics and gets a snapshot, then one frame per tick
// with what changed; frames carry a per-connection sequence number and a
// reconnect starts over with a snapshot. What a frame holds is
// live/frames.ts; how a slow socket degrades (skip, coarse, close 4102) is
// live/ladder.ts. Imports: proto, auth/operators, core, live/*.
//
// Nothing here runs on the ingest path: frames are built on a timer from
// state that ingest updated, and a socket's backlog only ever costs that
// socket frames.
import { LIVE_PATH, LIVE_SUBPROTOCOL, LiveCloseCode, decodeLiveRequest, encodeLiveFrame } from '@telemetry/proto';
import { servedOverHttps, sessionToken, type Operators } from '../auth/operators.ts';
import { originAllowed } from '../core/origin.ts';
import type { HubConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { UwsTypes } from '../core/uws.ts';
import { LiveFrames, type FrameSubscriber } from './frames.ts';
import { KEEPING_UP, ladderStep, type LadderLimits, type LadderState } from './ladder.ts';
import type { LiveState } from './state.ts';

type WebSocket = UwsTypes.WebSocket<LiveSocket>;

const MAX_TOPICS = 32;
const TOPIC_RE = /^(fleet|devices|device:[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|group:[A-Za-z_][A-Za-z0-9_]{0,63}=[^\s=]{1,128})$/;

interface LiveSocket extends FrameSubscriber {
  readonly user: string;
  readonly sessionHash: string;
  readonly addr: string;
  ws: WebSocket | null;
  topics: string[];
  seq: number;
  /** Tick of the last frame sent (0: none yet, a snapshot is due). */
  lastTick: number;
  snapshotDue: boolean;
  skippedSince: number;
  ladder: LadderState;
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
  readonly #deps: LiveEndpointDeps;
  readonly #frames: LiveFrames;
  readonly #limits: LadderLimits;
  readonly #sockets = new Set<LiveSocket>();
  #timer: NodeJS.Timeout | null = null;
  #closing = false;
  #unsubscribe: () => void;

  constructor(deps: LiveEndpointDeps) {
    this.#deps = deps;
    this.#frames = new LiveFrames(deps.state, deps.config.liveTickMs, deps.now);
    this.#limits = { skipBytes: deps.config.liveSkipBytes, maxBackpressure: deps.config.liveMaxBackpressure };
    this.#unsubscribe = deps.operators.onSessionEnded((hash) => {
      for (const s of this.#sockets) if (s.sessionHash === hash) this.#end(s, LiveCloseCode.SESSION_ENDED, 'operator session ended', 'session_ended');
    });
  }

  get dashboards(): number { return this.#sockets.size; }

  attach(app: UwsTypes.TemplatedApp): void {
    const config = this.#deps.config;
    app.ws<LiveSocket>(LIVE_PATH, {
      compression: this.#deps.uws.DISABLED,
      maxPayloadLength: 16 * 1024,
      idleTimeout: 60,
      sendPingsAutomatically: true,
      // The hub closes a socket itself at liveMaxBackpressure (4102), before uWS would.
      maxBackpressure: config.liveMaxBackpressure * 2,
      closeOnBackpressureLimit: 0,
      upgrade: (res, req, ctx) => this.#upgrade(res, req, ctx),
      open: (ws) => {
        const s = ws.getUserData();
        s.ws = ws;
        this.#sockets.add(s);
        this.#deps.state.setDashboardCount(this.#sockets.size);
        this.#deps.metrics.liveDashboards.inc();
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
    const config = this.#deps.config;
    const refuse = (status: string, text: string): void => {
      this.#deps.metrics.liveRefusals.labels(status.slice(0, 3)).inc();
      res.cork(() => res.writeStatus(status).writeHeader('Content-Type', 'text/plain; charset=utf-8').end(text + '\n', true));
    };
    if (this.#closing) return refuse('503 Service Unavailable', 'hub is shutting down');
    if (!originAllowed(origin, host, config.liveOrigins)) return refuse('403 Forbidden', `origin ${origin} is not allowed (HUB_LIVE_ORIGINS)`);
    const who = this.#deps.operators.check(sessionToken(cookie, servedOverHttps(config)));
    if (!who) return refuse('401 Unauthorized', 'sign in first (operator session cookie)');
    if (this.#sockets.size >= config.liveMaxDashboards) return refuse('503 Service Unavailable', 'too many dashboards connected (HUB_LIVE_MAX_DASHBOARDS)');
    const selected = offered.split(',').map((p) => p.trim()).includes(LIVE_SUBPROTOCOL) ? LIVE_SUBPROTOCOL : '';
    const data: LiveSocket = {
      user: who.user, sessionHash: who.hash, addr: Buffer.from(res.getRemoteAddressAsText()).toString(), ws: null,
      topics: [], seq: 0, lastTick: 0, snapshotDue: true, skippedSince: 0, ladder: KEEPING_UP,
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
    this.#send(s, this.#deps.state.tick, true);
  }

  #closed(s: LiveSocket, code: number): void {
    if (!this.#sockets.delete(s)) return;
    s.ws = null;
    this.#deps.state.setDashboardCount(this.#sockets.size);
    this.#deps.metrics.liveDashboards.dec();
    if (code === 1000 || code === 1001 || code === 1005) this.#deps.metrics.liveCloses.labels('client').inc();
    else if (code === 1006) this.#deps.metrics.liveCloses.labels('lost').inc();
  }

  #end(s: LiveSocket, code: number, reason: string, metric: string): void {
    const ws = s.ws;
    if (!ws) return;
    this.#deps.metrics.liveCloses.labels(metric).inc();
    this.#deps.log.info({ user: s.user, addr: s.addr, code, reason }, 'closing live connection');
    this.#closed(s, code);
    ws.end(code, reason);
  }

  // ---- ticks ------------------------------------------------------------------

  #schedule(): void {
    if (this.#closing) return;
    const tickMs = this.#deps.config.liveTickMs;
    const now = this.#deps.now();
    // Just after each boundary, so a 1 s window is published as soon as it closes.
    const wait = Math.ceil((now + 1) / tickMs) * tickMs + 15 - now;
    this.#timer = setTimeout(() => this.#tick(), wait);
    this.#timer.unref();
  }

  #tick(): void {
    const end = this.#deps.metrics.liveTickSeconds.startTimer();
    try {
      this.#deps.state.advance();
      const tick = this.#deps.state.tick;
      for (const s of [...this.#sockets]) {
        const ws = s.ws;
        if (!ws || s.lastTick === 0 && s.topics.length === 0) continue;
        const buffered = ws.getBufferedAmount();
        const step = ladderStep(s.ladder, buffered, tick, this.#limits);
        s.ladder = step.ladder;
        if (step.action === 'send') {
          this.#send(s, tick, false);
        } else if (step.action === 'close') {
          this.#end(s, LiveCloseCode.TOO_SLOW, `more than ${this.#limits.maxBackpressure} bytes unsent even on coarse updates`, 'too_slow');
        } else {
          // No frame this tick: the next one carries everything changed since the last (latest wins).
          s.skippedSince++;
          if (step.action === 'wait') continue; // between coarse ticks: not counted as a skip
          this.#deps.metrics.liveSkipped.inc();
          if (step.action === 'degrade') {
            this.#deps.metrics.liveDegraded.inc();
            this.#deps.log.info({ user: s.user, addr: s.addr, buffered }, 'slow dashboard: coarse updates');
          }
        }
      }
    } catch (err) {
      this.#deps.log.error({ err }, 'live tick failed');
    } finally {
      end();
      this.#schedule();
    }
  }

  #send(s: LiveSocket, tick: number, immediate: boolean): void {
    const ws = s.ws;
    if (!ws) return;
    const frame = this.#frames.build(s, tick, immediate, this.#sockets.size);
    const bytes = encodeLiveFrame(frame);
    s.lastTick = tick;
    s.skippedSince = 0;
    s.snapshotDue = false;
    this.#deps.metrics.liveFrames.inc();
    this.#deps.metrics.liveFrameBytes.inc(bytes.byteLength);
    ws.send(bytes, true);
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
