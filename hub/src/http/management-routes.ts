// http/: device management, /api/v1/devices/:id/config, /api/v1/config-groups
// and commands (proto/README.md §12, §15: the operator side). Reading is for
// every signed-in operator; every change is for an admin from an allowed
// origin (guards.ts). A configuration change is durable before it is
// answered (503 and nothing changed when it cannot be saved); a command is
// answered 202 with its record. Every change and refusal goes to the audit
// trail ('config.set', 'config.group', 'command.send').
//   GET    /api/v1/devices/:id/config                 {desired, reported, delta, groups}
//   PUT    /api/v1/devices/:id/config                 {sampleIntervalMs?, batchIntervalMs?, custom?} -> {desired}
//   GET    /api/v1/config-groups                      {groups: [{key, values, changedAt, by}]}
//   PUT    /api/v1/config-groups/:key                 (key `site=lab`, URL-encoded) same body -> {group}
//   DELETE /api/v1/config-groups/:key                 204
//   POST   /api/v1/devices/:id/commands               {name, args?, timeoutMs?, ttlMs?} -> 202 {command}
//   POST   /api/v1/commands                           {tag: "key=value", name, args?, timeoutMs?, ttlMs?} -> 202 {commands}
//   GET    /api/v1/devices/:id/commands               {commands}, newest first
//   GET    /api/v1/commands/:id                       {command}
// The configuration and command stores are devices/ (configs.ts, commands.ts),
// taken here by shape. Imports: auth (registry, audit types), core (errors), zod, http/*.
import { z } from 'zod';
import type { AuditLog } from '../auth/audit.ts';
import type { DeviceRegistry } from '../auth/registry.ts';
import { BadRequestError, describeIssues } from '../core/errors.ts';
import type { UwsTypes } from '../core/uws.ts';
import { parseJsonBody } from './bodies.ts';
import type { RequestGuards } from './guards.ts';
import { json, MAX_BODY_BYTES, readBody, watchAborted, type Req, type Res } from './respond.ts';

/** Desired configuration as the routes use it (devices/configs.ts DeviceConfigs). */
export interface ConfigsApi {
  view(deviceId: string): unknown;
  setDesired(deviceId: string, values: unknown, by: string): Promise<unknown>;
  groups(): unknown[];
  setGroupDefaults(key: string, values: unknown, by: string): Promise<unknown>;
}

export interface CommandRequestBody {
  name: string;
  args?: Record<string, unknown> | undefined;
  timeoutMs?: number | undefined;
  ttlMs?: number | undefined;
  by: string;
}

/** Tracked commands as the routes use them (devices/commands.ts CommandTracker). */
export interface CommandsApi {
  /** Resolves once the command is stored (cluster mode) and sent or queued. */
  submit(deviceId: string, request: CommandRequestBody): Promise<unknown>;
  submitMany(deviceIds: readonly string[], request: CommandRequestBody): Promise<unknown[]>;
  get(id: string): unknown;
  forDevice(deviceId: string): unknown[];
}

export interface ManagementRouteDeps {
  registry: DeviceRegistry;
  configs: ConfigsApi;
  commands: CommandsApi;
  guards: RequestGuards;
  audit: Pick<AuditLog, 'record'>;
}

/** Devices one group command may reach. */
export const MAX_GROUP_COMMAND_DEVICES = 1000;

/** An unknown field is named; anything else about the object gets `expected`. */
function objectError(iss: { code?: string; keys?: unknown }, expected: string): string {
  return iss.code === 'unrecognized_keys' && Array.isArray(iss.keys) ? `unknown field ${iss.keys.map(String).join(', ')} (${expected})` : expected;
}

const interval = (name: string) => z.number(`${name} must be a number`).int(`${name} must be a whole number of ms`).min(100, `${name} is at least 100 ms`).max(3_600_000, `${name} is at most 3600000 ms`);
const ConfigBodySchema = z.object({
  sampleIntervalMs: interval('sampleIntervalMs').optional(),
  batchIntervalMs: interval('batchIntervalMs').optional(),
  custom: z.record(z.string(), z.unknown(), 'custom must be a JSON object').optional(),
}, { error: (iss) => objectError(iss, 'expected {"sampleIntervalMs"?, "batchIntervalMs"?, "custom"?}') }).strict();

const commandFields = {
  name: z.string('name must be a string').regex(/^[A-Za-z0-9_.-]{1,64}$/, 'name is 1..64 characters of [A-Za-z0-9_.-]'),
  args: z.record(z.string(), z.unknown(), 'args must be a JSON object').optional(),
  timeoutMs: z.number('timeoutMs must be a number').int('timeoutMs must be a whole number').min(1000, 'timeoutMs is at least 1000').max(600_000, 'timeoutMs is at most 600000').optional(),
  ttlMs: z.number('ttlMs must be a number').int('ttlMs must be a whole number').min(0, 'ttlMs is at least 0').max(86_400_000, 'ttlMs is at most 86400000').optional(),
};
const CommandBodySchema = z.object(commandFields, { error: (iss) => objectError(iss, 'expected {"name", "args"?, "timeoutMs"?, "ttlMs"?}') }).strict();
const GroupCommandBodySchema = z.object({ ...commandFields, tag: z.string('tag must be a string').regex(/^[^=\s][^=]{0,63}=.{0,256}$/s, 'tag is key=value, e.g. site=lab') }, { error: (iss) => objectError(iss, 'expected {"tag", "name", "args"?, "timeoutMs"?, "ttlMs"?}') }).strict();

type Detail = Record<string, string | number | boolean | null>;

function parseBody<T>(schema: z.ZodType<T>, body: Buffer): T {
  const parsed = schema.safeParse(parseJsonBody(body));
  if (!parsed.success) throw new BadRequestError(describeIssues(parsed.error.issues));
  return parsed.data;
}

class NotFound extends Error { readonly status = 404; }

const STATUS: Record<number, string> = {
  400: '400 Bad Request', 404: '404 Not Found', 409: '409 Conflict', 429: '429 Too Many Requests', 503: '503 Service Unavailable',
};

function failed(res: Res, err: unknown): void {
  if (err instanceof BadRequestError && !('status' in err)) return json(res, '400 Bad Request', { error: err.message });
  const status = (err as { status?: unknown }).status;
  if (typeof status === 'number' && STATUS[status]) return json(res, STATUS[status], { error: (err as Error).message });
  json(res, '503 Service Unavailable', { error: `not done: ${(err as Error).message}` });
}

function param(req: Req, i: number): string {
  try {
    return decodeURIComponent(req.getParameter(i) ?? '');
  } catch {
    return '';
  }
}

/** A JSON body without `by` for the audit trail's count of args. */
function commandDetail(b: { name: string; args?: Record<string, unknown> | undefined; timeoutMs?: number | undefined; ttlMs?: number | undefined }): Detail {
  return { name: b.name, args: b.args ? Object.keys(b.args).length : 0, timeoutMs: b.timeoutMs ?? null, ttlMs: b.ttlMs ?? null };
}

export function attachManagementRoutes(app: UwsTypes.TemplatedApp, deps: ManagementRouteDeps): void {
  const { registry, configs, commands, guards, audit } = deps;
  const address = (res: Res): string => Buffer.from(res.getRemoteAddressAsText()).toString();
  const known = (id: string): void => {
    if (!registry.get(id)) throw new NotFound(`no device ${id.slice(0, 140)}`);
  };

  /** A change: the body read (bounded) and parsed, `run` done, the answer written and the audit entry recorded whatever the outcome. */
  function change<B>(
    res: Res, user: string, action: string, target: string, schema: z.ZodType<B> | null,
    run: (body: B) => Promise<{ status: string; body?: unknown; detail?: Detail }>,
  ): void {
    const from = address(res);
    const state = watchAborted(res);
    const go = async (raw: Buffer | null): Promise<void> => {
      let outcome: { status: string; body?: unknown; detail?: Detail };
      try {
        const body = schema && raw ? parseBody(schema, raw) : (undefined as B);
        outcome = await run(body);
      } catch (err) {
        const status = (err as { status?: unknown }).status;
        const refused = err instanceof BadRequestError || status === 400 || status === 404 || status === 409 || status === 429;
        audit.record({ actor: user, address: from, action, target, outcome: refused ? 'refused' : 'failed', detail: { error: (err as Error).message.slice(0, 200) } });
        if (!state.aborted) failed(res, err);
        return;
      }
      audit.record({ actor: user, address: from, action, target, outcome: 'ok', detail: outcome.detail ?? {} });
      if (state.aborted) return;
      if (outcome.body === undefined) res.cork(() => res.writeStatus(outcome.status).writeHeader('Cache-Control', 'no-store').end());
      else json(res, outcome.status, outcome.body);
    };
    if (!schema) return void go(null);
    void readBody(res, MAX_BODY_BYTES, state).then((raw) => {
      if (state.aborted) return;
      if (!raw) {
        audit.record({ actor: user, address: from, action, target, outcome: 'refused', detail: { error: 'request too large' } });
        return json(res, '413 Content Too Large', { error: 'request too large' });
      }
      return go(raw);
    });
  }

  app.get('/api/v1/devices/:id/config', guards.api(false, (res, req) => {
    const id = param(req, 0);
    if (!registry.get(id)) return json(res, '404 Not Found', { error: `no device ${id.slice(0, 140)}` });
    json(res, '200 OK', configs.view(id));
  }));

  app.put('/api/v1/devices/:id/config', guards.api(true, (res, req, user) => {
    const id = param(req, 0);
    change(res, user, 'config.set', id, ConfigBodySchema, async (b) => {
      known(id);
      const desired = await configs.setDesired(id, b, user);
      return { status: '200 OK', body: { desired }, detail: { sampleIntervalMs: b.sampleIntervalMs ?? null, batchIntervalMs: b.batchIntervalMs ?? null, custom: b.custom ? Object.keys(b.custom).length : null } };
    });
  }));

  app.get('/api/v1/config-groups', guards.api(false, (res) => {
    json(res, '200 OK', { groups: configs.groups() });
  }));

  app.put('/api/v1/config-groups/:key', guards.api(true, (res, req, user) => {
    const key = param(req, 0);
    change(res, user, 'config.group', key, ConfigBodySchema, async (b) => {
      const group = await configs.setGroupDefaults(key, b, user);
      return { status: '200 OK', body: { group }, detail: { sampleIntervalMs: b.sampleIntervalMs ?? null, batchIntervalMs: b.batchIntervalMs ?? null, custom: b.custom ? Object.keys(b.custom).length : null } };
    });
  }));

  app.del('/api/v1/config-groups/:key', guards.api(true, (res, req, user) => {
    const key = param(req, 0);
    change(res, user, 'config.group', key, null, async () => {
      await configs.setGroupDefaults(key, null, user);
      return { status: '204 No Content', detail: { removed: true } };
    });
  }));

  app.post('/api/v1/devices/:id/commands', guards.api(true, (res, req, user) => {
    const id = param(req, 0);
    change(res, user, 'command.send', id, CommandBodySchema, async (b) => {
      known(id);
      const command = await commands.submit(id, { ...b, by: user });
      const state = (command as { state?: string; id?: string });
      return { status: '202 Accepted', body: { command }, detail: { ...commandDetail(b), id: state.id ?? null, state: state.state ?? null } };
    });
  }));

  app.post('/api/v1/commands', guards.api(true, (res, _req, user) => {
    change(res, user, 'command.send', '', GroupCommandBodySchema, async (b) => {
      const at = b.tag.indexOf('=');
      const k = b.tag.slice(0, at), v = b.tag.slice(at + 1);
      const ids: string[] = [];
      for (const [id, tags] of registry.entries()) {
        if (tags[k] !== v) continue;
        ids.push(id);
        if (ids.length > MAX_GROUP_COMMAND_DEVICES) throw new BadRequestError(`tag ${b.tag}: more than ${MAX_GROUP_COMMAND_DEVICES} devices; at most ${MAX_GROUP_COMMAND_DEVICES} per request`);
      }
      if (ids.length === 0) throw new NotFound(`no device has tag ${b.tag.slice(0, 140)}`);
      const { tag: _tag, ...request } = b;
      const sent = await commands.submitMany(ids, { ...request, by: user });
      return { status: '202 Accepted', body: { commands: sent }, detail: { ...commandDetail(b), tag: b.tag.slice(0, 200), devices: sent.length } };
    });
  }));

  app.get('/api/v1/devices/:id/commands', guards.api(false, (res, req) => {
    const id = param(req, 0);
    if (!registry.get(id)) return json(res, '404 Not Found', { error: `no device ${id.slice(0, 140)}` });
    json(res, '200 OK', { commands: commands.forDevice(id) });
  }));

  app.get('/api/v1/commands/:id', guards.api(false, (res, req) => {
    const id = param(req, 0);
    const command = commands.get(id);
    if (command === undefined) return json(res, '404 Not Found', { error: `no command ${id.slice(0, 80)}` });
    json(res, '200 OK', { command });
  }));
}
