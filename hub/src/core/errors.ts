// core/: every error the hub raises on purpose has a code (HUB_ERR_*), a message
// that says what to do, and keeps its cause. Imports: nothing.

export type HubErrorCode =
  | 'HUB_ERR_CONFIG'
  | 'HUB_ERR_UWS_FALLBACK'
  | 'HUB_ERR_UWS_LOAD'
  | 'HUB_ERR_LISTEN'
  | 'HUB_ERR_TLS'
  | 'HUB_ERR_REGISTRY'
  | 'HUB_ERR_STORE_CLOSED'
  | 'HUB_ERR_STORE'
  | 'HUB_ERR_STORE_FULL'
  | 'HUB_ERR_STORE_UNAVAILABLE'
  | 'HUB_ERR_NATS'
  | 'HUB_ERR_PASSWORD_HASH'
  | 'HUB_ERR_OPERATOR'
  | 'HUB_ERR_RULE'
  | 'HUB_ERR_BAD_REQUEST';

export class HubError extends Error {
  override readonly name: string = 'HubError';
  constructor(readonly code: HubErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The device registry (file or content) breaks a rule. */
export class RegistryError extends HubError {
  override readonly name = 'RegistryError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_REGISTRY', message, options);
  }
}

export class StoreError extends HubError {
  override readonly name = 'StoreError';
  constructor(code: 'HUB_ERR_STORE_CLOSED' | 'HUB_ERR_STORE' | 'HUB_ERR_STORE_FULL' | 'HUB_ERR_STORE_UNAVAILABLE', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The password-hashing thread failed or was closed while a check waited. */
export class PasswordHashError extends HubError {
  override readonly name = 'PasswordHashError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_PASSWORD_HASH', message, options);
  }
}

/** An operator account that cannot be: a bad name, a password too short or too long. */
export class OperatorError extends HubError {
  override readonly name = 'OperatorError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_OPERATOR', message, options);
  }
}

/** An alarm rule that breaks a rule of its own (the API answers 400), or one rule too many. */
export class RuleError extends HubError {
  override readonly name = 'RuleError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_RULE', message, options);
  }
}

/** A request the client has to change: HTTP routes answer 400 with the message. */
export class BadRequestError extends HubError {
  override readonly name = 'BadRequestError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('HUB_ERR_BAD_REQUEST', message, options);
  }
}

/**
 * One problem found by a schema, in the shape zod reports it (typed here by
 * shape, so core imports no package). `issues` holds what was wrong with a
 * record key (zod's `invalid_key`).
 */
export interface ValidationIssue {
  readonly path: readonly PropertyKey[];
  readonly message: string;
  readonly issues?: readonly ValidationIssue[];
}

/**
 * `devices.dev-1.tags.site`, `rules[2].op`, `devices["dev.1"]`: names that
 * could be misread (a dot, a space, a control character) are quoted as JSON.
 * '' for the value itself.
 */
export function issuePath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z0-9_-]+$/.test(part)) out += (out ? '.' : '') + part;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}

/**
 * The first problem as "field: problem", and how many more there are: one
 * problem to fix at a time reads better than a list, and the count says the
 * file needs more than one edit.
 */
export function describeIssues(issues: readonly ValidationIssue[]): string {
  const first = issues[0];
  if (!first) return 'invalid';
  // A bad record key: zod's own message is generic, the key schema's says what is wrong.
  const message = first.issues?.[0]?.message ?? first.message;
  const path = issuePath(first.path);
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return `${path ? `${path}: ` : ''}${message}${more}`;
}
