// http/: plain HTTP on the hub's port: /healthz and /metrics for now (the
// dashboard, REST and history join later). Imports: metrics, uws types.
import type { HubMetrics } from '../metrics.ts';
import type { UwsTypes } from '../uws.ts';

export interface HealthSource {
  health(): { ok: boolean; detail: Record<string, unknown> };
}

export function attachHttp(app: UwsTypes.TemplatedApp, metrics: HubMetrics, health: HealthSource): void {
  app.get('/healthz', (res) => {
    const h = health.health();
    res.cork(() => {
      res.writeStatus(h.ok ? '200 OK' : '503 Service Unavailable')
        .writeHeader('Content-Type', 'application/json')
        .writeHeader('Cache-Control', 'no-store')
        .end(JSON.stringify({ status: h.ok ? 'ok' : 'unavailable', ...h.detail }));
    });
  });

  app.get('/metrics', (res) => {
    // uWS rule: register onAborted before async work; cork the late write.
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    metrics.registry.metrics().then(
      (text) => {
        if (aborted) return;
        res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', metrics.registry.contentType).end(text));
      },
      () => {
        if (aborted) return;
        res.cork(() => res.writeStatus('500 Internal Server Error').end('metrics unavailable\n'));
      },
    );
  });

  app.any('/*', (res) => {
    res.cork(() => res.writeStatus('404 Not Found').writeHeader('Content-Type', 'text/plain').end('not found\n'));
  });
}
