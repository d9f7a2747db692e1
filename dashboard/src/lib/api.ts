// HTTP calls to the hub's /api/v1 (same origin, session cookie sent by the
// browser; the JS never sees it; writes carry the page's Origin, which the
// hub checks). Owns the 401 -> /login rule and the JSON shapes of /me,
// /logout, the alarm rules, the device registry and the audit trail. Every
// non-2xx answer throws ApiError with the hub's {"error"} text.

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

export type Role = 'admin' | 'viewer';

export interface Me {
  user: string;
  /** What the hub lets this operator do: everything, or read only. */
  role: Role;
}

/** GET /api/v1/me -> the signed-in operator and their role (an unknown role counts as viewer). */
export async function fetchMe(): Promise<Me> {
  const body = await apiJson('/api/v1/me');
  if (!isRecord(body) || typeof body['user'] !== 'string') throw new ApiError(200, 'unexpected /api/v1/me answer');
  return { user: body['user'], role: body['role'] === 'admin' ? 'admin' : 'viewer' };
}

/** JSON body + content type for a write. */
function jsonBody(method: string, body?: unknown): RequestInit {
  return body === undefined ? { method } : { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
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

// ---- device registry (/api/v1/devices)

export const DEVICE_PRESENCE_FILTERS = ['online', 'stale', 'offline', 'flapping', 'disabled'] as const;
export type DevicePresenceFilter = (typeof DEVICE_PRESENCE_FILTERS)[number];
export type DeviceSort = 'id' | '-id' | 'lastSeen' | '-lastSeen' | 'created' | '-created';
/** The hub's page size limit for the device list. */
export const MAX_DEVICE_PAGE = 500;
/** The hub's limit of ids per bulk request. */
export const MAX_BULK_IDS = 1000;
/** The hub's limit of tag filters per list request. */
export const MAX_TAG_FILTERS = 8;

/** A registered device as the API shows it: registry data plus the hub's presence at that moment. */
export interface RegistryDevice {
  id: string;
  tags: Record<string, string>;
  disabled: boolean;
  /** ISO time, null for devices registered before the hub recorded it. */
  createdAt: string | null;
  presence: string;
  presenceSinceMs: number;
  presenceReason: string;
  lastSeenMs: number;
  firmware: string;
  address: string;
}

export interface DeviceListQuery {
  /** Part of the id (case-insensitive). */
  q?: string;
  /** Exact tag matches, all of them. */
  tags?: readonly (readonly [string, string])[];
  presence?: DevicePresenceFilter;
  sort?: DeviceSort;
  limit?: number;
  offset?: number;
}

export interface DevicePage {
  total: number;
  offset: number;
  limit: number;
  devices: RegistryDevice[];
}

/** How a device reaches the hub, with the token in it (shown once). */
export interface ConnectExample {
  url: string;
  command: string;
}

export interface NewToken {
  token: string;
  connect: ConnectExample;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const numOr0 = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

function toTags(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isRecord(v)) for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

function toRegistryDevice(v: unknown): RegistryDevice | null {
  if (!isRecord(v) || typeof v['id'] !== 'string') return null;
  return {
    id: v['id'],
    tags: toTags(v['tags']),
    disabled: v['disabled'] === true,
    createdAt: typeof v['createdAt'] === 'string' ? v['createdAt'] : null,
    presence: str(v['presence']) || 'offline',
    presenceSinceMs: numOr0(v['presenceSinceMs']),
    presenceReason: str(v['presenceReason']),
    lastSeenMs: numOr0(v['lastSeenMs']),
    firmware: str(v['firmware']),
    address: str(v['address']),
  };
}

function deviceOf(body: unknown, what: string): RegistryDevice {
  const d = isRecord(body) ? toRegistryDevice(body['device']) : null;
  if (!d) throw new ApiError(200, `unexpected answer to ${what}`);
  return d;
}

function newTokenOf(body: unknown, what: string): NewToken {
  const connect = isRecord(body) ? body['connect'] : null;
  if (!isRecord(body) || typeof body['token'] !== 'string' || !isRecord(connect)) throw new ApiError(200, `unexpected answer to ${what}`);
  return { token: body['token'], connect: { url: str(connect['url']), command: str(connect['command']) } };
}

const devicePath = (id: string): string => `/api/v1/devices/${encodeURIComponent(id)}`;

/** GET /api/v1/devices: one page of the registry, filtered and sorted by the hub. */
export async function listDevices(query: DeviceListQuery = {}, init: RequestInit = {}): Promise<DevicePage> {
  const p = new URLSearchParams();
  if (query.q) p.set('q', query.q);
  for (const [k, v] of query.tags ?? []) p.append('tag', `${k}:${v}`);
  if (query.presence) p.set('presence', query.presence);
  if (query.sort) p.set('sort', query.sort);
  if (query.limit !== undefined) p.set('limit', String(query.limit));
  if (query.offset !== undefined) p.set('offset', String(query.offset));
  const qs = p.toString();
  const body = await apiJson(`/api/v1/devices${qs ? `?${qs}` : ''}`, init);
  if (!isRecord(body) || !Array.isArray(body['devices'])) throw new ApiError(200, 'unexpected /api/v1/devices answer');
  return {
    total: numOr0(body['total']),
    offset: numOr0(body['offset']),
    limit: numOr0(body['limit']),
    devices: body['devices'].map(toRegistryDevice).filter((d): d is RegistryDevice => d !== null),
  };
}

/** Every device matching `query`, page by page (MAX_DEVICE_PAGE each); `max` bounds the pages read. */
export async function listAllDevices(query: Omit<DeviceListQuery, 'limit' | 'offset'> = {}, init: RequestInit = {}, max = 100_000): Promise<RegistryDevice[]> {
  const first = await listDevices({ ...query, limit: MAX_DEVICE_PAGE, offset: 0 }, init);
  const out = [...first.devices];
  const total = Math.min(first.total, max);
  const rest: Promise<DevicePage>[] = [];
  for (let offset = MAX_DEVICE_PAGE; offset < total; offset += MAX_DEVICE_PAGE) rest.push(listDevices({ ...query, limit: MAX_DEVICE_PAGE, offset }, init));
  for (const page of await Promise.all(rest)) out.push(...page.devices);
  return out;
}

/** GET /api/v1/devices/:id (404: ApiError). */
export async function getDevice(id: string): Promise<RegistryDevice> {
  return deviceOf(await apiJson(devicePath(id)), `GET device ${id}`);
}

/** POST /api/v1/devices: registers a device; its token is in this answer only. */
export async function createDevice(id: string, tags: Record<string, string>): Promise<NewToken & { device: RegistryDevice }> {
  const body = await apiJson('/api/v1/devices', jsonBody('POST', { id, tags }));
  return { device: deviceOf(body, 'a new device'), ...newTokenOf(body, 'a new device') };
}

/** PATCH /api/v1/devices/:id: replaces the tags and/or sets disabled (a disabled device is disconnected, 4008). */
export async function updateDevice(id: string, change: { tags?: Record<string, string>; disabled?: boolean }): Promise<RegistryDevice> {
  return deviceOf(await apiJson(devicePath(id), jsonBody('PATCH', change)), `a change of ${id}`);
}

/** POST /api/v1/devices/:id/rotate: a new token (shown once); the old one stops working and the session closes (4008). */
export async function rotateDeviceToken(id: string): Promise<NewToken & { sessionClosed: number }> {
  const body = await apiJson(`${devicePath(id)}/rotate`, jsonBody('POST'));
  return { ...newTokenOf(body, `rotating ${id}`), sessionClosed: isRecord(body) ? numOr0(body['sessionClosed']) : 0 };
}

/** DELETE /api/v1/devices/:id. */
export async function deleteDevice(id: string): Promise<void> {
  await apiJson(devicePath(id), jsonBody('DELETE'));
}

export type BulkAction = 'disable' | 'enable' | 'delete';

export interface BulkResult {
  /** Ids changed. */
  done: string[];
  /** Ids the registry did not know. */
  unknown: string[];
}

/** POST /api/v1/devices/bulk, MAX_BULK_IDS ids per request, one request after another. */
export async function bulkDevices(action: BulkAction, ids: readonly string[]): Promise<BulkResult> {
  const out: BulkResult = { done: [], unknown: [] };
  for (let i = 0; i < ids.length; i += MAX_BULK_IDS) {
    const body = await apiJson('/api/v1/devices/bulk', jsonBody('POST', { action, ids: ids.slice(i, i + MAX_BULK_IDS) }));
    if (!isRecord(body)) throw new ApiError(200, 'unexpected answer to a bulk change');
    const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
    out.done.push(...list(body['done']));
    out.unknown.push(...list(body['unknown']));
  }
  return out;
}

// ---- audit trail (/api/v1/audit, admins only)

export type AuditOutcome = 'ok' | 'failed' | 'refused';
export const AUDIT_OUTCOMES: readonly AuditOutcome[] = ['ok', 'failed', 'refused'];

export interface AuditEntry {
  id: number;
  /** ms since the epoch */
  time: number;
  /** '' for anonymous (a failed sign-in). */
  actor: string;
  address: string;
  action: string;
  target: string;
  outcome: AuditOutcome;
  detail: Record<string, string | number | boolean | null>;
  /** Cluster mode: the hub that served the action. */
  hub?: string;
}

export interface AuditQuery {
  actor?: string;
  /** Exact, or a prefix ending in '.' (device.). */
  action?: string;
  target?: string;
  outcome?: AuditOutcome;
  since?: number;
  until?: number;
  /** The `next` of the previous page. */
  before?: number;
  limit?: number;
}

export interface AuditPage {
  /** Newest first. */
  entries: AuditEntry[];
  /** `before` for the next (older) page; null: no more. */
  next: number | null;
}

function toAuditEntry(v: unknown): AuditEntry | null {
  if (!isRecord(v) || typeof v['id'] !== 'number' || typeof v['action'] !== 'string') return null;
  const outcome = v['outcome'];
  const detail: AuditEntry['detail'] = {};
  if (isRecord(v['detail'])) {
    for (const [k, d] of Object.entries(v['detail'])) {
      if (typeof d === 'string' || typeof d === 'number' || typeof d === 'boolean' || d === null) detail[k] = d;
    }
  }
  return {
    id: v['id'],
    time: numOr0(v['time']),
    actor: str(v['actor']),
    address: str(v['address']),
    action: v['action'],
    target: str(v['target']),
    outcome: outcome === 'failed' || outcome === 'refused' ? outcome : 'ok',
    detail,
  };
}

/** GET /api/v1/audit: one page, newest first (403 for viewers). */
export async function listAudit(query: AuditQuery = {}): Promise<AuditPage> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(query) as [string, string | number | undefined][]) {
    if (v !== undefined && v !== '') p.set(k, String(v));
  }
  const qs = p.toString();
  const body = await apiJson(`/api/v1/audit${qs ? `?${qs}` : ''}`);
  if (!isRecord(body) || !Array.isArray(body['entries'])) throw new ApiError(200, 'unexpected /api/v1/audit answer');
  const next = body['next'];
  return {
    entries: body['entries'].map(toAuditEntry).filter((e): e is AuditEntry => e !== null),
    next: typeof next === 'number' ? next : null,
  };
}

// ---- desired configuration and commands (/api/v1/devices/:id/config, /commands)

/** Settings, each optional (absent: not set). */
export interface ConfigValues {
  sampleIntervalMs?: number;
  batchIntervalMs?: number;
  custom?: Record<string, unknown>;
}

export interface DesiredConfigView {
  version: number;
  /** Effective values: group defaults, then the device's own. */
  values: ConfigValues;
  /** The device's own values. */
  own: ConfigValues;
  changedAt: number | null;
  by: string | null;
}

export interface ReportedConfigView {
  version: number;
  sampleIntervalMs: number;
  batchIntervalMs: number;
  custom: Record<string, unknown> | null;
  ok: boolean;
  error: string;
  at: number;
}

export interface DeviceConfigView {
  desired: DesiredConfigView | null;
  reported: ReportedConfigView | null;
  /** What is still to be sent to the device (null: nothing pending). */
  delta: (ConfigValues & { version: number }) | null;
  groups: string[];
}

/** Largest custom JSON a device takes (bytes, UTF-8). */
export const MAX_CUSTOM_JSON_BYTES = 4096;

function toConfigValues(v: unknown): ConfigValues {
  const out: ConfigValues = {};
  if (!isRecord(v)) return out;
  if (typeof v['sampleIntervalMs'] === 'number') out.sampleIntervalMs = v['sampleIntervalMs'];
  if (typeof v['batchIntervalMs'] === 'number') out.batchIntervalMs = v['batchIntervalMs'];
  if (isRecord(v['custom'])) out.custom = v['custom'];
  return out;
}

const numOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function toDesired(v: unknown): DesiredConfigView | null {
  if (!isRecord(v)) return null;
  return { version: numOr0(v['version']), values: toConfigValues(v['values']), own: toConfigValues(v['own']), changedAt: numOrNull(v['changedAt']), by: typeof v['by'] === 'string' ? v['by'] : null };
}

function toReported(v: unknown): ReportedConfigView | null {
  if (!isRecord(v)) return null;
  return {
    version: numOr0(v['version']),
    sampleIntervalMs: numOr0(v['sampleIntervalMs']),
    batchIntervalMs: numOr0(v['batchIntervalMs']),
    custom: isRecord(v['custom']) ? v['custom'] : null,
    ok: v['ok'] !== false,
    error: str(v['error']),
    at: numOr0(v['at']),
  };
}

/** GET /api/v1/devices/:id/config: desired, reported, what is pending. */
export async function getDeviceConfig(id: string, init: RequestInit = {}): Promise<DeviceConfigView> {
  const body = await apiJson(`${devicePath(id)}/config`, init);
  if (!isRecord(body)) throw new ApiError(200, 'unexpected config answer');
  const delta = isRecord(body['delta']) ? { ...toConfigValues(body['delta']), version: numOr0(body['delta']['version']) } : null;
  return {
    desired: toDesired(body['desired']),
    reported: toReported(body['reported']),
    delta,
    groups: Array.isArray(body['groups']) ? body['groups'].filter((g): g is string => typeof g === 'string') : [],
  };
}

/** PUT /api/v1/devices/:id/config (admins): replaces the device's own values ({} clears them). */
export async function setDeviceConfig(id: string, values: ConfigValues): Promise<DesiredConfigView> {
  const body = await apiJson(`${devicePath(id)}/config`, jsonBody('PUT', values));
  const d = isRecord(body) ? toDesired(body['desired']) : null;
  if (!d) throw new ApiError(200, `unexpected answer to a config change of ${id}`);
  return d;
}

export type CommandState = 'queued' | 'delivered' | 'succeeded' | 'failed' | 'timed_out' | 'expired' | 'refused';
/** Named commands the dashboard offers. */
export const COMMAND_NAMES = ['ping', 'reboot'] as const;

export interface DeviceCommand {
  id: string;
  device: string;
  name: string;
  args: Record<string, unknown> | null;
  state: CommandState;
  createdAt: number;
  deliveredAt: number | null;
  finishedAt: number | null;
  result: unknown;
  message: string;
  by: string;
}

const COMMAND_STATES: readonly CommandState[] = ['queued', 'delivered', 'succeeded', 'failed', 'timed_out', 'expired', 'refused'];
/** A state this dashboard does not know (a newer hub) shows as failed rather than as anything in progress. */
function commandState(v: unknown): CommandState {
  return COMMAND_STATES.find((s) => s === v) ?? 'failed';
}

function toCommand(v: unknown): DeviceCommand | null {
  if (!isRecord(v) || typeof v['id'] !== 'string') return null;
  return {
    id: v['id'],
    device: str(v['device']),
    name: str(v['name']),
    args: isRecord(v['args']) ? v['args'] : null,
    state: commandState(v['state']),
    createdAt: numOr0(v['createdAt']),
    deliveredAt: numOrNull(v['deliveredAt']),
    finishedAt: numOrNull(v['finishedAt']),
    result: v['result'] ?? null,
    message: str(v['message']),
    by: str(v['by']),
  };
}

/** POST /api/v1/devices/:id/commands (admins): 202 with the command's record. */
export async function sendDeviceCommand(id: string, name: string, args?: Record<string, unknown>): Promise<DeviceCommand> {
  const body = await apiJson(`${devicePath(id)}/commands`, jsonBody('POST', args ? { name, args } : { name }));
  const c = isRecord(body) ? toCommand(body['command']) : null;
  if (!c) throw new ApiError(202, `unexpected answer to a command for ${id}`);
  return c;
}

/** GET /api/v1/devices/:id/commands: newest first. */
export async function listDeviceCommands(id: string, init: RequestInit = {}): Promise<DeviceCommand[]> {
  const body = await apiJson(`${devicePath(id)}/commands`, init);
  const list = isRecord(body) && Array.isArray(body['commands']) ? body['commands'] : [];
  return list.map(toCommand).filter((c): c is DeviceCommand => c !== null);
}

/** A JSON object from a text field: '' is none; anything else must be an object of at most `maxBytes`. */
export function parseJsonObject(text: string, what: string, maxBytes = MAX_CUSTOM_JSON_BYTES): { ok: true; value: Record<string, unknown> | undefined } | { ok: false; error: string } {
  if (text.trim() === '') return { ok: true, value: undefined };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `${what} is not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (!isRecord(v)) return { ok: false, error: `${what} must be a JSON object` };
  const bytes = new TextEncoder().encode(JSON.stringify(v)).length;
  if (bytes > maxBytes) return { ok: false, error: `${what} is ${bytes} bytes; at most ${maxBytes}` };
  return { ok: true, value: v };
}
