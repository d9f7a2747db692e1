// devices/: tracked commands (proto/README.md §12, Invoke). An operator
// sends a named command to a device, or to every device of a tag group; each
// one gets a record that moves queued -> delivered -> succeeded | failed |
// timed_out, or ends expired (still queued when its TTL ran out) or refused
// (offline with ttlMs 0, a device that does not list `invoke`, over a bound).
// A command for an offline device waits up to its TTL and goes out when the
// device connects (after Welcome), oldest first. One timer, once a second,
// times out delivered commands and expires queued ones.
//
// Memory only: records do not survive a hub restart, and a command still
// queued then is lost (wire ids restart too, §12). Bounded: at most
// MAX_ACTIVE_PER_DEVICE queued or in flight per device, MAX_KEPT records in
// all (the oldest finished are forgotten first; when none is finished, a new
// command is refused).
// Imports: proto (constants), core (errors).
import { randomBytes } from 'node:crypto';
import { COMMAND_NAME_RE, MAX_CONFIG_JSON_BYTES } from '@telemetry/proto';
import { HubError } from '../core/errors.ts';

export type CommandState = 'queued' | 'delivered' | 'succeeded' | 'failed' | 'timed_out' | 'expired' | 'refused';

export interface CommandRecord {
  id: string;
  device: string;
  name: string;
  args: Record<string, unknown>;
  state: CommandState;
  createdAt: number;
  deliveredAt: number | null;
  finishedAt: number | null;
  /** The device's result_json, parsed (null: none). */
  result: unknown;
  message: string;
  by: string;
  timeoutMs: number;
  ttlMs: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const MIN_TIMEOUT_MS = 1000;
export const MAX_TIMEOUT_MS = 10 * 60_000;
export const DEFAULT_TTL_MS = 5 * 60_000;
export const MAX_TTL_MS = 24 * 3_600_000;
/** Queued or in flight per device. */
export const MAX_ACTIVE_PER_DEVICE = 16;
/** Records kept in all. */
export const MAX_KEPT = 10_000;
/** Devices one group send may reach. */
export const MAX_GROUP_DEVICES = 1000;
export const SWEEP_MS = 1000;

/** How the tracker reaches devices (ingest/endpoint.ts DeviceEndpoint.sendInvoke). */
export interface DeviceLink {
  sendInvoke(deviceId: string, name: string, argsJson: string): number | 'offline' | 'unsupported';
}

/** A command refused for a reason of the request: 400 invalid, 429 over a bound. */
export class CommandError extends HubError {
  override readonly name = 'CommandError';
  constructor(message: string, readonly status: 400 | 429) { super('HUB_ERR_BAD_REQUEST', message); }
}

export interface CommandRequest {
  name: string;
  args?: unknown;
  timeoutMs?: number | undefined;
  ttlMs?: number | undefined;
  by: string;
}

const FINISHED: ReadonlySet<CommandState> = new Set(['succeeded', 'failed', 'timed_out', 'expired', 'refused']);

/** Checks a request; throws CommandError (400) naming the field. */
export function checkRequest(r: CommandRequest): { name: string; args: Record<string, unknown>; argsJson: string; timeoutMs: number; ttlMs: number } {
  if (typeof r.name !== 'string' || !COMMAND_NAME_RE.test(r.name)) throw new CommandError('name: 1..64 characters of [A-Za-z0-9_.-]', 400);
  const args = r.args ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new CommandError('args: must be a JSON object', 400);
  const argsJson = Object.keys(args).length ? JSON.stringify(args) : '';
  if (Buffer.byteLength(argsJson) > MAX_CONFIG_JSON_BYTES) throw new CommandError(`args: at most ${MAX_CONFIG_JSON_BYTES} bytes as JSON`, 400);
  const timeoutMs = r.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < MIN_TIMEOUT_MS || timeoutMs > MAX_TIMEOUT_MS) throw new CommandError(`timeoutMs: a whole number of ms, ${MIN_TIMEOUT_MS}..${MAX_TIMEOUT_MS}`, 400);
  const ttlMs = r.ttlMs ?? DEFAULT_TTL_MS;
  if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > MAX_TTL_MS) throw new CommandError(`ttlMs: a whole number of ms, 0..${MAX_TTL_MS}`, 400);
  return { name: r.name, args: args as Record<string, unknown>, argsJson, timeoutMs, ttlMs };
}

export interface CommandTrackerOptions {
  now?: () => number;
  maxKept?: number;
  /** Counts a record's final state (metrics). */
  onFinished?: (record: CommandRecord) => void;
}

export class CommandTracker {
  readonly #now: () => number;
  readonly #maxKept: number;
  readonly #onFinished: ((r: CommandRecord) => void) | undefined;
  #link: DeviceLink | null = null;
  /** Every record kept, oldest first (Map order). */
  readonly #all = new Map<string, CommandRecord>();
  /** Each device's kept records, oldest first. */
  readonly #byDevice = new Map<string, CommandRecord[]>();
  /** Queued and delivered records per device (at most MAX_ACTIVE_PER_DEVICE each). */
  readonly #active = new Map<string, CommandRecord[]>();
  /** Delivered records by wire id. */
  readonly #wire = new Map<number, CommandRecord>();
  /** Wire ids of delivered records, so a record finished otherwise drops its entry. */
  readonly #wireOf = new Map<CommandRecord, number>();
  readonly #argsJson = new WeakMap<CommandRecord, string>();
  readonly #prefix = randomBytes(3).toString('hex');
  #serial = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(options: CommandTrackerOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#maxKept = options.maxKept ?? MAX_KEPT;
    this.#onFinished = options.onFinished;
  }

  /** Devices are reached through `link` from now on; starts the sweep. */
  attach(link: DeviceLink): void {
    this.#link = link;
    if (!this.#timer) {
      this.#timer = setInterval(() => this.sweep(), SWEEP_MS);
      this.#timer.unref();
    }
  }

  /** One command to one device. Throws CommandError: 400 invalid, 429 over a bound. */
  send(deviceId: string, request: CommandRequest): CommandRecord {
    const checked = checkRequest(request);
    const active = this.#active.get(deviceId)?.length ?? 0;
    if (active >= MAX_ACTIVE_PER_DEVICE) throw new CommandError(`device ${deviceId} has ${MAX_ACTIVE_PER_DEVICE} commands queued or in flight; wait for them`, 429);
    if (!this.#makeRoom()) throw new CommandError(`${this.#maxKept} commands are in progress; wait for them`, 429);
    return this.#start(deviceId, checked, request.by);
  }

  /** The same command to each device (at most MAX_GROUP_DEVICES); a device over its bound gets a refused record. */
  sendMany(deviceIds: readonly string[], request: CommandRequest): CommandRecord[] {
    const checked = checkRequest(request);
    if (deviceIds.length > MAX_GROUP_DEVICES) throw new CommandError(`the group has ${deviceIds.length} devices; at most ${MAX_GROUP_DEVICES} per request`, 400);
    const out: CommandRecord[] = [];
    for (const id of deviceIds) {
      if (!this.#makeRoom()) throw new CommandError(`${this.#maxKept} commands are in progress; wait for them`, 429);
      if ((this.#active.get(id)?.length ?? 0) >= MAX_ACTIVE_PER_DEVICE) {
        const r = this.#record(id, checked, request.by);
        this.#finish(r, 'refused', `${MAX_ACTIVE_PER_DEVICE} commands already queued or in flight for this device`);
        out.push(r);
        continue;
      }
      out.push(this.#start(id, checked, request.by));
    }
    return out;
  }

  #record(deviceId: string, c: ReturnType<typeof checkRequest>, by: string): CommandRecord {
    const r: CommandRecord = {
      id: `${this.#prefix}-${(++this.#serial).toString(36)}`, device: deviceId, name: c.name, args: c.args, state: 'queued',
      createdAt: this.#now(), deliveredAt: null, finishedAt: null, result: null, message: '', by, timeoutMs: c.timeoutMs, ttlMs: c.ttlMs,
    };
    this.#argsJson.set(r, c.argsJson);
    this.#all.set(r.id, r);
    let list = this.#byDevice.get(deviceId);
    if (!list) this.#byDevice.set(deviceId, list = []);
    list.push(r);
    return r;
  }

  #start(deviceId: string, c: ReturnType<typeof checkRequest>, by: string): CommandRecord {
    const r = this.#record(deviceId, c, by);
    const sent = this.#link ? this.#link.sendInvoke(deviceId, r.name, c.argsJson) : 'offline';
    if (sent === 'unsupported') this.#finish(r, 'refused', 'the device does not list "invoke" in Hello.features: it cannot run named commands');
    else if (sent === 'offline') {
      if (r.ttlMs === 0) this.#finish(r, 'refused', 'device offline and ttlMs is 0');
      else this.#activate(r);
    } else {
      this.#activate(r);
      this.#delivered(r, sent);
    }
    return r;
  }

  #activate(r: CommandRecord): void {
    let list = this.#active.get(r.device);
    if (!list) this.#active.set(r.device, list = []);
    list.push(r);
  }

  #delivered(r: CommandRecord, wireId: number): void {
    r.state = 'delivered';
    r.deliveredAt = this.#now();
    this.#wire.set(wireId, r);
    this.#wireOf.set(r, wireId);
  }

  #finish(r: CommandRecord, state: CommandState, message: string, result: unknown = null): void {
    r.state = state;
    r.finishedAt = this.#now();
    r.message = message;
    r.result = result;
    const wireId = this.#wireOf.get(r);
    if (wireId !== undefined) { this.#wire.delete(wireId); this.#wireOf.delete(r); }
    const list = this.#active.get(r.device);
    if (list) {
      const at = list.indexOf(r);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0) this.#active.delete(r.device);
    }
    this.#onFinished?.(r);
  }

  /** Room for one more record: forgets the oldest finished one when full; false when none is finished. */
  #makeRoom(): boolean {
    if (this.#all.size < this.#maxKept) return true;
    for (const r of this.#all.values()) {
      if (!FINISHED.has(r.state)) continue;
      this.#all.delete(r.id);
      const list = this.#byDevice.get(r.device);
      if (list) {
        const at = list.indexOf(r);
        if (at >= 0) list.splice(at, 1);
        if (list.length === 0) this.#byDevice.delete(r.device);
      }
      return true;
    }
    return false;
  }

  /** A session of the device was welcomed: its queued commands go out, oldest first, still within TTL. */
  connected(deviceId: string, invoke: boolean): void {
    const list = this.#active.get(deviceId);
    if (!list) return;
    const now = this.#now();
    for (const r of [...list]) {
      if (r.state !== 'queued') continue;
      if (now - r.createdAt >= r.ttlMs) { this.#finish(r, 'expired', `not delivered within ttlMs ${r.ttlMs}`); continue; }
      if (!invoke) { this.#finish(r, 'refused', 'the device does not list "invoke" in Hello.features: it cannot run named commands'); continue; }
      const sent = this.#link?.sendInvoke(deviceId, r.name, this.#argsJson.get(r) ?? '') ?? 'offline';
      if (sent === 'offline') return;
      if (sent === 'unsupported') this.#finish(r, 'refused', 'the device does not list "invoke" in Hello.features: it cannot run named commands');
      else this.#delivered(r, sent);
    }
  }

  /** A CommandResult for wire id `id` (ingest checked it was sent in the device's session). */
  result(deviceId: string, id: number, result: { ok: boolean; message: string; resultJson: string; invalid: string | null }): void {
    const r = this.#wire.get(id);
    if (!r || r.device !== deviceId || r.state !== 'delivered') return;
    const message = result.message.slice(0, 200);
    if (result.invalid) return this.#finish(r, 'failed', `the device sent an invalid ${result.invalid}; its session was closed (4000)`);
    let parsed: unknown = null;
    if (result.resultJson !== '') {
      try {
        parsed = JSON.parse(result.resultJson);
      } catch {
        return this.#finish(r, 'failed', 'result_json is not JSON');
      }
    }
    this.#finish(r, result.ok ? 'succeeded' : 'failed', message, parsed);
  }

  /** Times out delivered commands and expires queued ones (once a second). */
  sweep(): void {
    const now = this.#now();
    for (const list of [...this.#active.values()]) {
      for (const r of [...list]) {
        if (r.state === 'delivered' && now - (r.deliveredAt ?? now) >= r.timeoutMs) this.#finish(r, 'timed_out', `no result within timeoutMs ${r.timeoutMs}`);
        else if (r.state === 'queued' && now - r.createdAt >= r.ttlMs) this.#finish(r, 'expired', `not delivered within ttlMs ${r.ttlMs}`);
      }
    }
  }

  get(id: string): CommandRecord | undefined { return this.#all.get(id); }

  /** The device's kept commands, newest first. */
  forDevice(deviceId: string, limit = 100): CommandRecord[] {
    const list = this.#byDevice.get(deviceId) ?? [];
    return list.slice(-limit).reverse();
  }

  get size(): number { return this.#all.size; }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
