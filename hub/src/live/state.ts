// live/: the state dashboards subscribe to, fed by ingest and advanced by a
// tick. Owns the windowed stats per (scope, metric), the device tracker, the
// alarms and the hub health figures. The live endpoint (endpoint.ts) turns
// this into frames. Imports: spool types, sinks types, live/*.
//
// Direction: ingest -> live only. Ingest calls the LiveFeed methods, which
// do bounded, allocation-light work and never block or throw into ingest.
import { Presence, type LiveHealth } from '@telemetry/proto';
import type { SinkStatus } from '../core/sink-status.ts';
import type { AcceptedBatch } from '../core/batch.ts';
import { Digest, WINDOWS_MS, WindowedSeries } from './aggregates.ts';
import { Alarms } from './alarms.ts';
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
}

export interface Scope {
  readonly name: string;
  /** null for the fleet. */
  readonly tag: { key: string; value: string } | null;
  readonly series: Map<string, { unit: string; ws: WindowedSeries }>;
  online: number;
  total: number;
  readingsPerS: number;
}

interface Route {
  readonly tags: Readonly<Record<string, string>>;
  readonly scopes: readonly Scope[];
  /**
   * Per metric: its series in each scope (null past HUB_LIVE_MAX_SERIES). At
   * most HUB_MAX_METRICS_PER_DEVICE entries: ingest refuses more names per device.
   */
  readonly byMetric: Map<string, (WindowedSeries | null)[]>;
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
  readonly devices: DeviceTracker;
  readonly alarms: Alarms;
  readonly scopes = new Map<string, Scope>();
  readonly #o: LiveStateOptions;
  readonly #now: () => number;
  #series = 0;
  /** Series not created because HUB_LIVE_MAX_SERIES was reached. */
  seriesRefused = 0;
  readonly #ack: WindowedSeries;
  readonly #routes = new Map<string, Route>();
  readonly #digests: Digest[] = [];
  #newest = new Int32Array(16);
  #readingsIn = 0;
  #lastTickAt: number;
  #lastReadingsIn = 0;
  #lastLinesOut = 0;
  #caughtUpAt: number;
  health: LiveHealth = {};
  /** Open connections on the device endpoint (set by buildApp). */
  connections: () => number = () => 0;
  tick = 0;
  dashboards = 0;

  constructor(o: LiveStateOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.devices = new DeviceTracker({ maxDevices: o.maxDevices });
    this.alarms = new Alarms(o.alarmRulesFile);
    this.#ack = new WindowedSeries(this.#now());
    this.#lastTickAt = this.#now();
    this.#caughtUpAt = this.#lastTickAt;
    this.#scope('fleet', null);
    this.syncRegistry();
  }

  /** Re-reads the registry (at start and when it reloads). */
  syncRegistry(): void {
    if (this.#o.knownDevices) this.devices.sync(this.#o.knownDevices());
  }

  #scope(name: string, tag: Scope['tag']): Scope {
    let s = this.scopes.get(name);
    if (!s) {
      s = { name, tag, series: new Map(), online: 0, total: 0, readingsPerS: 0 };
      this.scopes.set(name, s);
    }
    return s;
  }

  #seriesOf(scope: Scope, metric: string, unit: string, now: number): WindowedSeries | null {
    const e = scope.series.get(metric);
    if (e) return e.ws;
    if (this.#series >= this.#o.maxSeries) { this.seriesRefused++; return null; }
    this.#series++;
    const ws = new WindowedSeries(now);
    scope.series.set(metric, { unit, ws });
    return ws;
  }

  get seriesCount(): number { return this.#series; }

  // ---- LiveFeed (called by ingest) ------------------------------------------

  durable(b: AcceptedBatch): void {
    const now = this.#now();
    const n = b.values.length;
    this.#readingsIn += n;
    const d = this.devices.get(b.deviceId, b.tags);
    if (d) {
      d.sawBatch(now);
      d.changed = this.devices.tick;
    }
    const names = b.metricNames;
    const route = this.#route(b);
    // Reduce each metric's readings once (one digest per metric), then add
    // the digests to the open 1 s window of every scope.
    while (this.#digests.length < names.length) this.#digests.push(new Digest());
    const digests = this.#digests;
    for (let mi = 0; mi < names.length; mi++) digests[mi]!.reset();
    const newest = this.#newest.length >= names.length ? this.#newest : (this.#newest = new Int32Array(names.length * 2));
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
        list = route.scopes.map((sc) => this.#seriesOf(sc, m, b.metricUnits[mi] ?? '', now));
        route.byMetric.set(m, list);
      }
      const dg = digests[mi]!;
      for (const ws of list) ws?.open.addDigest(dg);
      const i = newest[mi]!;
      if (d && i >= 0) d.latest(m, b.metricUnits[mi] ?? '', vals[i]!, times[i]!);
    }
  }

  /**
   * The scopes a device's batches feed (fleet plus one per tag) and, per
   * metric, their series. Kept per device while its tags stay the same (a
   * whole session), so a batch costs a map lookup per metric, no string building.
   */
  #route(b: AcceptedBatch): Route {
    const r = this.#routes.get(b.deviceId);
    if (r && r.tags === b.tags) return r;
    const scopes: Scope[] = [this.scopes.get('fleet')!];
    for (const k in b.tags) {
      const v = b.tags[k]!;
      scopes.push(this.#scope(`group:${k}=${v}`, { key: k, value: v }));
    }
    const route: Route = { tags: b.tags, scopes, byMetric: new Map() };
    if (this.#routes.size >= this.#o.maxDevices) this.#routes.clear();
    this.#routes.set(b.deviceId, route);
    return route;
  }

  sessionOpened(deviceId: string, tags: Readonly<Record<string, string>>, firmware: string, address: string): void {
    this.devices.opened(deviceId, tags, this.#now(), firmware, address);
  }

  sessionClosed(deviceId: string, code: number, byHub: boolean): void {
    this.devices.closed(deviceId, code, byHub, this.#now());
  }

  ackLatency(ms: number): void {
    this.#ack.add(ms, 0);
  }

  // ---- tick ----------------------------------------------------------------

  /** Closes windows, updates presence, evaluates alarms, computes health. */
  advance(): void {
    const now = this.#now();
    this.tick++;
    this.devices.tick = this.tick;
    for (const s of this.scopes.values()) for (const e of s.series.values()) e.ws.roll(now);
    this.#ack.roll(now);
    this.devices.sweep(now);
    this.alarms.evaluate(this.devices, now, this.tick);
    // Changes from here until the next advance() go out with the next tick's frames.
    this.devices.tick = this.tick + 1;

    // Presence per scope: one pass over the devices.
    for (const s of this.scopes.values()) { s.online = 0; s.total = 0; }
    const fleet = this.scopes.get('fleet')!;
    for (const d of this.devices.devices.values()) {
      const on = isOnline(d);
      fleet.total++;
      if (on) fleet.online++;
      for (const k in d.tags) {
        const s = this.scopes.get(`group:${k}=${d.tags[k]}`);
        if (s) { s.total++; if (on) s.online++; }
      }
    }
    for (const s of this.scopes.values()) {
      let c = 0;
      for (const e of s.series.values()) c += e.ws.closed[0]?.count ?? 0;
      s.readingsPerS = c;
    }

    const dt = Math.max(1, now - this.#lastTickAt) / 1000;
    const sink = this.#o.sinkStatus?.();
    const linesOut = sink?.linesWritten ?? 0;
    const spool = this.#o.spoolBytes?.() ?? 0;
    // Sink lag: how long the sink has had more than a little waiting.
    if (!sink || spool < 64 * 1024) this.#caughtUpAt = now;
    const ack = this.#ack.closed[1];
    this.health = {
      connections: this.connections(),
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
      dashboards: this.dashboards,
      seriesRefused: this.seriesRefused,
    };
    this.#lastReadingsIn = this.#readingsIn;
    this.#lastLinesOut = linesOut;
    this.#lastTickAt = now;
  }

  /** Readings counted by the live path since start. */
  get readingsIn(): number { return this.#readingsIn; }
}

export function isOnline(d: TrackedDevice): boolean {
  return d.connected && d.presence !== Presence.STALE;
}

export { WINDOWS_MS };
