// http/: signing in and out. GET /login (the page; public), POST /login
// (JSON or the page's form: a session cookie, or the page again with the
// reason), POST /api/v1/logout, GET /api/v1/me. Imports: auth/operators,
// core (metrics), http/*.
import { clearedSessionCookie, sessionCookie, sessionToken, type Operators } from '../auth/operators.ts';
import type { AuditLog } from '../auth/audit.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { UwsTypes } from '../core/uws.ts';
import { parseSignInBody } from './bodies.ts';
import type { RequestGuards } from './guards.ts';
import { loginPage } from './login.ts';
import { html, json, MAX_BODY_BYTES, readBody, retryAfter, watchAborted, type Header } from './respond.ts';

export interface SignInRouteDeps {
  operators: Operators;
  metrics: HubMetrics;
  guards: RequestGuards;
  /** Browsers reach the hub over https: __Host- cookie with Secure. */
  https: boolean;
  audit: Pick<AuditLog, 'record'>;
}

export function attachSignInRoutes(app: UwsTypes.TemplatedApp, deps: SignInRouteDeps): void {
  const { operators, metrics, guards, https, audit } = deps;

  app.get('/login', (res, req) => {
    if (guards.operator(req)) return void res.cork(() => res.writeStatus('303 See Other').writeHeader('Location', '/').end());
    html(res, '200 OK', loginPage());
  });

  app.post('/login', (res, req) => {
    // Copy out of req before any await; register onAborted first (uWS rules).
    const isJson = req.getHeader('content-type').startsWith('application/json');
    const originAllowed = guards.originAllowed(req);
    const address = Buffer.from(res.getRemoteAddressAsText()).toString();
    const state = watchAborted(res);
    /** JSON clients get {error}; the form gets the page again, with the name filled in. */
    const fail = (status: string, error: string, user = '', retryMs?: number): void => {
      if (state.aborted) return;
      const headers: Header[] = retryMs !== undefined ? [retryAfter(retryMs)] : [];
      if (isJson) json(res, status, { error }, headers);
      else html(res, status, loginPage({ error, user }), headers);
    };
    if (!originAllowed) return fail('403 Forbidden', 'cross-origin sign-in refused');
    void readBody(res, MAX_BODY_BYTES, state).then(async (body) => {
      if (!body) return fail('413 Content Too Large', 'request too large');
      const fields = parseSignInBody(body, isJson);
      if (!fields.ok) return fail('400 Bad Request', fields.error, fields.user);
      const { user, password } = fields.body;
      const pending = operators.signIn(user, password, address);
      metrics.passwordChecksInFlight.set(operators.checksInFlight);
      const result = await pending;
      metrics.passwordChecksInFlight.set(operators.checksInFlight);
      metrics.signIns.labels(result.ok ? 'ok' : result.result).inc();
      // Failed and refused sign-ins come from anyone: at most a few per address
      // and minute are kept, the rest counted (auth/audit.ts), so a flood
      // cannot push the real entries out of the trail.
      if (result.ok) audit.record({ actor: result.user, address, action: 'sign-in', target: '', outcome: 'ok', detail: {} });
      else audit.record({ actor: '', address, action: 'sign-in', target: '', outcome: result.status === 401 ? 'failed' : 'refused', detail: { user: user.slice(0, 64), result: result.result } }, `sign-in:${address}`);
      if (state.aborted) return;
      if (!result.ok) {
        if (result.status === 401) return fail('401 Unauthorized', result.reason, user);
        return fail(result.status === 429 ? '429 Too Many Requests' : '503 Service Unavailable', result.reason, user, result.retryAfterMs);
      }
      const cookie = sessionCookie(result.token, result.maxAgeS, https);
      res.cork(() => {
        if (isJson) res.writeStatus('200 OK').writeHeader('Set-Cookie', cookie).writeHeader('Content-Type', 'application/json').writeHeader('Cache-Control', 'no-store').end(JSON.stringify({ user: result.user }));
        else res.writeStatus('303 See Other').writeHeader('Set-Cookie', cookie).writeHeader('Location', '/').end();
      });
    });
  });

  app.post('/api/v1/logout', (res, req) => {
    if (!guards.originAllowed(req)) return json(res, '403 Forbidden', { error: 'cross-origin request refused' });
    const token = sessionToken(req.getHeader('cookie'), https);
    const who = guards.operator(req);
    if (who) audit.record({ actor: who.user, address: Buffer.from(res.getRemoteAddressAsText()).toString(), action: 'sign-out', target: '', outcome: 'ok', detail: {} });
    const state = watchAborted(res);
    const done = (): void => {
      if (state.aborted) return;
      res.cork(() => res.writeStatus('204 No Content').writeHeader('Set-Cookie', clearedSessionCookie(https)).writeHeader('Cache-Control', 'no-store').end());
    };
    // The session is out of force at once; the answer waits until the sessions file no longer holds it.
    operators.signOut(token).then(done, () => { if (!state.aborted) json(res, '500 Internal Server Error', { error: 'sessions file not written; the session ended until the hub restarts' }); });
  });

  app.get('/api/v1/me', guards.api(false, (res, _req, user, role) => json(res, '200 OK', { user, role })));
}
