// devices/: desired and reported device configuration (proto/README.md §15),
// the hub's side. Operators set a device's desired values, or defaults for
// a tag group (`site=lab`); a device's effective desired configuration is
// the defaults of every group it is in (by group key, in order), then its
// own values over them. Each device has one version counter, bumped on every
// change of its effective desired configuration (an operator change of the
// device, of one of its groups, or of its tags: noticed the next time the
// device's delta is asked for), always above any version the device
// reported. Devices report what they run with (ConfigReport); the delta is
// what differs.
//
// Durability: every operator change is committed to the persistence backend
// before it is in force (listeners told, deltas sent) or answered; a change
// that cannot be saved is refused and changes nothing. Reports are saved
// coalesced (at most one write a second), never waited for. The embedded
// backend is one JSON file (`<data>/device-config.json`), replaced
// atomically (core/atomic-file.ts); `file: null` keeps everything in memory.
// The cluster backend (cluster/shared-configs.ts: a KV bucket, one key per
// device and group, written compare-and-set) gets the keys that changed with
// each save. What other hubs change reaches this one through adoptDevice()
// and adoptGroup(); a save that raced another hub's write of the same key
// throws ConfigConflictError once the backend has adopted that write, and
// the change is planned again on the state now in force (at most
// MAX_CONFLICT_RETRIES times).
//
// Cost: nothing here runs per ingest message. Each device's persisted form
// is cached as its JSON text and rebuilt only when it changes, so a save is
// a join of strings, and its fsync runs on libuv's pool.
// Imports: proto (constants, types), core (atomic file, errors).
import { readFile } from 'node:fs/promises';
import { MAX_CONFIG_ERROR_CHARS, MAX_CONFIG_JSON_BYTES, type DesiredConfig } from '@telemetry/proto';
import { writeFileAtomic } from '../core/atomic-file.ts';
import { HubError } from '../core/errors.ts';

export const MIN_INTERVAL_MS = 100;
export const MAX_INTERVAL_MS = 3_600_000;
/** Devices with configuration state (desired, reported or a version) at most; more are refused. */
export const DEFAULT_MAX_CONFIG_DEVICES = 100_000;
/** Tag groups with defaults at most. */
export const MAX_CONFIG_GROUPS = 1000;
/** Reports are saved at most this often. */
export const REPORT_SAVE_MS = 1000;
/** Times an operator change is planned again after a save raced another hub's write. */
export const MAX_CONFLICT_RETRIES = 5;
/** protocol: versions are at most 2^53 - 1 (§15.1). */
const MAX_VERSION = Number.MAX_SAFE_INTEGER;
/** A group key is `tagKey=tagValue`. */
export const GROUP_KEY_RE = /^([^=\s][^=]{0,63})=(.{0,256})$/s;

/** Desired settings, each optional (absent: not set). */
export interface ConfigValues {
  sampleIntervalMs?: number;
  batchIntervalMs?: number;
  custom?: Record<string, unknown>;
}

/** Desired values as an operator set them. */
export interface DesiredEntry {
  values: ConfigValues;
  changedAt: number;
  by: string;
}

/** The device's latest ConfigReport. */
export interface ReportedConfig {
  version: number;
  sampleIntervalMs: number;
  batchIntervalMs: number;
  /** Parsed custom_json ("" is {}), or null when the device reported none. */
  custom: Record<string, unknown> | null;
  ok: boolean;
  error: string;
  at: number;
}

/** A ConfigReport as ingest hands it over (already validated: proto/README.md §5.16). */
export interface ReportInput {
  version: number;
  sampleIntervalMs: number;
  batchIntervalMs: number;
  customJson: string;
  ok: boolean;
  error: string;
}

export interface DesiredView {
  version: number;
  /** The effective values: group defaults, then the device's own. */
  values: ConfigValues;
  /** The device's own values (without group defaults). */
  own: ConfigValues;
  changedAt: number | null;
  by: string | null;
}

export interface ConfigView {
  desired: DesiredView | null;
  reported: ReportedConfig | null;
  delta: { version: number; sampleIntervalMs?: number; batchIntervalMs?: number; custom?: Record<string, unknown> } | null;
  groups: string[];
}

export interface GroupView { key: string; values: ConfigValues; changedAt: number; by: string }

/** A change refused for a reason of the request: 400 bad values, 409 over a bound. */
export class ConfigChangeError extends HubError {
  override readonly name = 'ConfigChangeError';
  constructor(message: string, readonly status: 400 | 409) { super('HUB_ERR_BAD_REQUEST', message); }
}

/** A change not saved (the backend failed): nothing changed; HTTP answers 503. */
export class ConfigSaveError extends HubError {
  override readonly name = 'ConfigSaveError';
  readonly status = 503;
  constructor(message: string, options?: { cause?: unknown }) { super('HUB_ERR_STORE', message, options); }
}

/**
 * A save raced a write of another hub (cluster mode): the backend has
 * adopted what that hub wrote (adoptDevice/adoptGroup) before throwing this,
 * so planning the change again sees it.
 */
export class ConfigConflictError extends HubError {
  override readonly name = 'ConfigConflictError';
  constructor(readonly keys: readonly string[]) { super('HUB_ERR_STORE', `device configuration changed meanwhile on another hub (${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', ...' : ''})`); }
}

/** What a backend can read of the state it saves. */
export interface PersistView {
  /** The whole state as the file holds it. */
  text(): string;
  /** One device's persisted entry as JSON text (undefined: none). */
  deviceJson(deviceId: string): string | undefined;
  groupJson(key: string): string | undefined;
}

/** Where the state is kept. save() resolves once the state (or at least the changed keys) is durable. */
export interface ConfigPersistence {
  save(view: PersistView, changed: { devices: readonly string[]; groups: readonly string[] }): Promise<void>;
}

/** The embedded backend: the whole state in one file, replaced atomically. */
export class FileConfigPersistence implements ConfigPersistence {
  constructor(readonly file: string) {}
  save(view: PersistView): Promise<void> { return writeFileAtomic(this.file, view.text()); }
}

const MEMORY: ConfigPersistence = { save: () => Promise.resolve() };

type ChangePlan = () => { devices: Map<string, DesiredEntry | null | undefined>; groups: Map<string, (DesiredEntry & { tag: [string, string] }) | null> };
interface QueuedChange { plan: ChangePlan; resolve: () => void; reject: (err: unknown) => void; conflicts: number }

interface DeviceRecord {
  version: number;
  desired: DesiredEntry | null;
  reported: ReportedConfig | null;
  /** The effective values `version` stands for, as canonical JSON. */
  effective: string;
  /** Cached persisted form; null when it has to be rebuilt. */
  json: string | null;
}

export interface DeviceConfigsOptions {
  /** Members of a tag group: the devices whose tag `key` is `value`. */
  membersOf: (key: string, value: string) => Iterable<string>;
  /** A device's tags now (undefined: unknown device, no groups). */
  tagsOf?: (deviceId: string) => Readonly<Record<string, string>> | undefined;
  now?: () => number;
  maxDevices?: number;
  persistence?: ConfigPersistence;
  /** A report save failed (retried with the next report or second). */
  onSaveError?: (err: unknown) => void;
}

export interface DeviceConfigsFile {
  version: 1;
  groups: Record<string, DesiredEntry>;
  devices: Record<string, { version: number; effective?: string; desired?: DesiredEntry; reported?: ReportedConfig }>;
}

const canonical = (v: ConfigValues): string => JSON.stringify([v.sampleIntervalMs ?? null, v.batchIntervalMs ?? null, v.custom ?? null]);
const EMPTY = canonical({});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON values equal, whatever the order of object keys. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => jsonEqual(x, bb[i]));
  }
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  const ob = b as Record<string, unknown>;
  return ka.every((k) => Object.hasOwn(ob, k) && jsonEqual((a as Record<string, unknown>)[k], ob[k]));
}

/** Checks desired values as an operator gives them; throws ConfigChangeError (400) naming the field. */
export function checkValues(input: unknown): ConfigValues {
  if (!isObject(input)) throw new ConfigChangeError('expected {"sampleIntervalMs"?, "batchIntervalMs"?, "custom"?}', 400);
  const out: ConfigValues = {};
  for (const key of Object.keys(input)) {
    if (key !== 'sampleIntervalMs' && key !== 'batchIntervalMs' && key !== 'custom') throw new ConfigChangeError(`${key}: unknown setting (sampleIntervalMs, batchIntervalMs, custom)`, 400);
  }
  for (const key of ['sampleIntervalMs', 'batchIntervalMs'] as const) {
    const v = input[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_INTERVAL_MS || v > MAX_INTERVAL_MS) {
      throw new ConfigChangeError(`${key}: must be a whole number of ms, ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}`, 400);
    }
    out[key] = v;
  }
  if (input.custom !== undefined) {
    if (!isObject(input.custom)) throw new ConfigChangeError('custom: must be a JSON object', 400);
    const bytes = Buffer.byteLength(JSON.stringify(input.custom));
    if (bytes > MAX_CONFIG_JSON_BYTES) throw new ConfigChangeError(`custom: ${bytes} bytes as JSON; at most ${MAX_CONFIG_JSON_BYTES}`, 400);
    out.custom = input.custom;
  }
  return out;
}

/** `site=lab` as [tag key, tag value]; throws ConfigChangeError (400). */
export function parseGroupKey(key: string): [string, string] {
  const m = GROUP_KEY_RE.exec(key);
  if (!m) throw new ConfigChangeError(`group ${JSON.stringify(key.slice(0, 80))}: expected tagKey=tagValue (e.g. site=lab)`, 400);
  return [m[1]!, m[2]!];
}

export class DeviceConfigs {
  readonly #o: DeviceConfigsOptions;
  readonly #now: () => number;
  readonly #maxDevices: number;
  readonly #persistence: ConfigPersistence;
  readonly #devices = new Map<string, DeviceRecord>();
  /** Groups with defaults, by key; #groupOrder is the keys sorted. */
  readonly #groups = new Map<string, DesiredEntry & { tag: [string, string] }>();
  #groupOrder: string[] = [];
  readonly #listeners = new Set<(deviceIds: readonly string[]) => void>();
  /** Saves, one after another; each builds its content when it starts. */
  #tail: Promise<void> = Promise.resolve();
  /** Operator changes, one after another. */
  #changes: Promise<unknown> = Promise.resolve();
  /** Changes waiting for the save in flight (group commit, #drain). */
  readonly #queued: QueuedChange[] = [];
  #draining = false;
  #reportsDirty = new Set<string>();
  #reportTimer: NodeJS.Timeout | null = null;
  #lastReportSave = 0;
  #reportConflicts = 0;
  #closed = false;
  /** Cluster mode: when each device and group was last adopted (a stamp of #stamp), so a save in flight does not put an older state over it. */
  #stamp = 0;
  readonly #adoptedDevices = new Map<string, number>();
  readonly #adoptedGroups = new Map<string, number>();

  constructor(options: DeviceConfigsOptions, initial?: DeviceConfigsFile) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#maxDevices = options.maxDevices ?? DEFAULT_MAX_CONFIG_DEVICES;
    this.#persistence = options.persistence ?? MEMORY;
    if (initial) this.#load(initial);
  }

  /** Loads `file` (none yet: empty); a file that cannot be read or is not valid is an error naming it. */
  static async open(options: Omit<DeviceConfigsOptions, 'persistence'> & { file: string | null }): Promise<DeviceConfigs> {
    if (options.file === null) return new DeviceConfigs(options);
    const file = options.file;
    let text: string | null = null;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new HubError('HUB_ERR_CONFIG', `device configuration ${file}: cannot read: ${(err as Error).message}`, { cause: err });
    }
    let initial: DeviceConfigsFile | undefined;
    if (text !== null) {
      try {
        initial = parseFile(JSON.parse(text));
      } catch (err) {
        throw new HubError('HUB_ERR_CONFIG', `device configuration ${file} is corrupt (${(err as Error).message}); fix it or move it away to start with none`, { cause: err });
      }
    }
    return new DeviceConfigs({ ...options, persistence: new FileConfigPersistence(file) }, initial);
  }

  #load(file: DeviceConfigsFile): void {
    for (const [key, g] of Object.entries(file.groups)) this.#groups.set(key, { ...g, tag: parseGroupKey(key) });
    this.#groupOrder = [...this.#groups.keys()].sort();
    for (const [id, d] of Object.entries(file.devices)) {
      this.#devices.set(id, { version: d.version, desired: d.desired ?? null, reported: d.reported ?? null, effective: d.effective ?? EMPTY, json: null });
    }
  }

  /** Told the ids whose effective desired configuration changed (once in force). */
  onChange(listener: (deviceIds: readonly string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get size(): number { return this.#devices.size; }

  /** The groups a device is in that have defaults, in the order they apply. */
  groupsOf(deviceId: string, tags = this.#o.tagsOf?.(deviceId)): string[] {
    if (!tags || this.#groups.size === 0) return [];
    return this.#groupOrder.filter((key) => { const tag = this.#groups.get(key)?.tag; return tag !== undefined && tags[tag[0]] === tag[1]; });
  }

  #effective(own: ConfigValues | undefined, groups: readonly string[]): ConfigValues {
    const out: ConfigValues = {};
    for (const key of groups) Object.assign(out, this.#groups.get(key)?.values);
    if (own) Object.assign(out, own);
    return out;
  }

  /**
   * The device's record with its version brought up to date: a device whose
   * groups changed since (its tags did) gets a new version. Saved with the
   * reports (coalesced): nothing an operator must wait for.
   */
  #current(deviceId: string, tags?: Readonly<Record<string, string>>): { rec: DeviceRecord | undefined; values: ConfigValues; groups: string[] } {
    const groups = this.groupsOf(deviceId, tags ?? this.#o.tagsOf?.(deviceId));
    let rec = this.#devices.get(deviceId);
    const values = this.#effective(rec?.desired?.values, groups);
    const effective = canonical(values);
    if ((rec?.effective ?? EMPTY) !== effective && (rec || this.#devices.size < this.#maxDevices)) {
      rec ??= this.#record(deviceId);
      rec.version = this.#nextVersion(rec);
      rec.effective = effective;
      rec.json = null;
      this.#reportChanged(deviceId);
    }
    return { rec, values, groups };
  }

  #record(deviceId: string): DeviceRecord {
    const rec: DeviceRecord = { version: 0, desired: null, reported: null, effective: EMPTY, json: null };
    this.#devices.set(deviceId, rec);
    return rec;
  }

  #nextVersion(rec: DeviceRecord | undefined): number {
    return Math.min(MAX_VERSION, Math.max(rec?.version ?? 0, rec?.reported?.version ?? 0) + 1);
  }

  /** What GET /api/v1/devices/:id/config shows. */
  view(deviceId: string): ConfigView {
    const { rec, values, groups } = this.#current(deviceId);
    const own = rec?.desired?.values ?? {};
    let changedAt: number | null = rec?.desired?.changedAt ?? null, by: string | null = rec?.desired?.by ?? null;
    for (const key of groups) {
      const g = this.#groups.get(key);
      if (g && (changedAt === null || g.changedAt > changedAt)) { changedAt = g.changedAt; by = g.by; }
    }
    const desired = rec && (rec.version > 0 || rec.desired) ? { version: rec.version, values, own, changedAt, by } : null;
    const d = this.#delta(rec, values);
    let delta: ConfigView['delta'] = null;
    if (d) {
      const out: NonNullable<ConfigView['delta']> = { version: d.version ?? 0 };
      if (typeof d.sampleIntervalMs === 'number') out.sampleIntervalMs = d.sampleIntervalMs;
      if (typeof d.batchIntervalMs === 'number') out.batchIntervalMs = d.batchIntervalMs;
      if (typeof d.customJson === 'string') out.custom = JSON.parse(d.customJson) as Record<string, unknown>;
      delta = out;
    }
    return { desired, reported: rec?.reported ?? null, delta, groups };
  }

  /** The device's latest report (null: none). */
  reported(deviceId: string): ReportedConfig | null {
    return this.#devices.get(deviceId)?.reported ?? null;
  }

  /**
   * protocol: the DesiredConfig to send (§15.2): `version` and each set
   * setting whose value differs from the latest report; null when the device
   * reported this version (or a later one) already.
   */
  delta(deviceId: string, tags?: Readonly<Record<string, string>>): DesiredConfig | null {
    const { rec, values } = this.#current(deviceId, tags);
    return this.#delta(rec, values);
  }

  #delta(rec: DeviceRecord | undefined, values: ConfigValues): DesiredConfig | null {
    if (!rec || rec.version === 0) return null;
    const r = rec.reported;
    if (r && r.version >= rec.version) return null;
    const out: DesiredConfig = { version: rec.version };
    if (values.sampleIntervalMs !== undefined && values.sampleIntervalMs !== r?.sampleIntervalMs) out.sampleIntervalMs = values.sampleIntervalMs;
    if (values.batchIntervalMs !== undefined && values.batchIntervalMs !== r?.batchIntervalMs) out.batchIntervalMs = values.batchIntervalMs;
    if (values.custom !== undefined && !(r && jsonEqual(values.custom, r.custom ?? {}))) out.customJson = JSON.stringify(values.custom);
    return out;
  }

  /** A valid ConfigReport: stored (saved within a second); false when over the device bound (not stored). */
  report(deviceId: string, report: ReportInput): boolean {
    let rec = this.#devices.get(deviceId);
    if (!rec) {
      if (this.#devices.size >= this.#maxDevices) return false;
      rec = this.#record(deviceId);
    }
    rec.reported = {
      version: report.version, sampleIntervalMs: report.sampleIntervalMs, batchIntervalMs: report.batchIntervalMs,
      custom: report.customJson === '' ? null : JSON.parse(report.customJson) as Record<string, unknown>,
      ok: report.ok, error: report.error.slice(0, MAX_CONFIG_ERROR_CHARS * 2), at: this.#now(),
    };
    rec.json = null;
    this.#reportChanged(deviceId);
    return true;
  }

  /**
   * Replaces the device's own desired values ({} clears them). Resolves once
   * saved and in force; a save that fails rejects with ConfigSaveError and
   * changes nothing.
   */
  setDesired(deviceId: string, input: unknown, by: string): Promise<DesiredView> {
    const values = checkValues(input);
    return this.#change(() => {
      const existing = this.#devices.get(deviceId);
      if (!existing && this.#devices.size >= this.#maxDevices) throw new ConfigChangeError(`configuration is kept for at most ${this.#maxDevices} devices`, 409);
      const desired: DesiredEntry | null = Object.keys(values).length ? { values, changedAt: this.#now(), by } : null;
      return { devices: new Map([[deviceId, desired]]), groups: new Map() };
    }).then(() => {
      const { desired } = this.view(deviceId);
      return desired ?? { version: 0, values: {}, own: {}, changedAt: null, by: null };
    });
  }

  /** Clears the device's own desired values (group defaults still apply). */
  clear(deviceId: string, by: string): Promise<DesiredView> {
    return this.setDesired(deviceId, {}, by);
  }

  /** Sets (or with null removes) a group's defaults; every member gets a new version. */
  setGroupDefaults(key: string, input: unknown, by: string): Promise<GroupView | null> {
    const tag = parseGroupKey(key);
    const values = input === null ? null : checkValues(input);
    return this.#change(() => {
      if (values && !this.#groups.has(key) && this.#groups.size >= MAX_CONFIG_GROUPS) throw new ConfigChangeError(`at most ${MAX_CONFIG_GROUPS} groups have defaults`, 409);
      if (!values && !this.#groups.has(key)) throw new ConfigChangeError(`group ${key} has no defaults`, 409);
      const entry = values ? { values, changedAt: this.#now(), by, tag } : null;
      const members = new Map<string, DesiredEntry | null | undefined>();
      for (const id of this.#o.membersOf(tag[0], tag[1])) members.set(id, undefined);
      let added = 0;
      for (const id of members.keys()) if (!this.#devices.has(id)) added++;
      if (this.#devices.size + added > this.#maxDevices) throw new ConfigChangeError(`configuration is kept for at most ${this.#maxDevices} devices`, 409);
      return { devices: members, groups: new Map([[key, entry]]) };
    }).then(() => (values ? this.group(key) : null));
  }

  group(key: string): GroupView | null {
    const g = this.#groups.get(key);
    return g ? { key, values: g.values, changedAt: g.changedAt, by: g.by } : null;
  }

  groups(): GroupView[] {
    return this.#groupOrder.map((key) => this.group(key)).filter((g) => g !== null);
  }

  /**
   * One operator change: `plan` says, on the state as it is now, which
   * devices get which own desired values (undefined: unchanged, only a new
   * version) and which groups change; the planned state is saved, then put
   * in force and the listeners told.
   */
  #change(plan: ChangePlan): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queued.push({ plan, resolve, reject, conflicts: 0 });
      if (!this.#draining) this.#changes = this.#drain();
    });
  }

  /**
   * Group commit: the changes that queued up while a save was in flight are
   * planned one after another (each on the state the ones before it leave),
   * saved in one write, then put in force together. Planning installs each
   * plan's records for the next plan to see and takes them out again before
   * the save's await, so nothing unsaved is ever in force (nothing else runs
   * in between: it is synchronous).
   */
  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queued.length > 0) {
        const batch = this.#queued.splice(0);
        if (this.#closed) {
          for (const c of batch) c.reject(new ConfigSaveError('the hub is shutting down'));
          continue;
        }
        const beforeDevices = new Map<string, DeviceRecord | undefined>();
        const beforeGroups = new Map(this.#groups);
        const beforeOrder = this.#groupOrder;
        const planned: QueuedChange[] = [];
        const changedGroups = new Set<string>();
        for (const change of batch) {
          let p;
          try {
            p = change.plan();
          } catch (err) {
            change.reject(err);
            continue;
          }
          const groups = new Map(this.#groups);
          for (const [key, g] of p.groups) { if (g) groups.set(key, g); else groups.delete(key); changedGroups.add(key); }
          const order = [...groups.keys()].sort();
          const next = new Map<string, DeviceRecord>();
          for (const [id, own] of p.devices) {
            const rec = this.#devices.get(id);
            const desired = own === undefined ? rec?.desired ?? null : own;
            const tags = this.#o.tagsOf?.(id);
            const values: ConfigValues = {};
            if (tags) for (const key of order) { const g = groups.get(key); if (g && tags[g.tag[0]] === g.tag[1]) Object.assign(values, g.values); }
            if (desired) Object.assign(values, desired.values);
            next.set(id, { version: this.#nextVersion(rec), desired, reported: rec?.reported ?? null, effective: canonical(values), json: null });
          }
          // Installed for the next plan of this batch (taken out again below).
          for (const [id, rec] of next) {
            if (!beforeDevices.has(id)) beforeDevices.set(id, this.#devices.get(id));
            this.#devices.set(id, rec);
          }
          this.#groups.clear();
          for (const [key, g] of groups) this.#groups.set(key, g);
          this.#groupOrder = order;
          planned.push(change);
        }
        const records = new Map<string, DeviceRecord>();
        for (const id of beforeDevices.keys()) { const rec = this.#devices.get(id); if (rec) records.set(id, rec); }
        const groups = new Map(this.#groups);
        // Out of force again until saved.
        for (const [id, rec] of beforeDevices) { if (rec === undefined) this.#devices.delete(id); else this.#devices.set(id, rec); }
        this.#groups.clear();
        for (const [key, g] of beforeGroups) this.#groups.set(key, g);
        this.#groupOrder = beforeOrder;
        if (planned.length === 0) continue;
        const savedAt = this.#stamp;
        try {
          await this.#save(records, groups, { devices: [...records.keys()], groups: [...changedGroups] });
        } catch (err) {
          if (err instanceof ConfigConflictError) {
            // Planned again, first in line, on the state with the other hub's write in force.
            const again: QueuedChange[] = [];
            for (const change of planned) {
              if (++change.conflicts <= MAX_CONFLICT_RETRIES) again.push(change);
              else change.reject(new ConfigSaveError(`device configuration not saved: changed on another hub at the same time ${MAX_CONFLICT_RETRIES + 1} times in a row; try again`, { cause: err }));
            }
            this.#queued.unshift(...again);
            continue;
          }
          const failure = new ConfigSaveError(`device configuration not saved, nothing changed: ${(err as Error).message}`, { cause: err });
          for (const change of planned) change.reject(failure);
          continue;
        }
        // In force: the saved records, with any report that arrived meanwhile.
        // A key adopted while the save was in flight (cluster mode: this
        // save's own echo, or another hub's later write; the watch can be
        // read before the save's acknowledgement is) holds what the bucket
        // has now: it stays.
        const newer = (stamps: Map<string, number>, key: string): boolean => (stamps.get(key) ?? 0) > savedAt;
        for (const [id, rec] of records) {
          if (newer(this.#adoptedDevices, id)) continue;
          const live = this.#devices.get(id);
          if (live?.reported) rec.reported = live.reported;
          this.#devices.set(id, rec);
          if (rec.reported && rec.reported.version >= rec.version) { rec.version = this.#nextVersion(rec); this.#reportChanged(id); }
        }
        for (const key of changedGroups) {
          if (newer(this.#adoptedGroups, key)) continue;
          const g = groups.get(key);
          if (g) this.#groups.set(key, g); else this.#groups.delete(key);
        }
        this.#groupOrder = [...this.#groups.keys()].sort();
        this.#tell([...records.keys()]);
        for (const change of planned) change.resolve();
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Saves the state with `overrides` in place of the records they name; serialized with every other save. */
  #save(overrides: Map<string, DeviceRecord> | null, groups: Map<string, DesiredEntry & { tag: [string, string] }> | null, changed: { devices: readonly string[]; groups: readonly string[] }): Promise<void> {
    const job = this.#tail.then(() => {
      const rec = (id: string): DeviceRecord | undefined => overrides?.get(id) ?? this.#devices.get(id);
      const gs = groups ?? this.#groups;
      const view: PersistView = {
        text: () => {
          const parts: string[] = [];
          for (const [id, r] of this.#devices) if (!overrides?.has(id)) parts.push(`${JSON.stringify(id)}:${recordJson(r)}`);
          if (overrides) for (const [id, r] of overrides) parts.push(`${JSON.stringify(id)}:${recordJson(r)}`);
          const g: Record<string, DesiredEntry> = {};
          for (const [key, e] of gs) g[key] = { values: e.values, changedAt: e.changedAt, by: e.by };
          return `{"version":1,"groups":${JSON.stringify(g)},"devices":{\n${parts.join(',\n')}\n}}\n`;
        },
        deviceJson: (id) => { const r = rec(id); return r ? recordJson(r) : undefined; },
        groupJson: (key) => { const e = gs.get(key); return e ? JSON.stringify({ values: e.values, changedAt: e.changedAt, by: e.by }) : undefined; },
      };
      return this.#persistence.save(view, changed);
    });
    this.#tail = job.catch(() => undefined);
    return job;
  }

  #reportChanged(deviceId: string): void {
    if (this.#persistence === MEMORY) return;
    this.#reportsDirty.add(deviceId);
    if (this.#reportTimer || this.#closed) return;
    const wait = Math.max(0, this.#lastReportSave + REPORT_SAVE_MS - this.#now());
    this.#reportTimer = setTimeout(() => void this.#saveReports(), wait);
    this.#reportTimer.unref();
  }

  #saveReports(): Promise<void> {
    this.#reportTimer = null;
    if (this.#reportsDirty.size === 0) return Promise.resolve();
    const devices = [...this.#reportsDirty];
    this.#reportsDirty.clear();
    this.#lastReportSave = this.#now();
    return this.#save(null, null, { devices, groups: [] }).then(() => { this.#reportConflicts = 0; }, (err: unknown) => {
      for (const id of devices) this.#reportsDirty.add(id);
      // A race with another hub's write: the merged records go again at once
      // (a few times; then as any failure, in a second).
      const conflict = err instanceof ConfigConflictError && ++this.#reportConflicts <= MAX_CONFLICT_RETRIES;
      if (!conflict) { this.#reportConflicts = 0; this.#o.onSaveError?.(err); }
      if (!this.#closed && !this.#reportTimer) {
        this.#reportTimer = setTimeout(() => void this.#saveReports(), conflict ? 0 : REPORT_SAVE_MS);
        this.#reportTimer.unref();
      }
    });
  }

  /**
   * Another hub's write of a device's entry (cluster mode; null: deleted),
   * as the backend read it: checked as the file is, then in force and the
   * listeners told (a session of the device here gets the delta). A report
   * newer here than in the entry stays. When this hub holds a version the
   * entry does not supersede (bumped here, not saved yet) for a different
   * effective configuration, the device gets a version above both, so no
   * version ever stands for two configurations. False: not valid (or over
   * the device bound), ignored.
   */
  adoptDevice(deviceId: string, raw: unknown): boolean {
    if (raw === null) {
      this.#adoptedDevices.set(deviceId, ++this.#stamp);
      if (this.#devices.delete(deviceId)) this.#tell([deviceId]);
      return true;
    }
    let d: DeviceConfigsFile['devices'][string];
    try { d = parseDevice(deviceId, raw); } catch { return false; }
    const local = this.#devices.get(deviceId);
    if (!local && this.#devices.size >= this.#maxDevices) return false;
    const effective = d.effective ?? EMPTY;
    let version = d.version, dirty = false;
    if (local && local.version >= d.version && local.effective !== effective) {
      version = Math.min(MAX_VERSION, Math.max(local.version, d.version, local.reported?.version ?? 0) + 1);
      dirty = true;
    } else if (local && local.version > d.version) {
      version = local.version;
      dirty = true;
    }
    let reported = d.reported ?? null;
    if (local?.reported && (!reported || local.reported.at > reported.at)) { reported = local.reported; dirty = true; }
    this.#devices.set(deviceId, { version, desired: d.desired ?? null, reported, effective, json: null });
    this.#adoptedDevices.set(deviceId, ++this.#stamp);
    if (dirty) this.#reportChanged(deviceId);
    this.#tell([deviceId]);
    return true;
  }

  /**
   * Another hub's write of a group's defaults (null: removed). The members'
   * entries, with their new versions, follow in the same save of that hub;
   * a member whose entry does not is brought up to date when its delta is
   * next asked for (#current). False: not valid, ignored.
   */
  adoptGroup(key: string, raw: unknown): boolean {
    let tag: [string, string];
    try { tag = parseGroupKey(key); } catch { return false; }
    if (raw === null) {
      this.#groups.delete(key);
    } else {
      let e: DesiredEntry;
      try { e = parseEntry(`groups[${JSON.stringify(key)}]`, raw); } catch { return false; }
      if (!this.#groups.has(key) && this.#groups.size >= MAX_CONFIG_GROUPS) return false;
      this.#groups.set(key, { ...e, tag });
    }
    this.#groupOrder = [...this.#groups.keys()].sort();
    this.#adoptedGroups.set(key, ++this.#stamp);
    return true;
  }

  #tell(ids: readonly string[]): void {
    for (const listener of this.#listeners) {
      try { listener(ids); } catch { /* a listener's failure is its own */ }
    }
  }

  /** Saves what reports changed now (shutdown); later changes are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#reportTimer) clearTimeout(this.#reportTimer);
    await this.#changes;
    await this.#saveReports();
    await this.#tail;
  }
}

function recordJson(r: DeviceRecord): string {
  if (r.json === null) {
    const out: DeviceConfigsFile['devices'][string] = { version: r.version, effective: r.effective };
    if (r.desired) out.desired = r.desired;
    if (r.reported) out.reported = r.reported;
    r.json = JSON.stringify(out);
  }
  return r.json;
}

/** A desired entry as saved ({"values", "changedAt", "by"}); throws naming the field. */
function parseEntry(where: string, e: unknown): DesiredEntry {
  if (!isObject(e) || typeof e.changedAt !== 'number' || typeof e.by !== 'string') throw new Error(`${where}: expected {"values", "changedAt", "by"}`);
  try {
    return { values: checkValues(e.values), changedAt: e.changedAt, by: e.by };
  } catch (err) {
    throw new Error(`${where}.values.${(err as Error).message}`, { cause: err });
  }
}

/** One device's entry as saved; throws naming the field. */
function parseDevice(id: string, d: unknown): DeviceConfigsFile['devices'][string] {
  const where = `devices[${JSON.stringify(id)}]`;
  if (!isObject(d) || typeof d.version !== 'number' || !Number.isSafeInteger(d.version) || d.version < 0) throw new Error(`${where}.version: expected a whole number`);
  const rec: DeviceConfigsFile['devices'][string] = { version: d.version };
  if (typeof d.effective === 'string') rec.effective = d.effective;
  if (d.desired !== undefined && d.desired !== null) rec.desired = parseEntry(`${where}.desired`, d.desired);
  if (d.reported !== undefined && d.reported !== null) {
    const r = d.reported;
    if (!isObject(r) || typeof r.version !== 'number' || typeof r.ok !== 'boolean' || typeof r.at !== 'number') throw new Error(`${where}.reported: expected {"version", "ok", "at", ...}`);
    rec.reported = {
      version: r.version, sampleIntervalMs: Number(r.sampleIntervalMs) || 0, batchIntervalMs: Number(r.batchIntervalMs) || 0,
      custom: isObject(r.custom) ? r.custom : null, ok: r.ok, error: typeof r.error === 'string' ? r.error : '', at: r.at,
    };
  }
  return rec;
}

/** Checks a file's content (throws naming the field). */
function parseFile(raw: unknown): DeviceConfigsFile {
  if (!isObject(raw) || raw.version !== 1) throw new Error('expected {"version": 1, "groups", "devices"}');
  const groups = isObject(raw.groups) ? raw.groups : {};
  const devices = isObject(raw.devices) ? raw.devices : null;
  if (!devices) throw new Error('devices: expected an object');
  const out: DeviceConfigsFile = { version: 1, groups: {}, devices: {} };
  if (Object.keys(groups).length > MAX_CONFIG_GROUPS) throw new Error(`more than ${MAX_CONFIG_GROUPS} groups`);
  for (const [key, g] of Object.entries(groups)) {
    parseGroupKey(key);
    out.groups[key] = parseEntry(`groups[${JSON.stringify(key)}]`, g);
  }
  for (const [id, d] of Object.entries(devices)) out.devices[id] = parseDevice(id, d);
  return out;
}
