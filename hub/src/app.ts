// buildApp(config, deps): wires ingest -> store, http, metrics on one uWS
// app. No side effects until listen(); close() undoes everything. Only
// main.ts reads the environment, listens for real and handles signals.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEVICE_PATH } from '@telemetry/proto';
import { Operators } from './auth/operators.ts';
import { DeviceRegistry, type DeviceAuthenticator } from './auth/registry.ts';
import type { HubConfig } from './config.ts';
import { HubError } from './errors.ts';
import type { HistorySource } from './http/history.ts';
import { attachHttp } from './http/routes.ts';
import { StaticFiles } from './http/static.ts';
import { DeviceEndpoint } from './ingest/endpoint.ts';
import { LiveEndpoint } from './live/endpoint.ts';
import { LiveState } from './live/state.ts';
import { createLogger, type Logger } from './log.ts';
import { HubMetrics } from './metrics.ts';
import type { SinkStatus } from './sinks/sink.ts';
import { MemoryBatchStore, type AcceptedBatch, type BatchStore } from './spool/store.ts';
import { loadUws, type UwsBinding, type UwsTypes } from './uws.ts';

export interface HubDeps {
  store?: BatchStore;
  auth?: DeviceAuthenticator;
  log?: Logger;
  metrics?: HubMetrics;
  binding?: UwsBinding;
  now?: () => number;
  /** Shown in /healthz. */
  sinkStatus?: () => SinkStatus;
  /** Serves /api/v1/history. */
  history?: HistorySource;
  /** Gets every batch once it is durable (in-memory rollups). */
  onDurable?: (batch: AcceptedBatch) => void;
  /** Operator accounts and sessions (default: in memory, no accounts). */
  operators?: Operators;
  /** Live state (default: alarm rules in memory only). */
  live?: LiveState;
}

/** dashboard/dist of this checkout: what the hub serves unless HUB_DASHBOARD_DIR says otherwise. */
export const DEFAULT_DASHBOARD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../dashboard/dist');

export interface Hub {
  readonly config: HubConfig;
  readonly binding: UwsBinding;
  readonly store: BatchStore;
  readonly metrics: HubMetrics;
  readonly devices: DeviceEndpoint;
  readonly live: LiveState;
  readonly dashboards: LiveEndpoint;
  readonly operators: Operators;
  readonly tls: boolean;
  /** Bound port after listen() (useful with port 0). */
  readonly port: number;
  listen(): Promise<number>;
  /**
   * Graceful: stop listening, settle acks, close devices with 1001, then close
   * the store (unless keepStore: the caller still drains it to a sink).
   */
  close(opts?: { deadlineMs?: number; keepStore?: boolean }): Promise<void>;
}

export function buildApp(config: HubConfig, deps: HubDeps = {}): Hub {
  const log = deps.log ?? createLogger(config.logLevel);
  const binding = deps.binding ?? loadUws({ allowFallback: config.allowUwsFallback });
  const uws = binding.uws;
  const metrics = deps.metrics ?? new HubMetrics();
  const store = deps.store ?? new MemoryBatchStore();
  const auth = deps.auth ?? new DeviceRegistry();
  const now = deps.now ?? Date.now;
  const tls = config.tlsCert !== undefined;

  let app: UwsTypes.TemplatedApp;
  if (tls) {
    for (const [key, file] of [['HUB_TLS_CERT', config.tlsCert!], ['HUB_TLS_KEY', config.tlsKey!]] as const) {
      if (!existsSync(file)) throw new HubError('HUB_ERR_TLS', `${key}=${file}: file not found (npm run dev-cert makes a development certificate)`);
    }
    try {
      app = uws.SSLApp({ cert_file_name: config.tlsCert!, key_file_name: config.tlsKey! });
    } catch (err) {
      throw new HubError('HUB_ERR_TLS', `cannot load HUB_TLS_CERT=${config.tlsCert} / HUB_TLS_KEY=${config.tlsKey}`, { cause: err });
    }
  } else {
    app = uws.App();
  }

  const operators = deps.operators ?? new Operators({ file: null, sessionsFile: null, sessionTtlMs: config.sessionTtlS * 1000, now });
  let devices: DeviceEndpoint | null = null;
  const live = deps.live ?? new LiveState({
    maxSeries: config.liveMaxSeries, maxDevices: config.liveMaxDevices, alarmRulesFile: null, now,
    spoolBytes: () => (store as { bytes?: number }).bytes ?? 0, sinkStatus: deps.sinkStatus,
    knownDevices: auth instanceof DeviceRegistry ? () => auth.entries() : undefined,
  });
  live.connections = () => devices?.stats().connections ?? 0;
  devices = new DeviceEndpoint({ config, store, auth, metrics, log, uws, now, onDurable: deps.onDurable, live });
  metrics.observeStore(store);
  devices.attach(app, DEVICE_PATH);
  const dashboards = new LiveEndpoint({ config, state: live, operators, metrics, log, uws, now });
  dashboards.attach(app);
  const dashboardDir = config.dashboardDir ?? DEFAULT_DASHBOARD_DIR;
  const dashboard = new StaticFiles(dashboardDir);
  if (!dashboard.built) log.warn({ dir: dashboardDir }, `dashboard not built in ${dashboardDir}: run \`npm run build -w dashboard\``);
  let closing = false;
  const dev = devices;
  attachHttp(app, {
    metrics, history: deps.history ?? null, now, operators, alarms: live.alarms, dashboard, tls,
    metricsToken: config.metricsToken, origins: config.liveOrigins,
    health: { health: () => {
      const st = dev.stats();
      return {
        ok: !closing && store.healthy,
        detail: {
          binding: binding.description, connections: st.connections, sessions: st.sessions, store: store.healthy ? 'ok' : 'unavailable',
          sink: deps.sinkStatus?.() ?? { name: 'none', state: 'embedded (INFLUX_URL unset): nothing reaches a database' },
        },
      };
    } },
  });

  let listenSocket: UwsTypes.us_listen_socket | null = null;
  let port = 0;
  return {
    config, binding, store, metrics, devices: dev, live, dashboards, operators, tls,
    get port() { return port; },
    listen() {
      return new Promise<number>((resolve, reject) => {
        app.listen(config.host, config.port, (sock) => {
          if (!sock) return reject(new HubError('HUB_ERR_LISTEN', `cannot listen on ${config.host}:${config.port} (HUB_HOST/HUB_PORT): address in use or not permitted`));
          listenSocket = sock;
          port = uws.us_socket_local_port(sock);
          resolve(port);
        });
      });
    },
    async close(opts = {}) {
      if (closing) return;
      closing = true;
      const deadline = now() + (opts.deadlineMs ?? config.shutdownTimeoutMs);
      if (listenSocket) uws.us_listen_socket_close(listenSocket);
      listenSocket = null;
      dashboards.shutdown();
      await dev.shutdown(deadline);
      if (!opts.keepStore) await Promise.race([store.close(), new Promise<void>((r) => setTimeout(r, Math.max(0, deadline - now())).unref())]);
      // uWS closes remaining sockets (e.g. mid-handshake HTTP) when the app is closed.
      (app as unknown as { close?: () => void }).close?.();
    },
  };
}
