// The dashboard's picture of the hub: merges decoded LiveFrames into plain
// Maps (never reactive objects: the device table may hold 10,000 entries).
// Owns the merge rules of the live protocol and the "which latest values are
// new" bookkeeping behind the latency measurement. No DOM, no sockets: the
// LiveClient (live.svelte.ts) feeds it and tells Svelte when it changed.
// The shapes it holds, and how one message is normalized into them, are in
// live-data.ts.
import type { LiveFrame } from '@telemetry/proto';
import {
  toAlarm, toDetail, toDevice, toHealth, toScope,
  type Alarm, type Device, type DeviceDetail, type Health, type Latest, type Scope,
} from './live-data.ts';
import type { Topics } from './topics.ts';

/** What one frame changed. */
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

    if (f.health) this.health = toHealth(f.health);

    if (snap) this.scopes.clear();
    for (const sc of f.scopes ?? []) {
      const name = sc.scope ?? '';
      if (t.scopes.has(name)) this.scopes.set(name, toScope(sc));
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
        const id = d.id ?? '';
        if (!id) continue;
        const prev = old.get(id);
        const dev = toDevice(d, snap ? undefined : prev);
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
      const id = st?.id ?? '';
      if (!st || !id || !t.deviceIds.has(id)) continue;
      const prev = this.details.get(id)?.state;
      const state = toDevice(st, snap ? undefined : prev);
      this.details.set(id, toDetail(dd, state));
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
        const al = toAlarm(a);
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
