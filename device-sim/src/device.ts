// device-sim/: one simulated device, the device side of protocol v1
// (proto/README.md): the session state machine, sampling, credit, resends and
// when to reconnect. Its parts live beside it: batch.ts builds and encodes
// batches, outbox.ts keeps them, pacing.ts and watchdog.ts hold the rate
// limit and the timeouts, reconnect.ts the wait before a reconnect,
// behaviours.ts the bad actors, socket.ts the connection (`ws` by default),
// management.ts the features beyond the core protocol (desired/reported
// configuration, named commands).
// Imports: @telemetry/proto, node, and those modules plus device-options, sensors and stats.
import { EventEmitter } from 'node:events';
import {
  CloseCode, DEVICE_SUBPROTOCOL, FEATURE_CONFIG, FEATURE_INVOKE, PROTOCOL_VERSION, TOKEN_SUBPROTOCOL_PREFIX, decodeHubMessage, encodeDeviceMessage,
  type Ack, type Command, type ConfigReport, type DesiredConfig, type HubMessage, type Notice, type Welcome,
} from '@telemetry/proto';
import { BatchBuilder, BatchEncoder } from './batch.ts';
import { behaviourStrategy, type Behaviour, type BehaviourStrategy, type MisbehavingDevice } from './behaviours.ts';
import { DEFAULT_FEATURES, answerInvoke, checkDesired, factoryState, type ManagedState } from './management.ts';
import { Outbox, type KeptBatch } from './outbox.ts';
import { ReadingsBucket } from './pacing.ts';
import { ReconnectState } from './reconnect.ts';
import { defaultSensors, hashId, mulberry32 } from './sensors.ts';
import { SocketState, wsConnector, type DeviceSocket, type SocketListener } from './socket.ts';
import { LatencyHistogram, emptyCounters, type SimCounters } from './stats.ts';
import { SessionWatchdog } from './watchdog.ts';
import { SYSTEM_CLOCK, type DeviceClock, type SimDeviceEvents, type SimDeviceOptions, type SimDeviceStats } from './device-options.ts';

export const FIRMWARE = 'device-sim/0.1';

type State = 'idle' | 'connecting' | 'awaiting-welcome' | 'open' | 'closed' | 'stopped';

export class SimDevice extends EventEmitter<SimDeviceEvents> {
  readonly id: string;
  readonly counters: SimCounters = emptyCounters();
  readonly latency: LatencyHistogram;
  lastClose: { code: number; reason: string } | null = null;
  lastNotice: Notice | null = null;
  welcome: Welcome | null = null;

  readonly #options: SimDeviceOptions;
  readonly #clock: DeviceClock;
  readonly #strategy: BehaviourStrategy;
  #clockOffsetMs: number;
  /** A drifting clock (a load test): parts per million gained since #driftFrom (wall ms); 0: none. */
  #driftPpm = 0;
  #driftFrom = 0;
  readonly #random: () => number;
  readonly #outbox: Outbox;
  readonly #builder: BatchBuilder;
  readonly #encoder: BatchEncoder;
  readonly #bucket = new ReadingsBucket();
  readonly #watchdog: SessionWatchdog;
  readonly #reconnect = new ReconnectState();
  /** What the behaviour strategy may do to this device (made once, not per session). */
  readonly #asMisbehaving: MisbehavingDevice;
  /** Called per acked batch; made once so an Ack allocates no closure. */
  readonly #onBatchAcked = (b: KeptBatch): void => {
    if (b.sentAt) { this.latency.add(this.#ackedAt - b.sentAt); this.#latencyCount++; }
    this.#countAcked(b);
  };
  readonly #onBatchStored = (b: KeptBatch): void => this.#countAcked(b);

  #socket: DeviceSocket | null = null;
  /** Resolves stop()'s wait once the current socket has closed. */
  #onSocketClosed: (() => void) | null = null;
  #state: State = 'idle';
  #started = false;
  #ownTicker: NodeJS.Timeout | null = null;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #credit = 0;
  #window = 0;
  #reconnectDelayMs = 0;
  /** Latency samples this device took (the histogram may be a fleet's, shared). */
  #latencyCount = 0;
  /** Monotonic time of the Ack being handled (read by #onBatchAcked). */
  #ackedAt = 0;
  /** Monotonic start of the current connection attempt (DeviceTimings). */
  #attemptAt = 0;
  /** The session has not had an Ack that covered a batch yet (DeviceTimings.firstAck). */
  #awaitingFirstAck = false;
  /** Offline on purpose (a load test): no connection, no reconnects, sampling goes on into the outbox. */
  #offline = false;
  /** The link went half-open on purpose (freezeLink): nothing sent, nothing read, until it closes. */
  #frozen = false;
  /** The current session's end was caused on purpose (a load test's fault): its close counts as "injected:<code>", not as an error. */
  #injected = false;
  /** What Hello lists (§5.14); [] = a plain v1 device. */
  readonly #features: readonly string[];
  /** Features both Hello and this session's Welcome list. */
  #configInUse = false;
  #invokeInUse = false;
  /** Configuration version, custom settings and the last DesiredConfig's outcome: the device's own state, kept across sessions (flash). */
  #managed: ManagedState = factoryState();
  /** Monotonic time the simulated device (re)started: Invoke "ping" answers with the time since. */
  #bootAt = 0;
  /** An Invoke "reboot" closed the session: the next connection attempt is a fresh boot. */
  #rebooting = false;

  constructor(options: SimDeviceOptions) {
    super();
    this.id = options.id;
    this.#options = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#strategy = behaviourStrategy(options.behaviour ?? 'good');
    const rate = options.rate ?? 1;
    const batchIntervalMs = options.batchIntervalMs ?? 1000;
    if (!(rate >= 0)) throw new RangeError(`${this.id}: rate must be >= 0 (got ${rate})`);
    if (!(batchIntervalMs > 0)) throw new RangeError(`${this.id}: batchIntervalMs must be > 0 (got ${batchIntervalMs})`);
    this.#clockOffsetMs = options.clockOffsetMs ?? this.#strategy.clockOffsetMs;
    this.#features = [...(options.features ?? DEFAULT_FEATURES)];
    const seed = options.seed ?? hashId(options.id);
    this.#random = options.random ?? mulberry32(seed ^ 0x9e3779b9);
    const sensors = options.sensors ?? defaultSensors(seed);
    if (sensors.length > 65_535) throw new RangeError(`${this.id}: at most 65,535 sensors`);
    this.#outbox = new Outbox(options.outboxCap ?? 10_000);
    this.#builder = new BatchBuilder({ sensors, behaviour: this.#strategy, random: this.#random, outbox: this.#outbox, counters: this.counters }, rate, batchIntervalMs);
    this.#encoder = new BatchEncoder(sensors);
    this.#watchdog = new SessionWatchdog({ welcomeTimeoutMs: options.welcomeTimeoutMs ?? 15_000, ackTimeoutMs: options.ackTimeoutMs ?? 60_000 });
    this.latency = options.latency ?? new LatencyHistogram();
    this.#asMisbehaving = {
      random: this.#random,
      now: () => this.now(),
      send: (frame) => this.#socket?.send(frame),
      closeBatch: () => this.#builder.closeBatch(),
      sampleInstant: (t) => this.#builder.sampleInstant(t),
    };
  }

  /** Welcome received and the session not yet closed. */
  get connected(): boolean { return this.#state === 'open'; }
  /** Stopped for good: stop() was called, or a fatal close without reconnectOnFatal. */
  get stopped(): boolean { return this.#state === 'stopped'; }
  /** The last close or refusal was fatal. */
  get fatal(): boolean { return this.#reconnect.fatal; }
  get behaviour(): Behaviour { return this.#options.behaviour ?? 'good'; }
  /** Batches kept (unacked). */
  get outboxSize(): number { return this.#outbox.length; }
  /** Batches sent in this session awaiting an ack. */
  get inflight(): number { return this.#outbox.inflight; }
  get credit(): number { return this.#credit; }
  /** The last seq this device used (0 = none yet). */
  get lastSeq(): number { return this.#builder.seq; }
  /** Delay of the most recently scheduled reconnect, ms. */
  get reconnectDelayMs(): number { return this.#reconnectDelayMs; }
  /** Device clock, Unix ms. */
  now(): number { return this.#deviceTime(this.#clock.wallMs()); }

  #deviceTime(wall: number): number {
    return this.#driftPpm === 0 ? wall + this.#clockOffsetMs : wall + this.#clockOffsetMs + ((wall - this.#driftFrom) * this.#driftPpm) / 1e6;
  }

  /**
   * The device clock goes wrong (a load test): off by `offsetMs` from now on,
   * and drifting by `driftPpm` parts per million from now (both 0: right
   * again, as after an NTP sync). Sampling restarts at the new time, so a
   * clock set back does not resample what it already sent.
   */
  setClock(offsetMs: number, driftPpm: number): void {
    const wall = this.#clock.wallMs();
    this.#clockOffsetMs = offsetMs;
    this.#driftPpm = driftPpm;
    this.#driftFrom = wall;
    this.#builder.closeBatch();
    this.#builder.restartAt(this.#deviceTime(wall));
  }

  /** What Hello.features lists. */
  get features(): readonly string[] { return this.#features; }

  /** The configuration the device runs with, as its next ConfigReport states it (§5.16). */
  get configReport(): Required<Omit<ConfigReport, '$unknowns'>> {
    const rate = this.#builder.rate;
    const m = this.#managed;
    return {
      version: m.version,
      // An idle device (rate 0) samples nothing: 0.
      sampleIntervalMs: rate > 0 ? Math.min(0xffff_ffff, Math.max(1, Math.round(1000 / rate))) : 0,
      batchIntervalMs: Math.min(0xffff_ffff, Math.max(1, Math.round(this.#builder.batchIntervalMs))),
      customJson: m.customJson, ok: m.ok, error: m.error,
    };
  }

  /** Milliseconds since this simulated device started (or last rebooted). */
  get uptimeMs(): number { return this.#started ? this.#clock.monotonicMs() - this.#bootAt : 0; }

  get stats(): SimDeviceStats {
    return {
      ...this.counters, closes: { ...this.counters.closes }, notices: { ...this.counters.notices },
      connected: this.connected, pending: this.#outbox.length, inflight: this.#outbox.inflight, credit: this.#credit,
      latencySamples: this.#latencyCount,
    };
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#bootAt = this.#clock.monotonicMs();
    this.#builder.restartAt(this.now());
    if (this.#options.autoTick ?? true) this.#startTicker();
    this.#connect();
  }

  /** The device's own sampling timer, a quarter of the batch interval (10..100 ms). */
  #startTicker(): void {
    if (this.#ownTicker) clearInterval(this.#ownTicker);
    const tickMs = Math.max(10, Math.min(100, Math.floor(this.#builder.batchIntervalMs / 4)));
    this.#ownTicker = setInterval(() => this.tick(), tickMs);
  }

  /**
   * Closes cleanly (1000) and stops sampling, timers and reconnects. Kept
   * batches stay kept. Resolves once the socket has closed (at most ~1 s).
   */
  stop(): Promise<void> {
    if (this.#ownTicker) clearInterval(this.#ownTicker);
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#ownTicker = this.#reconnectTimer = null;
    const wasStopped = this.#state === 'stopped';
    this.#state = 'stopped';
    if (!wasStopped) this.emit('stopped');
    const socket = this.#socket;
    if (!socket || socket.readyState === SocketState.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      // Bounded: a hub that never answers the close frame must not hold us.
      const timer = setTimeout(() => { socket.terminate(); resolve(); }, 1000);
      timer.unref();
      const previous = this.#onSocketClosed;
      this.#onSocketClosed = () => { previous?.(); clearTimeout(timer); resolve(); };
      // Mid-handshake: let the upgrade finish (onOpen closes it) rather than
      // aborting the request, which can leave a half-open socket behind.
      if (socket.readyState === SocketState.OPEN) socket.close(CloseCode.NORMAL, 'device stopping');
      else if (socket.readyState !== SocketState.CONNECTING) socket.terminate();
    });
  }

  /** Stops producing readings (the open batch is closed); kept batches are still delivered. */
  stopSampling(): void {
    this.#builder.closeBatch();
    this.#builder.rate = 0;
    this.#pump();
  }

  /** Drops the connection without a close frame (a lost link); reconnects as usual. */
  dropConnection(): void {
    this.#socket?.terminate();
  }

  /** Ends the session with a close frame (1000) and reconnects as after any clean close; a load test's fault (counted as injected). */
  closeLink(): void {
    const socket = this.#socket;
    if (!socket || socket.readyState !== SocketState.OPEN) return;
    this.#injected = true;
    socket.close(CloseCode.NORMAL, 'device reconnecting');
  }

  /** Drops the link without a close frame and reconnects as usual: a load test's fault (its close counts as injected, not as an error). */
  injectDrop(): void {
    if (!this.#socket) return;
    this.#injected = true;
    this.#socket.terminate();
  }

  /**
   * The link goes half-open (a load test): the device stops reading and
   * sending on it without closing it, as when a NAT forgets the connection;
   * the hub's idle timeout or the device's own ack timeout ends it, and the
   * device then reconnects as usual.
   */
  freezeLink(): void {
    const socket = this.#socket;
    if (!socket || this.#state !== 'open') return;
    this.#frozen = true;
    this.#injected = true;
    socket.pause?.();
  }

  /** Offline on purpose (a load test): see setOffline(). */
  get offline(): boolean { return this.#offline; }

  /**
   * Takes the device off the network (its link drops without a close frame
   * and it does not try again) while it keeps sampling into its outbox, as a
   * device out of coverage does; back online, it connects at once and
   * delivers what it kept.
   */
  setOffline(offline: boolean): void {
    if (this.#offline === offline) return;
    this.#offline = offline;
    if (offline) {
      if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = null;
      if (this.#socket) this.#injected = true;
      this.#socket?.terminate();
    } else if (this.#started && this.#state === 'closed') {
      this.#connect();
    }
  }

  /** Samples `rate` readings/s per metric from now on, batches closing after `batchIntervalMs` (the open batch closes first). */
  setRates(rate: number, batchIntervalMs: number): void {
    if (!(rate >= 0) || !(batchIntervalMs > 0)) throw new RangeError(`${this.id}: rate must be >= 0 and batchIntervalMs > 0 (got ${rate}, ${batchIntervalMs})`);
    this.#builder.closeBatch();
    this.#builder.restartAt(this.now());
    this.#builder.rate = rate;
    this.#builder.batchIntervalMs = batchIntervalMs;
  }

  /**
   * Samples up to now, closes the batch when due or full, sends what credit
   * allows and checks the timeouts. Driven by the device's own timer or a
   * Fleet's shared ticker, which passes the wall and monotonic times it
   * already has (one clock read per fleet tick); cheap when nothing is due.
   */
  tick(wallNow = this.#clock.wallMs(), monotonicNow = this.#clock.monotonicMs()): void {
    if (!this.#started || this.#state === 'stopped') return;
    this.#watchdog.stamp(monotonicNow);
    if (this.#builder.rate > 0) this.#builder.sampleUntil(this.#deviceTime(wallNow), this.welcome?.limits);
    if (this.#state === 'open') {
      this.#pump();
      if (this.#watchdog.ackOverdue(monotonicNow, this.#outbox.inflight)) this.#expire('ack-timeout');
      if (this.#watchdog.silent(monotonicNow, this.welcome?.limits?.idleTimeoutMs ?? 0)) this.#expire('idle-timeout');
    } else if (this.#state === 'awaiting-welcome') {
      // A device that never says Hello is silent on purpose: the hub's 4001 ends it.
      if (this.#strategy.saysHello && this.#watchdog.welcomeOverdue(monotonicNow)) this.#expire('welcome-timeout');
    }
  }

  /** One of the device's own timeouts fired: drop the link (counted like a close) and reconnect. */
  #expire(reason: 'welcome-timeout' | 'ack-timeout' | 'idle-timeout'): void {
    this.#count(reason);
    this.#socket?.terminate();
  }

  // ---- sending ----------------------------------------------------------------

  #pump(): void {
    const socket = this.#socket;
    if (this.#state !== 'open' || !socket || this.#frozen) return;
    const limit = this.#strategy.inFlightLimit(this.#credit, this.#window);
    let b = this.#outbox.nextUnsent;
    if (!b || this.#outbox.inflight >= limit) return; // nothing to send: no clock read
    const paced = this.#strategy.paced;
    const limits = this.welcome?.limits;
    const wall = this.#clock.monotonicMs();
    do {
      if (paced && !this.#bucket.take(b.values.length, limits, wall)) break;
      if (this.#outbox.inflight === 0) this.#watchdog.progressed(wall);
      socket.send(this.#encoder.encode(b, this.now()));
      this.#outbox.markSent(wall);
      this.counters.batchesSent++;
      if (b.everSent) this.counters.batchesResent++;
    } while (this.#outbox.inflight < limit && (b = this.#outbox.nextUnsent));
  }

  // ---- connection -------------------------------------------------------------

  #connect(): void {
    if (this.#state === 'stopped' || this.#offline) return;
    this.#state = 'connecting';
    this.#attemptAt = this.#clock.monotonicMs();
    if (this.#rebooting) { this.#rebooting = false; this.#bootAt = this.#attemptAt; } // back from a reboot: uptime starts again
    this.#reconnect.attemptStarted();
    const protocols = [DEVICE_SUBPROTOCOL];
    const headers: Record<string, string> = {};
    if (this.#options.authVia === 'subprotocol') protocols.push(TOKEN_SUBPROTOCOL_PREFIX + this.#options.token);
    else headers.authorization = `Bearer ${this.#options.token}`;
    let socket: DeviceSocket;
    try {
      socket = (this.#options.connect ?? wsConnector)({
        url: this.#options.url, protocols, headers, ca: this.#options.ca, localAddress: this.#options.localAddress,
        handshakeTimeoutMs: this.#options.welcomeTimeoutMs ?? 15_000,
      }, this.#listenerFor(() => socket));
    } catch (err) {
      // A URL the client rejects synchronously is a configuration bug: retrying will not fix it.
      this.#count(`error:${(err as Error).name}`);
      this.#reconnect.fatal = true;
      this.#afterClose();
      return;
    }
    this.#socket = socket;
  }

  /** The listener for one connection attempt (a stale socket's events are ignored). */
  #listenerFor(socketOf: () => DeviceSocket): SocketListener {
    let opened = false;
    let refusal: number | undefined;
    let error: string | undefined;
    return {
      onRefused: (status, retryAfter) => {
        refusal = status;
        this.#count(`http-${status}`);
        this.#reconnect.refused(status, retryAfter);
      },
      onOpen: () => {
        opened = true;
        const socket = socketOf();
        if (this.#state === 'stopped') { socket.close(CloseCode.NORMAL); return; }
        this.#state = 'awaiting-welcome';
        this.#watchdog.opened(this.#clock.monotonicMs());
        this.#encoder.startSession();
        if (!this.#strategy.saysHello) return;
        // protocol §4: Hello first, exactly once.
        // A device without features sends no field 5, as a v1 device written before them does (§13).
        socket.send(encodeDeviceMessage({ hello: {
          deviceId: this.id, protocolVersion: PROTOCOL_VERSION, firmware: FIRMWARE, deviceTimeMs: this.now(),
          features: this.#features.length ? [...this.#features] : undefined,
        } }));
      },
      onPing: () => this.#watchdog.heard(),
      onMessage: (data, isBinary) => {
        this.#watchdog.heard();
        // After stop() a Welcome may still arrive while the close handshake runs: it must not reopen the session.
        const socket = socketOf();
        if (this.#state === 'stopped' || this.#socket !== socket) return;
        if (!isBinary) return; // the hub sends only binary frames; ignore anything else
        let m: HubMessage;
        try { m = decodeHubMessage(data); } catch { socket.terminate(); return; }
        if (m.welcome) this.#onWelcome(m.welcome);
        else if (m.ack) this.#onAck(m.ack);
        else if (m.notice) this.#onNotice(m.notice);
        else if (m.command) this.#onCommand(socket, m.command);
        else if (m.desired) this.#onDesired(socket, m.desired);
        // §13: any other HubMessage member is ignored.
      },
      onError: (code) => { error = code; },
      onClose: (code, reason) => {
        if (this.#socket !== socketOf()) return;
        this.#socket = null;
        if (refusal !== undefined) {
          this.emit('close', { code: 0, reason: `http ${refusal}`, status: refusal });
        } else if (!opened) {
          if (this.#state === 'stopped') { this.#socketClosed(); return; } // stop() aborted the attempt: nothing to count
          // Refused TCP, DNS, TLS or a handshake timeout: no session existed.
          this.#count(`error:${error ?? 'handshake'}`);
          this.emit('close', { code, reason: error ?? reason });
        } else {
          this.lastClose = { code, reason };
          this.#count(this.#injected ? `injected:${code}` : String(code));
          this.#reconnect.closed(code, reason);
          this.emit('close', { code, reason });
        }
        this.#afterClose();
        this.#socketClosed();
      },
    };
  }

  #socketClosed(): void {
    const resolve = this.#onSocketClosed;
    this.#onSocketClosed = null;
    resolve?.();
  }

  #afterClose(): void {
    this.#frozen = false;
    this.#injected = false;
    this.#configInUse = this.#invokeInUse = false;
    this.#outbox.endSession(); // a close never means unacked data was stored (§11)
    if (this.#state === 'stopped') return;
    this.#state = 'closed';
    this.#scheduleReconnect();
  }

  #onWelcome(w: Welcome): void {
    this.welcome = w;
    this.#window = w.window ?? 0;
    this.#credit = w.credit ?? 0;
    const lastSeq = Number(w.lastSeq ?? 0);
    // protocol §6: what the hub stored needs no resend; and never reuse a seq it holds.
    this.#outbox.ackThrough(lastSeq, this.#onBatchStored);
    if (this.#builder.seq < lastSeq) this.#builder.seq = lastSeq;
    if (this.counters.sessions === 0) this.#bucket.fill(w.limits, this.#clock.monotonicMs());
    this.#state = 'open';
    this.#reconnect.welcomed();
    this.#watchdog.progressed(this.#clock.monotonicMs());
    this.counters.sessions++;
    this.#options.timings?.connect.add(this.#clock.monotonicMs() - this.#attemptAt);
    this.#awaitingFirstAck = true;
    // §5.14: a feature is in use when both lists hold it; a Welcome without features (an older hub) leaves the device a v1 device.
    const hubFeatures = w.features ?? [];
    this.#configInUse = this.#features.includes(FEATURE_CONFIG) && hubFeatures.includes(FEATURE_CONFIG);
    this.#invokeInUse = this.#features.includes(FEATURE_INVOKE) && hubFeatures.includes(FEATURE_INVOKE);
    this.emit('welcome', w);
    // §15.3: the current state, before the first Batch.
    if (this.#configInUse) this.#sendReport();
    this.#strategy.onWelcome?.(this.#asMisbehaving, w);
    this.#pump();
  }

  #sendReport(): void {
    this.#socket?.send(encodeDeviceMessage({ reported: this.configReport }));
  }

  /**
   * §15.2: every present field checked first, then all applied or none; the
   * version is taken whatever the outcome, and one ConfigReport answers.
   */
  #onDesired(socket: DeviceSocket, d: DesiredConfig): void {
    if (!this.#configInUse || this.#frozen) return; // not in use on this session: a message it does not expect, ignored (§13)
    const check = checkDesired(d);
    const m = this.#managed;
    m.version = Number(d.version ?? 0);
    if (check.ok) {
      const { sampleIntervalMs, batchIntervalMs, customJson } = check.delta;
      const rate = sampleIntervalMs !== undefined ? 1000 / sampleIntervalMs : this.#builder.rate;
      const batchMs = batchIntervalMs ?? this.#builder.batchIntervalMs;
      if (rate !== this.#builder.rate || batchMs !== this.#builder.batchIntervalMs) {
        // The open batch closes with the old settings; sampling restarts now (no backlog at the new rate).
        this.#builder.reconfigure({ sampleIntervalMs, batchIntervalMs }, this.now());
        if (this.#ownTicker) this.#startTicker();
      }
      if (customJson !== undefined) m.customJson = customJson;
      m.ok = true;
      m.error = '';
      this.counters.configUpdatesApplied++;
    } else {
      m.ok = false;
      m.error = check.error;
      this.counters.configUpdatesRefused++;
    }
    if (this.#socket === socket) this.#sendReport();
    this.#pump();
  }

  #onAck(a: Ack): void {
    this.#credit = a.credit ?? 0;
    if (this.#credit < this.#window) this.counters.reducedCreditAcks++;
    if (a.reports) {
      for (const r of a.reports) {
        this.counters.hubNonFiniteDropped += r.nonFiniteDropped ?? 0;
        this.counters.hubSkewDropped += r.skewDropped ?? 0;
        this.counters.hubSkewCorrected += r.skewCorrected ?? 0;
      }
    }
    const now = this.#clock.monotonicMs();
    this.#ackedAt = now;
    // Cumulative (§5.8): a credit-only ack repeats an old seq and removes nothing.
    if (this.#outbox.ackThrough(Number(a.seq ?? 0), this.#onBatchAcked) > 0) {
      this.#watchdog.progressed(now);
      if (this.#awaitingFirstAck) {
        this.#awaitingFirstAck = false;
        this.#options.timings?.firstAck.add(now - this.#attemptAt);
      }
    }
    this.emit('ack', a);
    this.#pump();
  }

  #onNotice(notice: Notice): void {
    this.lastNotice = notice;
    const key = String(notice.code ?? 0);
    this.counters.notices[key] = (this.counters.notices[key] ?? 0) + 1;
    if (notice.retryAfterMs) this.#reconnect.hint(notice.retryAfterMs);
    this.emit('notice', notice);
  }

  #onCommand(socket: DeviceSocket, command: Command): void {
    this.counters.commandsAnswered++;
    if (command.invoke && this.#invokeInUse) {
      const a = answerInvoke(command.invoke, this.uptimeMs);
      socket.send(encodeDeviceMessage({ commandResult: { id: command.id ?? 0, ok: a.ok, message: a.message, resultJson: a.resultJson } }));
      // §12 reboot: the result first, then a clean close; it reconnects as after any 1000 (outbox, seq and configuration kept).
      if (a.reboot && socket.readyState === SocketState.OPEN) {
        this.#rebooting = true;
        socket.close(CloseCode.NORMAL, 'device rebooting');
      }
      return;
    }
    const ok = !!command.config;
    if (command.config) this.#builder.reconfigure(command.config, this.now());
    // §12: answer every command; an unknown member (an Invoke when invoke is not in use too) gets ok = false.
    socket.send(encodeDeviceMessage({ commandResult: { id: command.id ?? 0, ok, message: ok ? 'applied' : 'unknown command' } }));
  }

  #countAcked(b: KeptBatch): void {
    this.counters.batchesAcked++;
    this.counters.readingsAcked += b.values.length;
    this.#options.timings?.readingAck.add(this.now() - b.baseTimeMs);
  }

  #scheduleReconnect(): void {
    if (this.#reconnect.fatal && !this.#options.reconnectOnFatal) {
      this.#state = 'stopped';
      if (this.#ownTicker) clearInterval(this.#ownTicker);
      this.#ownTicker = null;
      this.emit('stopped');
      return;
    }
    if (this.#offline) return; // setOffline(false) connects
    this.counters.reconnects++;
    const capMs = this.#options.backoffCapMs ?? 30_000;
    // A "fix your device" close, retried anyway: no faster than the long backoff (§9).
    const delay = this.#reconnect.nextDelayMs(this.#random, { baseMs: this.#options.backoffBaseMs ?? 1000, capMs }, this.#options.fatalBackoffMs ?? capMs);
    this.#reconnectDelayMs = delay;
    this.#reconnectTimer = setTimeout(() => { this.#reconnectTimer = null; this.#connect(); }, delay);
    this.emit('reconnecting', { attempt: this.#reconnect.attempt, delayMs: delay });
  }

  #count(key: string): void {
    this.counters.closes[key] = (this.counters.closes[key] ?? 0) + 1;
  }
}
