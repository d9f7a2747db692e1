// device-sim/: the lean load generator. A fleet of minimal devices that
// speak protocol v1 correctly (Hello, wait for Welcome, metric definitions
// once per session, seq from Welcome.last_seq + 1, never more in flight than
// the credit, every Ack checked, resends after a reconnect) at the least CPU
// per batch: no sensor models, no outbox, no per-batch objects. Batches come
// from pre-encoded templates patched in place (lean-batch.ts); a device's
// sends of one turn are framed into one buffer, one write (lean-socket.ts); plain Acks
// are read without decoding (readPlainAck); the account of seqs, loss and
// latency is lean-ledger.ts.
//
// Sending is driven by acks (closed loop: refill the credit as it returns)
// or by a schedule (`rate` batches per second per device, still within
// credit; each device's due batches released every releaseMs, the devices
// spread over the ticks in between); either way the sends of an event-loop
// turn are made in one flush (setImmediate) with one clock read. One shared
// ticker starts devices over the ramp, releases the schedule, retries
// devices held back by the hub's readings-per-second limit, and runs the watchdog.
// Imports: @telemetry/proto, node, and this package's device-options, lean-batch,
// lean-ledger, lean-socket, pacing, reconnect, sensors, socket, stats, tokens and watchdog.
import { performance } from 'node:perf_hooks';
import {
  CloseCode, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, TOKEN_SUBPROTOCOL_PREFIX, decodeHubMessage, encodeDeviceMessage,
  type HubMessage, type Limits, type Welcome,
} from '@telemetry/proto';
import { SYSTEM_CLOCK, type DeviceClock } from './device-options.ts';
import { leanFrames, readPlainAck, type AckFields, type LeanFrames } from './lean-batch.ts';
import { MAX_WINDOW, SeqLedger } from './lean-ledger.ts';
import { FrameWriter, leanWsConnector, type LeanConnector, type LeanSocket } from './lean-socket.ts';
import { ReadingsBucket } from './pacing.ts';
import { ReconnectState } from './reconnect.ts';
import { mulberry32 } from './sensors.ts';
import { SocketState, type SocketListener } from './socket.ts';
import { LatencyHistogram } from './stats.ts';
import type { DeviceCredentials } from './tokens.ts';
import { SessionWatchdog } from './watchdog.ts';

export const LEAN_FIRMWARE = 'device-sim-lean/0.1';

export interface LeanFleetOptions {
  url: string;
  devices: DeviceCredentials[];
  /** Readings per batch. Default 20. */
  readings?: number;
  /** Distinct metrics (ids 0..M-1, names lean_0..). Default 4. */
  metrics?: number;
  /** Most batches in flight per device, below the hub's window and credit. 0 (default): as many as the credit allows. */
  window?: number;
  /** Batches per second per device; 0 (default): closed loop, as fast as credit returns. */
  rate?: number;
  /** Device i connects at rampMs * i / n. Default 0. */
  rampMs?: number;
  authVia?: 'header' | 'subprotocol';
  ca?: Buffer | string;
  /** Source addresses, round-robin by the device's index in the whole fleet. */
  sourceAddresses?: readonly string[];
  /** The whole-fleet index of devices[0] (a --processes slice). Default 0. */
  firstIndex?: number;
  /** Ack latencies go here. Default: the fleet's own. */
  latency?: LatencyHistogram;
  /** Default: the `ws` client (leanWsConnector). */
  connect?: LeanConnector;
  /** Default: SYSTEM_CLOCK. */
  clock?: DeviceClock;
  /** Close a connection whose Welcome has not come this long after the upgrade. Default 15,000. */
  welcomeTimeoutMs?: number;
  /** Batches in flight and no Ack progress this long: a dead session. Default 60,000. */
  ackTimeoutMs?: number;
  /** Reconnect backoff (full jitter, §11). Defaults 1000 and 30,000. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /**
   * The shared ticker's period. Default: 10 ms with a rate; 50 ms in a closed
   * loop (acks drive the sends; the ticker only starts devices, retries the
   * paced ones and runs the watchdog), as every wakeup costs CPU.
   */
  tickMs?: number;
  /**
   * Rate mode: how often one device's due batches are released, ms (a whole
   * number of ticks). Devices are spread over the ticks in between, so the
   * fleet's sends stay smooth while each device's go out several per write.
   * Default: about 8 batches' worth, 10..100 ms.
   */
  releaseMs?: number;
  /** Jitter. Default: seeded. */
  random?: () => number;
}

/** Counts of a lean device, a fleet or a run (plain data, JSON-safe, added by addLeanCounters). */
export interface LeanCounters {
  /** Batch frames sent, resends included. */
  sent: number;
  /** Of sent: a seq sent again after a close (Welcome.last_seq did not cover it). */
  resent: number;
  /** Seqs an Ack covered in the session that sent them. */
  acked: number;
  /** Seqs unacked when their session closed, covered by the next Welcome.last_seq. */
  ackedByWelcome: number;
  /** Seqs sent and never covered by the end of the run (after the drain). */
  lost: number;
  /** Ack messages received (an Ack may cover many batches). */
  acks: number;
  /** Bursts written (one write each): batches per write = sent / writes. */
  writes: number;
  /** Rate mode: scheduled batches dropped from a backlog over one second's worth (credit or CPU could not keep up). */
  behindSchedule: number;
  /** Sends held back by the hub's readings-per-second limit (Welcome.limits). */
  pacedStalls: number;
  /** Sessions that reached Welcome. */
  sessions: number;
  reconnects: number;
  /** Acks whose credit was below the window. */
  reducedCreditAcks: number;
  /** Violations: see lean-ledger.ts AckViolations. */
  ackRegressed: number;
  ackUnknownSeq: number;
  welcomeRegressed: number;
  creditOverWindow: number;
  /** Hub messages that did not decode (the connection is dropped). */
  badMessages: number;
  /** Messages out of place: a text frame, a second Welcome, an Ack before Welcome. */
  unexpectedMessages: number;
  /** From Ack reports: readings the hub dropped or re-timed (lean values and times should cause none). */
  hubNonFiniteDropped: number;
  hubSkewDropped: number;
  hubSkewCorrected: number;
  /**
   * How sessions and attempts ended: close codes ("1000" is the clean stop),
   * "http-503" refusals, "error:ECONNREFUSED", "welcome-timeout",
   * "ack-timeout", "idle-timeout", "bad-message", "over-limits" (the batch
   * does not fit Welcome's limits; the device stops).
   */
  closes: Record<string, number>;
  notices: Record<string, number>;
}

export function emptyLeanCounters(): LeanCounters {
  return {
    sent: 0, resent: 0, acked: 0, ackedByWelcome: 0, lost: 0, acks: 0, writes: 0, behindSchedule: 0, pacedStalls: 0, sessions: 0, reconnects: 0,
    reducedCreditAcks: 0, ackRegressed: 0, ackUnknownSeq: 0, welcomeRegressed: 0, creditOverWindow: 0, badMessages: 0,
    unexpectedMessages: 0, hubNonFiniteDropped: 0, hubSkewDropped: 0, hubSkewCorrected: 0, closes: {}, notices: {},
  };
}

export function addLeanCounters(into: LeanCounters, c: LeanCounters): LeanCounters {
  for (const k of Object.keys(c) as (keyof LeanCounters)[]) {
    if (k === 'closes' || k === 'notices') {
      const dst = into[k];
      for (const [key, n] of Object.entries(c[k])) dst[key] = (dst[key] ?? 0) + n;
    } else if (k in into) {
      into[k] += c[k];
    }
  }
  return into;
}

/** Closes that are not the clean 1000, summed (refusals, network errors and own timeouts included). */
export function leanErrors(c: LeanCounters): number {
  let n = 0;
  for (const [k, v] of Object.entries(c.closes)) if (k !== '1000') n += v;
  return n;
}

/** The protocol violations seen (the hub's), summed. */
export function leanViolations(c: LeanCounters): number {
  return c.ackRegressed + c.ackUnknownSeq + c.welcomeRegressed + c.creditOverWindow + c.badMessages + c.unexpectedMessages;
}

const IDLE = 0;
const CONNECTING = 1;
const AWAITING_WELCOME = 2;
const OPEN = 3;
const CLOSED = 4;
const STOPPED = 5;

/** Watchdog checks run every this many ms (on the ticker). */
const WATCHDOG_EVERY_MS = 250;
/** Pace a little under the hub's limit: its bucket fills on arrival, ours on send. */
const PACE_MARGIN = 0.98;

/** One scratch object for readPlainAck: the process is single-threaded and it is read at once. */
const ACK: AckFields = { seq: 0, credit: 0 };

/** Counters a device keeps besides its ledger's. */
type OwnCounters = Omit<LeanCounters, 'sent' | 'resent' | 'acked' | 'ackedByWelcome' | 'lost' | 'ackRegressed' | 'ackUnknownSeq' | 'welcomeRegressed' | 'creditOverWindow'>;

export class LeanDevice {
  readonly id: string;
  readonly ledger: SeqLedger;
  readonly c: OwnCounters = {
    acks: 0, writes: 0, behindSchedule: 0, pacedStalls: 0, sessions: 0, reconnects: 0, reducedCreditAcks: 0, badMessages: 0, unexpectedMessages: 0,
    hubNonFiniteDropped: 0, hubSkewDropped: 0, hubSkewCorrected: 0, closes: {}, notices: {},
  };
  /** The last close: code and reason (code 0 for an HTTP refusal). */
  lastClose: { code: number; reason: string } | null = null;
  /** Why the device stopped by itself (its batch does not fit Welcome's limits), if it did. */
  stopReason: string | null = null;
  welcome: Welcome | null = null;

  readonly #fleet: LeanFleet;
  readonly #token: string;
  readonly #localAddress: string | undefined;
  readonly #frames: LeanFrames;
  readonly #bucket = new ReadingsBucket();
  readonly #reconnect = new ReconnectState();
  readonly #watchdog: SessionWatchdog;
  #paceLimits: Limits | null = null;
  #socket: LeanSocket | null = null;
  #state = IDLE;
  #credit = 0;
  #window = 0;
  /** min(credit, window, the fleet's cap). */
  #limit = 0;
  #firstOfSession = true;
  #reconnectTimer: NodeJS.Timeout | null = null;
  #onClosed: (() => void) | null = null;
  /** In the fleet's dirty list (a flush is due). */
  dirty = false;
  /** In the fleet's list of devices held back by pacing (the ticker tries them again). */
  stalled = false;
  /** Held back by pacing since the last send it did not limit: one pacedStalls count per episode. */
  #held = false;
  // Rate mode: the schedule since the first Welcome (new batches only; resends are owed, not scheduled).
  #scheduleT0 = -1;
  #scheduled = 0;
  #produced = 0;

  constructor(fleet: LeanFleet, cred: DeviceCredentials, index: number, localAddress: string | undefined) {
    this.#fleet = fleet;
    this.id = cred.id;
    this.#token = cred.token;
    this.#localAddress = localAddress;
    this.ledger = new SeqLedger(fleet.latency);
    this.#frames = leanFrames({ readings: fleet.readings, metrics: fleet.metrics, valueSeed: index });
    this.#watchdog = new SessionWatchdog({ welcomeTimeoutMs: fleet.welcomeTimeoutMs, ackTimeoutMs: fleet.ackTimeoutMs });
  }

  /** Closes other than 1000 (leanErrors of this device's counters), kept as a number for status lines. */
  errors = 0;

  /** Welcome received and the session not closed. */
  get connected(): boolean { return this.#state === OPEN; }
  get stopped(): boolean { return this.#state === STOPPED; }
  get credit(): number { return this.#credit; }
  get window(): number { return this.#window; }
  get inflight(): number { return this.ledger.inflight; }

  counters(): LeanCounters {
    const l = this.ledger;
    const v = l.violations;
    return {
      ...this.c, closes: { ...this.c.closes }, notices: { ...this.c.notices },
      sent: l.sent, resent: l.resent, acked: l.acked, ackedByWelcome: l.ackedByWelcome, lost: l.lost,
      ackRegressed: v.ackRegressed, ackUnknownSeq: v.ackUnknownSeq, welcomeRegressed: v.welcomeRegressed, creditOverWindow: v.creditOverWindow,
    };
  }

  start(): void {
    if (this.#state === IDLE) this.#connect();
  }

  // ---- sending ----------------------------------------------------------------

  /** Sends what credit (and the schedule, and pacing) allow now, as one burst (one write). */
  pump(wall: number, mono: number): void {
    const fleet = this.#fleet;
    const socket = this.#socket;
    if (this.#state !== OPEN || !socket || !fleet.sending) return;
    const ledger = this.ledger;
    const inflight = ledger.inflight;
    let n = this.#limit - inflight;
    if (n <= 0) return;
    if (fleet.rate > 0) {
      const allowed = ledger.resendsPending + this.#scheduled - this.#produced;
      if (allowed < n) n = allowed;
      if (n <= 0) return;
    }
    const granted = this.#bucket.takeUpTo(n, this.#frames.steady.readings, this.#paceLimits, mono);
    if (granted < n) {
      if (!this.#held) { this.#held = true; this.c.pacedStalls++; }
      fleet.stall(this);
      n = granted;
      if (n <= 0) return;
    } else {
      this.#held = false;
    }
    if (inflight === 0) this.#watchdog.progressed(mono);
    const frames = this.#frames;
    const writer = fleet.writer;
    this.c.writes++;
    writer.begin(socket);
    for (let k = 0; k < n; k++) {
      const seq = ledger.nextSeq;
      if (seq > ledger.highestSent) this.#produced++;
      const frame = this.#firstOfSession ? frames.first : frames.steady;
      this.#firstOfSession = false;
      writer.add(frame.frame(seq, wall)); // copied (framed, masked) at once: the template is patched again next
      ledger.markSent(mono);
    }
    writer.end();
  }

  /** Rate mode, from the ticker: release what the schedule owes by now; a backlog is capped at one second's worth. */
  schedule(mono: number, rate: number): void {
    if (this.#scheduleT0 < 0) return;
    const due = Math.floor(((mono - this.#scheduleT0) * rate) / 1000) + 1;
    if (due > this.#scheduled) this.#scheduled = due;
    const cap = Math.max(1, Math.ceil(rate));
    const backlog = this.#scheduled - this.#produced;
    if (backlog > cap) {
      this.c.behindSchedule += backlog - cap;
      this.#produced = this.#scheduled - cap;
    }
  }

  /** Rate mode: something is due (new or resend) and credit may allow it. */
  get due(): boolean {
    return this.#state === OPEN && (this.#scheduled > this.#produced || this.ledger.resendsPending > 0) && this.#limit > this.ledger.inflight;
  }

  /** From the ticker, every WATCHDOG_EVERY_MS: the device's own timeouts (§11, §7, §1). */
  checkTimeouts(mono: number): void {
    const w = this.#watchdog;
    w.stamp(mono);
    if (this.#state === OPEN) {
      if (w.ackOverdue(mono, this.ledger.inflight)) this.#expire('ack-timeout');
      else if (w.silent(mono, this.welcome?.limits?.idleTimeoutMs ?? 0)) this.#expire('idle-timeout');
    } else if (this.#state === AWAITING_WELCOME && w.welcomeOverdue(mono)) {
      this.#expire('welcome-timeout');
    }
  }

  #expire(reason: string): void {
    this.#count(reason);
    this.#socket?.terminate();
  }

  // ---- receiving --------------------------------------------------------------

  #onAck(seq: number, credit: number): void {
    const fleet = this.#fleet;
    const now = fleet.clock.monotonicMs();
    const ledger = this.ledger;
    this.c.acks++;
    if (ledger.ack(seq, now) > 0) this.#watchdog.progressed(now);
    this.#credit = ledger.credit(credit, this.#window);
    if (this.#credit < this.#window) this.c.reducedCreditAcks++;
    this.#limit = Math.min(this.#credit, fleet.cap);
    if (this.#limit > ledger.inflight && fleet.sending) fleet.markDirty(this);
  }

  #onOther(socket: LeanSocket, data: Uint8Array): void {
    let m: HubMessage;
    try { m = decodeHubMessage(data); } catch {
      this.c.badMessages++;
      this.#count('bad-message');
      socket.terminate();
      return;
    }
    if (m.welcome) {
      if (this.#state === AWAITING_WELCOME) this.#onWelcome(socket, m.welcome);
      else this.c.unexpectedMessages++;
    } else if (m.ack) {
      if (this.#state !== OPEN) { this.c.unexpectedMessages++; return; }
      for (const r of m.ack.reports ?? []) {
        this.c.hubNonFiniteDropped += r.nonFiniteDropped ?? 0;
        this.c.hubSkewDropped += r.skewDropped ?? 0;
        this.c.hubSkewCorrected += r.skewCorrected ?? 0;
      }
      this.#onAck(Number(m.ack.seq ?? 0), m.ack.credit ?? 0);
    } else if (m.notice) {
      const key = String(m.notice.code ?? 0);
      this.c.notices[key] = (this.c.notices[key] ?? 0) + 1;
      if (m.notice.retryAfterMs) this.#reconnect.hint(m.notice.retryAfterMs);
    } else if (m.command) {
      // §12: answer every command; lean devices have no sampling settings to change.
      if (this.#state === OPEN) socket.send(Buffer.from(encodeDeviceMessage({ commandResult: { id: m.command.id ?? 0, ok: false, message: 'lean load generator: commands are not applied' } })));
    }
    // §13: any other member is ignored.
  }

  #onWelcome(socket: LeanSocket, w: Welcome): void {
    const fleet = this.#fleet;
    const limits = w.limits;
    // A batch that does not fit would only be refused (4005, 1009, 4006): stop this device instead.
    const over = overLimits(limits, fleet.readings, fleet.metrics, this.#frames.first.byteLength(2 ** 53 - 1, fleet.clock.wallMs()));
    if (over) {
      this.#count('over-limits');
      this.stopReason = over;
      this.#state = STOPPED;
      socket.close(CloseCode.NORMAL, 'batch over the limits');
      return;
    }
    const mono = fleet.clock.monotonicMs();
    this.welcome = w;
    this.#window = Math.min(w.window ?? 0, MAX_WINDOW);
    this.ledger.welcome(Number(w.lastSeq ?? 0), this.#window);
    this.#credit = this.ledger.credit(w.credit ?? 0, this.#window);
    this.#limit = Math.min(this.#credit, fleet.cap);
    if (this.c.sessions === 0) {
      const rate = limits?.maxReadingsPerSecond ?? 0;
      this.#paceLimits = rate ? { maxReadingsPerSecond: rate * PACE_MARGIN, readingsBurst: Math.floor((limits?.readingsBurst ?? 0) * PACE_MARGIN) } : null;
      this.#bucket.fill(this.#paceLimits, mono);
      this.#scheduleT0 = mono;
    }
    this.c.sessions++;
    this.#state = OPEN;
    this.#firstOfSession = true;
    this.#reconnect.welcomed();
    this.#watchdog.progressed(mono);
    fleet.markDirty(this);
  }

  // ---- connection -------------------------------------------------------------

  #connect(): void {
    const fleet = this.#fleet;
    this.#state = CONNECTING;
    this.#reconnect.attemptStarted();
    const protocols = [DEVICE_SUBPROTOCOL];
    const headers: Record<string, string> = {};
    if (fleet.authVia === 'subprotocol') protocols.push(TOKEN_SUBPROTOCOL_PREFIX + this.#token);
    else headers.authorization = `Bearer ${this.#token}`;
    let socket: LeanSocket;
    try {
      socket = fleet.connect({
        url: fleet.url, protocols, headers, ca: fleet.ca, localAddress: this.#localAddress, handshakeTimeoutMs: fleet.welcomeTimeoutMs,
      }, this.#listenerFor(() => socket));
    } catch (err) {
      this.#count(`error:${(err as Error).name}`);
      this.#state = STOPPED;
      return;
    }
    this.#socket = socket;
  }

  #listenerFor(socketOf: () => LeanSocket): SocketListener {
    let opened = false;
    let refusal: number | undefined;
    let error: string | undefined;
    return {
      onRefused: (status, retryAfter) => {
        refusal = status;
        this.#reconnect.refused(status, retryAfter);
      },
      onOpen: () => {
        opened = true;
        const socket = socketOf();
        if (this.#state === STOPPED || !this.#fleet.sending) { socket.close(CloseCode.NORMAL, 'lean run over'); return; }
        this.#state = AWAITING_WELCOME;
        this.#watchdog.opened(this.#fleet.clock.monotonicMs());
        // §4: Hello first, exactly once.
        socket.send(Buffer.from(encodeDeviceMessage({
          hello: { deviceId: this.id, protocolVersion: PROTOCOL_VERSION, firmware: LEAN_FIRMWARE, deviceTimeMs: this.#fleet.clock.wallMs() },
        })));
      },
      onPing: () => this.#watchdog.heard(),
      onMessage: (data, isBinary) => {
        this.#watchdog.heard();
        const socket = socketOf();
        if (this.#socket !== socket) return;
        if (!isBinary) { this.c.unexpectedMessages++; return; }
        // The hot path: a plain Ack (seq, credit) read in place; anything else is decoded.
        if (this.#state === OPEN && readPlainAck(data, ACK)) this.#onAck(ACK.seq, ACK.credit);
        else this.#onOther(socket, data);
      },
      onError: (code) => { error = code; },
      onClose: (code, reason) => {
        if (this.#socket !== socketOf()) return;
        this.#socket = null;
        const stopping = this.#state === STOPPED || !this.#fleet.sending;
        if (refusal !== undefined) {
          this.#count(`http-${refusal}`);
          this.lastClose = { code: 0, reason: `http ${refusal}` };
        } else if (!opened) {
          if (!stopping) this.#count(`error:${error ?? 'handshake'}`);
        } else {
          this.lastClose = { code, reason };
          this.#count(String(code));
          this.#reconnect.closed(code, reason);
        }
        this.ledger.close();
        if (stopping || this.#reconnect.fatal) {
          this.#state = STOPPED;
        } else {
          this.#state = CLOSED;
          this.#scheduleReconnect();
        }
        const done = this.#onClosed;
        this.#onClosed = null;
        done?.();
      },
    };
  }

  #scheduleReconnect(): void {
    const fleet = this.#fleet;
    this.c.reconnects++;
    const delay = this.#reconnect.nextDelayMs(fleet.random, { baseMs: fleet.backoffBaseMs, capMs: fleet.backoffCapMs }, fleet.backoffCapMs);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (this.#state === CLOSED && fleet.sending) this.#connect();
    }, delay);
  }

  /** Stops for good: a clean 1000 close (bounded: terminated after `boundMs`); resolves once the socket has closed. */
  stop(boundMs = 1000): Promise<void> {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const socket = this.#socket;
    this.#state = STOPPED;
    if (!socket || socket.readyState === SocketState.CLOSED) { this.#socket = null; return Promise.resolve(); }
    return new Promise((resolve) => {
      const timer = setTimeout(() => { socket.terminate(); this.#socket = null; resolve(); }, boundMs);
      timer.unref();
      this.#onClosed = () => { clearTimeout(timer); resolve(); };
      // Mid-handshake: let the upgrade finish (onOpen closes it).
      if (socket.readyState === SocketState.OPEN) socket.close(CloseCode.NORMAL, 'lean run over');
      else if (socket.readyState !== SocketState.CONNECTING) socket.terminate();
    });
  }

  #count(key: string): void {
    this.c.closes[key] = (this.c.closes[key] ?? 0) + 1;
    if (key !== '1000') this.errors++;
  }
}

/** Why a lean batch does not fit Welcome's limits, or '' when it does. */
function overLimits(limits: Limits | null | undefined, readings: number, metrics: number, bytes: number): string {
  if (!limits) return '';
  if (limits.maxBatchReadings && readings > limits.maxBatchReadings) return `--readings ${readings} is over the hub's max_batch_readings ${limits.maxBatchReadings}`;
  if (limits.maxMetricsPerSession && metrics > limits.maxMetricsPerSession) return `--metrics ${metrics} is over the hub's max_metrics_per_session ${limits.maxMetricsPerSession}`;
  if (limits.maxMessageBytes && bytes > limits.maxMessageBytes) return `a ${bytes}-byte batch is over the hub's max_message_bytes ${limits.maxMessageBytes}`;
  return '';
}

export class LeanFleet {
  readonly devices: LeanDevice[] = [];
  readonly latency: LatencyHistogram;
  readonly readings: number;
  readonly metrics: number;
  /** The cap on in flight from --window (Infinity: credit only). */
  readonly cap: number;
  readonly rate: number;
  readonly url: string;
  readonly authVia: 'header' | 'subprotocol';
  readonly ca: Buffer | string | undefined;
  readonly connect: LeanConnector;
  readonly clock: DeviceClock;
  readonly welcomeTimeoutMs: number;
  readonly ackTimeoutMs: number;
  readonly backoffBaseMs: number;
  readonly backoffCapMs: number;
  readonly random: () => number;
  /** False once stopSending() (or stop()) was called: no new sends, no reconnects. */
  sending = true;
  /** Every device's bursts are framed here, one at a time. */
  readonly writer = new FrameWriter();

  #dirty: LeanDevice[] = [];
  #spare: LeanDevice[] = [];
  #flushScheduled = false;
  readonly #flush = (): void => this.flush();
  #stalled: LeanDevice[] = [];
  readonly #ticker: NodeJS.Timeout;
  readonly #startAt: number[] = [];
  readonly #t0: number;
  #nextStart = 0;
  #lastWatchdog = 0;
  #stopped = false;
  /** Rate mode: a device is released every #slots ticks, on the tick of its slot (index % #slots). */
  readonly #slots: number;
  #tickNo = 0;

  constructor(o: LeanFleetOptions) {
    this.readings = o.readings ?? 20;
    this.metrics = o.metrics ?? 4;
    this.rate = o.rate ?? 0;
    if (!(Number.isInteger(this.readings) && this.readings >= 1)) throw new RangeError(`lean: readings must be an integer >= 1 (got ${this.readings})`);
    if (!(Number.isInteger(this.metrics) && this.metrics >= 1)) throw new RangeError(`lean: metrics must be an integer >= 1 (got ${this.metrics})`);
    if (!(this.rate >= 0)) throw new RangeError(`lean: rate must be >= 0 (got ${this.rate})`);
    this.cap = o.window ? Math.min(o.window, MAX_WINDOW) : MAX_WINDOW;
    this.url = o.url;
    this.authVia = o.authVia ?? 'header';
    this.ca = o.ca;
    this.connect = o.connect ?? leanWsConnector;
    this.clock = o.clock ?? SYSTEM_CLOCK;
    this.welcomeTimeoutMs = o.welcomeTimeoutMs ?? 15_000;
    this.ackTimeoutMs = o.ackTimeoutMs ?? 60_000;
    this.backoffBaseMs = o.backoffBaseMs ?? 1000;
    this.backoffCapMs = o.backoffCapMs ?? 30_000;
    this.random = o.random ?? mulberry32(0x1ea4);
    this.latency = o.latency ?? new LatencyHistogram();
    const n = o.devices.length;
    const first = o.firstIndex ?? 0;
    const addresses = o.sourceAddresses;
    o.devices.forEach((cred, i) => {
      const local = addresses?.length ? addresses[(first + i) % addresses.length] : undefined;
      this.devices.push(new LeanDevice(this, cred, first + i, local));
      this.#startAt.push(n > 1 ? ((o.rampMs ?? 0) * i) / n : 0);
    });
    this.#t0 = this.clock.monotonicMs();
    this.#startDue(this.#t0);
    const tickMs = o.tickMs ?? (this.rate > 0 ? 10 : 50);
    const releaseMs = o.releaseMs ?? (this.rate > 0 ? Math.max(10, Math.min(100, Math.round(8000 / this.rate))) : tickMs);
    this.#slots = Math.max(1, Math.round(releaseMs / tickMs));
    this.#ticker = setInterval(() => this.#tick(), tickMs);
  }

  /** A device has room (credit came back, Welcome): it sends in this turn's flush. */
  markDirty(d: LeanDevice): void {
    if (!d.dirty) { d.dirty = true; this.#dirty.push(d); }
    if (!this.#flushScheduled) { this.#flushScheduled = true; setImmediate(this.#flush); }
  }

  /** A device held back by pacing: the ticker tries it again. */
  stall(d: LeanDevice): void {
    if (!d.stalled) { d.stalled = true; this.#stalled.push(d); }
  }

  /** Sends for every device marked since the last flush, with one clock read. */
  flush(): void {
    this.#flushScheduled = false;
    const list = this.#dirty;
    if (!list.length) return;
    this.#dirty = this.#spare;
    const wall = this.clock.wallMs();
    const mono = this.clock.monotonicMs();
    for (let i = 0; i < list.length; i++) {
      const d = list[i]!;
      d.dirty = false;
      d.pump(wall, mono);
    }
    list.length = 0;
    this.#spare = list;
  }

  #startDue(mono: number): void {
    while (this.#nextStart < this.devices.length && this.#startAt[this.#nextStart]! <= mono - this.#t0) {
      this.devices[this.#nextStart++]!.start();
    }
  }

  #tick(): void {
    const mono = this.clock.monotonicMs();
    if (this.sending) this.#startDue(mono);
    if (this.sending && this.rate > 0) {
      // This tick's slot: every #slots-th device.
      const slots = this.#slots;
      for (let i = this.#tickNo++ % slots; i < this.#nextStart; i += slots) {
        const d = this.devices[i]!;
        d.schedule(mono, this.rate);
        if (d.due) this.markDirty(d);
      }
    }
    if (this.#stalled.length) {
      // Tried again in this turn's flush; a device still held back stays stalled (counted once).
      const stalled = this.#stalled;
      this.#stalled = [];
      for (const d of stalled) { d.stalled = false; this.markDirty(d); }
    }
    if (mono - this.#lastWatchdog >= WATCHDOG_EVERY_MS) {
      this.#lastWatchdog = mono;
      for (let i = 0; i < this.#nextStart; i++) this.devices[i]!.checkTimeouts(mono);
    }
  }

  get connected(): number {
    let n = 0;
    for (const d of this.devices) if (d.connected) n++;
    return n;
  }

  get inflight(): number {
    let n = 0;
    for (const d of this.devices) n += d.inflight;
    return n;
  }

  counters(): LeanCounters {
    const c = emptyLeanCounters();
    for (const d of this.devices) addLeanCounters(c, d.counters());
    return c;
  }

  /** Quick totals for a status line (no records). */
  totals(): { sent: number; acked: number; lost: number; inflight: number; connected: number; errors: number } {
    let sent = 0; let acked = 0; let lost = 0; let inflight = 0; let connected = 0; let errors = 0;
    for (const d of this.devices) {
      const l = d.ledger;
      sent += l.sent; acked += l.acked + l.ackedByWelcome; lost += l.lost; inflight += l.inflight; errors += d.errors;
      if (d.connected) connected++;
    }
    return { sent, acked, lost, inflight, connected, errors };
  }

  /** Stops sending (and reconnecting); what is in flight may still be acked. */
  stopSending(): void {
    this.sending = false;
  }

  /**
   * The drain: stops sending and resolves once nothing is in flight on any
   * device, or after `maxMs`: true when everything was acked in time.
   */
  async drain(maxMs: number, pollMs = 10): Promise<boolean> {
    this.stopSending();
    // Real time, not the devices' clock: this waits on real timers.
    const end = performance.now() + maxMs;
    for (;;) {
      if (this.inflight === 0) return true;
      if (performance.now() >= end) return false;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  /** Closes every device cleanly (1000, bounded) and settles the accounts: whatever is still unacked is lost. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.stopSending();
    clearInterval(this.#ticker);
    await Promise.all(this.devices.map((d) => d.stop()));
    for (const d of this.devices) d.ledger.finish();
  }

  /** Why devices stopped by themselves (distinct, at most `max`). */
  stopReasons(max = 5): string[] {
    const out = new Set<string>();
    for (const d of this.devices) if (d.stopReason && out.size < max) out.add(d.stopReason);
    return [...out];
  }

  /** Devices that lost batches, most first (at most `max`). */
  lossByDevice(max = 20): { id: string; sent: number; acked: number; lost: number }[] {
    return this.devices.filter((d) => d.ledger.lost > 0).sort((a, b) => b.ledger.lost - a.ledger.lost).slice(0, max)
      .map((d) => ({ id: d.id, sent: d.ledger.sent, acked: d.ledger.acked + d.ledger.ackedByWelcome, lost: d.ledger.lost }));
  }
}
