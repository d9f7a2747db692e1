// http/: the request bodies the hub takes, validated with zod (why zod:
// auth/schemas.ts). A body that breaks its schema is 400 with a message
// that names the field. The alarm-rule body's schema is the rule's own
// (live/alarms.ts). Imports: core (errors), zod.
import { z } from 'zod';
import { BadRequestError, describeIssues } from '../core/errors.ts';

/** A body that is not JSON at all: 400, with the parser's reason. */
export function parseJsonBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new BadRequestError(`request body is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

const REQUIRED = 'required';
/** Absent is "required", like empty; present but not a string is the wrong type. */
const requiredString = () => z.string({ error: (issue) => (issue.input === undefined ? REQUIRED : 'must be a string') }).min(1, REQUIRED);

/**
 * POST /login, as JSON {"user", "password"} or as a form. Only presence is
 * checked here: a name no account can have, or a password too long, is a
 * failed sign-in (401, counted against the limits), not a bad request.
 */
const SignInBodySchema = z.object({
  user: requiredString(),
  password: requiredString(),
}, 'expected JSON {"user","password"} or a form');

export type SignInBody = z.infer<typeof SignInBodySchema>;

export type SignInBodyResult =
  | { ok: true; body: SignInBody }
  /** `user` is what the client sent, to fill the form in again. */
  | { ok: false; error: string; user: string };

export function parseSignInBody(body: Buffer, isJson: boolean): SignInBodyResult {
  let fields: unknown;
  if (isJson) {
    try {
      fields = JSON.parse(body.toString('utf8'));
    } catch {
      return { ok: false, error: 'expected JSON {"user","password"} or a form', user: '' };
    }
  } else {
    const form = new URLSearchParams(body.toString('utf8'));
    fields = { user: form.get('user') ?? '', password: form.get('password') ?? '' };
  }
  const parsed = SignInBodySchema.safeParse(fields);
  if (parsed.success) return { ok: true, body: parsed.data };
  const user = typeof fields === 'object' && fields !== null && typeof (fields as { user?: unknown }).user === 'string' ? (fields as { user: string }).user : '';
  return { ok: false, error: describeIssues(parsed.error.issues), user };
}
