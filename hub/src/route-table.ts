// Routes registered once and mounted on any number of uWS apps. A TLS reload
// serves new connections from a new SSLApp while open connections stay on the
// app they arrived on; both must run the same handlers over the same state
// (sessions, limits, operators, metrics), so routes are recorded here and
// replayed on each app instead of being attached twice.
import type { UwsTypes } from './core/uws.ts';

type TemplatedApp = UwsTypes.TemplatedApp;

const ROUTE_METHODS: ReadonlySet<string | symbol> = new Set(['get', 'post', 'options', 'del', 'patch', 'put', 'head', 'connect', 'trace', 'any', 'ws']);

export class RouteTable {
  readonly #routes: { method: string; args: unknown[] }[] = [];
  /**
   * Stands in for an app where routes are attached: records route
   * registrations, in order, and refuses anything else (listen, publish...),
   * which belongs to a real app.
   */
  readonly app: TemplatedApp;

  constructor() {
    const routes = this.#routes;
    const recorder: TemplatedApp = new Proxy({} as TemplatedApp, {
      get(_target, prop) {
        if (typeof prop === 'symbol') return undefined;
        if (!ROUTE_METHODS.has(prop)) throw new TypeError(`a RouteTable records routes only, not app.${prop}()`);
        return (...args: unknown[]) => {
          routes.push({ method: prop, args });
          return recorder;
        };
      },
    });
    this.app = recorder;
  }

  get size(): number { return this.#routes.length; }

  /** Registers every recorded route on `app`, in the order recorded. */
  mount(app: TemplatedApp): void {
    const target = app as unknown as Record<string, (...args: unknown[]) => unknown>;
    for (const { method, args } of this.#routes) target[method]!.apply(app, args);
  }
}
