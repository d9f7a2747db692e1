// cluster/: desired and reported device configuration shared by every hub
// of a cluster, in one JetStream KV bucket (`<stream>-device-config`): key
// `d.<device token>` holds a device's entry (version, effective desired
// values, its own desired values, its latest report), `g.<group token>` a
// tag group's defaults; tokens are base64url (link.ts deviceToken). The
// bucket is the configuration: the embedded file (`<data>/device-config.json`)
// is not read in cluster mode.
//
// - Writes are compare-and-set: each put names the revision of the key this
//   hub last saw (its own writes and the watch). One that raced another
//   hub's write of the same key is refused by JetStream (wrong last
//   sequence); the key is read again, adopted, and the save throws
//   ConfigConflictError, so devices/configs.ts plans the change again on
//   what that hub wrote. Two operators changing one device on two hubs at
//   once therefore get two versions, never one version for two
//   configurations.
// - A save is in force here once the bucket acknowledged it (R1: stored,
//   R3: replicated); the other hubs take it from their watch of the bucket
//   and tell the hub holding the device's session, which sends the delta.
//   Reports are written by the hub the device reports to (coalesced, at most
//   one save a second), and read by the others through the same watch.
// - Groups are written before their members, so a hub's watch sees a
//   group's defaults before the member entries computed with them.
// - Every entry read is checked as the file is (a bad one is skipped and
//   logged, at most HUB_LOG_LINES_PER_MIN lines); values are at most
//   MAX_VALUE_BYTES, the bucket at most BUCKET_BYTES.
// Imports: core, devices (the persistence seam), cluster/link.
import type { KV, KvEntry, KvWatchEntry } from '@nats-io/kv';
import { Kvm } from '@nats-io/kv';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { Counter } from 'prom-client';
import type { HubConfig } from '../core/config.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { LogLimiter } from '../core/log.ts';
import { ConfigConflictError, type ConfigPersistence, type DeviceConfigs, type PersistView } from '../devices/configs.ts';
import { deviceFromToken, deviceToken, type ClusterLink } from './link.ts';
import { follow } from './shared-state.ts';

/** Largest entry: a device's own and reported custom JSON (4 KiB each) with the rest fit many times over. */
const MAX_VALUE_BYTES = 64 << 10;
const BUCKET_BYTES = 256 << 20;
/** Puts of one save in flight at once (a tag group's members). */
const PUTS_IN_FLIGHT = 256;

export function configBucket(stream: string): string { return `${stream}-device-config`; }
export const deviceKey = (deviceId: string): string => `d.${deviceToken(deviceId)}`;
export const groupKey = (key: string): string => `g.${deviceToken(key)}`;

export interface SharedConfigsOptions {
  link: ClusterLink;
  config: HubConfig;
  log: LogLimiter;
  metrics?: HubMetrics;
}

function isConflict(err: unknown): boolean {
  return err instanceof JetStreamApiError
    && (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

export class SharedConfigs implements ConfigPersistence {
  readonly #o: SharedConfigsOptions;
  #kv: KV | null = null;
  #configs: DeviceConfigs | null = null;
  #watch: { stop(): void } | null = null;
  /** The revision of each key as this hub last saw it (0: none). */
  readonly #revisions = new Map<string, number>();
  /** Entries skipped because they did not validate. */
  rejected = 0;
  /** Saves that raced another hub's write (each then planned again). */
  conflicts = 0;

  constructor(o: SharedConfigsOptions) {
    this.#o = o;
    if (o.metrics) {
      const read = (): [number, number] => [this.conflicts, this.rejected];
      new Counter({
        name: 'hub_cluster_config_events_total', help: 'Cluster mode: device configuration saves that raced another hub\'s write (each planned again), and entries of the shared bucket rejected as not valid',
        labelNames: ['event'], registers: [o.metrics.registry],
        collect() { const [c, r] = read(); this.reset(); this.labels('conflict').inc(c); this.labels('rejected').inc(r); },
      });
    }
  }

  /** Creates the bucket (or binds to it). */
  async open(): Promise<void> {
    const { link, config } = this.#o;
    this.#kv = await new Kvm(link.nc).create(configBucket(config.natsStream), {
      history: 1, replicas: config.natsReplicas, maxValueSize: MAX_VALUE_BYTES, max_bytes: BUCKET_BYTES,
    });
  }

  /** Adopts what the bucket holds into `configs` (resolves once caught up) and follows it from then on. */
  async start(configs: DeviceConfigs): Promise<void> {
    this.#configs = configs;
    this.#watch = await follow(this.#bucket, (e) => this.#seen(e));
  }

  get #bucket(): KV {
    if (!this.#kv) throw new Error('SharedConfigs.open() first');
    return this.#kv;
  }

  async save(view: PersistView, changed: { devices: readonly string[]; groups: readonly string[] }): Promise<void> {
    const conflicts: string[] = [];
    for (const key of changed.groups) await this.#write(groupKey(key), view.groupJson(key), conflicts);
    if (conflicts.length === 0) {
      const ids = [...changed.devices];
      for (let i = 0; i < ids.length; i += PUTS_IN_FLIGHT) {
        await Promise.all(ids.slice(i, i + PUTS_IN_FLIGHT).map((id) => this.#write(deviceKey(id), view.deviceJson(id), conflicts)));
      }
    }
    if (conflicts.length === 0) return;
    this.conflicts++;
    // What the other hub wrote, in force here before the change is planned again.
    for (const key of conflicts) {
      const e = await this.#bucket.get(key);
      if (e) this.#seen(e);
    }
    throw new ConfigConflictError(conflicts.map((k) => this.#name(k) ?? k));
  }

  async #write(key: string, json: string | undefined, conflicts: string[]): Promise<void> {
    const previousSeq = this.#revisions.get(key) ?? 0;
    try {
      if (json === undefined) {
        if (previousSeq === 0) return;
        await this.#bucket.delete(key, { previousSeq });
      } else {
        const revision = await this.#bucket.put(key, json, { previousSeq });
        if (revision > (this.#revisions.get(key) ?? 0)) this.#revisions.set(key, revision);
      }
    } catch (err) {
      if (!isConflict(err)) throw err;
      conflicts.push(key);
    }
  }

  /** `d.<token>` / `g.<token>` as the device id or group key, or null. */
  #name(key: string): string | null {
    if (!/^[dg]\.[A-Za-z0-9_-]+$/.test(key)) return null;
    try { return deviceFromToken(key.slice(2)); } catch { return null; }
  }

  #seen(e: KvEntry | KvWatchEntry): void {
    const configs = this.#configs;
    if (!configs || e.revision <= (this.#revisions.get(e.key) ?? 0)) return;
    this.#revisions.set(e.key, e.revision);
    const name = this.#name(e.key);
    let raw: unknown = null;
    let ok = name !== null;
    if (ok && e.operation === 'PUT') {
      if (e.value.length === 0 || e.value.length > MAX_VALUE_BYTES) ok = false;
      else try { raw = JSON.parse(Buffer.from(e.value).toString('utf8')); } catch { ok = false; }
    }
    if (ok && name !== null) ok = e.key.startsWith('d.') ? configs.adoptDevice(name, raw) : configs.adoptGroup(name, raw);
    if (!ok) {
      this.rejected++;
      this.#o.log.warn('shared_entry_invalid', { bucket: 'device-config', key: e.key.slice(0, 200) }, 'device configuration entry in the shared bucket is not valid; ignored');
    }
  }

  stop(): void { this.#watch?.stop(); }
}
