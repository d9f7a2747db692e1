// Hash routing: #/ overview, #/devices, #/device/<id>, #/alarms, #/audit. Owns the
// current route and which live topics each page needs.

export type Route =
  | { page: 'overview' }
  | { page: 'devices' }
  | { page: 'device'; id: string }
  | { page: 'alarms' }
  | { page: 'audit' }
  | { page: 'missing'; hash: string };

export function parseHash(hash: string): Route {
  const path = hash.replace(/^#/, '') || '/';
  if (path === '/' || path === '') return { page: 'overview' };
  if (path === '/devices') return { page: 'devices' };
  if (path === '/alarms') return { page: 'alarms' };
  if (path === '/audit') return { page: 'audit' };
  const m = /^\/device\/(.+)$/.exec(path);
  if (m) {
    try {
      return { page: 'device', id: decodeURIComponent(m[1]!) };
    } catch {
      return { page: 'missing', hash };
    }
  }
  return { page: 'missing', hash };
}

export function deviceHref(id: string): string {
  return `#/device/${encodeURIComponent(id)}`;
}

/** "fleet" always, so the header (health, alarms badge) stays live on every page. */
export function topicsFor(r: Route): string[] {
  switch (r.page) {
    case 'devices':
      return ['fleet', 'devices'];
    case 'device':
      return ['fleet', `device:${r.id}`];
    default:
      return ['fleet'];
  }
}

export class Router {
  route = $state<Route>(parseHash(location.hash));

  constructor() {
    addEventListener('hashchange', () => {
      this.route = parseHash(location.hash);
      scrollTo(0, 0);
    });
  }
}
