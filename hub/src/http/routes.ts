// http/: plain HTTP on the hub's port: /healthz and /metrics for now (the
// dashboard, REST and history join later). Imports: metrics, uws types.
import type { HubMetrics } from '../metrics.ts';
import type { UwsTypes } from '../uws.ts';
import { BadRequest, parseHistoryQuery, type HistorySource } from './history.ts';

export interface HealthSource {
  health(): { ok: boolean; detail: Record<string, unknown> };
}

function json(res: UwsTypes.HttpResponse, status: string, body: unknown): void {
  res.cork(() => res.writeStatus(status).writeHeader('Content-Type', 'application/json').writeHeader('Cache-Control', 'no-store').end(JSON.stringify(body)));
}

export function attachHttp(app: UwsTypes.TemplatedApp, metrics: HubMetrics, health: HealthSource, history: HistorySource | null, now: () => number): void {
  app.get('/api/v1/history', (res, req) => {
    // Copy out of req before any await; register onAborted first (uWS rules).
    const params = new URLSearchParams(req.getQuery() ?? '');
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    let q;
    try {
      q = parseHistoryQuery(params, now());
    } catch (err) {
      if (err instanceof BadRequest) return json(res, '400 Bad Request', { error: err.message });
      throw err;
    }
    if (!history) return json(res, '503 Service Unavailable', { error: 'no history source configured' });
    history.query(q).then(
      (points) => { if (!aborted) json(res, '200 OK', { metric: q.metric, scope: q.scope, from: q.fromMs, to: q.toMs, step: q.stepMs, source: history.name, points }); },
      (err: unknown) => { if (!aborted) json(res, '502 Bad Gateway', { error: `history source failed: ${(err as Error).message}` }); },
    );
  });

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
