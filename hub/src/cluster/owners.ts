// cluster/: one session per device, cluster-wide. Each device has an entry
// in the owners KV bucket naming the hub its session lives on. A hub claims
// it before Welcome with a compare-and-set on the entry's revision (create
// when there is none), so two hubs racing for one device cannot both win a
// revision; every hub watches the bucket and ends its own session of a
// device (4002) as soon as another hub holds a newer revision: that stale
// session never gets another ack. The entry also carries the device's
// durable seq when its session ended (a hint for resume) and whether it is
// online, which is the cluster-wide presence. Imports: core, cluster/link.
import type { KV, KvEntry, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '../core/log.ts';
import { deviceFromToken, deviceToken, type ClusterLink } from './link.ts';

/** An owner entry's value (JSON). */
export interface OwnerEntry {
  /** The hub holding (or last holding) the device's session. */
  hub: string;
  /** Unix ms of the change. */
  at: number;
  /** Online: a session lives on `hub`. */
  online: boolean;
  /** The durable seq when the session ended (0 while online, or unknown). */
  seq: number;
  /** Offline: the close code that ended the session, and whether the hub closed it (absent while online). */
  code?: number;
  byHub?: boolean;
}

/** Owner entries are small; anything bigger is not ours. */
const MAX_ENTRY_BYTES = 512;
const CLAIM_ATTEMPTS = 8;

export function parseOwner(data: Uint8Array): OwnerEntry | null {
  if (data.length === 0 || data.length > MAX_ENTRY_BYTES) return null;
  try {
    const v = JSON.parse(Buffer.from(data).toString('utf8')) as Partial<OwnerEntry>;
    if (typeof v.hub !== 'string' || typeof v.at !== 'number' || typeof v.online !== 'boolean' || typeof v.seq !== 'number') return null;
    const entry: OwnerEntry = { hub: v.hub, at: v.at, online: v.online, seq: v.seq };
    if (typeof v.code === 'number' && Number.isInteger(v.code) && v.code >= 1000 && v.code <= 4999) entry.code = v.code;
    if (typeof v.byHub === 'boolean') entry.byHub = v.byHub;
    return entry;
  } catch {
    return null;
  }
}

export interface OwnerChange {
  deviceId: string;
  entry: OwnerEntry | null;
  revision: number;
}

export interface DeviceOwnersOptions {
  link: ClusterLink;
  log: Logger;
  now?: () => number;
  /** Another hub took over a device whose session lives here. */
  onLost: (deviceId: string, toHub: string) => void;
  /** Every change of any entry, this hub's own included (cluster-wide presence). */
  onChange?: (change: OwnerChange) => void;
}

export class DeviceOwners {
  readonly #kv: KV;
  readonly #hub: string;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #onLost: DeviceOwnersOptions['onLost'];
  readonly #onChange: DeviceOwnersOptions['onChange'];
  /** Devices whose session lives here, with the revision this hub wrote. */
  readonly #held = new Map<string, number>();
  #watching: { stop(): void } | null = null;
  claims = 0;
  takeovers = 0;
  lost = 0;

  constructor(opts: DeviceOwnersOptions) {
    this.#kv = opts.link.owners;
    this.#hub = opts.link.hubId;
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
    this.#onLost = opts.onLost;
    this.#onChange = opts.onChange;
  }

  get hubId(): string { return this.#hub; }
  /** Devices whose sessions this hub holds. */
  get held(): number { return this.#held.size; }

  /** Starts watching the bucket (the current entries first, then every change). */
  async start(): Promise<void> {
    const watch = await this.#kv.watch({ key: '>' });
    this.#watching = watch;
    void (async () => {
      for await (const e of watch) this.#seen(e);
    })().catch((err: unknown) => this.#log.error({ err }, 'device owners watch ended'));
  }

  #seen(e: KvWatchEntry): void {
    let deviceId: string;
    try { deviceId = deviceFromToken(e.key); } catch { return; }
    const entry = e.operation === 'PUT' ? parseOwner(e.value) : null;
    this.#onChange?.({ deviceId, entry, revision: e.revision });
    const mine = this.#held.get(deviceId);
    if (mine === undefined || e.revision <= mine || !entry || entry.hub === this.#hub) return;
    this.#held.delete(deviceId);
    this.lost++;
    this.#onLost(deviceId, entry.hub);
  }

  /**
   * Makes this hub the device's owner (compare-and-set, retried when another
   * hub wrote in between). Resolves with the previous entry (its `seq` is a
   * resume hint). Rejects when NATS cannot be reached.
   */
  async claim(deviceId: string): Promise<OwnerEntry | null> {
    const key = deviceToken(deviceId);
    const value = JSON.stringify({ hub: this.#hub, at: this.#now(), online: true, seq: 0 } satisfies OwnerEntry);
    let lastErr: unknown;
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const before: KvEntry | null = await this.#kv.get(key);
      const prev = before && before.operation === 'PUT' ? parseOwner(before.value) : null;
      try {
        const rev = before ? await this.#kv.update(key, value, before.revision) : await this.#kv.create(key, value);
        this.#held.set(deviceId, rev);
        this.claims++;
        if (prev?.online && prev.hub !== this.#hub) this.takeovers++;
        return prev;
      } catch (err) {
        lastErr = err;
        if (!/wrong last sequence|key exists/i.test((err as Error).message)) throw err;
      }
    }
    throw new Error(`could not claim device ${deviceId}: the owner entry kept changing (${(lastErr as Error)?.message})`);
  }

  /**
   * The device's session here ended: the entry says offline, with its
   * durable seq, if this hub still owns it (compare-and-set: a newer owner
   * is never overwritten). Best effort, never throws.
   */
  release(deviceId: string, durableSeq: number, close?: { code: number; byHub: boolean }): Promise<void> {
    const rev = this.#held.get(deviceId);
    if (rev === undefined) return Promise.resolve();
    this.#held.delete(deviceId);
    const value = JSON.stringify({ hub: this.#hub, at: this.#now(), online: false, seq: durableSeq, ...(close ? { code: close.code, byHub: close.byHub } : {}) } satisfies OwnerEntry);
    return this.#kv.update(deviceToken(deviceId), value, rev).then(() => undefined, () => undefined);
  }

  /** Whether this hub holds the device's session. */
  holds(deviceId: string): boolean { return this.#held.has(deviceId); }

  /** Releases every device held (shutdown), each with its durable seq. */
  async releaseAll(durableSeq: (deviceId: string) => number): Promise<void> {
    await Promise.all([...this.#held.keys()].map((d) => this.release(d, durableSeq(d), { code: 1001, byHub: true })));
  }

  stop(): void {
    this.#watching?.stop();
    this.#watching = null;
  }
}
