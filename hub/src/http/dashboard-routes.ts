// http/: the built dashboard's files, and the catch-alls. Without a session
// the answer depends on the URL alone (pages go to /login, everything else
// is 401), so it says nothing about which files or endpoints exist. These
// are wildcards: uWS tries them in the order they were registered, after
// every exact route, so they are attached last and in this order.
// Imports: core (uws types), http/*.
import type { UwsTypes } from '../core/uws.ts';
import type { RequestGuards } from './guards.ts';
import { json, text } from './respond.ts';
import { DASHBOARD_CSP, type StaticFiles } from './static.ts';

export interface DashboardRouteDeps {
  dashboard: StaticFiles;
  guards: RequestGuards;
}

/** The page shown at / when the dashboard was not built. */
export function notBuiltNotice(dir: string | null): string {
  return `dashboard not built (looked in ${dir ?? 'nowhere'}): run \`npm run build -w dashboard\``;
}

export function attachDashboardRoutes(app: UwsTypes.TemplatedApp, deps: DashboardRouteDeps): void {
  const { dashboard, guards } = deps;

  app.any('/api/*', (res, req) => {
    if (!guards.operator(req)) return json(res, '401 Unauthorized', { error: 'sign in first: POST /login' });
    json(res, '404 Not Found', { error: 'no such endpoint' });
  });

  app.get('/*', (res, req) => {
    const url = req.getUrl();
    const ifNoneMatch = req.getHeader('if-none-match');
    const isIndex = url === '/' || url === '/index.html';
    if (!guards.operator(req)) {
      // Decided by the URL alone, never by whether the file exists: pages
      // send the browser to sign in, everything else is 401.
      if (isIndex || url.endsWith('.html')) return void res.cork(() => res.writeStatus('303 See Other').writeHeader('Location', '/login').writeHeader('Cache-Control', 'no-store').end());
      return text(res, '401 Unauthorized', 'sign in first');
    }
    const file = dashboard.get(url);
    if (!file) {
      if (isIndex) return text(res, '503 Service Unavailable', notBuiltNotice(dashboard.dir));
      return text(res, '404 Not Found', 'not found');
    }
    if (ifNoneMatch === file.etag) return void res.cork(() => res.writeStatus('304 Not Modified').writeHeader('ETag', file.etag).end());
    res.cork(() => {
      res.writeStatus('200 OK').writeHeader('Content-Type', file.type).writeHeader('ETag', file.etag)
        .writeHeader('Cache-Control', file.immutable ? 'private, max-age=31536000, immutable' : 'no-cache')
        .writeHeader('X-Content-Type-Options', 'nosniff');
      if (file.type.startsWith('text/html')) res.writeHeader('X-Frame-Options', 'DENY').writeHeader('Content-Security-Policy', DASHBOARD_CSP);
      res.end(file.body);
    });
  });

  app.any('/*', (res, req) => {
    if (!guards.operator(req)) return text(res, '401 Unauthorized', 'sign in first');
    text(res, '404 Not Found', 'not found');
  });
}
