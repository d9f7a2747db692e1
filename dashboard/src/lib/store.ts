// The dashboard's picture of the hub: merges decoded LiveFrames into plain
// Maps (never reactive objects: the device table may hold 10,000 entries).
// Owns the merge rules of the live protocol and the "which latest values are
// new" bookkeeping behind the latency measurement. No DOM, no sockets: the
// LiveClient (live.svelte.ts) feeds it and tells Svelte when it changed.
import type { LiveFrame } from '@telemetry/proto';
import { presenceName, type PresenceName } from './format.ts';

// ---- normalized shapes (all fields present, decoded proto defaults filled in)

export interface Latest {
  readonly metric: string;
  readonly unit: string;
  readonly value: number;
  readonly timeMs: number;
}

export interface Device {
  readonly id: string;
  readonly presence: PresenceName;
  readonly presenceSinceMs: number;
  readonly presenceReason: string;
  readonly lastSeenMs: number;
  readonly latest: ReadonlyMap<string, Latest>;
  readonly tags: Readonly<Record<string, string>>;
  readonly cadenceMs: number;
  /** Lower-case id, tag values and key=value pairs: what the table search matches. */
  readonly search: string;
}

export interface PresenceChange {
  readonly presence: PresenceName;
  readonly timeMs: number;
  readonly reason: string;
}

export interface DeviceDetail {
  readonly state: Device;
  /** Oldest first, as the hub sends it. */
  readonly history: readonly PresenceChange[];
  readonly firmware: string;
  readonly address: string;
}

export interface Alarm {
  readonly id: string;
  readonly ruleId: string;
  readonly ruleName: string;
  readonly device: string;
  readonly metric: string;
  readonly condition: string;
  readonly value: number;
  readonly sinceMs: number;
  /** 0 while active. */
  readonly untilMs: number;
}

export interface WindowStats {
  readonly windowMs: number;
  readonly startMs: number;
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  readonly last: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly newestTimeMs: number;
}

export interface MetricStats {
  readonly metric: string;
  readonly unit: string;
  readonly windows: readonly WindowStats[];
}

export interface Scope {
  readonly scope: string;
  readonly devicesOnline: number;
  readonly devicesTotal: number;
  readonly readingsPerS: number;
  readonly metrics: readonly MetricStats[];
  readonly alarmsActive: number;
}

export interface Health {
  readonly connections: number;
  readonly devicesOnline: number;
  readonly devicesTotal: number;
  readonly readingsInPerS: number;
  readonly readingsOutPerS: number;
  readonly ackP50Ms: number;
  readonly ackP99Ms: number;
  readonly spoolBytes: number;
  readonly sinkLagBytes: number;
  readonly sinkLagMs: number;
  readonly sinkErrors: number;
  readonly sinkState: string;
  readonly dashboards: number;
  readonly seriesRefused: number;
}

// ---- topics

export interface Topics {
  readonly list: readonly string[];
  readonly fleet: boolean;
  readonly devices: boolean;
  /** "fleet" and "group:K=V" scopes. */
  readonly scopes: ReadonlySet<string>;
  /** Ids of "device:ID" topics. */
  readonly deviceIds: ReadonlySet<string>;
}

export function parseTopics(list: readonly string[]): Topics {
  const scopes = new Set<string>();
  const deviceIds = new Set<string>();
  let devices = false;
  for (const t of list) {
    if (t === 'fleet' || t.startsWith('group:')) scopes.add(t);
    else if (t === 'devices') devices = true;
    else if (t.startsWith('device:')) deviceIds.add(t.slice('device:'.length));
  }
  return { list: [...list], fleet: scopes.has('fleet'), devices, scopes, deviceIds };
}

// ---- what one frame changed

export interface Applied {
  readonly snapshot: boolean;
  /** Any device table entry was added, updated or removed. */
  readonly devicesChanged: boolean;
  /** The table's membership, a device's tags, or the set of metrics changed (search and id order depend on these). */
  readonly structureChanged: boolean;
  readonly alarmsChanged: boolean;
  readonly detailsChanged: boolean;
  /** Device timestamps (time_ms) of latest values newer than what the client held. */
  readonly fresh: readonly number[];
}

/** Cleared alarms kept per client; active ones are never dropped. */
export const MAX_CLEARED_ALARMS = 500;

type FrameDevice = LiveFrame['devices'][number];
type FrameLatest = NonNullable<FrameDevice['latest']>[number];
type FrameDetail = LiveFrame['deviceDetails'][number];
type FrameAlarm = LiveFrame['alarms'][number];
type FrameScope = LiveFrame['scopes'][number];
type FrameHealth = NonNullable<LiveFrame['health']>;

const n = (v: number | null | undefined): number => v ?? 0;
const s = (v: string | null | undefined): string => v ?? '';

function normLatest(list: readonly FrameLatest[] | null | undefined, prev: ReadonlyMap<string, Latest> | undefined): Map<string, Latest> {
  const out = new Map<string, Latest>(prev);
  for (const lv of list ?? []) {
    const metric = s(lv.metric);
    if (!metric) continue;
    const v: Latest = { metric, unit: s(lv.unit), value: n(lv.value), timeMs: n(lv.timeMs) };
    const old = out.get(metric);
    // A late reading never replaces a newer one.
    if (!old || v.timeMs >= old.timeMs) out.set(metric, v);
  }
  return out;
}

function normDevice(d: FrameDevice, prev: Device | undefined): Device {
  const id = s(d.id);
  const tags: Record<string, string> = { ...(d.tags ?? {}) };
  let search = id.toLowerCase();
  for (const [k, v] of Object.entries(tags)) search += `\n${v.toLowerCase()}\n${k.toLowerCase()}=${v.toLowerCase()}`;
  return {
    id,
    presence: presenceName(d.presence),
    presenceSinceMs: n(d.presenceSinceMs),
    presenceReason: s(d.presenceReason),
    lastSeenMs: n(d.lastSeenMs),
    latest: normLatest(d.latest, prev?.latest),
    tags,
    cadenceMs: n(d.cadenceMs),
    search,
  };
}

function normDetail(dd: FrameDetail, state: Device): DeviceDetail {
  return {
    state,
    history: (dd.history ?? []).map((h) => ({ presence: presenceName(h.presence), timeMs: n(h.timeMs), reason: s(h.reason) })),
    firmware: s(dd.firmware),
    address: s(dd.address),
  };
}

function normAlarm(a: FrameAlarm): Alarm {
  return {
    id: s(a.id), ruleId: s(a.ruleId), ruleName: s(a.ruleName), device: s(a.device), metric: s(a.metric),
    condition: s(a.condition), value: n(a.value), sinceMs: n(a.sinceMs), untilMs: n(a.untilMs),
  };
}

function normScope(sc: FrameScope): Scope {
  return {
    scope: s(sc.scope),
    devicesOnline: n(sc.devicesOnline),
    devicesTotal: n(sc.devicesTotal),
    readingsPerS: n(sc.readingsPerS),
    alarmsActive: n(sc.alarmsActive),
    metrics: (sc.metrics ?? []).map((m) => ({
      metric: s(m.metric),
      unit: s(m.unit),
      windows: (m.windows ?? []).map((w) => ({
        windowMs: n(w.windowMs), startMs: n(w.startMs), count: n(w.count), min: n(w.min), max: n(w.max),
        mean: n(w.mean), last: n(w.last), p50: n(w.p50), p95: n(w.p95), p99: n(w.p99), newestTimeMs: n(w.newestTimeMs),
      })),
    })),
  };
}

function normHealth(h: FrameHealth): Health {
  return {
    connections: n(h.connections), devicesOnline: n(h.devicesOnline), devicesTotal: n(h.devicesTotal),
    readingsInPerS: n(h.readingsInPerS), readingsOutPerS: n(h.readingsOutPerS), ackP50Ms: n(h.ackP50Ms),
    ackP99Ms: n(h.ackP99Ms), spoolBytes: n(h.spoolBytes), sinkLagBytes: n(h.sinkLagBytes), sinkLagMs: n(h.sinkLagMs),
    sinkErrors: n(h.sinkErrors), sinkState: s(h.sinkState), dashboards: n(h.dashboards), seriesRefused: n(h.seriesRefused),
  };
}

export class LiveStore {
  health: Health | null = null;
  readonly scopes = new Map<string, Scope>();
  /** The device table ("devices" topic). Replaced wholesale on a snapshot. */
  devices = new Map<string, Device>();
  /** Metric name -> unit, over every device in the table. */
  readonly metricUnits = new Map<string, string>();
  /** "device:ID" topics, by id. */
  readonly details = new Map<string, DeviceDetail>();
  readonly alarms = new Map<string, Alarm>();
  /** device -> metric -> newest time_ms held: decides which values are "fresh". */
  private readonly held = new Map<string, Map<string, number>>();

  /** Drops everything the given topics no longer cover (called when the subscription changes). */
  retain(t: Topics): void {
    if (!t.devices) {
      this.devices = new Map();
      this.metricUnits.clear();
    }
    for (const id of this.details.keys()) if (!t.deviceIds.has(id)) this.details.delete(id);
    for (const sc of this.scopes.keys()) if (!t.scopes.has(sc)) this.scopes.delete(sc);
    if (!t.fleet) this.alarms.clear();
    for (const id of this.held.keys()) if (!t.devices && !t.deviceIds.has(id)) this.held.delete(id);
  }

  /**
   * Applies one frame. Snapshot: everything for the subscribed topics is
   * replaced. Delta: devices upsert by id, removed_devices delete, alarms
   * upsert by id, scopes replace by name, health replaces, details replace by
   * state.id. Entries for topics not in `t` (frames still in flight from a
   * previous subscription) are ignored.
   */
  apply(f: LiveFrame, t: Topics): Applied {
    const snap = f.snapshot === true;
    const fresh: number[] = [];
    let devicesChanged = false;
    let structureChanged = false;
    let alarmsChanged = false;
    let detailsChanged = false;

    if (f.health) this.health = normHealth(f.health);

    if (snap) this.scopes.clear();
    for (const sc of f.scopes ?? []) {
      const name = s(sc.scope);
      if (t.scopes.has(name)) this.scopes.set(name, normScope(sc));
    }

    // Device table.
    const old = this.devices;
    if (snap) {
      if (this.devices.size > 0 || t.devices) devicesChanged = structureChanged = true;
      this.devices = new Map();
      this.metricUnits.clear();
    }
    if (t.devices) {
      for (const d of f.devices ?? []) {
        const id = s(d.id);
        if (!id) continue;
        const prev = old.get(id);
        const dev = normDevice(d, snap ? undefined : prev);
        this.devices.set(id, dev);
        devicesChanged = true;
        if (!prev || prev.search !== dev.search) structureChanged = true;
        for (const lv of dev.latest.values()) {
          if (!this.metricUnits.has(lv.metric)) structureChanged = true;
          this.metricUnits.set(lv.metric, lv.unit);
        }
        this.noteFresh(id, dev.latest, snap, fresh);
      }
      for (const id of f.removedDevices ?? []) {
        if (this.devices.delete(id)) devicesChanged = structureChanged = true;
        if (!t.deviceIds.has(id)) this.held.delete(id);
      }
    }

    // Device details.
    if (snap && this.details.size > 0) {
      this.details.clear();
      detailsChanged = true;
    }
    for (const dd of f.deviceDetails ?? []) {
      const st = dd.state;
      const id = s(st?.id);
      if (!st || !id || !t.deviceIds.has(id)) continue;
      const prev = this.details.get(id)?.state;
      const state = normDevice(st, snap ? undefined : prev);
      this.details.set(id, normDetail(dd, state));
      detailsChanged = true;
      this.noteFresh(id, state.latest, snap, fresh);
    }

    // Alarms ("fleet").
    if (t.fleet) {
      if (snap) {
        alarmsChanged = this.alarms.size > 0;
        this.alarms.clear();
      }
      for (const a of f.alarms ?? []) {
        const al = normAlarm(a);
        if (!al.id) continue;
        this.alarms.set(al.id, al);
        alarmsChanged = true;
      }
      if (alarmsChanged) this.boundCleared();
    }

    return { snapshot: snap, devicesChanged, structureChanged, alarmsChanged, detailsChanged, fresh };
  }

  /** Active alarms, newest first. */
  activeAlarms(): Alarm[] {
    const out: Alarm[] = [];
    for (const a of this.alarms.values()) if (a.untilMs === 0) out.push(a);
    return out.sort((a, b) => b.sinceMs - a.sinceMs);
  }

  /** Cleared alarms, most recently cleared first. */
  clearedAlarms(): Alarm[] {
    const out: Alarm[] = [];
    for (const a of this.alarms.values()) if (a.untilMs !== 0) out.push(a);
    return out.sort((a, b) => b.untilMs - a.untilMs);
  }

  /**
   * Records which latest values are newer than the ones held for
   * device+metric. A value for a pair never held counts on a delta frame (a
   * new device or metric going live) but not on a snapshot (that is backlog).
   */
  private noteFresh(id: string, latest: ReadonlyMap<string, Latest>, snap: boolean, fresh: number[]): void {
    let m = this.held.get(id);
    if (!m) {
      m = new Map();
      this.held.set(id, m);
    }
    for (const lv of latest.values()) {
      const prev = m.get(lv.metric);
      if (prev === undefined) {
        if (!snap) fresh.push(lv.timeMs);
        m.set(lv.metric, lv.timeMs);
      } else if (lv.timeMs > prev) {
        fresh.push(lv.timeMs);
        m.set(lv.metric, lv.timeMs);
      }
    }
  }

  private boundCleared(): void {
    let cleared = 0;
    for (const a of this.alarms.values()) if (a.untilMs !== 0) cleared++;
    if (cleared <= MAX_CLEARED_ALARMS) return;
    const drop = this.clearedAlarms().slice(MAX_CLEARED_ALARMS);
    for (const a of drop) this.alarms.delete(a.id);
  }
}

/**
 * Sequence check for one connection: seq is 1, 2, 3... with no gaps. Returns
 * false on a gap (the caller must resubscribe) and moves on to the new seq.
 */
export class SeqGuard {
  private last = 0;
  reset(): void {
    this.last = 0;
  }
  accept(seq: number): boolean {
    const ok = seq === this.last + 1;
    this.last = seq;
    return ok;
  }
}
