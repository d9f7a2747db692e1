// http/: who may have an answer. An operator session (the cookie), or for
// monitoring the bearer HUB_METRICS_TOKEN; writes must come from an allowed
// origin. Without a session the API answers 401 whatever the URL, so it does
// not tell which endpoints exist. Imports: auth/operators, core (origin),
// http/respond.
import { timingSafeEqual } from 'node:crypto';
import { sessionToken, type Operators, type Role } from '../auth/operators.ts';
import { originAllowed } from '../core/origin.ts';
import { json, type Req, type Res } from './respond.ts';

export interface GuardOptions {
  operators: Operators;
  /** Browsers reach the hub over https: only the __Host- cookie counts. */
  https: boolean;
  /** HUB_METRICS_TOKEN; undefined: only a session will do. */
  metricsToken: string | undefined;
  /** HUB_LIVE_ORIGINS (see core/origin.ts). */
  origins: string | undefined;
}

/** A route handler that runs for a signed-in operator only. */
export type OperatorHandler = (res: Res, req: Req, user: string, role: Role) => void;

function constantTimeEqual(given: string, expected: string): boolean {
  const givenBytes = Buffer.from(given), expectedBytes = Buffer.from(expected);
  return givenBytes.length === expectedBytes.length && timingSafeEqual(givenBytes, expectedBytes);
}

export class RequestGuards {
  readonly #options: GuardOptions;

  constructor(options: GuardOptions) {
    this.#options = options;
  }

  /** The signed-in operator, or null. */
  operator(req: Req): { user: string; hash: string; role: Role } | null {
    return this.#options.operators.check(sessionToken(req.getHeader('cookie'), this.#options.https));
  }

  /** An operator session, or the HUB_METRICS_TOKEN bearer (monitoring). */
  operatorOrToken(req: Req): boolean {
    const token = this.#options.metricsToken;
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.getHeader('authorization'))?.[1];
    return (token !== undefined && bearer !== undefined && constantTimeEqual(bearer, token)) || this.operator(req) !== null;
  }

  /** A browser write comes from the hub's own origin or one HUB_LIVE_ORIGINS lists (no cross-site requests). */
  originAllowed(req: Req): boolean {
    return originAllowed(req.getHeader('origin'), req.getHeader('host'), this.#options.origins);
  }

  /**
   * API routes: 401 JSON without a session; a write (every route that
   * changes something) 403 from another origin, and 403 for a viewer.
   */
  api(write: boolean, handler: OperatorHandler): (res: Res, req: Req) => void {
    return (res, req) => {
      const session = this.operator(req);
      if (!session) return json(res, '401 Unauthorized', { error: 'sign in first: POST /login' });
      if (write && !this.originAllowed(req)) return json(res, '403 Forbidden', { error: 'cross-origin request refused' });
      if (write && session.role !== 'admin') return json(res, '403 Forbidden', { error: `operator ${session.user} is a ${session.role}: read only (an admin can change this)` });
      handler(res, req, session.user, session.role);
    };
  }
}
