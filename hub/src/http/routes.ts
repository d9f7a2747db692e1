// http/: plain HTTP on the hub's port. Public: /healthz and /readyz (status
// words only) and the sign-in page. Everything else needs an operator
// session (cookie): the dashboard, /api/v1/*, /metrics and /api/v1/status
// (those two also take a bearer HUB_METRICS_TOKEN, for Prometheus and
// monitoring). Without a session the answer depends on the URL alone (pages
// go to /login, everything else is 401), so it says nothing about which
// files or endpoints exist.
// Imports: auth/operators, live/alarms, metrics, sinks (types), uws types, http/*.
import { timingSafeEqual } from 'node:crypto';
import { clearedSessionCookie, sessionCookie, sessionToken, type Operators } from '../auth/operators.ts';
import type { Alarms } from '../live/alarms.ts';
import { RuleError } from '../live/alarms.ts';
import { originAllowed } from '../core/origin.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { SinkStatus } from '../core/sink-status.ts';
import type { UwsTypes } from '../core/uws.ts';
import { BadRequest, parseHistoryQuery, type HistorySource } from './history.ts';
import { LOGIN_CSP, loginPage } from './login.ts';
import { DASHBOARD_CSP, type StaticFiles } from './static.ts';

type Res = UwsTypes.HttpResponse;
type Req = UwsTypes.HttpRequest;

/** What health and readiness are made of; routes decide what each endpoint shows. */
export interface HealthSource {
  shuttingDown(): boolean;
  store: { readonly healthy: boolean; pressure(): number };
  /** null: the embedded default (no sink). */
  sinkStatus: (() => SinkStatus) | null;
  /** For operators only (/api/v1/status): binding, device connections and sessions. */
  detail(): Record<string, unknown>;
}

export interface Readiness { ready: boolean; reasons: string[]; sink: string }

/**
 * Ready to take devices: not shutting down, and the spool is writable and
 * not full. InfluxDB being down alone does not make a hub unready (the
 * spool absorbs it); the spool filling up does.
 */
export function readiness(h: HealthSource): Readiness {
  const reasons: string[] = [];
  if (h.shuttingDown()) reasons.push('shutting down');
  if (!h.store.healthy) reasons.push('spool not writable');
  else if (h.store.pressure() >= 1) reasons.push('spool full');
  return { ready: reasons.length === 0, reasons, sink: h.sinkStatus?.().state ?? 'embedded' };
}

export interface HttpDeps {
  metrics: HubMetrics;
  health: HealthSource;
  history: HistorySource | null;
  now: () => number;
  operators: Operators;
  alarms: Alarms;
  dashboard: StaticFiles;
  /** Browsers reach the hub over https (its own TLS or HUB_TLS_PROXY): __Host- cookie with Secure. */
  https: boolean;
  metricsToken: string | undefined;
  origins: string | undefined;
}

const MAX_BODY = 16 * 1024;

function json(res: Res, status: string, body: unknown, headers: [string, string][] = []): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'application/json').writeHeader('Cache-Control', 'no-store');
    for (const [k, v] of headers) res.writeHeader(k, v);
    res.end(JSON.stringify(body));
  });
}

function text(res: Res, status: string, body: string): void {
  res.cork(() => res.writeStatus(status).writeHeader('Content-Type', 'text/plain; charset=utf-8').end(body + '\n'));
}

function html(res: Res, status: string, body: string, headers: [string, string][] = []): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'text/html; charset=utf-8').writeHeader('Cache-Control', 'no-store')
      .writeHeader('X-Frame-Options', 'DENY').writeHeader('X-Content-Type-Options', 'nosniff').writeHeader('Content-Security-Policy', LOGIN_CSP);
    for (const [k, v] of headers) res.writeHeader(k, v);
    res.end(body);
  });
}

/** Reads a request body up to `limit` bytes; null when it is larger (or the request was aborted). */
function readBody(res: Res, limit: number, aborted: { v: boolean }): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let done = false;
    res.onData((ab, last) => {
      if (done) return;
      n += ab.byteLength;
      if (n > limit) { done = true; return resolve(null); }
      chunks.push(Buffer.from(ab.slice(0)));
      if (last) { done = true; resolve(aborted.v ? null : Buffer.concat(chunks)); }
    });
  });
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Retry-After in whole seconds (RFC 9110 §10.2.3), at least 1. */
function retryAfter(ms: number): [string, string] {
  return ['Retry-After', String(Math.max(1, Math.ceil(ms / 1000)))];
}

export function attachHttp(app: UwsTypes.TemplatedApp, d: HttpDeps): void {
  const { metrics, operators } = d;
  const who = (req: Req): { user: string; hash: string } | null => operators.check(sessionToken(req.getHeader('cookie'), d.https));
  /** An operator session, or the HUB_METRICS_TOKEN bearer (monitoring). */
  const operatorOrToken = (req: Req): boolean => {
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.getHeader('authorization'))?.[1];
    return (d.metricsToken !== undefined && bearer !== undefined && safeEqual(bearer, d.metricsToken)) || who(req) !== null;
  };
  /** API routes: 401 JSON without a session; 403 for a cross-origin write. */
  const api = (write: boolean, h: (res: Res, req: Req, user: string) => void) => (res: Res, req: Req): void => {
    const u = who(req);
    if (!u) return json(res, '401 Unauthorized', { error: 'sign in first: POST /login' });
    if (write && !originAllowed(req.getHeader('origin'), req.getHeader('host'), d.origins)) return json(res, '403 Forbidden', { error: 'cross-origin request refused' });
    h(res, req, u.user);
  };

  // ---- health (public: status words only; details need a session) ----------

  app.get('/healthz', (res) => {
    const ok = !d.health.shuttingDown() && d.health.store.healthy;
    json(res, ok ? '200 OK' : '503 Service Unavailable', { status: ok ? 'ok' : 'unavailable' });
  });

  app.get('/readyz', (res) => {
    const r = readiness(d.health);
    json(res, r.ready ? '200 OK' : '503 Service Unavailable', { status: r.ready ? 'ready' : 'not ready', reasons: r.reasons, sink: r.sink });
  });

  app.get('/api/v1/status', (res, req) => {
    if (!operatorOrToken(req)) {
      return json(res, '401 Unauthorized', { error: 'sign in, or send Authorization: Bearer HUB_METRICS_TOKEN' }, [['WWW-Authenticate', 'Bearer realm="status"']]);
    }
    const h = d.health;
    const r = readiness(h);
    const ok = !h.shuttingDown() && h.store.healthy;
    json(res, '200 OK', {
      status: ok ? 'ok' : 'unavailable', ready: r.ready, reasons: r.reasons, ...h.detail(),
      store: h.store.healthy ? 'ok' : 'unavailable', spoolPressure: h.store.pressure(),
      sink: h.sinkStatus?.() ?? { name: 'none', state: 'embedded (INFLUX_URL unset): nothing reaches a database' },
    });
  });

  // ---- sign-in -------------------------------------------------------------

  app.get('/login', (res, req) => {
    if (who(req)) return void res.cork(() => res.writeStatus('303 See Other').writeHeader('Location', '/').end());
    html(res, '200 OK', loginPage());
  });

  app.post('/login', (res, req) => {
    const type = req.getHeader('content-type');
    const origin = req.getHeader('origin');
    const host = req.getHeader('host');
    const addr = Buffer.from(res.getRemoteAddressAsText()).toString();
    const aborted = { v: false };
    res.onAborted(() => { aborted.v = true; });
    const isJson = type.startsWith('application/json');
    const fail = (status: string, error: string, user = '', retryMs?: number): void => {
      if (aborted.v) return;
      const h: [string, string][] = retryMs !== undefined ? [retryAfter(retryMs)] : [];
      if (isJson) json(res, status, { error }, h);
      else html(res, status, loginPage({ error, user }), h);
    };
    if (!originAllowed(origin, host, d.origins)) return fail('403 Forbidden', 'cross-origin sign-in refused');
    void readBody(res, MAX_BODY, aborted).then(async (body) => {
      if (!body) return fail('413 Content Too Large', 'request too large');
      let user = '', password = '';
      try {
        if (isJson) {
          const j = JSON.parse(body.toString('utf8')) as { user?: unknown; password?: unknown };
          user = typeof j.user === 'string' ? j.user : '';
          password = typeof j.password === 'string' ? j.password : '';
        } else {
          const p = new URLSearchParams(body.toString('utf8'));
          user = p.get('user') ?? '';
          password = p.get('password') ?? '';
        }
      } catch {
        return fail('400 Bad Request', 'expected JSON {"user","password"} or a form');
      }
      if (!user || !password) return fail('400 Bad Request', 'operator name and password are required', user);
      const pending = operators.signIn(user, password, addr);
      metrics.passwordChecksInFlight.set(operators.checksInFlight);
      const r = await pending;
      metrics.passwordChecksInFlight.set(operators.checksInFlight);
      metrics.signIns.labels(r.ok ? 'ok' : r.result).inc();
      if (aborted.v) return;
      if (!r.ok) {
        if (r.status === 401) return fail('401 Unauthorized', r.reason, user);
        return fail(r.status === 429 ? '429 Too Many Requests' : '503 Service Unavailable', r.reason, user, r.retryAfterMs);
      }
      const cookie = sessionCookie(r.token, r.maxAgeS, d.https);
      res.cork(() => {
        if (isJson) res.writeStatus('200 OK').writeHeader('Set-Cookie', cookie).writeHeader('Content-Type', 'application/json').writeHeader('Cache-Control', 'no-store').end(JSON.stringify({ user: r.user }));
        else res.writeStatus('303 See Other').writeHeader('Set-Cookie', cookie).writeHeader('Location', '/').end();
      });
    });
  });

  app.post('/api/v1/logout', (res, req) => {
    if (!originAllowed(req.getHeader('origin'), req.getHeader('host'), d.origins)) return json(res, '403 Forbidden', { error: 'cross-origin request refused' });
    const token = sessionToken(req.getHeader('cookie'), d.https);
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    const done = (): void => {
      if (aborted) return;
      res.cork(() => res.writeStatus('204 No Content').writeHeader('Set-Cookie', clearedSessionCookie(d.https)).writeHeader('Cache-Control', 'no-store').end());
    };
    // The session is out of force at once; the answer waits until the sessions file no longer holds it.
    operators.signOut(token).then(done, () => { if (!aborted) json(res, '500 Internal Server Error', { error: 'sessions file not written; the session ended until the hub restarts' }); });
  });

  app.get('/api/v1/me', api(false, (res, _req, user) => json(res, '200 OK', { user })));

  // ---- data ------------------------------------------------------------------

  app.get('/api/v1/history', api(false, (res, req) => {
    // Copy out of req before any await; register onAborted first (uWS rules).
    const params = new URLSearchParams(req.getQuery() ?? '');
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    let q;
    try {
      q = parseHistoryQuery(params, d.now());
    } catch (err) {
      if (err instanceof BadRequest) return json(res, '400 Bad Request', { error: err.message });
      throw err;
    }
    const history = d.history;
    if (!history) return json(res, '503 Service Unavailable', { error: 'no history source configured' });
    history.query(q).then(
      (points) => { if (!aborted) json(res, '200 OK', { metric: q.metric, scope: q.scope, from: q.fromMs, to: q.toMs, step: q.stepMs, source: history.name, points }); },
      (err: unknown) => { if (!aborted) json(res, '502 Bad Gateway', { error: `history source failed: ${(err as Error).message}` }); },
    );
  }));

  app.get('/api/v1/alarms/rules', api(false, (res) => json(res, '200 OK', { rules: d.alarms.rules })));

  app.post('/api/v1/alarms/rules', api(true, (res) => {
    const aborted = { v: false };
    res.onAborted(() => { aborted.v = true; });
    void readBody(res, MAX_BODY, aborted).then(async (body) => {
      if (aborted.v) return;
      if (!body) return json(res, '413 Content Too Large', { error: 'request too large' });
      let rule;
      try {
        // Saved first, then in force: 201 means the rules file holds it.
        rule = await d.alarms.add(JSON.parse(body.toString('utf8')));
      } catch (err) {
        if (aborted.v) return;
        if (err instanceof RuleError || err instanceof SyntaxError) return json(res, '400 Bad Request', { error: err.message });
        return json(res, '500 Internal Server Error', { error: 'rule not saved' });
      }
      if (!aborted.v) json(res, '201 Created', { rule });
    });
  }));

  app.del('/api/v1/alarms/rules/:id', api(true, (res, req) => {
    const id = req.getParameter(0) ?? '';
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    d.alarms.remove(id).then(
      (removed) => {
        if (aborted) return;
        if (removed) res.cork(() => res.writeStatus('204 No Content').end());
        else json(res, '404 Not Found', { error: `no rule ${id}` });
      },
      () => { if (!aborted) json(res, '500 Internal Server Error', { error: 'rules file not written; the rule stays' }); },
    );
  }));

  app.get('/metrics', (res, req) => {
    if (!operatorOrToken(req)) {
      return void res.cork(() => res.writeStatus('401 Unauthorized').writeHeader('WWW-Authenticate', 'Bearer realm="metrics"')
        .writeHeader('Content-Type', 'text/plain').end('sign in, or send Authorization: Bearer HUB_METRICS_TOKEN\n'));
    }
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

  app.any('/api/*', (res, req) => {
    if (!who(req)) return json(res, '401 Unauthorized', { error: 'sign in first: POST /login' });
    json(res, '404 Not Found', { error: 'no such endpoint' });
  });

  // ---- the dashboard ---------------------------------------------------------

  app.get('/*', (res, req) => {
    const url = req.getUrl();
    const ifNoneMatch = req.getHeader('if-none-match');
    const isIndex = url === '/' || url === '/index.html';
    if (!who(req)) {
      // Decided by the URL alone, never by whether the file exists: pages
      // send the browser to sign in, everything else is 401.
      if (isIndex || url.endsWith('.html')) return void res.cork(() => res.writeStatus('303 See Other').writeHeader('Location', '/login').writeHeader('Cache-Control', 'no-store').end());
      return text(res, '401 Unauthorized', 'sign in first');
    }
    const f = d.dashboard.get(url);
    if (!f) {
      if (isIndex) return text(res, '503 Service Unavailable', notBuiltNotice(d.dashboard.dir));
      return text(res, '404 Not Found', 'not found');
    }
    if (ifNoneMatch === f.etag) return void res.cork(() => res.writeStatus('304 Not Modified').writeHeader('ETag', f.etag).end());
    res.cork(() => {
      res.writeStatus('200 OK').writeHeader('Content-Type', f.type).writeHeader('ETag', f.etag)
        .writeHeader('Cache-Control', f.immutable ? 'private, max-age=31536000, immutable' : 'no-cache')
        .writeHeader('X-Content-Type-Options', 'nosniff');
      if (f.type.startsWith('text/html')) res.writeHeader('X-Frame-Options', 'DENY').writeHeader('Content-Security-Policy', DASHBOARD_CSP);
      res.end(f.body);
    });
  });

  app.any('/*', (res, req) => {
    if (!who(req)) return text(res, '401 Unauthorized', 'sign in first');
    text(res, '404 Not Found', 'not found');
  });
}

/** The page shown at / when the dashboard was not built. */
export function notBuiltNotice(dir: string | null): string {
  return `dashboard not built (looked in ${dir ?? 'nowhere'}): run \`npm run build -w dashboard\``;
}
