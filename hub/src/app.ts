// buildApp(config, deps): wires ingest -> store, http, metrics on a uWS
// app. No side effects until listen(); close() undoes everything. Only
// main.ts reads the environment, listens for real and handles signals.
// reloadTls() swaps in a new SSLApp for new connections (see below).
import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEVICE_PATH } from '@telemetry/proto';
import { Operators, servedOverHttps } from './auth/operators.ts';
import { DeviceRegistry, type DeviceAuthenticator } from './auth/registry.ts';
import type { HubConfig } from './core/config.ts';
import { HubError } from './core/errors.ts';
import type { HistorySource } from './http/history.ts';
import { attachHttp } from './http/routes.ts';
import { StaticFiles } from './http/static.ts';
import { AuditLog } from './auth/audit.ts';
import { DeviceAdmin } from './auth/device-admin.ts';
import { CommandTracker } from './devices/commands.ts';
import { DeviceConfigs } from './devices/configs.ts';
import { DeviceEndpoint, type SessionOwnership } from './ingest/endpoint.ts';
import type { ClusterHealth } from './http/ops-routes.ts';
import { LiveEndpoint } from './live/endpoint.ts';
import { LiveState } from './live/state.ts';
import { createLogger, type Logger } from './core/log.ts';
import { HubMetrics } from './core/metrics.ts';
import { RouteTable } from './route-table.ts';
import type { SinkStatus } from './core/sink-status.ts';
import { MemoryBatchStore, type AcceptedBatch, type BatchStore } from './spool/store.ts';
import { loadUws, type UwsBinding, type UwsTypes } from './core/uws.ts';

/**
 * Device auth as buildApp takes it: the DeviceAuthenticator ingest checks
 * tokens with and, when it has them, the devices it knows, so that the live
 * path lists them before they connect (DeviceRegistry's `entries()`).
 */
export interface HubAuthenticator extends DeviceAuthenticator {
  entries?(): Iterable<[string, Readonly<Record<string, string>>]>;
}

export interface HubDeps {
  store?: BatchStore;
  auth?: HubAuthenticator;
  log?: Logger;
  metrics?: HubMetrics;
  binding?: UwsBinding;
  now?: () => number;
  /** Shown in /api/v1/status (the state name also in /readyz). */
  sinkStatus?: () => SinkStatus;
  /** Serves /api/v1/history. */
  history?: HistorySource;
  /** Gets every batch once it is durable (in-memory rollups). */
  onDurable?: (batch: AcceptedBatch) => void;
  /** Operator accounts and sessions (default: in memory, no accounts). */
  operators?: Operators;
  /** Live state (default: alarm rules in memory only). */
  live?: LiveState;
  /** Cluster mode: one session per device across hubs. */
  ownership?: SessionOwnership;
  /** Cluster mode: NATS and stream state for /readyz and /api/v1/status. */
  clusterHealth?: () => ClusterHealth;
  /**
   * Changes to the registry from the API (default, when `auth` is a
   * DeviceRegistry: in force in memory only, nothing saved; the hub's main
   * commits to the registry file or, in cluster mode, the KV bucket).
   */
  deviceAdmin?: DeviceAdmin;
  /** The audit trail of operator actions (default: in memory only). */
  audit?: AuditLog;
  /**
   * Desired configuration and tracked commands (default, when `auth` is a
   * DeviceRegistry: both in memory only; the hub's main gives configs its
   * file). With them, Welcome lists the features `config` and `invoke`.
   */
  management?: { configs: DeviceConfigs; commands: CommandTracker };
}

/** The devices whose tag `key` is `value` (a configuration group's members). */
export function membersOf(registry: DeviceRegistry, key: string, value: string): string[] {
  const ids: string[] = [];
  for (const [id, tags] of registry.entries()) if (tags[key] === value) ids.push(id);
  return ids;
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
  readonly audit: AuditLog;
  /** Desired configuration and tracked commands (null: auth is not a DeviceRegistry and none were given). */
  readonly management: { configs: DeviceConfigs; commands: CommandTracker } | null;
  readonly tls: boolean;
  /** Bound port after listen() (useful with port 0). */
  readonly port: number;
  listen(): Promise<number>;
  /**
   * Graceful: stop listening, settle acks, close devices with 1001, then close
   * the store (unless keepStore: the caller still drains it to a sink).
   */
  close(opts?: { deadlineMs?: number; keepStore?: boolean }): Promise<void>;
  /**
   * Loads HUB_TLS_CERT and HUB_TLS_KEY again: new connections get the new
   * certificate, open ones keep theirs. When the files do not load, the
   * previous certificate stays and `error` says why. Files with the same
   * content as the served ones are `unchanged` and change nothing.
   */
  reloadTls(): Promise<{ ok: boolean; unchanged?: boolean; error?: string }>;
}

/** A uWS app and, for TLS, the certificate it was made with and a digest of its files. */
interface ServingApp { app: UwsTypes.TemplatedApp; cert: X509Certificate | null; digest: string }

/** How long peers get to read their close frame before the app closes what is left (within the deadline). */
const SHUTDOWN_CLOSE_GRACE_MS = 300;

export function buildApp(config: HubConfig, deps: HubDeps = {}): Hub {
  const log = deps.log ?? createLogger(config.logLevel);
  const binding = deps.binding ?? loadUws({ allowFallback: config.allowUwsFallback });
  const uws = binding.uws;
  const metrics = deps.metrics ?? new HubMetrics();
  const store = deps.store ?? new MemoryBatchStore();
  const auth: HubAuthenticator = deps.auth ?? new DeviceRegistry();
  const now = deps.now ?? Date.now;
  const tls = config.tlsCert !== undefined;

  // Read only when tls (loadConfig refuses one of the two without the other).
  const certFile = config.tlsCert ?? '';
  const keyFile = config.tlsKey ?? '';
  const tlsFiles = `HUB_TLS_CERT=${certFile} / HUB_TLS_KEY=${keyFile}`;
  /** The certificate and key files as they are now. */
  const readTls = (): { cert: Buffer; key: Buffer; digest: string } => {
    for (const [key, file] of [['HUB_TLS_CERT', certFile], ['HUB_TLS_KEY', keyFile]] as const) {
      if (!existsSync(file)) throw new HubError('HUB_ERR_TLS', `${key}=${file}: file not found (npm run dev-cert makes a development certificate)`);
    }
    try {
      const cert = readFileSync(certFile);
      const key = readFileSync(keyFile);
      return { cert, key, digest: createHash('sha256').update(cert).update('\0').update(key).digest('hex') };
    } catch (err) {
      throw new HubError('HUB_ERR_TLS', `cannot read ${tlsFiles}: ${(err as Error).message}`, { cause: err });
    }
  };
  /** A new app; with TLS, from the certificate and key files as they are now. */
  const makeApp = (): ServingApp => {
    if (!tls) return { app: uws.App(), cert: null, digest: '' };
    const pem = readTls();
    let cert: X509Certificate;
    try {
      // uWS only says "App construction failed"; Node's TLS says why (not
      // PEM, a key that does not match the certificate).
      createSecureContext({ cert: pem.cert, key: pem.key });
      cert = new X509Certificate(pem.cert);
    } catch (err) {
      throw new HubError('HUB_ERR_TLS', `cannot load ${tlsFiles}: ${(err as Error).message}`, { cause: err });
    }
    try {
      return { app: uws.SSLApp({ cert_file_name: certFile, key_file_name: keyFile }), cert, digest: pem.digest };
    } catch (err) {
      throw new HubError('HUB_ERR_TLS', `cannot load ${tlsFiles}`, { cause: err });
    }
  };
  // The app new connections arrive on. After a TLS reload the ones before it
  // are `retired`: they keep the connections they hold until close().
  let serving = makeApp();
  const retired: UwsTypes.TemplatedApp[] = [];
  if (serving.cert) metrics.tlsCertExpiry.set(Date.parse(serving.cert.validTo) / 1000);
  // Every route is recorded once and mounted on each app (route-table.ts).
  // The endpoints start their timers when attached, so they are attached at
  // the first listen(): buildApp itself starts nothing.
  const endpointRoutes = new RouteTable();
  const httpRoutes = new RouteTable();

  const audit = deps.audit ?? new AuditLog({ file: null, maxBytes: config.auditMaxBytes, now });
  const registry = auth instanceof DeviceRegistry ? auth : null;
  const deviceAdmin = deps.deviceAdmin ?? (registry ? new DeviceAdmin({ registry, now, commit: (next) => { registry.replace(next); return Promise.resolve(); } }) : null);
  const operators = deps.operators ?? new Operators({ file: null, sessionsFile: null, sessionTtlMs: config.sessionTtlS * 1000, now, limits: config });
  const live = deps.live ?? new LiveState({
    maxSeries: config.liveMaxSeries, maxDevices: config.liveMaxDevices, alarmRulesFile: null, now,
    spoolBytes: () => store.bytes, sinkStatus: deps.sinkStatus,
    knownDevices: auth.entries?.bind(auth),
  });
  const management = deps.management ?? (registry ? {
    configs: new DeviceConfigs({ membersOf: (k, v) => membersOf(registry, k, v), tagsOf: (id) => registry.get(id)?.tags, now }),
    commands: new CommandTracker({ now }),
  } : null);
  const devices = new DeviceEndpoint({ config, store, auth, metrics, log, uws, now, onDurable: deps.onDurable, live, ownership: deps.ownership, management: management ?? undefined });
  metrics.observeStore(store);
  const dashboards = new LiveEndpoint({ config, state: live, operators, metrics, log, uws, now });
  const dashboardDir = config.dashboardDir ?? DEFAULT_DASHBOARD_DIR;
  const dashboard = new StaticFiles(dashboardDir);
  if (!dashboard.built) log.warn({ dir: dashboardDir }, `dashboard not built in ${dashboardDir}: run \`npm run build -w dashboard\``);
  let closing = false;
  const dev = devices;
  attachHttp(httpRoutes.app, {
    metrics, history: deps.history ?? null, now, operators, alarms: live.alarms, dashboard, https: servedOverHttps(config),
    metricsToken: config.metricsToken, origins: config.liveOrigins, audit,
    devices: registry && deviceAdmin ? { registry, admin: deviceAdmin, live } : null,
    management,
    // /healthz and /readyz show status words; the detail is for operators (/api/v1/status).
    health: {
      shuttingDown: () => closing, store, sinkStatus: deps.sinkStatus ?? null, cluster: deps.clusterHealth ?? null,
      detail: () => {
        const st = dev.stats();
        return { binding: binding.description, connections: st.connections, sessions: st.sessions };
      },
    },
  });

  let listenSocket: UwsTypes.us_listen_socket | null = null;
  // Listen sockets of retired apps, closed once the loop has accepted what
  // was already queued on them.
  const handedOver = new Set<UwsTypes.us_listen_socket>();
  let port = 0;
  let attached = false;
  const mounted = new WeakSet<UwsTypes.TemplatedApp>();
  const mount = (target: UwsTypes.TemplatedApp): void => {
    if (mounted.has(target)) return;
    mounted.add(target);
    endpointRoutes.mount(target);
    httpRoutes.mount(target);
  };
  /** uWS calls back synchronously, with the listen socket or false. */
  const listenOn = (target: UwsTypes.TemplatedApp, onPort: number): UwsTypes.us_listen_socket | null => {
    let sock: UwsTypes.us_listen_socket | null = null;
    target.listen(config.host, onPort, (s) => { sock = s || null; });
    return sock;
  };
  // uWS closes an app's remaining sockets (mid-handshake HTTP, idle keep-alive) when it is closed.
  const closeApp = (target: UwsTypes.TemplatedApp): void => (target as unknown as { close?: () => void }).close?.();

  const reloadTls = (): { ok: boolean; unchanged?: boolean; error?: string } => {
    if (!tls) return { ok: false, error: 'TLS is not configured (HUB_TLS_CERT, HUB_TLS_KEY)' };
    if (closing) return { ok: false, error: 'the hub is shutting down' };
    const failed = (error: string, err?: unknown): { ok: false; error: string } => {
      metrics.tlsReloads.labels('error').inc();
      log.error({ err }, `TLS certificate not reloaded; new connections still get the previous one: ${error}`);
      return { ok: false, error };
    };
    let next: ServingApp;
    try {
      // The same bytes (a SIGHUP from log rotation, say): no new app to keep.
      if (readTls().digest === serving.digest) return { ok: true, unchanged: true };
      next = makeApp();
    } catch (err) {
      return failed((err as Error).message, err);
    }
    if (listenSocket) {
      mount(next.app);
      // uWS sets SO_REUSEPORT on a listen socket bound to a port number, so
      // the new app binds the same port while the old one still listens: at
      // no moment is there nothing listening.
      let sock = listenOn(next.app, port);
      if (!sock) {
        // A socket bound to port 0 (HUB_PORT=0) has no SO_REUSEPORT: close
        // it first, then listen (synchronously, so the gap is microseconds).
        uws.us_listen_socket_close(listenSocket);
        listenSocket = null;
        sock = listenOn(next.app, port);
        if (!sock) {
          closeApp(next.app);
          listenSocket = listenOn(serving.app, port);
          return failed(`cannot listen on ${config.host}:${port} again${listenSocket ? '' : '; the hub no longer accepts connections'}`);
        }
      }
      const old = listenSocket;
      listenSocket = sock;
      if (old) {
        // Closed after one turn of the loop: connections already queued on
        // it are accepted (on the old app) rather than reset.
        handedOver.add(old);
        setImmediate(() => { if (handedOver.delete(old)) uws.us_listen_socket_close(old); });
      }
      retired.push(serving.app);
    } else {
      closeApp(serving.app); // never listened: holds no connections
    }
    serving = next;
    metrics.tlsReloads.labels('ok').inc();
    const { cert } = next; // always set: makeApp() with tls parses the certificate
    if (cert) metrics.tlsCertExpiry.set(Date.parse(cert.validTo) / 1000);
    log.info({ subject: cert?.subject, validTo: cert?.validTo, fingerprint256: cert?.fingerprint256 },
      'TLS certificate reloaded: new connections get it, open ones keep the previous one until they reconnect');
    return { ok: true };
  };

  return {
    config, binding, store, metrics, devices: dev, live, dashboards, operators, audit, management, tls,
    get port() { return port; },
    listen() {
      return new Promise<number>((resolve, reject) => {
        if (closing) return reject(new HubError('HUB_ERR_LISTEN', 'the hub is closed'));
        if (listenSocket) return resolve(port);
        if (!attached) {
          attached = true;
          dev.attach(endpointRoutes.app, DEVICE_PATH);
          dashboards.attach(endpointRoutes.app);
          // The command sweep, like the endpoints' timers, starts with listening.
          management?.commands.attach(dev);
        }
        mount(serving.app);
        const sock = listenOn(serving.app, config.port);
        if (!sock) return reject(new HubError('HUB_ERR_LISTEN', `cannot listen on ${config.host}:${config.port} (HUB_HOST/HUB_PORT): address in use or not permitted`));
        listenSocket = sock;
        port = uws.us_socket_local_port(sock);
        resolve(port);
      });
    },
    async reloadTls() {
      const result = reloadTls();
      // After the old listen socket is closed (queued behind its close):
      // from then on every new connection gets the new certificate.
      if (result.ok) await new Promise<void>((resolve) => setImmediate(resolve));
      return result;
    },
    async close(opts = {}) {
      if (closing) return;
      closing = true;
      const deadline = now() + (opts.deadlineMs ?? config.shutdownTimeoutMs);
      if (listenSocket) uws.us_listen_socket_close(listenSocket);
      listenSocket = null;
      for (const sock of handedOver) uws.us_listen_socket_close(sock);
      handedOver.clear();
      const peers = dev.stats().connections + dashboards.dashboards;
      dashboards.shutdown();
      await dev.shutdown(deadline);
      management?.commands.close();
      if (!opts.keepStore) await Promise.race([store.close(), new Promise<void>((r) => setTimeout(r, Math.max(0, deadline - now())).unref())]);
      // Devices and dashboards got their close frames (and a FIN). Closing the
      // app closes every socket at once, and a socket with unread input (a
      // device still streaming) is then reset, which can cost the peer the
      // close frame it has not read yet (it sees 1006, not 1001). So peers get
      // a moment to read it and close themselves, bounded by the deadline.
      // With no peer there is nothing to wait for. The timer is not unref'd:
      // close() must resolve even when nothing else keeps the process alive.
      const grace = peers > 0 ? Math.min(SHUTDOWN_CLOSE_GRACE_MS, Math.max(0, deadline - now())) : 0;
      if (grace > 0) await new Promise<void>((r) => setTimeout(r, grace));
      for (const target of [...retired, serving.app]) closeApp(target);
      retired.length = 0;
    },
  };
}
