// http/: GET /api/v1/audit, the audit trail of operator actions, newest
// first, with filters and paging (`before` = the `next` of the previous
// page). For admins only: it holds every operator's addresses and failed
// sign-ins. Imports: auth/audit, core (errors), zod, http/*.
import { z } from 'zod';
import type { AuditLog } from '../auth/audit.ts';
import { describeIssues } from '../core/errors.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { RequestGuards } from './guards.ts';
import { json, watchAborted } from './respond.ts';

export interface AuditRouteDeps {
  audit: AuditLog;
  guards: RequestGuards;
}

const Time = z.coerce.number('must be a number (ms since the epoch)').int('must be a whole number').min(0, 'must not be negative');
const AuditQuerySchema = z.object({
  actor: z.string().max(64, 'at most 64 characters').optional(),
  action: z.string().max(64, 'at most 64 characters').optional(),
  target: z.string().max(200, 'at most 200 characters').optional(),
  outcome: z.enum(['ok', 'failed', 'refused'], 'outcome is one of ok, failed, refused').optional(),
  since: Time.optional(),
  until: Time.optional(),
  before: Time.optional(),
  limit: z.coerce.number('limit must be a number').int('limit must be a whole number').min(1, 'limit is at least 1').max(1000, 'limit is at most 1000').default(100),
}).strict();

export function attachAuditRoutes(app: UwsTypes.TemplatedApp, deps: AuditRouteDeps): void {
  const { audit, guards } = deps;
  app.get('/api/v1/audit', guards.api(false, (res, req, user, role) => {
    if (role !== 'admin') return json(res, '403 Forbidden', { error: `operator ${user} is a ${role}: the audit trail is for admins` });
    const raw: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(req.getQuery() ?? '')) {
      if (k in raw) return json(res, '400 Bad Request', { error: `${k}: given more than once` });
      raw[k] = v;
    }
    const parsed = AuditQuerySchema.safeParse(raw);
    if (!parsed.success) return json(res, '400 Bad Request', { error: describeIssues(parsed.error.issues) });
    const state = watchAborted(res);
    audit.query(parsed.data).then(
      (page) => { if (!state.aborted) json(res, '200 OK', page); },
      (err: unknown) => { if (!state.aborted) json(res, '500 Internal Server Error', { error: `audit trail not read: ${(err as Error).message}` }); },
    );
  }));
}
