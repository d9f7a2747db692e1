// devices/: tracked commands (proto/README.md §12, Invoke). An operator
// sends a named command to a device, or to every device of a tag group; each
// one gets a record that moves queued -> delivered -> succeeded | failed |
// timed_out, or ends expired (still queued when its TTL ran out) or refused
// (offline with ttlMs 0, a device that does not list `invoke`, over a bound).
// A command for an offline device waits up to its TTL and goes out when the
// device connects (after Welcome), oldest first. One timer, once a second,
// times out delivered commands and expires queued ones.
//
// Where records are kept is a CommandShare: embedded, a file
// (devices/command-file.ts); cluster mode, a KV bucket every hub mirrors
// (cluster/shared-commands.ts); without one (tests), memory only. With a
// share a command is stored before it is sent or answered (submit), and so
// is what becomes of it (delivered, the result, refused); in a cluster the
// hub that holds the device's session delivers it, whichever hub took it,
// or when the device connects (to any hub). Timed out and expired are
// derived from the record's times (by every hub alike), so a hub that
// restarted or died with a command in flight leaves no record stuck. Wire
// ids restart with the process (§12). Bounded: at most
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
  /** The device's session here (null: none here). */
  features?(deviceId: string): { invoke: boolean } | null;
}

/** Where records are stored: devices/command-file.ts, cluster/shared-commands.ts. */
export interface CommandShare {
  /** Stores the record as it is now; resolves once stored. */
  put(record: CommandRecord, argsJson: string): Promise<void>;
  /** A session of the device lives on another hub. */
  onlineElsewhere(deviceId: string): boolean;
}

/** ttlMs 0 for a device whose session is on another hub: the time that hub has to deliver it. */
export const REMOTE_DELIVERY_MS = 5000;

/** A command refused for a reason of the request: 400 invalid, 429 over a bound. */
export class CommandError extends HubError {
  override readonly name = 'CommandError';
  constructor(message: string, readonly status: 400 | 429) { super('HUB_ERR_BAD_REQUEST', message); }
}

/** A command not stored (cluster mode: the bucket refused or NATS is unreachable): not sent; HTTP answers 503. */
export class CommandSaveError extends HubError {
  override readonly name = 'CommandSaveError';
  readonly status = 503;
  constructor(message: string, options?: { cause?: unknown }) { super('HUB_ERR_STORE', message, options); }
}

export interface CommandRequest {
  name: string;
  args?: unknown;
  timeoutMs?: number | undefined;
  ttlMs?: number | undefined;
  by: string;
}

const FINISHED: ReadonlySet<CommandState> = new Set(['succeeded', 'failed', 'timed_out', 'expired', 'refused']);
/** Finished by the clock, on every hub alike (never stored). */
const DERIVED: ReadonlySet<CommandState> = new Set(['timed_out', 'expired']);
const STATES: ReadonlySet<string> = new Set(['queued', 'delivered', ...FINISHED]);
const RANK: Record<CommandState, number> = { queued: 0, delivered: 1, succeeded: 2, failed: 2, timed_out: 2, expired: 2, refused: 2 };
const UNSUPPORTED = 'the device does not list "invoke" in Hello.features: it cannot run named commands';

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
  /** Where records are stored (embedded: a file; cluster mode: shared). */
  share?: CommandShare;
  /** A state change could not be stored (it holds in memory; a restart or the other hubs derive or miss it). */
  onShareError?: (err: unknown) => void;
}

export class CommandTracker {
  readonly #now: () => number;
  readonly #maxKept: number;
  readonly #onFinished: ((r: CommandRecord) => void) | undefined;
  readonly #share: CommandShare | null;
  readonly #onShareError: (err: unknown) => void;
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
  /** Cluster mode: records whose put is still in flight (not sent before they are stored). */
  readonly #unstored = new WeakSet<CommandRecord>();
  readonly #prefix = randomBytes(4).toString('hex');
  #serial = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(options: CommandTrackerOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#maxKept = options.maxKept ?? MAX_KEPT;
    this.#onFinished = options.onFinished;
    this.#share = options.share ?? null;
    this.#onShareError = options.onShareError ?? (() => undefined);
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
    this.#dispatch(r, c.argsJson);
    return r;
  }

  /** A new record: sent now if the device's session is here, else queued (or refused with ttlMs 0). */
  #dispatch(r: CommandRecord, argsJson: string): void {
    const sent = this.#link ? this.#link.sendInvoke(r.device, r.name, argsJson) : 'offline';
    if (sent === 'unsupported') this.#finish(r, 'refused', UNSUPPORTED);
    else if (sent === 'offline') {
      if (r.ttlMs === 0) this.#finish(r, 'refused', 'device offline and ttlMs is 0');
      else { this.#activate(r); return; }
    } else {
      this.#activate(r);
      this.#delivered(r, sent);
    }
    this.#publish(r);
  }

  /** Cluster mode: stores a state change (not waited for). */
  #publish(r: CommandRecord): void {
    if (!this.#share) return;
    this.#share.put(r, this.#argsJson.get(r) ?? '').catch((err: unknown) => this.#onShareError(err));
  }

  /**
   * What the API calls. Without a share: send()/sendMany(). With one: each
   * record is stored before it goes out or is answered; one that cannot be
   * stored is not sent (one device: CommandSaveError, 503; a group: that
   * device's record refused).
   */
  async submit(deviceId: string, request: CommandRequest): Promise<CommandRecord> {
    if (!this.#share) return this.send(deviceId, request);
    const out = await this.#submitShared(this.#share, [deviceId], request, true);
    return out[0]!;
  }

  async submitMany(deviceIds: readonly string[], request: CommandRequest): Promise<CommandRecord[]> {
    if (!this.#share) return this.sendMany(deviceIds, request);
    if (deviceIds.length > MAX_GROUP_DEVICES) throw new CommandError(`the group has ${deviceIds.length} devices; at most ${MAX_GROUP_DEVICES} per request`, 400);
    return this.#submitShared(this.#share, deviceIds, request, false);
  }

  async #submitShared(share: CommandShare, deviceIds: readonly string[], request: CommandRequest, one: boolean): Promise<CommandRecord[]> {
    const checked = checkRequest(request);
    const out: CommandRecord[] = [];
    const pending: CommandRecord[] = [];
    for (const id of deviceIds) {
      if (!this.#makeRoom()) throw new CommandError(`${this.#maxKept} commands are in progress; wait for them`, 429);
      if ((this.#active.get(id)?.length ?? 0) >= MAX_ACTIVE_PER_DEVICE) {
        if (one) throw new CommandError(`device ${id} has ${MAX_ACTIVE_PER_DEVICE} commands queued or in flight; wait for them`, 429);
        const r = this.#record(id, checked, request.by);
        this.#finish(r, 'refused', `${MAX_ACTIVE_PER_DEVICE} commands already queued or in flight for this device`);
        this.#publish(r);
        out.push(r);
        continue;
      }
      const c = { ...checked };
      if (c.ttlMs === 0 && !this.#link?.features?.(id) && share.onlineElsewhere(id)) c.ttlMs = REMOTE_DELIVERY_MS;
      const r = this.#record(id, c, request.by);
      this.#activate(r);
      this.#unstored.add(r);
      out.push(r);
      pending.push(r);
    }
    const stored = await Promise.allSettled(pending.map((r) => share.put(r, checked.argsJson)));
    for (const [i, s] of stored.entries()) {
      const r = pending[i]!;
      this.#unstored.delete(r);
      if (s.status === 'rejected') {
        if (one) { this.#forget(r); throw new CommandSaveError(`command not stored, not sent: ${(s.reason as Error).message}`, { cause: s.reason }); }
        this.#finish(r, 'refused', `not stored, not sent: ${String((s.reason as Error).message).slice(0, 120)}`);
        continue;
      }
      // The watch may have had it delivered meanwhile (this hub's own put, back from the bucket).
      if (r.state !== 'queued') continue;
      this.#unactivate(r);
      this.#dispatch(r, checked.argsJson);
    }
    return out;
  }

  /**
   * Cluster mode: a record as the bucket holds it (another hub's change, or
   * this hub's own coming back). A new record is mirrored and, if queued
   * for a device whose session is here, delivered; a known one moves
   * forward only (a state finished by the clock here yields to a stored
   * one). False: not valid, or no room.
   */
  adopt(raw: unknown): boolean {
    const v = parseRecord(raw);
    if (!v) return false;
    const { record: incoming, argsJson } = v;
    const local = this.#all.get(incoming.id);
    if (local) {
      if (local.device !== incoming.device || local.state === incoming.state) return true;
      const forward = DERIVED.has(local.state) ? incoming.state !== 'queued' : RANK[incoming.state] > RANK[local.state];
      if (!forward) return true;
      const wasActive = !FINISHED.has(local.state);
      Object.assign(local, incoming);
      if (FINISHED.has(local.state)) {
        if (wasActive) { this.#unactivate(local); this.#dropWire(local); }
      } else if (!wasActive) {
        this.#activate(local);
      }
      return true;
    }
    if (!this.#makeRoom()) return false;
    const r: CommandRecord = { ...incoming };
    this.#argsJson.set(r, argsJson);
    this.#all.set(r.id, r);
    let list = this.#byDevice.get(r.device);
    if (!list) this.#byDevice.set(r.device, list = []);
    list.push(r);
    if (FINISHED.has(r.state)) return true;
    this.#activate(r);
    const here = r.state === 'queued' ? this.#link?.features?.(r.device) : null;
    if (here) this.connected(r.device, here.invoke);
    return true;
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
    this.#dropWire(r);
    this.#unactivate(r);
    this.#onFinished?.(r);
  }

  #dropWire(r: CommandRecord): void {
    const wireId = this.#wireOf.get(r);
    if (wireId !== undefined) { this.#wire.delete(wireId); this.#wireOf.delete(r); }
  }

  #unactivate(r: CommandRecord): void {
    const list = this.#active.get(r.device);
    if (!list) return;
    const at = list.indexOf(r);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.#active.delete(r.device);
  }

  /** Takes a record out altogether (one that was never stored). */
  #forget(r: CommandRecord): void {
    this.#unactivate(r);
    this.#all.delete(r.id);
    const list = this.#byDevice.get(r.device);
    if (list) {
      const at = list.indexOf(r);
      if (at >= 0) list.splice(at, 1);
      if (list.length === 0) this.#byDevice.delete(r.device);
    }
  }

  /** Room for one more record: forgets the oldest finished one when full; false when none is finished. */
  #makeRoom(): boolean {
    if (this.#all.size < this.#maxKept) return true;
    for (const r of this.#all.values()) {
      if (!FINISHED.has(r.state)) continue;
      this.#forget(r);
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
      if (r.state !== 'queued' || this.#unstored.has(r)) continue;
      if (now - r.createdAt >= r.ttlMs) { this.#finish(r, 'expired', `not delivered within ttlMs ${r.ttlMs}`); continue; }
      if (!invoke) { this.#finish(r, 'refused', UNSUPPORTED); this.#publish(r); continue; }
      const sent = this.#link?.sendInvoke(deviceId, r.name, this.#argsJson.get(r) ?? '') ?? 'offline';
      if (sent === 'offline') return;
      if (sent === 'unsupported') this.#finish(r, 'refused', UNSUPPORTED);
      else this.#delivered(r, sent);
      this.#publish(r);
    }
  }

  /** A CommandResult for wire id `id` (ingest checked it was sent in the device's session). */
  result(deviceId: string, id: number, result: { ok: boolean; message: string; resultJson: string; invalid: string | null }): void {
    const r = this.#wire.get(id);
    if (!r || r.device !== deviceId || r.state !== 'delivered') return;
    const message = result.message.slice(0, 200);
    if (result.invalid) this.#finish(r, 'failed', `the device sent an invalid ${result.invalid}; its session was closed (4000)`);
    else {
      let parsed: unknown = null;
      let json = true;
      if (result.resultJson !== '') {
        try { parsed = JSON.parse(result.resultJson); } catch { json = false; }
      }
      if (json) this.#finish(r, result.ok ? 'succeeded' : 'failed', message, parsed);
      else this.#finish(r, 'failed', 'result_json is not JSON');
    }
    this.#publish(r);
  }

  /** Times out delivered commands and expires queued ones (once a second). */
  sweep(): void {
    const now = this.#now();
    for (const list of [...this.#active.values()]) {
      for (const r of [...list]) {
        if (this.#unstored.has(r)) continue; // its store decides first (then it is sent, queued or refused)
        if (r.state === 'delivered' && now - (r.deliveredAt ?? now) >= r.timeoutMs) this.#finish(r, 'timed_out', `no result within timeoutMs ${r.timeoutMs}`);
        else if (r.state === 'queued' && now - r.createdAt >= r.ttlMs) this.#finish(r, 'expired', `not delivered within ttlMs ${r.ttlMs}`);
      }
    }
  }

  get(id: string): CommandRecord | undefined { return this.#all.get(id); }

  /** Every kept record with its arguments, oldest first (what a store rewrites itself from). */
  *snapshot(): Generator<{ record: CommandRecord; argsJson: string }> {
    for (const r of this.#all.values()) yield { record: r, argsJson: this.#argsJson.get(r) ?? '' };
  }

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

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const ms = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const msOrNull = (v: unknown): v is number | null => v === null || ms(v);

/** A stored record ({...CommandRecord, argsJson}) as checked on the way in (cluster mode), or null. */
export function parseRecord(raw: unknown): { record: CommandRecord; argsJson: string } | null {
  if (!isObject(raw)) return null;
  const { id, device, name, args, state, createdAt, deliveredAt, finishedAt, result, message, by, timeoutMs, ttlMs, argsJson } = raw;
  if (typeof id !== 'string' || !/^[A-Za-z0-9-]{1,40}$/.test(id)) return null;
  if (typeof device !== 'string' || device.length === 0 || device.length > 256) return null;
  if (typeof name !== 'string' || !COMMAND_NAME_RE.test(name) || !isObject(args)) return null;
  if (typeof state !== 'string' || !STATES.has(state)) return null;
  if (!ms(createdAt) || !msOrNull(deliveredAt) || !msOrNull(finishedAt) || !ms(timeoutMs) || !ms(ttlMs)) return null;
  if (typeof message !== 'string' || message.length > 400 || typeof by !== 'string' || by.length > 200) return null;
  if (typeof argsJson !== 'string' || Buffer.byteLength(argsJson) > MAX_CONFIG_JSON_BYTES) return null;
  if (timeoutMs > MAX_TIMEOUT_MS || ttlMs > MAX_TTL_MS) return null;
  return {
    record: { id, device, name, args, state: state as CommandState, createdAt, deliveredAt, finishedAt, result: result ?? null, message, by, timeoutMs, ttlMs },
    argsJson,
  };
}
