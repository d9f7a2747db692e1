// live/: the frames of /v1/live: what one dashboard socket gets for a tick,
// built from the live state. Snapshot and delta rules (proto/README.md,
// "Frames"): a snapshot carries everything for the socket's topics; a delta
// carries devices, alarms and removed ids changed since the socket's
// previous frame, with scopes, health and device details complete. Coarse
// frames (a degraded socket) carry only the 10 s and 1 min windows.
// Imports: proto, live/state, live/devices, live/alarms, live/ladder (types).
//
// Cost: scope and device messages are built once per tick and shared by
// every socket that sends that tick (the per-tick caches below).
import type { AlarmMsg, DeviceDetail, DeviceStateMsg, LiveFrameProps, MetricStats, ScopeStats } from '@telemetry/proto';
import type { AlarmRec } from './alarms.ts';
import type { TrackedDevice } from './devices.ts';
import type { LadderState } from './ladder.ts';
import type { LiveState, Scope } from './state.ts';

/** What frame building reads of a socket (and its sequence number, which it advances). */
export interface FrameSubscriber {
  readonly topics: readonly string[];
  /** Sequence number of the socket's previous frame; building a frame takes the next. */
  seq: number;
  /** Tick of the socket's previous frame: a delta carries what changed after it. */
  readonly lastTick: number;
  readonly snapshotDue: boolean;
  /** Ticks skipped since the previous frame (the frame's skipped_ticks). */
  readonly skippedSince: number;
  /** Its slow-consumer state: while degraded, coarse frames (10 s and 1 min windows only). */
  readonly ladder: Pick<LadderState, 'degraded'>;
}

export class LiveFrames {
  readonly #state: LiveState;
  readonly #tickMs: number;
  readonly #now: () => number;
  // Per-tick caches: built once per tick, shared by every socket.
  #cacheTick = -1;
  /** Scope messages by scope name, and by `${name}\0coarse` for coarse frames. */
  readonly #scopeCache = new Map<string, ScopeStats>();
  readonly #deviceCache = new Map<string, DeviceStateMsg>();

  constructor(state: LiveState, tickMs: number, now: () => number) {
    this.#state = state;
    this.#tickMs = tickMs;
    this.#now = now;
  }

  /**
   * The frame for `socket` at `tick`. `immediate`: the answer to a subscribe,
   * not a tick's frame (skipped_ticks 0). `dashboards`: connected dashboards, for health.
   */
  build(socket: FrameSubscriber, tick: number, immediate: boolean, dashboards: number): LiveFrameProps {
    const state = this.#state;
    if (this.#cacheTick !== tick) {
      this.#cacheTick = tick;
      this.#scopeCache.clear();
      this.#deviceCache.clear();
    }
    const snapshot = socket.snapshotDue;
    const since = snapshot ? -1 : socket.lastTick;
    const frame: LiveFrameProps = {
      seq: ++socket.seq, hubTimeMs: this.#now(), snapshot, tickMs: this.#tickMs,
      skippedTicks: immediate ? 0 : socket.skippedSince, degraded: socket.ladder.degraded,
    };
    const scopes: ScopeStats[] = [];
    for (const topic of socket.topics) {
      if (topic === 'fleet') {
        frame.health = { ...state.health, dashboards };
        const stats = this.#scopeStats('fleet', socket.ladder.degraded);
        if (stats) scopes.push(stats);
        frame.alarms = this.#alarms(since);
      } else if (topic.startsWith('group:')) {
        const stats = this.#scopeStats(topic, socket.ladder.degraded);
        scopes.push(stats ?? { scope: topic });
      } else if (topic === 'devices') {
        const list: DeviceStateMsg[] = [];
        state.forEachDeviceChangedSince(since, (d) => list.push(this.#device(d)));
        frame.devices = list;
        if (!snapshot) frame.removedDevices = state.removedDeviceIdsSince(since);
      } else if (topic.startsWith('device:')) {
        const d = state.device(topic.slice(7));
        if (d) (frame.deviceDetails ??= []).push(this.#detail(d));
      }
    }
    if (scopes.length) frame.scopes = scopes;
    return frame;
  }

  #scopeStats(name: string, coarse: boolean): ScopeStats | null {
    const key = coarse ? `${name}\0coarse` : name;
    let msg = this.#scopeCache.get(key);
    if (!msg) {
      const scope = this.#state.scope(name);
      if (!scope) return null;
      msg = scopeMsg(scope, coarse, this.#state.alarmsActiveIn(scope));
      this.#scopeCache.set(key, msg);
    }
    return msg;
  }

  #device(d: TrackedDevice): DeviceStateMsg {
    let msg = this.#deviceCache.get(d.id);
    if (!msg) {
      msg = deviceMsg(d);
      this.#deviceCache.set(d.id, msg);
    }
    return msg;
  }

  #detail(d: TrackedDevice): DeviceDetail {
    return {
      state: this.#device(d), firmware: d.firmware, address: d.address,
      history: d.history(),
    };
  }

  #alarms(since: number): AlarmMsg[] {
    const out: AlarmMsg[] = [];
    this.#state.forEachAlarmChangedSince(since, (r) => out.push(alarmMsg(r)));
    return out;
  }
}

function scopeMsg(scope: Scope, coarse: boolean, alarmsActive: number): ScopeStats {
  const metrics: MetricStats[] = [];
  for (const [metric, entry] of scope.series) {
    const windows = [];
    // closed[0] is the 1 s window: coarse frames leave it out.
    for (let i = coarse ? 1 : 0; i < entry.stats.closed.length; i++) {
      const w = entry.stats.closed[i];
      if (w) windows.push(w);
    }
    metrics.push({ metric, unit: entry.unit, windows });
  }
  return {
    scope: scope.name, devicesOnline: scope.online, devicesTotal: scope.total, readingsPerS: scope.readingsPerS, metrics,
    alarmsActive,
  };
}

function deviceMsg(d: TrackedDevice): DeviceStateMsg {
  return {
    id: d.id, presence: d.presence, presenceSinceMs: d.since, presenceReason: d.reason, lastSeenMs: d.lastSeen,
    latest: d.metrics.map((m, i) => ({ metric: m, unit: d.units[i]!, value: d.values[i]!, timeMs: d.times[i]! })),
    tags: d.tags, cadenceMs: d.learnedCadenceMs,
  };
}

function alarmMsg(r: AlarmRec): AlarmMsg {
  return {
    id: r.id, ruleId: r.ruleId, ruleName: r.ruleName, device: r.device, metric: r.metric, condition: r.condition,
    value: r.value, sinceMs: r.sinceMs, untilMs: r.untilMs,
  };
}
