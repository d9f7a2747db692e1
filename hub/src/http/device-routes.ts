// http/: the device registry API, /api/v1/devices. Reading is for every
// signed-in operator; every change is for an admin, from an allowed origin
// (guards.ts), and is durable before it is answered (auth/device-admin.ts).
// The token of a new device, or a rotated one, is in the answer once and
// nowhere else. Every change and refusal goes to the audit trail.
//   GET    /api/v1/devices?q=&tag=k:v&presence=&sort=&limit=&offset=
//   GET    /api/v1/devices/:id
//   POST   /api/v1/devices                 {"id", "tags"?}        201 + token
//   PATCH  /api/v1/devices/:id             {"tags"?, "disabled"?}
//   POST   /api/v1/devices/:id/rotate                              200 + token
//   DELETE /api/v1/devices/:id                                     204
//   POST   /api/v1/devices/bulk            {"action", "ids"}
// Imports: proto (Presence, DEVICE_PATH), auth (device-admin, registry,
// audit types), live/state (presence), core (errors), zod, http/*.
import { z } from 'zod';
import { DEVICE_PATH, Presence } from '@telemetry/proto';
import type { AuditLog } from '../auth/audit.ts';
import { DeviceChangeError, MAX_BULK_DEVICES, type DeviceAdmin } from '../auth/device-admin.ts';
import type { DeviceEntry, DeviceRegistry } from '../auth/registry.ts';
import { BadRequestError, describeIssues } from '../core/errors.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { LiveState } from '../live/state.ts';
import { parseJsonBody } from './bodies.ts';
import type { RequestGuards } from './guards.ts';
import { json, MAX_BODY_BYTES, readBody, watchAborted, type Req, type Res } from './respond.ts';

export interface DeviceRouteDeps {
  registry: DeviceRegistry;
  admin: DeviceAdmin;
  live: LiveState;
  guards: RequestGuards;
  audit: Pick<AuditLog, 'record'>;
  /** How devices reach this hub (wss:// when the hub or its proxy does TLS), for the connect example. */
  https: boolean;
}

const PRESENCE_NAMES: Record<number, string> = {
  [Presence.ONLINE]: 'online', [Presence.STALE]: 'stale', [Presence.OFFLINE]: 'offline', [Presence.FLAPPING]: 'flapping',
};
const PRESENCE_FILTERS = ['online', 'stale', 'offline', 'flapping', 'disabled'] as const;
const SORTS = ['id', '-id', 'lastSeen', '-lastSeen', 'created', '-created'] as const;
const MAX_PAGE = 500;
const MAX_TAG_FILTERS = 8;

/** A device as the API shows it. */
export interface DeviceView {
  id: string;
  tags: Record<string, string>;
  disabled: boolean;
  createdAt: string | null;
  presence: string;
  presenceSinceMs: number;
  presenceReason: string;
  lastSeenMs: number;
  firmware: string;
  address: string;
}

/** Pages up to this far (offset + limit) are selected, not sorted. */
const SELECT_UP_TO = 2000;

/**
 * The first `k` of 0..n-1 in `cmp` order (a strict total order), sorted. For
 * k up to SELECT_UP_TO: one pass keeping the k smallest in a max-heap
 * (O(n log k), and about O(n) when most elements lose to the heap's top);
 * beyond that, a full sort. `fromEnd`: visit n-1 first (where cmp breaks
 * ties by descending position, so equal keys lose to the heap at once).
 */
export function firstInOrder(n: number, k: number, cmp: (a: number, b: number) => number, fromEnd = false): number[] {
  k = Math.min(k, n);
  if (k > SELECT_UP_TO) return Array.from({ length: n }, (_, i) => i).sort(cmp).slice(0, k);
  const heap: number[] = [];
  const up = (i: number): void => {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (cmp(heap[i]!, heap[p]!) <= 0) return;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && cmp(heap[l]!, heap[m]!) > 0) m = l;
      if (r < heap.length && cmp(heap[r]!, heap[m]!) > 0) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };
  for (let j = 0; j < n && k > 0; j++) {
    const i = fromEnd ? n - 1 - j : j;
    if (heap.length < k) { heap.push(i); up(heap.length - 1); } else if (cmp(i, heap[0]!) < 0) { heap[0] = i; down(0); }
  }
  return heap.sort(cmp);
}

/** `createdAt` (ISO 8601) as a number that sorts the same; none sorts first, as the empty string did. */
function createdKey(createdAt: string | undefined): number {
  if (createdAt === undefined || createdAt === '') return -Infinity;
  const ms = Date.parse(createdAt);
  return Number.isNaN(ms) ? -Infinity : ms;
}

function view(id: string, entry: Readonly<DeviceEntry>, live: LiveState): DeviceView {
  const d = live.device(id);
  return {
    id, tags: entry.tags, disabled: entry.disabled === true, createdAt: entry.createdAt ?? null,
    presence: d ? PRESENCE_NAMES[d.presence] ?? 'offline' : 'offline',
    presenceSinceMs: d?.since ?? 0, presenceReason: d?.reason ?? '', lastSeenMs: d?.lastSeen ?? 0,
    firmware: d?.firmware ?? '', address: d?.address ?? '',
  };
}

const ListQuerySchema = z.object({
  q: z.string().max(128, 'at most 128 characters').default(''),
  tag: z.array(z.string().regex(/^[^:]{1,64}:.{0,256}$/s, 'tag filters are key:value')).max(MAX_TAG_FILTERS, `at most ${MAX_TAG_FILTERS} tag filters`).default([]),
  presence: z.enum(PRESENCE_FILTERS, `presence is one of ${PRESENCE_FILTERS.join(', ')}`).optional(),
  sort: z.enum(SORTS, `sort is one of ${SORTS.join(', ')}`).default('id'),
  limit: z.coerce.number('limit must be a number').int('limit must be a whole number').min(1, 'limit is at least 1').max(MAX_PAGE, `limit is at most ${MAX_PAGE}`).default(50),
  offset: z.coerce.number('offset must be a number').int('offset must be a whole number').min(0, 'offset is at least 0').max(10_000_000, 'offset is at most 10,000,000').default(0),
}).strict();

/** The list's query string: each parameter once, `tag` repeatable; unknown ones are 400. */
export function parseListQuery(query: string): z.infer<typeof ListQuerySchema> {
  const params = new URLSearchParams(query);
  const raw: Record<string, unknown> = {};
  const tags: string[] = [];
  for (const [k, v] of params) {
    if (k === 'tag') tags.push(v);
    else if (k in raw) throw new BadRequestError(`${k}: given more than once`);
    else raw[k] = v;
  }
  if (tags.length) raw.tag = tags;
  const parsed = ListQuerySchema.safeParse(raw);
  if (!parsed.success) throw new BadRequestError(describeIssues(parsed.error.issues));
  return parsed.data;
}

const Tags = z.record(z.string(), z.string('tag values must be strings'), 'tags must be an object of names to strings');
const CreateBodySchema = z.strictObject({ id: z.string('id must be a string').min(1, 'id is required'), tags: Tags.default({}) });
const UpdateBodySchema = z.strictObject({ tags: Tags.optional(), disabled: z.boolean('disabled must be true or false').optional() })
  .refine((b) => b.tags !== undefined || b.disabled !== undefined, 'nothing to change: give tags and/or disabled');
const BulkBodySchema = z.strictObject({
  action: z.enum(['disable', 'enable', 'delete'], 'action is one of disable, enable, delete'),
  ids: z.array(z.string('ids are strings').max(128, 'a device id is at most 128 characters'), 'ids must be a list').min(1, 'ids is empty').max(MAX_BULK_DEVICES, `at most ${MAX_BULK_DEVICES} ids`),
});

function parseBody<T>(schema: z.ZodType<T>, body: Buffer): T {
  const parsed = schema.safeParse(parseJsonBody(body));
  if (!parsed.success) throw new BadRequestError(describeIssues(parsed.error.issues));
  return parsed.data;
}

/** The answer for a failed change: the request's fault (400/404/409) or the store's (503). */
function failed(res: Res, err: unknown): void {
  if (err instanceof BadRequestError) return json(res, '400 Bad Request', { error: err.message });
  if (err instanceof DeviceChangeError) {
    const status = err.status === 404 ? '404 Not Found' : err.status === 409 ? '409 Conflict' : '400 Bad Request';
    return json(res, status, { error: err.message });
  }
  json(res, '503 Service Unavailable', { error: `registry not saved, nothing changed: ${(err as Error).message}` });
}

/** The :id of the path, percent-decoded ('' when malformed: no device has that id). */
function idParam(req: Req): string {
  try {
    return decodeURIComponent(req.getParameter(0) ?? '');
  } catch {
    return '';
  }
}

export function attachDeviceRoutes(app: UwsTypes.TemplatedApp, deps: DeviceRouteDeps): void {
  const { registry, admin, live, guards, audit } = deps;
  const address = (res: Res): string => Buffer.from(res.getRemoteAddressAsText()).toString();

  /**
   * A change: the body read (bounded) and parsed, `run` durable, the answer
   * written, and the audit entry recorded whatever the outcome.
   */
  function change<B>(
    res: Res, req: Req, user: string, action: string, target: string | ((body: B | undefined) => string), schema: z.ZodType<B> | null,
    run: (body: B) => Promise<{ status: string; body?: unknown; detail?: Record<string, string | number | boolean | null> }>,
  ): void {
    const from = address(res);
    const state = watchAborted(res);
    const go = async (raw: Buffer | null): Promise<void> => {
      let outcome: { status: string; body?: unknown; detail?: Record<string, string | number | boolean | null> };
      let body: B | undefined;
      const targetOf = (): string => (typeof target === 'string' ? target : target(body));
      try {
        const parsed = schema && raw ? parseBody(schema, raw) : (undefined as B);
        body = parsed;
        outcome = await run(parsed);
      } catch (err) {
        audit.record({ actor: user, address: from, action, target: targetOf(), outcome: 'failed', detail: { error: (err as Error).message.slice(0, 200) } });
        if (!state.aborted) failed(res, err);
        return;
      }
      audit.record({ actor: user, address: from, action, target: targetOf(), outcome: 'ok', detail: outcome.detail ?? {} });
      if (state.aborted) return;
      if (outcome.body === undefined) res.cork(() => res.writeStatus(outcome.status).writeHeader('Cache-Control', 'no-store').end());
      else json(res, outcome.status, outcome.body);
    };
    // Routes without a body do not wait for one.
    if (!schema) return void go(null);
    void readBody(res, MAX_BODY_BYTES, state).then((raw) => {
      if (state.aborted) return;
      if (!raw) return json(res, '413 Content Too Large', { error: 'request too large' });
      return go(raw);
    });
  }

  /** `host`: the request's Host header, read before any await (uWS rule). */
  const connectExample = (host: string, id: string, token: string): { url: string; command: string } => {
    const url = `${deps.https ? 'wss' : 'ws'}://${host || 'HUB_HOST'}${DEVICE_PATH}`;
    return { url, command: `SIM_TOKEN='${token}' npm run sim -- --url ${url}  # or any client: Authorization: Bearer <token> (device ${id})` };
  };

  app.get('/api/v1/devices', guards.api(false, (res, req) => {
    let q;
    try {
      q = parseListQuery(req.getQuery() ?? '');
    } catch (err) {
      return json(res, '400 Bad Request', { error: (err as Error).message });
    }
    const needle = q.q.toLowerCase();
    const tagFilters = q.tag.map((t) => { const i = t.indexOf(':'); return [t.slice(0, i), t.slice(i + 1)] as const; });
    // Cost, on the event loop: the ids are kept sorted by the registry (once
    // per change), the filters read entries in place, a page by lastSeen or
    // created is selected from numbers (firstInOrder), and only the page's
    // rows are built. Measured at 100,000 devices: docs/BENCHMARKS.md.
    const all = registry.sortedIds();
    const filtered = needle !== '' || tagFilters.length > 0 || q.presence !== undefined;
    let ids: readonly string[] = all;
    if (filtered) {
      const kept: string[] = [];
      for (const id of all) {
        if (needle && !id.toLowerCase().includes(needle)) continue;
        const entry = registry.peek(id);
        if (!entry) continue;
        if (tagFilters.some(([k, v]) => entry.tags[k] !== v)) continue;
        if (q.presence === 'disabled') { if (entry.disabled !== true) continue; }
        else if (q.presence !== undefined) {
          const d = live.device(id);
          if ((d ? PRESENCE_NAMES[d.presence] ?? 'offline' : 'offline') !== q.presence) continue;
        }
        kept.push(id);
      }
      ids = kept;
    }
    const desc = q.sort.startsWith('-');
    const key = q.sort.replace(/^-/, '');
    const total = ids.length;
    let page: readonly string[];
    if (key === 'id') {
      // Descending: the same page counted from the end, reversed.
      page = desc ? ids.slice(Math.max(0, total - q.offset - q.limit), Math.max(0, total - q.offset)).reverse() : ids.slice(q.offset, q.offset + q.limit);
    } else {
      // By the key, ties by id (`ids` is in id order, so by position); descending reverses both.
      const keys = new Float64Array(total);
      for (let i = 0; i < total; i++) {
        const id = ids[i]!;
        keys[i] = key === 'lastSeen' ? live.device(id)?.lastSeen ?? 0 : createdKey(registry.peek(id)?.createdAt);
      }
      const sign = desc ? -1 : 1;
      const cmp = (a: number, b: number): number => sign * (keys[a]! - keys[b]! || a - b);
      const order = firstInOrder(total, q.offset + q.limit, cmp, desc);
      page = order.slice(q.offset, q.offset + q.limit).map((i) => ids[i]!);
    }
    const devices: DeviceView[] = [];
    for (const id of page) {
      const entry = registry.peek(id);
      if (entry) devices.push(view(id, entry, live));
    }
    json(res, '200 OK', { total, offset: q.offset, limit: q.limit, devices });
  }));

  app.post('/api/v1/devices/bulk', guards.api(true, (res, req, user) => {
    change(res, req, user, 'device.bulk', '', BulkBodySchema, async (b) => {
      const r = await admin.bulk(b.action, b.ids);
      return { status: '200 OK', body: r, detail: { action: b.action, devices: r.done.length, unknown: r.unknown.length, ids: r.done.slice(0, 20).join(',') } };
    });
  }));

  app.get('/api/v1/devices/:id', guards.api(false, (res, req) => {
    const id = idParam(req);
    const entry = registry.get(id);
    if (!entry) return json(res, '404 Not Found', { error: `no device ${id.slice(0, 140)}` });
    json(res, '200 OK', { device: view(id, entry, live) });
  }));

  app.post('/api/v1/devices', guards.api(true, (res, req, user) => {
    const host = req.getHeader('host');
    change(res, req, user, 'device.create', (b) => b?.id ?? '', CreateBodySchema, async (b) => {
      const { token } = await admin.create(b.id, b.tags);
      return {
        status: '201 Created', detail: { id: b.id, tags: Object.keys(b.tags).length },
        body: { device: view(b.id, registry.get(b.id) ?? { tokenHash: '', tags: b.tags }, live), token, connect: connectExample(host, b.id, token) },
      };
    });
  }));

  app.patch('/api/v1/devices/:id', guards.api(true, (res, req, user) => {
    const id = idParam(req);
    change(res, req, user, 'device.update', id, UpdateBodySchema, async (b) => {
      const entry = await admin.update(id, b);
      const detail: Record<string, string | number | boolean | null> = {};
      if (b.disabled !== undefined) detail.disabled = b.disabled;
      if (b.tags !== undefined) detail.tags = Object.entries(b.tags).map(([k, v]) => `${k}=${v}`).join(',').slice(0, 200);
      return { status: '200 OK', body: { device: view(id, entry, live) }, detail };
    });
  }));

  app.post('/api/v1/devices/:id/rotate', guards.api(true, (res, req, user) => {
    const id = idParam(req);
    const host = req.getHeader('host');
    change(res, req, user, 'device.rotate', id, null, async () => {
      const { token } = await admin.rotate(id);
      return { status: '200 OK', body: { token, connect: connectExample(host, id, token), sessionClosed: 4008 } };
    });
  }));

  app.del('/api/v1/devices/:id', guards.api(true, (res, req, user) => {
    const id = idParam(req);
    change(res, req, user, 'device.delete', id, null, async () => {
      await admin.remove(id);
      return { status: '204 No Content' };
    });
  }));
}
