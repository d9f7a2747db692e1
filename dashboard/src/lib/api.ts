// HTTP calls to the hub's /api/v1 (same origin, session cookie sent by the
// browser; the JS never sees it). Owns the 401 -> /login rule and the JSON
// shapes of /me, /logout and the alarm rules endpoints.

/** Thrown after a 401 started the redirect to /login. */
export class Unauthorized extends Error {
  override readonly name = 'Unauthorized';
}

/** A non-2xx answer, with the hub's {"error"} message when it sent one. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export function goToLogin(): void {
  location.href = '/login';
}

/** fetch() against the hub; a 401 sends the browser to /login and throws Unauthorized. */
export async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  if (res.status === 401) {
    goToLogin();
    throw new Unauthorized('not signed in');
  }
  return res;
}

/** api() for JSON answers; non-2xx throws ApiError with the hub's message. */
export async function apiJson(path: string, init: RequestInit = {}): Promise<unknown> {
  const res = await api(path, { ...init, headers: { accept: 'application/json', ...init.headers } });
  const body: unknown = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const msg = isRecord(body) && typeof body['error'] === 'string' ? body['error'] : `HTTP ${res.status} ${res.statusText}`;
    throw new ApiError(res.status, msg);
  }
  return body;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** GET /api/v1/me -> the signed-in operator's name. */
export async function fetchMe(): Promise<string> {
  const body = await apiJson('/api/v1/me');
  if (!isRecord(body) || typeof body['user'] !== 'string') throw new ApiError(200, 'unexpected /api/v1/me answer');
  return body['user'];
}

/** POST /api/v1/logout, then /login whatever the answer. */
export async function signOut(): Promise<void> {
  try {
    await fetch('/api/v1/logout', { method: 'POST', credentials: 'same-origin' });
  } finally {
    goToLogin();
  }
}

// ---- alarm rules

export type RuleOp = '>' | '>=' | '<' | '<=';
export const RULE_OPS: readonly RuleOp[] = ['>', '>=', '<', '<='];

export interface AlarmRuleInput {
  name: string;
  metric: string;
  /** "key=value" or "" for the whole fleet. */
  group: string;
  op: RuleOp;
  threshold: number;
  forS: number;
}

export interface AlarmRule extends AlarmRuleInput {
  id: string;
}

function toRule(v: unknown): AlarmRule | null {
  if (!isRecord(v)) return null;
  const { id, name, metric, group, op, threshold, forS } = v;
  if (typeof id !== 'string' || typeof name !== 'string' || typeof metric !== 'string') return null;
  if (typeof op !== 'string' || !(RULE_OPS as readonly string[]).includes(op)) return null;
  if (typeof threshold !== 'number' || typeof forS !== 'number') return null;
  return { id, name, metric, group: typeof group === 'string' ? group : '', op: op as RuleOp, threshold, forS };
}

export async function listRules(): Promise<AlarmRule[]> {
  const body = await apiJson('/api/v1/alarms/rules');
  const rules = isRecord(body) && Array.isArray(body['rules']) ? body['rules'] : [];
  return rules.map(toRule).filter((r): r is AlarmRule => r !== null);
}

export async function addRule(rule: AlarmRuleInput): Promise<AlarmRule> {
  const body = await apiJson('/api/v1/alarms/rules', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(rule),
  });
  const r = isRecord(body) ? toRule(body['rule']) : null;
  if (!r) throw new ApiError(201, 'unexpected answer to a new rule');
  return r;
}

export async function deleteRule(id: string): Promise<void> {
  await apiJson(`/api/v1/alarms/rules/${encodeURIComponent(id)}`, { method: 'DELETE' });
}
