// ingest/: the device endpoint /v1/devices, end to end (README "Architecture",
// proto/README.md). This file wires the parts and is the one ingest API the
// hub uses: the upgrade (upgrade.ts), the session state machine
// (lifecycle.ts, over session.ts), message checks (messages.ts), batches
// (batches.ts, validate.ts), acks and credit (acks.ts), commands
// (commands.ts); the live path only through a guard (live-feed.ts).
// Imports: proto, core, and as types only: auth (DeviceAuthenticator), spool
// (the BatchStore seam), live (the LiveFeed interface), core/uws. Never a
// concrete store, main.ts or http/.
import { CloseCode, type Command } from '@telemetry/proto';
import type { DeviceAuthenticator } from '../auth/registry.ts';
import type { AcceptedBatch } from '../core/batch.ts';
import type { HubConfig } from '../core/config.ts';
import { LogLimiter, type Logger } from '../core/log.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { LiveFeed } from '../live/state.ts';
import type { BatchStore } from '../spool/store.ts';
import { AckFlusher, CREDIT_REFRESH_MS } from './acks.ts';
import { BatchIntake } from './batches.ts';
import { Commands } from './commands.ts';
import { SessionLifecycle, handshakeSweepMs, type SessionOwnership } from './lifecycle.ts';
import { jitteredRetryMs } from './limits.ts';
import { GuardedLiveFeed } from './live-feed.ts';
import { ConfigSync, type IngestManagement } from './management.ts';
import { MessageRouter } from './messages.ts';
import { SessionTable, type SocketData } from './session.ts';
import { DeviceUpgrade } from './upgrade.ts';

/** Frames larger than this are dropped by uWS without a close frame. */
export function hardMessageCap(maxMessageBytes: number): number {
  return Math.max(2 * maxMessageBytes, maxMessageBytes + 4096);
}

/**
 * protocol: a device that stops reading is dropped once this much is queued
 * for it (proto/README.md §1). Acks are small: it is a lot of unread acks.
 */
export const MAX_SEND_BACKPRESSURE_BYTES = 256 * 1024;

export interface IngestDeps {
  readonly config: HubConfig;
  readonly store: BatchStore;
  readonly auth: DeviceAuthenticator;
  readonly metrics: HubMetrics;
  readonly log: Logger;
  readonly uws: typeof UwsTypes;
  readonly now: () => number;
  /** Called once per batch when it is durable (not for duplicates). */
  readonly onDurable?: (batch: AcceptedBatch) => void;
  /** The live path (dashboards): told about durable batches, sessions, connections and ack latency. */
  readonly live?: LiveFeed;
  /** Rate limit for the log lines devices can cause (default: HUB_LOG_LINES_PER_MIN on `log`). */
  readonly logLimiter?: LogLimiter;
  /** Cluster mode: one session per device across hubs (lifecycle.ts). */
  readonly ownership?: SessionOwnership;
  /** Desired configuration and tracked commands (Welcome then lists `config` and `invoke`); absent: no features. */
  readonly management?: IngestManagement;
}

export type { SessionOwnership, IngestManagement };

export interface IngestStats {
  connections: number;
  sessions: number;
  addresses: number;
  pendingAppends: number;
}

export class DeviceEndpoint {
  readonly #config: HubConfig;
  readonly #uws: typeof UwsTypes;
  readonly #now: () => number;
  readonly #table: SessionTable;
  readonly #upgrade: DeviceUpgrade;
  readonly #lifecycle: SessionLifecycle;
  readonly #acks: AckFlusher;
  readonly #batches: BatchIntake;
  readonly #commands: Commands;
  readonly #messages: MessageRouter;
  readonly #configSync: ConfigSync | null;
  /** Log lines devices can cause go through here (HUB_LOG_LINES_PER_MIN per kind). */
  readonly #deviceLog: LogLimiter;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #unsubscribeRevoked: () => void;

  constructor(deps: IngestDeps) {
    const { config, store, metrics, now } = deps;
    this.#config = config;
    this.#uws = deps.uws;
    this.#now = now;
    this.#deviceLog = deps.logLimiter ?? new LogLimiter(deps.log, {
      perMinute: config.logLinesPerMinute, now, onSuppressed: (kind, lines) => metrics.logLinesSuppressed.labels(kind).inc(lines),
    });
    const deviceLog = this.#deviceLog;
    const live = new GuardedLiveFeed(deps.live, deviceLog);
    const table = new SessionTable(config);
    this.#table = table;
    this.#upgrade = new DeviceUpgrade({ config, store, auth: deps.auth, metrics, now, table });
    const acks = new AckFlusher({ window: config.window, store, metrics, now, live, sessions: table.sockets });
    this.#acks = acks;
    const management = deps.management;
    const lifecycle = new SessionLifecycle({
      config, store, metrics, now, table, acks, live, deviceLog, ownership: deps.ownership,
      // Queued commands go out after Welcome; desired configuration waits for the session's first report (§15.3).
      welcomed: management ? (session) => management.commands.connected(session.deviceId, session.usesInvoke) : undefined,
    });
    this.#lifecycle = lifecycle;
    this.#batches = new BatchIntake({ config, store, metrics, now, table, lifecycle, acks, live, deviceLog, onDurable: deps.onDurable });
    this.#commands = new Commands({ metrics, lifecycle, deviceLog, tracker: management?.commands });
    this.#configSync = management ? new ConfigSync({ configs: management.configs, lifecycle, metrics, table, deviceLog }) : null;
    this.#messages = new MessageRouter({ maxMessageBytes: config.maxMessageBytes, metrics, lifecycle, batches: this.#batches, commands: this.#commands, config: this.#configSync });
    this.#unsubscribeRevoked = deps.auth.onRevoked((deviceIds) => lifecycle.revoked(deviceIds));
  }

  /** Registers the /v1/devices route on a uWS app and starts the session timers. */
  attach(app: UwsTypes.TemplatedApp, path: string): void {
    const config = this.#config;
    const upgrade = this.#upgrade;
    const lifecycle = this.#lifecycle;
    const messages = this.#messages;
    const acks = this.#acks;
    app.ws<SocketData>(path, {
      // protocol: no permessage-deflate on the device endpoint (no decompression bombs).
      compression: this.#uws.DISABLED,
      // The hub enforces maxMessageBytes itself to answer with a proper 1009;
      // uWS only cuts off (no close frame) what is over twice that, from the
      // frame header, before buffering it.
      maxPayloadLength: hardMessageCap(config.maxMessageBytes),
      idleTimeout: config.idleTimeoutS,
      sendPingsAutomatically: true,
      // Acks are small; a device that stops reading them is dropped, not buffered for.
      maxBackpressure: MAX_SEND_BACKPRESSURE_BYTES,
      closeOnBackpressureLimit: 1,
      upgrade: (res, req, context) => upgrade.upgrade(res, req, context),
      open: (ws) => lifecycle.open(ws),
      message: (ws, msg, isBinary) => messages.message(ws, msg, isBinary),
      close: (ws, code) => lifecycle.closed(ws.getUserData().session, code),
    });
    const sweep = setInterval(() => lifecycle.sweep(), handshakeSweepMs(config.handshakeTimeoutMs));
    sweep.unref();
    const credit = setInterval(() => acks.refreshCredit(), CREDIT_REFRESH_MS);
    credit.unref();
    this.#timers.push(sweep, credit);
  }

  /** Cluster mode: another hub took the device over; its session here ends with 4002. */
  moved(deviceId: string, toHub: string): void {
    this.#lifecycle.moved(deviceId, toHub);
  }

  stats(): IngestStats {
    const table = this.#table;
    return { connections: table.sockets.size, sessions: table.openSessions, addresses: table.addresses.addresses, pendingAppends: this.#batches.pendingAppends };
  }

  /**
   * Sends a downlink command to a connected device; returns its id, or null
   * when offline. The session remembers the last MAX_OUTSTANDING_COMMANDS ids
   * it was sent: only results for those are counted as ok/failed and logged.
   */
  sendCommand(deviceId: string, command: Omit<Command, 'id'>): number | null {
    const session = this.#table.current(deviceId);
    if (!session || session.state !== 'open' || !session.ws) return null;
    // protocol: no Command.config where `config` is in use, Command.invoke only where `invoke` is (§12).
    if (command.config && session.usesConfig) return null;
    if (command.invoke && !session.usesInvoke) return null;
    return this.#commands.send(session, session.ws, command);
  }

  /**
   * Sends an Invoke to a connected device whose session uses `invoke`;
   * returns its wire id, 'offline', or 'unsupported' (its Hello did not list `invoke`).
   */
  sendInvoke(deviceId: string, name: string, argsJson: string): number | 'offline' | 'unsupported' {
    const session = this.#table.current(deviceId);
    if (!session || session.state !== 'open' || !session.ws) return 'offline';
    if (!session.usesInvoke) return 'unsupported';
    return this.#commands.send(session, session.ws, { invoke: { name, argsJson } });
  }

  /** The device's session here uses these features (null: not connected here). */
  features(deviceId: string): { config: boolean; invoke: boolean } | null {
    const session = this.#table.current(deviceId);
    if (!session || session.state !== 'open') return null;
    return { config: session.usesConfig, invoke: session.usesInvoke };
  }

  /**
   * Graceful end: refuse new upgrades (503), let pending appends settle and
   * send their acks, then close every device with 1001 and a retry hint.
   */
  async shutdown(deadlineMs: number): Promise<void> {
    this.#upgrade.stopAdmitting();
    if (this.#batches.pendingAppends > 0) {
      await Promise.race([
        this.#batches.whenSettled(),
        new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, deadlineMs - this.#now())).unref()),
      ]);
    }
    this.#acks.flush();
    for (const session of [...this.#table.sockets]) {
      this.#lifecycle.close(session, CloseCode.GOING_AWAY, 'hub shutting down', jitteredRetryMs(this.#config.retryAfterMs), null);
    }
    for (const timer of this.#timers) clearInterval(timer);
    this.#unsubscribeRevoked();
    this.#configSync?.stop();
    this.#deviceLog.flush();
  }
}
