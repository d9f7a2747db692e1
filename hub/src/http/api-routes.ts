// http/: the data API, for signed-in operators: /api/v1/status (also with
// HUB_METRICS_TOKEN, for monitoring), /api/v1/history and the alarm rules.
// Writes must come from an allowed origin. Imports: live/alarms (types),
// core (errors), http/*.
import type { AuditLog } from '../auth/audit.ts';
import { BadRequestError, RuleError } from '../core/errors.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { Alarms } from '../live/alarms.ts';
import { parseJsonBody } from './bodies.ts';
import type { RequestGuards } from './guards.ts';
import { parseHistoryQuery, type HistorySource } from './history.ts';
import { healthy, readiness, type HealthSource } from './ops-routes.ts';
import { json, MAX_BODY_BYTES, readBody, watchAborted, type Res } from './respond.ts';

export interface DataApiDeps {
  health: HealthSource;
  /** null: no history source configured (503). */
  history: HistorySource | null;
  alarms: Alarms;
  now: () => number;
  guards: RequestGuards;
  audit: Pick<AuditLog, 'record'>;
}

export function attachDataApi(app: UwsTypes.TemplatedApp, deps: DataApiDeps): void {
  const { health, alarms, guards, audit } = deps;
  const address = (res: Res): string => Buffer.from(res.getRemoteAddressAsText()).toString();

  app.get('/api/v1/status', (res, req) => {
    if (!guards.operatorOrToken(req)) {
      return json(res, '401 Unauthorized', { error: 'sign in, or send Authorization: Bearer HUB_METRICS_TOKEN' }, [['WWW-Authenticate', 'Bearer realm="status"']]);
    }
    const ready = readiness(health);
    json(res, '200 OK', {
      status: healthy(health) ? 'ok' : 'unavailable', ready: ready.ready, reasons: ready.reasons, ...health.detail(),
      store: health.store.healthy ? 'ok' : 'unavailable', spoolPressure: health.store.pressure(),
      sink: health.sinkStatus?.() ?? { name: 'none', state: 'embedded (INFLUX_URL unset): nothing reaches a database' },
      ...(health.cluster ? { cluster: health.cluster().detail } : {}),
    });
  });

  app.get('/api/v1/history', guards.api(false, (res, req) => {
    // Copy out of req before any await; register onAborted first (uWS rules).
    const params = new URLSearchParams(req.getQuery() ?? '');
    const state = watchAborted(res);
    let query;
    try {
      query = parseHistoryQuery(params, deps.now());
    } catch (err) {
      if (err instanceof BadRequestError) return json(res, '400 Bad Request', { error: err.message });
      throw err;
    }
    const history = deps.history;
    if (!history) return json(res, '503 Service Unavailable', { error: 'no history source configured' });
    history.query(query).then(
      (points) => { if (!state.aborted) json(res, '200 OK', { metric: query.metric, scope: query.scope, from: query.fromMs, to: query.toMs, step: query.stepMs, source: history.name, points }); },
      (err: unknown) => { if (!state.aborted) json(res, '502 Bad Gateway', { error: `history source failed: ${(err as Error).message}` }); },
    );
  }));

  app.get('/api/v1/alarms/rules', guards.api(false, (res) => json(res, '200 OK', { rules: alarms.rules })));

  app.post('/api/v1/alarms/rules', guards.api(true, (res, _req, user) => {
    const from = address(res);
    const state = watchAborted(res);
    void readBody(res, MAX_BODY_BYTES, state).then(async (body) => {
      if (state.aborted) return;
      if (!body) return json(res, '413 Content Too Large', { error: 'request too large' });
      let rule;
      try {
        // Saved first, then in force: 201 means the rules file holds it.
        rule = await alarms.add(parseJsonBody(body));
      } catch (err) {
        audit.record({ actor: user, address: from, action: 'rule.add', target: '', outcome: 'failed', detail: { error: (err as Error).message.slice(0, 200) } });
        if (state.aborted) return;
        if (err instanceof RuleError || err instanceof BadRequestError) return json(res, '400 Bad Request', { error: err.message });
        return json(res, '500 Internal Server Error', { error: 'rule not saved' });
      }
      audit.record({ actor: user, address: from, action: 'rule.add', target: rule.id, outcome: 'ok', detail: { name: rule.name, metric: rule.metric, condition: `${rule.op} ${rule.threshold}` } });
      if (!state.aborted) json(res, '201 Created', { rule });
    });
  }));

  app.del('/api/v1/alarms/rules/:id', guards.api(true, (res, req, user) => {
    const id = req.getParameter(0) ?? '';
    const from = address(res);
    const state = watchAborted(res);
    alarms.remove(id).then(
      (removed) => {
        audit.record({ actor: user, address: from, action: 'rule.remove', target: id, outcome: removed ? 'ok' : 'failed', detail: removed ? {} : { error: 'no such rule' } });
        if (state.aborted) return;
        if (removed) res.cork(() => res.writeStatus('204 No Content').end());
        else json(res, '404 Not Found', { error: `no rule ${id}` });
      },
      () => { if (!state.aborted) json(res, '500 Internal Server Error', { error: 'rules file not written; the rule stays' }); },
    );
  }));
}
