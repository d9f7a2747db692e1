// What the dashboard holds of the live data, and how one decoded message
// becomes it. Every shape is derived from the types generated from
// live.proto (through @telemetry/proto), so a schema change shows up here as a
// type error instead of a silently stale copy: a field added to a message
// must be filled in below, a field renamed or removed breaks its reader.
//
// Decoded protobufjs messages keep proto3 defaults on their prototypes and
// type nested messages with every field optional; the store holds plain
// objects with every field present instead (cheap to read for 10,000 rows,
// and what the pages can rely on).
import type {
  AlarmMsg, DeviceDetail as DeviceDetailMsg, DeviceStateMsg, LatestValue, LiveHealth, LiveHubState,
  MetricStats as MetricStatsMsg, PresenceChange as PresenceChangeMsg, ScopeStats,
  WindowStats as WindowStatsMsg,
} from '@telemetry/proto';
import { presenceName, type PresenceName } from './format.ts';

/**
 * Message M as the store holds it: every field present (the proto3 default
 * where the frame left it out), read-only, without protobufjs's unknown-field
 * bookkeeping.
 */
export type Filled<M> = { readonly [K in Exclude<keyof M, '$unknowns'>]-?: NonNullable<M[K]> };

/**
 * Filled<M> with the fields named in R held in another form (a name instead
 * of an enum number, a Map instead of a list, nested messages normalized).
 * R may only name fields of M, so a renamed field cannot linger here.
 */
export type Reshaped<M, R extends { [K in keyof R]: K extends keyof M ? unknown : never }> =
  Omit<Filled<M>, keyof R> & { readonly [K in keyof R]: R[K] };

export type Latest = Filled<LatestValue>;

export type Device = Reshaped<DeviceStateMsg, {
  presence: PresenceName;
  /** By metric; a late reading never replaces a newer one. */
  latest: ReadonlyMap<string, Latest>;
  tags: Readonly<NonNullable<DeviceStateMsg['tags']>>;
}> & {
  /** Lower-case id, tag values and key=value pairs: what the table search matches. */
  readonly search: string;
};

export type PresenceChange = Reshaped<PresenceChangeMsg, { presence: PresenceName }>;

/** A "device:ID" topic; details arriving without a state are dropped, so it is always there. */
export type DeviceDetail = Reshaped<DeviceDetailMsg, {
  state: Device;
  /** Oldest first, as the hub sends it. */
  history: readonly PresenceChange[];
}>;

/** untilMs is 0 while active. */
export type Alarm = Filled<AlarmMsg>;

export type WindowStats = Filled<WindowStatsMsg>;

export type MetricStats = Reshaped<MetricStatsMsg, { windows: readonly WindowStats[] }>;

export type Scope = Reshaped<ScopeStats, { metrics: readonly MetricStats[] }>;

/** One hub of a cluster (cluster mode only). */
export type HubState = Filled<LiveHubState>;

export type Health = Reshaped<LiveHealth, { hubs: readonly HubState[] }>;

// ---- from decoded messages

const orZero = (v: number | null | undefined): number => v ?? 0;
const orEmpty = (v: string | null | undefined): string => v ?? '';

/** Merges `list` into a copy of `prev` by metric, keeping the newer reading of each. */
function toLatest(list: readonly LatestValue[] | null | undefined, prev: ReadonlyMap<string, Latest> | undefined): Map<string, Latest> {
  const out = new Map<string, Latest>(prev);
  for (const lv of list ?? []) {
    const metric = orEmpty(lv.metric);
    if (!metric) continue;
    const v: Latest = { metric, unit: orEmpty(lv.unit), value: orZero(lv.value), timeMs: orZero(lv.timeMs) };
    const old = out.get(metric);
    // A late reading never replaces a newer one.
    if (!old || v.timeMs >= old.timeMs) out.set(metric, v);
  }
  return out;
}

/** `prev`: the same device as held so far, whose latest values a delta builds on. */
export function toDevice(d: DeviceStateMsg, prev: Device | undefined): Device {
  const id = orEmpty(d.id);
  const tags: Record<string, string> = { ...(d.tags ?? {}) };
  let search = id.toLowerCase();
  for (const [k, v] of Object.entries(tags)) search += `\n${v.toLowerCase()}\n${k.toLowerCase()}=${v.toLowerCase()}`;
  return {
    id,
    presence: presenceName(d.presence),
    presenceSinceMs: orZero(d.presenceSinceMs),
    presenceReason: orEmpty(d.presenceReason),
    lastSeenMs: orZero(d.lastSeenMs),
    latest: toLatest(d.latest, prev?.latest),
    tags,
    cadenceMs: orZero(d.cadenceMs),
    search,
  };
}

export function toDetail(dd: DeviceDetailMsg, state: Device): DeviceDetail {
  return {
    state,
    history: (dd.history ?? []).map((h) => ({ presence: presenceName(h.presence), timeMs: orZero(h.timeMs), reason: orEmpty(h.reason) })),
    firmware: orEmpty(dd.firmware),
    address: orEmpty(dd.address),
  };
}

export function toAlarm(a: AlarmMsg): Alarm {
  return {
    id: orEmpty(a.id), ruleId: orEmpty(a.ruleId), ruleName: orEmpty(a.ruleName), device: orEmpty(a.device),
    metric: orEmpty(a.metric), condition: orEmpty(a.condition), value: orZero(a.value), sinceMs: orZero(a.sinceMs),
    untilMs: orZero(a.untilMs),
  };
}

function toWindow(w: WindowStatsMsg): WindowStats {
  return {
    windowMs: orZero(w.windowMs), startMs: orZero(w.startMs), count: orZero(w.count), min: orZero(w.min), max: orZero(w.max),
    mean: orZero(w.mean), last: orZero(w.last), p50: orZero(w.p50), p95: orZero(w.p95), p99: orZero(w.p99),
    newestTimeMs: orZero(w.newestTimeMs),
  };
}

function toMetricStats(m: MetricStatsMsg): MetricStats {
  return { metric: orEmpty(m.metric), unit: orEmpty(m.unit), windows: (m.windows ?? []).map(toWindow) };
}

export function toScope(sc: ScopeStats): Scope {
  return {
    scope: orEmpty(sc.scope),
    devicesOnline: orZero(sc.devicesOnline),
    devicesTotal: orZero(sc.devicesTotal),
    readingsPerS: orZero(sc.readingsPerS),
    alarmsActive: orZero(sc.alarmsActive),
    metrics: (sc.metrics ?? []).map(toMetricStats),
  };
}

export function toHealth(h: LiveHealth): Health {
  return {
    connections: orZero(h.connections), devicesOnline: orZero(h.devicesOnline), devicesTotal: orZero(h.devicesTotal),
    readingsInPerS: orZero(h.readingsInPerS), readingsOutPerS: orZero(h.readingsOutPerS), ackP50Ms: orZero(h.ackP50Ms),
    ackP99Ms: orZero(h.ackP99Ms), spoolBytes: orZero(h.spoolBytes), sinkLagBytes: orZero(h.sinkLagBytes),
    sinkLagMs: orZero(h.sinkLagMs), sinkErrors: orZero(h.sinkErrors), sinkState: orEmpty(h.sinkState),
    dashboards: orZero(h.dashboards), seriesRefused: orZero(h.seriesRefused),
    hubs: (h.hubs ?? []).map((x) => ({ id: orEmpty(x.id), up: x.up ?? false, devices: orZero(x.devices), connections: orZero(x.connections), self: x.self ?? false })),
  };
}
