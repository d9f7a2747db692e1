// http/: what orchestrators and monitoring ask. /healthz and /readyz are
// public and say status words only (never a sink's error, which may name an
// internal address); /metrics needs a session or HUB_METRICS_TOKEN. The
// operators' detail is /api/v1/status (api-routes.ts). Imports: core
// (metrics, sink status), http/*.
import type { HubMetrics } from '../core/metrics.ts';
import type { SinkStatus } from '../core/sink-status.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { RequestGuards } from './guards.ts';
import { json, watchAborted } from './respond.ts';

/** Cluster mode's part of health: NATS reachable, the stream's state, and detail for operators. */
export interface ClusterHealth {
  connected: boolean;
  streamFull: boolean;
  detail: Record<string, unknown>;
}

/** What health and readiness are made of; routes decide what each endpoint shows. */
export interface HealthSource {
  shuttingDown(): boolean;
  store: { readonly healthy: boolean; pressure(): number };
  /** null: the embedded default (no sink). */
  sinkStatus: (() => SinkStatus) | null;
  /** Cluster mode (null: the embedded default, a local spool). */
  cluster: (() => ClusterHealth) | null;
  /** For operators only (/api/v1/status): binding, device connections and sessions. */
  detail(): Record<string, unknown>;
}

export interface Readiness { ready: boolean; reasons: string[]; sink: string }

/** Alive: not shutting down, and the spool is writable. */
export function healthy(health: HealthSource): boolean {
  return !health.shuttingDown() && health.store.healthy;
}

/**
 * Ready to take devices: not shutting down, and the spool is writable and
 * not full. InfluxDB being down alone does not make a hub unready (the
 * spool absorbs it); the spool filling up does. In cluster mode the store is
 * the JetStream stream: NATS unreachable or the stream at its cap.
 */
export function readiness(health: HealthSource): Readiness {
  const reasons: string[] = [];
  if (health.shuttingDown()) reasons.push('shutting down');
  const cluster = health.cluster?.();
  if (cluster) {
    if (!cluster.connected) reasons.push('NATS unreachable');
    else if (!health.store.healthy) reasons.push('stream store closed');
    else if (cluster.streamFull) reasons.push('JetStream stream full');
  } else if (!health.store.healthy) reasons.push('spool not writable');
  else if (health.store.pressure() >= 1) reasons.push('spool full');
  return { ready: reasons.length === 0, reasons, sink: health.sinkStatus?.().state ?? 'embedded' };
}

export interface OperationsRouteDeps {
  health: HealthSource;
  metrics: HubMetrics;
  guards: RequestGuards;
}

export function attachOperationsRoutes(app: UwsTypes.TemplatedApp, deps: OperationsRouteDeps): void {
  const { health, metrics, guards } = deps;

  app.get('/healthz', (res) => {
    const ok = healthy(health);
    json(res, ok ? '200 OK' : '503 Service Unavailable', { status: ok ? 'ok' : 'unavailable' });
  });

  app.get('/readyz', (res) => {
    const ready = readiness(health);
    json(res, ready.ready ? '200 OK' : '503 Service Unavailable', { status: ready.ready ? 'ready' : 'not ready', reasons: ready.reasons, sink: ready.sink });
  });

  app.get('/metrics', (res, req) => {
    if (!guards.operatorOrToken(req)) {
      return void res.cork(() => res.writeStatus('401 Unauthorized').writeHeader('WWW-Authenticate', 'Bearer realm="metrics"')
        .writeHeader('Content-Type', 'text/plain').end('sign in, or send Authorization: Bearer HUB_METRICS_TOKEN\n'));
    }
    // uWS rule: register onAborted before async work; cork the late write.
    const state = watchAborted(res);
    metrics.registry.metrics().then(
      (exposition) => {
        if (state.aborted) return;
        res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', metrics.registry.contentType).end(exposition));
      },
      () => {
        if (state.aborted) return;
        res.cork(() => res.writeStatus('500 Internal Server Error').end('metrics unavailable\n'));
      },
    );
  });
}
