// live/: per-device state for dashboards: the latest value of each metric by
// event time, last seen, a learned reporting cadence, and presence that
// explains itself (online / stale / offline / flapping, since when, why).
// Imports: proto (close codes, Presence enum).
//
// Memory per device: 1.4-1.6 KB measured with 4 metrics and tags (the
// live-state test), plus up to HISTORY presence changes (~100 B each).
// Devices are capped (HUB_LIVE_MAX_DEVICES); past the cap new devices are
// counted, not tracked. Latest values: one per metric name of the device,
// so at most HUB_MAX_METRICS_PER_DEVICE (ingest refuses more names).
import { CloseCode, Presence } from '@telemetry/proto';

/** Presence changes kept per device (connection history). */
export const HISTORY = 20;
/** Disconnects within FLAP_WINDOW_MS that make a device "flapping". */
export const FLAP_DISCONNECTS = 3;
export const FLAP_WINDOW_MS = 5 * 60_000;
/** Removed ids remembered for the next frames' removed_devices: bounds memory when the registry churns. */
const REMOVED_KEPT = 10_000;
/** A connected device is stale after max(3 x cadence, cadence + 5 s) of silence. */
const STALE_FACTOR = 3;
const STALE_MIN_EXTRA_MS = 5_000;
/** Before a cadence is learned: stale after this much silence. */
const STALE_DEFAULT_MS = 60_000;

/** Shared by every device with no presence change yet; never written to. */
const NO_HISTORY: PresenceChangeRec[] = [];

export type PresenceValue = (typeof Presence)[keyof typeof Presence];

export interface PresenceChangeRec { presence: PresenceValue; timeMs: number; reason: string }

export class TrackedDevice {
  presence: PresenceValue = Presence.OFFLINE;
  since = 0;
  reason = 'not connected since the hub started';
  connected = false;
  lastSeen = 0;
  lastBatchAt = 0;
  /** EWMA of the interval between batches, ms; 0 until 3 batches seen. */
  cadenceMs = 0;
  #intervalsSeen = 0;
  firmware = '';
  address = '';
  /** Tick number of the last change (frames send devices changed since a socket's last frame). */
  changed = 0;
  /** Latest value per metric, in columns (frames read them in order); #metricIndex finds a metric's row. */
  readonly metrics: string[] = [];
  readonly units: string[] = [];
  readonly values: number[] = [];
  readonly times: number[] = [];
  readonly #metricIndex = new Map<string, number>();
  /**
   * The presence changes before the current one, oldest first (at most
   * HISTORY - 1; history() adds the current one). Kept apart from the
   * current presence so that a device seen in one state only (most of a
   * fleet after a restart) holds no history objects.
   */
  #past: PresenceChangeRec[] = NO_HISTORY;
  /** presence/since/reason are a change (not the state the hub started with). */
  #changedOnce = false;
  readonly disconnects: number[] = [];
  constructor(readonly id: string, public tags: Readonly<Record<string, string>>) {}

  set(p: PresenceValue, now: number, reason: string): void {
    if (p === this.presence && reason === this.reason) return;
    if (this.#changedOnce) {
      const left = { presence: this.presence, timeMs: this.since, reason: this.reason };
      if (this.#past === NO_HISTORY) this.#past = [left];
      else if (this.#past.push(left) > HISTORY - 1) this.#past.shift();
    }
    this.#changedOnce = true;
    this.presence = p;
    this.since = now;
    this.reason = reason;
  }

  /** Connection history: the last HISTORY presence changes, oldest first, the current presence last. */
  history(): PresenceChangeRec[] {
    if (!this.#changedOnce) return [];
    return [...this.#past, { presence: this.presence, timeMs: this.since, reason: this.reason }];
  }

  /** Row of a metric in the latest-value columns, -1 if none. */
  metricIndex(metric: string): number {
    return this.#metricIndex.get(metric) ?? -1;
  }

  /** Latest value of a metric by event time: an older reading never replaces a newer one. */
  latest(metric: string, unit: string, value: number, timeMs: number): boolean {
    const i = this.#metricIndex.get(metric);
    if (i === undefined) {
      this.#metricIndex.set(metric, this.metrics.push(metric) - 1);
      this.units.push(unit);
      this.values.push(value);
      this.times.push(timeMs);
      return true;
    }
    if (timeMs <= this.times[i]!) return false;
    this.values[i] = value;
    this.times[i] = timeMs;
    this.units[i] = unit;
    return true;
  }

  sawBatch(now: number): void {
    if (this.lastBatchAt > 0) {
      const gap = now - this.lastBatchAt;
      this.cadenceMs = this.#intervalsSeen === 0 ? gap : this.cadenceMs * 0.8 + gap * 0.2;
      this.#intervalsSeen++;
    }
    this.lastBatchAt = now;
    this.lastSeen = now;
  }

  /** Silence after which a connected device counts as stale, ms. */
  staleAfterMs(): number {
    if (this.#intervalsSeen < 2) return STALE_DEFAULT_MS;
    return Math.max(this.cadenceMs * STALE_FACTOR, this.cadenceMs + STALE_MIN_EXTRA_MS);
  }

  get learnedCadenceMs(): number { return this.#intervalsSeen < 2 ? 0 : Math.round(this.cadenceMs); }
}

/** Why a session ended, in words an operator understands. */
export function closeExplanation(code: number, byHub: boolean): string {
  switch (code) {
    case CloseCode.NORMAL: return 'clean close (1000)';
    case CloseCode.GOING_AWAY: return byHub ? 'hub shutting down (1001)' : 'clean close (1001)';
    case 1006: return 'keepalive timeout or connection lost (1006)';
    case CloseCode.TRY_AGAIN_LATER: return 'backpressure close: storage full (1013)';
    case CloseCode.WINDOW_EXCEEDED: return 'backpressure close: window exceeded (4003)';
    case CloseCode.RATE_LIMITED: return 'backpressure close: over its readings/s limit (4004)';
    case CloseCode.SESSION_REPLACED: return 'replaced by a newer session (4002)';
    case CloseCode.DEVICE_REVOKED: return 'auth: registration revoked (4008)';
    case CloseCode.HANDSHAKE_TIMEOUT: return 'no Hello in time (4001)';
    case CloseCode.INTERNAL_ERROR: return 'hub storage error (1011)';
    default: return `${byHub ? 'closed by the hub' : 'closed by the device'} (${code})`;
  }
}

export interface DeviceTrackerOptions {
  maxDevices: number;
}

/** Every device dashboards can see; fed by ingest, swept each tick. */
export class DeviceTracker {
  readonly #byId = new Map<string, TrackedDevice>();
  /** The tracked devices by id, read-only: only the tracker adds and removes them. */
  readonly devices: ReadonlyMap<string, TrackedDevice> = this.#byId;
  readonly #maxDevices: number;
  /** Devices not tracked because the cap was reached. */
  refused = 0;
  /** Ids removed (registry), stamped like changes; the newest REMOVED_KEPT. */
  readonly #removed: { id: string; tick: number }[] = [];
  /**
   * The stamp for changes made now: the tick of the next frame that must
   * carry them (LiveState moves it; frames send what changed after their last tick).
   */
  tick = 1;

  constructor(options: DeviceTrackerOptions) {
    this.#maxDevices = options.maxDevices;
  }

  /** The device, tracked from now on if it is new and the cap allows (null past the cap). */
  get(id: string, tags?: Readonly<Record<string, string>>): TrackedDevice | null {
    let d = this.#byId.get(id);
    if (!d) {
      if (this.#byId.size >= this.#maxDevices) { this.refused++; return null; }
      d = new TrackedDevice(id, tags ?? {});
      d.changed = this.tick;
      this.#byId.set(id, d);
    } else if (tags && d.tags !== tags) {
      d.tags = tags;
    }
    return d;
  }

  /** Calls `visit` for each device changed after tick `since` (-1: every device), in insertion order. */
  forEachChangedSince(since: number, visit: (d: TrackedDevice) => void): void {
    for (const d of this.#byId.values()) if (d.changed > since) visit(d);
  }

  /** Ids removed after tick `since`, oldest first. */
  removedSince(since: number): string[] {
    return this.#removed.filter((r) => r.tick > since).map((r) => r.id);
  }

  /** Registry contents: known devices appear (offline) before they ever connect; deleted ones go. */
  sync(known: Iterable<[string, Readonly<Record<string, string>>]>): void {
    const seen = new Set<string>();
    for (const [id, tags] of known) {
      seen.add(id);
      const d = this.get(id, tags);
      if (d) d.changed = this.tick;
    }
    for (const id of [...this.#byId.keys()]) {
      if (!seen.has(id)) {
        this.#byId.delete(id);
        this.#removed.push({ id, tick: this.tick });
      }
    }
    if (this.#removed.length > REMOVED_KEPT) this.#removed.splice(0, this.#removed.length - REMOVED_KEPT);
  }

  opened(id: string, tags: Readonly<Record<string, string>>, now: number, firmware: string, address: string): void {
    const d = this.get(id, tags);
    if (!d) return;
    d.connected = true;
    d.firmware = firmware;
    d.address = address;
    d.lastSeen = now;
    d.lastBatchAt = 0;
    while (d.disconnects.length && d.disconnects[0]! < now - FLAP_WINDOW_MS) d.disconnects.shift();
    if (d.disconnects.length >= FLAP_DISCONNECTS) d.set(Presence.FLAPPING, now, `${d.disconnects.length} disconnects in ${FLAP_WINDOW_MS / 60_000} min`);
    else d.set(Presence.ONLINE, now, 'connected');
    d.changed = this.tick;
  }

  closed(id: string, code: number, byHub: boolean, now: number): void {
    const d = this.#byId.get(id);
    if (!d || !d.connected) return;
    d.connected = false;
    // A replaced session is not a disconnect of the device: its newer session is already open.
    if (code === CloseCode.SESSION_REPLACED) return;
    d.disconnects.push(now);
    if (d.disconnects.length > FLAP_DISCONNECTS * 4) d.disconnects.shift();
    d.set(Presence.OFFLINE, now, closeExplanation(code, byHub));
    d.changed = this.tick;
  }

  /** Presence that depends on time passing: stale, back to online, flapping calming down. */
  sweep(now: number): void {
    for (const d of this.#byId.values()) {
      if (!d.connected) continue;
      const silent = now - d.lastSeen;
      if (d.presence === Presence.ONLINE && silent > d.staleAfterMs()) {
        const usual = d.learnedCadenceMs ? ` (usually every ${fmtS(d.learnedCadenceMs)})` : '';
        d.set(Presence.STALE, now, `silent for ${fmtS(silent)}${usual}`);
        d.changed = this.tick;
      } else if (d.presence === Presence.STALE && silent <= d.staleAfterMs()) {
        d.set(Presence.ONLINE, now, 'reporting again');
        d.changed = this.tick;
      } else if (d.presence === Presence.FLAPPING) {
        const last = d.disconnects[d.disconnects.length - 1] ?? 0;
        if (now - last > FLAP_WINDOW_MS) {
          d.set(Presence.ONLINE, now, `no disconnect for ${FLAP_WINDOW_MS / 60_000} min`);
          d.changed = this.tick;
        }
      }
    }
  }
}

function fmtS(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}
