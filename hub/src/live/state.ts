// live/: the state dashboards subscribe to, fed by ingest and advanced by a
// tick. Owns the windowed stats per (scope, metric), the device tracker, the
// alarms and the hub health figures. live/frames.ts turns this into frames
// through the read methods below; nothing outside this file changes it.
// Imports: proto, core (batch type, sink status), live/aggregates, alarms, devices.
//
// Direction: ingest -> live only. Ingest calls the LiveFeed methods, which
// do bounded, allocation-light work and never block or throw into ingest.
import { Presence, type LiveHealth, type LiveHubState } from '@telemetry/proto';
import type { SinkStatus } from '../core/sink-status.ts';
import type { AcceptedBatch } from '../core/batch.ts';
import { Digest, Partial, WindowedSeries } from './aggregates.ts';
import { Alarms, type AlarmRec } from './alarms.ts';
import { DeviceTracker, type TrackedDevice } from './devices.ts';

/** What ingest tells the live path. */
export interface LiveFeed {
  /** A batch became durable (fed once per batch: resends are not counted twice). */
  durable(b: AcceptedBatch): void;
  /** A device session completed its Hello. */
  sessionOpened(deviceId: string, tags: Readonly<Record<string, string>>, firmware: string, address: string): void;
  /** A welcomed device session ended; byHub: the hub closed it. */
  sessionClosed(deviceId: string, code: number, byHub: boolean): void;
  /** Time from a batch's arrival to its ack, ms. */
  ackLatency(ms: number): void;
  /** Open connections on the device endpoint, each time that number changes (health's `connections`). */
  connectionCount(n: number): void;
}

/**
 * Cluster mode: what this hub's own batches added to one (scope, metric)
 * since the last takeLocal(), for the other hubs to merge (partials merge
 * exactly: counts, sums, min/max, DDSketch bins).
 */
export interface SeriesPartial {
  /** null: the fleet; else the tag group. */
  readonly tag: { key: string; value: string } | null;
  readonly metric: string;
  readonly unit: string;
  readonly partial: Partial;
}

/** Cluster mode: a device with batches here since the last takeLocal(), and its latest values. */
export interface DevicePartial {
  readonly id: string;
  readonly metrics: readonly string[];
  readonly units: readonly string[];
  readonly values: readonly number[];
  readonly times: readonly number[];
}

/** Latest values taken per device from another hub's partials (HUB_MAX_METRICS_PER_DEVICE is at most 65,536; this bounds one message's work). */
const MAX_REMOTE_METRICS = 1024;

/** A scope's windowed stats per metric. */
export interface ScopeSeries {
  readonly unit: string;
  readonly stats: WindowedSeries;
}

/** A scope as readers see it: the fleet or one tag group. */
export interface Scope {
  readonly name: string;
  /** null for the fleet. */
  readonly tag: { key: string; value: string } | null;
  readonly series: ReadonlyMap<string, ScopeSeries>;
  /** Devices online and tracked in the scope, and its readings per second, as of the last tick. */
  readonly online: number;
  readonly total: number;
  readonly readingsPerS: number;
}

/** The same, as this file keeps it. */
interface ScopeEntry extends Scope {
  readonly series: Map<string, ScopeSeries>;
  online: number;
  total: number;
  readingsPerS: number;
}

interface Route {
  readonly tags: Readonly<Record<string, string>>;
  readonly scopes: readonly ScopeEntry[];
  /**
   * Per metric: its series in each scope (null past HUB_LIVE_MAX_SERIES). At
   * most HUB_MAX_METRICS_PER_DEVICE entries: ingest refuses more names per device.
   */
  readonly byMetric: Map<string, (WindowedSeries | null)[]>;
}

/** What readers outside the live state see of its device tracker. */
export interface TrackedDevices {
  readonly devices: ReadonlyMap<string, TrackedDevice>;
  /** Devices not tracked because HUB_LIVE_MAX_DEVICES was reached. */
  readonly refused: number;
}

export interface LiveStateOptions {
  maxSeries: number;
  maxDevices: number;
  alarmRulesFile: string | null;
  now?: () => number;
  /** Spool bytes not yet committed (sink mode) or kept (embedded). */
  spoolBytes?: () => number;
  sinkStatus?: () => SinkStatus;
  /** Registry contents for devices that have not connected yet. */
  knownDevices?: () => Iterable<[string, Readonly<Record<string, string>>]>;
}

export class LiveState implements LiveFeed {
  readonly alarms: Alarms;
  readonly #devices: DeviceTracker;
  readonly #scopes = new Map<string, ScopeEntry>();
  readonly #fleet: ScopeEntry;
  readonly #options: LiveStateOptions;
  readonly #now: () => number;
  #seriesCount = 0;
  /** Series not created because HUB_LIVE_MAX_SERIES was reached. */
  #seriesRefused = 0;
  readonly #ackLatency: WindowedSeries;
  readonly #routes = new Map<string, Route>();
  /** One digest per metric index of the current batch, reused batch after batch. */
  readonly #digests: Digest[] = [];
  /** Per metric index of the current batch: the index of its reading with the newest event time. */
  #newestReading = new Int32Array(16);
  #readingsIn = 0;
  #lastTickAt: number;
  #lastReadingsIn = 0;
  #lastLinesOut = 0;
  #caughtUpAt: number;
  #health: LiveHealth = {};
  #tick = 0;
  #connections = 0;
  #dashboards = 0;
  /** Cluster mode: this hub's own contributions since takeLocal(), per series; devices with batches here. */
  #sharing = false;
  /** Cluster mode: the hubs of the cluster, for health (the overview lists them). */
  #hubs: (() => LiveHubState[]) | null = null;
  readonly #local = new Map<WindowedSeries, { scope: ScopeEntry; metric: string; unit: string; partial: Partial }>();
  readonly #touched = new Set<TrackedDevice>();

  constructor(options: LiveStateOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#devices = new DeviceTracker({ maxDevices: options.maxDevices });
    this.alarms = new Alarms(options.alarmRulesFile);
    this.#ackLatency = new WindowedSeries(this.#now());
    this.#lastTickAt = this.#now();
    this.#caughtUpAt = this.#lastTickAt;
    this.#fleet = this.#scope('fleet', null);
    this.syncRegistry();
  }

  /** Re-reads the registry (at start and when it reloads). */
  syncRegistry(): void {
    if (this.#options.knownDevices) this.#devices.sync(this.#options.knownDevices());
  }

  #scope(name: string, tag: Scope['tag']): ScopeEntry {
    let scope = this.#scopes.get(name);
    if (!scope) {
      scope = { name, tag, series: new Map(), online: 0, total: 0, readingsPerS: 0 };
      this.#scopes.set(name, scope);
    }
    return scope;
  }

  #seriesOf(scope: ScopeEntry, metric: string, unit: string, now: number): WindowedSeries | null {
    const entry = scope.series.get(metric);
    if (entry) return entry.stats;
    if (this.#seriesCount >= this.#options.maxSeries) { this.#seriesRefused++; return null; }
    this.#seriesCount++;
    const stats = new WindowedSeries(now);
    scope.series.set(metric, { unit, stats });
    return stats;
  }

  // ---- reads (the frames, metrics, tests) -------------------------------------

  /** Ticks so far: advance() counts them. */
  get tick(): number { return this.#tick; }
  /** Hub health as of the last tick. */
  get health(): Readonly<LiveHealth> { return this.#health; }
  get seriesCount(): number { return this.#seriesCount; }
  get seriesRefused(): number { return this.#seriesRefused; }
  /** Readings counted by the live path since start. */
  get readingsIn(): number { return this.#readingsIn; }
  /** The scopes by name ("fleet", "group:site=north"), read-only. */
  get scopes(): ReadonlyMap<string, Scope> { return this.#scopes; }
  /** The tracked devices, read-only. */
  get devices(): TrackedDevices { return this.#devices; }

  scope(name: string): Scope | undefined {
    return this.#scopes.get(name);
  }

  device(id: string): TrackedDevice | undefined {
    return this.#devices.devices.get(id);
  }

  /** Calls `visit` for each device changed after tick `since` (-1: every device). */
  forEachDeviceChangedSince(since: number, visit: (d: TrackedDevice) => void): void {
    this.#devices.forEachChangedSince(since, visit);
  }

  /** Ids of devices removed (from the registry) after tick `since`. */
  removedDeviceIdsSince(since: number): string[] {
    return this.#devices.removedSince(since);
  }

  /** Calls `visit` for each alarm changed after tick `since`: active ones first, then recently cleared. */
  forEachAlarmChangedSince(since: number, visit: (a: AlarmRec) => void): void {
    for (const a of this.alarms.active.values()) if (a.changed > since) visit(a);
    for (const a of this.alarms.recent) if (a.changed > since) visit(a);
  }

  /** Active alarms of devices in the scope. */
  alarmsActiveIn(scope: Scope): number {
    return this.alarms.activeIn(scope.tag, this.#devices);
  }

  /** Connected dashboards (the live endpoint says), for health's `dashboards`. */
  setDashboardCount(n: number): void {
    this.#dashboards = n;
  }

  // ---- LiveFeed (called by ingest) ------------------------------------------

  durable(b: AcceptedBatch): void {
    const now = this.#now();
    const n = b.values.length;
    this.#readingsIn += n;
    const device = this.#devices.get(b.deviceId, b.tags);
    if (device) {
      device.sawBatch(now);
      device.changed = this.#devices.tick;
      if (this.#sharing) this.#touched.add(device);
    }
    const names = b.metricNames;
    const route = this.#route(b);
    // Reduce each metric's readings once (one digest per metric), then add
    // the digests to the open 1 s window of every scope.
    while (this.#digests.length < names.length) this.#digests.push(new Digest());
    const digests = this.#digests;
    for (let mi = 0; mi < names.length; mi++) digests[mi]!.reset();
    const newest = this.#newestReading.length >= names.length ? this.#newestReading : (this.#newestReading = new Int32Array(names.length * 2));
    newest.fill(-1, 0, names.length);
    const idx = b.metricIndex, vals = b.values, times = b.timesMs;
    for (let i = 0; i < n; i++) {
      const mi = idx[i]!;
      const t = times[i]!;
      digests[mi]!.add(vals[i]!, t);
      const k = newest[mi]!;
      if (k < 0 || t >= times[k]!) newest[mi] = i;
    }
    for (let mi = 0; mi < names.length; mi++) {
      const m = names[mi]!;
      let list = route.byMetric.get(m);
      if (!list) {
        list = route.scopes.map((scope) => this.#seriesOf(scope, m, b.metricUnits[mi] ?? '', now));
        route.byMetric.set(m, list);
      }
      const digest = digests[mi]!;
      for (const series of list) series?.open.addDigest(digest);
      if (this.#sharing) this.#shareDigest(route, list, m, b.metricUnits[mi] ?? '', digest);
      const i = newest[mi]!;
      if (device && i >= 0) device.latest(m, b.metricUnits[mi] ?? '', vals[i]!, times[i]!);
    }
  }

  /** Cluster mode: the digest also goes into this hub's own partial of each series, for the other hubs. */
  #shareDigest(route: Route, list: (WindowedSeries | null)[], metric: string, unit: string, digest: Digest): void {
    for (let si = 0; si < list.length; si++) {
      const series = list[si];
      if (!series) continue;
      let local = this.#local.get(series);
      if (!local) this.#local.set(series, local = { scope: route.scopes[si]!, metric, unit, partial: new Partial() });
      local.partial.addDigest(digest);
    }
  }

  /**
   * Cluster mode: from now on, keep what this hub's own batches add apart
   * (takeLocal() hands it out), so that other hubs' partials merged here
   * (mergeRemote()) are never sent back.
   */
  enableSharing(hubs?: () => LiveHubState[]): void {
    this.#sharing = true;
    this.#hubs = hubs ?? null;
  }

  /** Cluster mode: this hub's contributions since the last call (then forgotten here). */
  takeLocal(): { series: SeriesPartial[]; devices: DevicePartial[] } {
    const series: SeriesPartial[] = [];
    for (const { scope, metric, unit, partial } of this.#local.values()) {
      if (partial.count > 0) series.push({ tag: scope.tag, metric, unit, partial });
    }
    this.#local.clear();
    const devices: DevicePartial[] = [];
    for (const d of this.#touched) devices.push({ id: d.id, metrics: [...d.metrics], units: [...d.units], values: [...d.values], times: [...d.times] });
    this.#touched.clear();
    return { series, devices };
  }

  /**
   * Cluster mode: another hub's contributions, merged as if its batches had
   * arrived here (into the open 1 s windows; its devices' latest values and
   * batch cadence). `tagsOf` names the devices this hub's registry knows:
   * others are not tracked. Scopes and series stay within their caps.
   */
  mergeRemote(p: { series: readonly SeriesPartial[]; devices: readonly DevicePartial[] }, tagsOf: (id: string) => Readonly<Record<string, string>> | undefined): void {
    const now = this.#now();
    for (const sp of p.series) {
      const name = sp.tag ? `group:${sp.tag.key}=${sp.tag.value}` : 'fleet';
      if (!this.#scopes.has(name) && this.#scopes.size >= this.#options.maxSeries) { this.#seriesRefused++; continue; }
      const series = this.#seriesOf(this.#scope(name, sp.tag), sp.metric, sp.unit, now);
      series?.open.merge(sp.partial);
      if (!sp.tag) this.#readingsIn += sp.partial.count;
    }
    for (const dp of p.devices) {
      const tags = tagsOf(dp.id);
      if (!tags) continue;
      const d = this.#devices.get(dp.id, tags);
      if (!d) continue;
      d.sawBatch(now);
      d.changed = this.#devices.tick;
      for (let i = 0; i < dp.metrics.length && i < MAX_REMOTE_METRICS; i++) d.latest(dp.metrics[i]!, dp.units[i] ?? '', dp.values[i]!, dp.times[i]!);
    }
  }

  /**
   * The scopes a device's batches feed (fleet plus one per tag) and, per
   * metric, their series. Kept per device while its tags stay the same (a
   * whole session), so a batch costs a map lookup per metric, no string building.
   */
  #route(b: AcceptedBatch): Route {
    const known = this.#routes.get(b.deviceId);
    if (known && known.tags === b.tags) return known;
    const scopes: ScopeEntry[] = [this.#fleet];
    for (const k in b.tags) {
      const v = b.tags[k]!;
      scopes.push(this.#scope(`group:${k}=${v}`, { key: k, value: v }));
    }
    const route: Route = { tags: b.tags, scopes, byMetric: new Map() };
    if (this.#routes.size >= this.#options.maxDevices) this.#routes.clear();
    this.#routes.set(b.deviceId, route);
    return route;
  }

  sessionOpened(deviceId: string, tags: Readonly<Record<string, string>>, firmware: string, address: string): void {
    this.#devices.opened(deviceId, tags, this.#now(), firmware, address);
  }

  sessionClosed(deviceId: string, code: number, byHub: boolean): void {
    this.#devices.closed(deviceId, code, byHub, this.#now());
  }

  ackLatency(ms: number): void {
    this.#ackLatency.add(ms, 0);
  }

  connectionCount(n: number): void {
    this.#connections = n;
  }

  // ---- tick ----------------------------------------------------------------

  /** Closes windows, updates presence, evaluates alarms, computes health. */
  advance(): void {
    const now = this.#now();
    this.#tick++;
    this.#devices.tick = this.#tick;
    for (const scope of this.#scopes.values()) for (const entry of scope.series.values()) entry.stats.roll(now);
    this.#ackLatency.roll(now);
    this.#devices.sweep(now);
    this.alarms.evaluate(this.#devices, now, this.#tick);
    // Changes from here until the next advance() go out with the next tick's frames.
    this.#devices.tick = this.#tick + 1;

    // Presence per scope: one pass over the devices.
    for (const scope of this.#scopes.values()) { scope.online = 0; scope.total = 0; }
    const fleet = this.#fleet;
    for (const d of this.#devices.devices.values()) {
      const on = isOnline(d);
      fleet.total++;
      if (on) fleet.online++;
      for (const k in d.tags) {
        const scope = this.#scopes.get(`group:${k}=${d.tags[k]}`);
        if (scope) { scope.total++; if (on) scope.online++; }
      }
    }
    for (const scope of this.#scopes.values()) {
      let count = 0;
      for (const entry of scope.series.values()) count += entry.stats.closed[0]?.count ?? 0;
      scope.readingsPerS = count;
    }

    const dt = Math.max(1, now - this.#lastTickAt) / 1000;
    const sink = this.#options.sinkStatus?.();
    const linesOut = sink?.linesWritten ?? 0;
    const spool = this.#options.spoolBytes?.() ?? 0;
    // Sink lag: how long the sink has had more than a little waiting.
    if (!sink || spool < 64 * 1024) this.#caughtUpAt = now;
    const ack = this.#ackLatency.closed[1];
    this.#health = {
      connections: this.#connections,
      devicesOnline: fleet.online,
      devicesTotal: fleet.total,
      readingsInPerS: (this.#readingsIn - this.#lastReadingsIn) / dt,
      readingsOutPerS: sink ? (linesOut - this.#lastLinesOut) / dt : 0,
      ackP50Ms: ack?.count ? ack.p50 : 0,
      ackP99Ms: ack?.count ? ack.p99 : 0,
      spoolBytes: spool,
      sinkLagBytes: sink ? spool : 0,
      sinkLagMs: sink ? now - this.#caughtUpAt : 0,
      sinkErrors: sink?.errors ?? 0,
      sinkState: sink ? sink.state : 'embedded',
      dashboards: this.#dashboards,
      seriesRefused: this.#seriesRefused,
      ...(this.#hubs ? { hubs: this.#hubs() } : {}),
    };
    this.#lastReadingsIn = this.#readingsIn;
    this.#lastLinesOut = linesOut;
    this.#lastTickAt = now;
  }
}

export function isOnline(d: TrackedDevice): boolean {
  return d.connected && d.presence !== Presence.STALE;
}
