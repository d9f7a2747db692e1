// http/: plain HTTP on the hub's port. Public: /healthz and /readyz (status
// words only) and the sign-in page. Everything else needs an operator
// session (cookie): the dashboard, /api/v1/*, /metrics and /api/v1/status
// (those two also take a bearer HUB_METRICS_TOKEN, for Prometheus and
// monitoring). Without a session the answer depends on the URL alone (pages
// go to /login, everything else is 401), so it says nothing about which
// files or endpoints exist. This file composes the areas:
//   ops-routes.ts        /healthz, /readyz, /metrics
//   sign-in-routes.ts    /login, /api/v1/logout, /api/v1/me
//   api-routes.ts        /api/v1/status, /api/v1/history, /api/v1/alarms/rules
//   device-routes.ts     /api/v1/devices (the registry: list, register, change, rotate, delete)
//   management-routes.ts /api/v1/devices/:id/config, /api/v1/config-groups, commands (desired configuration, tracked commands)
//   audit-routes.ts      /api/v1/audit (the audit trail of operator actions)
//   dashboard-routes.ts  the dashboard's files and the catch-alls
//   guards.ts, respond.ts, bodies.ts: who may, writing answers, request bodies
// Imports: auth/operators, live/alarms (types), core, http/*.
import type { AuditLog } from '../auth/audit.ts';
import type { DeviceAdmin } from '../auth/device-admin.ts';
import type { Operators } from '../auth/operators.ts';
import type { DeviceRegistry } from '../auth/registry.ts';
import type { LiveState } from '../live/state.ts';
import { attachAuditRoutes } from './audit-routes.ts';
import { attachDeviceRoutes } from './device-routes.ts';
import { attachManagementRoutes, type CommandsApi, type ConfigsApi } from './management-routes.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { Alarms } from '../live/alarms.ts';
import { attachDataApi } from './api-routes.ts';
import { attachDashboardRoutes } from './dashboard-routes.ts';
import { RequestGuards } from './guards.ts';
import type { HistorySource } from './history.ts';
import { attachOperationsRoutes, type HealthSource } from './ops-routes.ts';
import { attachSignInRoutes } from './sign-in-routes.ts';
import type { StaticFiles } from './static.ts';

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
  audit: AuditLog;
  /** The registry API (null: the hub's device auth is not a DeviceRegistry: no /api/v1/devices). */
  devices: { registry: DeviceRegistry; admin: DeviceAdmin; live: LiveState } | null;
  /** Desired configuration and commands (null or absent: no management routes; they also need `devices`). */
  management?: { configs: ConfigsApi; commands: CommandsApi } | null;
}

export function attachHttp(app: UwsTypes.TemplatedApp, deps: HttpDeps): void {
  const { metrics, health, operators, https } = deps;
  const guards = new RequestGuards({ operators, https, metricsToken: deps.metricsToken, origins: deps.origins });
  // Exact and parameter routes first, in any order (uWS matches them by
  // path); the wildcards of the dashboard routes last, in their order.
  attachOperationsRoutes(app, { health, metrics, guards });
  attachSignInRoutes(app, { operators, metrics, guards, https, audit: deps.audit });
  attachDataApi(app, { health, history: deps.history, alarms: deps.alarms, now: deps.now, guards, audit: deps.audit });
  if (deps.devices) attachDeviceRoutes(app, { ...deps.devices, guards, audit: deps.audit, https });
  if (deps.devices && deps.management) attachManagementRoutes(app, { ...deps.management, registry: deps.devices.registry, guards, audit: deps.audit });
  attachAuditRoutes(app, { audit: deps.audit, guards });
  attachDashboardRoutes(app, { dashboard: deps.dashboard, guards });
}
