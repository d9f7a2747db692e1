// cluster/: tracked commands shared by every hub of a cluster, in one
// JetStream KV bucket (`<stream>-commands`), key `<device token>.<command
// id>`, value the record with its arguments (JSON). devices/commands.ts
// stores a command here before it is sent or answered; each hub watches
// the bucket and mirrors every record, so the hub that holds the device's
// session delivers it (at once, or when the device connects), and any hub
// shows it and its result. Last writer wins per key: a record has one
// writer at a time (the hub that took it, then the one holding the
// session), and each hub moves a record forward only.
//
// Records expire from the bucket after RECORD_TTL_MS (the longest TTL and
// timeout, plus an hour to read the result); the bucket is at most
// BUCKET_BYTES, entries at most MAX_VALUE_BYTES; every entry read is checked
// (devices/commands.ts parseRecord), a bad one skipped and logged (at most
// HUB_LOG_LINES_PER_MIN lines).
// Imports: core, devices (the CommandShare seam), cluster/link, shared-state.
import type { KV, KvWatchEntry } from '@nats-io/kv';
import { Kvm } from '@nats-io/kv';
import { Counter } from 'prom-client';
import type { HubConfig } from '../core/config.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { LogLimiter } from '../core/log.ts';
import { MAX_TIMEOUT_MS, MAX_TTL_MS, type CommandRecord, type CommandShare, type CommandTracker } from '../devices/commands.ts';
import { deviceToken, type ClusterLink } from './link.ts';
import { follow } from './shared-state.ts';

/** A record with 4 KiB of arguments and a 4 KiB result fits, twice over. */
const MAX_VALUE_BYTES = 32 << 10;
const BUCKET_BYTES = 256 << 20;
export const RECORD_TTL_MS = MAX_TTL_MS + MAX_TIMEOUT_MS + 3_600_000;

export function commandsBucket(stream: string): string { return `${stream}-commands`; }
export const commandKey = (deviceId: string, id: string): string => `${deviceToken(deviceId)}.${id}`;

export interface SharedCommandsOptions {
  link: ClusterLink;
  config: HubConfig;
  log: LogLimiter;
  /** A session of the device lives on another hub (cluster presence). */
  onlineElsewhere: (deviceId: string) => boolean;
  metrics?: HubMetrics;
}

export class SharedCommands implements CommandShare {
  readonly #o: SharedCommandsOptions;
  #kv: KV | null = null;
  #watch: { stop(): void } | null = null;
  /** Entries skipped because they did not validate (or found no room). */
  rejected = 0;

  constructor(o: SharedCommandsOptions) {
    this.#o = o;
    if (o.metrics) {
      const read = (): number => this.rejected;
      new Counter({
        name: 'hub_cluster_command_entries_rejected_total', help: 'Cluster mode: entries of the shared commands bucket rejected (not valid, or no room)',
        registers: [o.metrics.registry], collect() { this.reset(); this.inc(read()); },
      });
    }
  }

  async open(): Promise<void> {
    const { link, config } = this.#o;
    this.#kv = await new Kvm(link.nc).create(commandsBucket(config.natsStream), {
      history: 1, replicas: config.natsReplicas, maxValueSize: MAX_VALUE_BYTES, max_bytes: BUCKET_BYTES, ttl: RECORD_TTL_MS,
    });
  }

  /** Mirrors the bucket into `tracker` (resolves once caught up), and follows it. */
  async start(tracker: CommandTracker): Promise<void> {
    this.#watch = await follow(this.#bucket, (e) => this.#seen(tracker, e));
  }

  get #bucket(): KV {
    if (!this.#kv) throw new Error('SharedCommands.open() first');
    return this.#kv;
  }

  async put(record: CommandRecord, argsJson: string): Promise<void> {
    await this.#bucket.put(commandKey(record.device, record.id), JSON.stringify({ ...record, argsJson }));
  }

  onlineElsewhere(deviceId: string): boolean { return this.#o.onlineElsewhere(deviceId); }

  #seen(tracker: CommandTracker, e: KvWatchEntry): void {
    if (e.operation !== 'PUT') return; // expired or removed: the tracker forgets finished records by itself
    let raw: unknown = null;
    if (e.value.length > 0 && e.value.length <= MAX_VALUE_BYTES) {
      try { raw = JSON.parse(Buffer.from(e.value).toString('utf8')); } catch { raw = null; }
    }
    const r = raw as { device?: unknown; id?: unknown } | null;
    // The key names the record: an entry under another device's key is not taken.
    const ok = r !== null && typeof r.device === 'string' && typeof r.id === 'string' && commandKey(r.device, r.id) === e.key && tracker.adopt(raw);
    if (!ok) {
      this.rejected++;
      this.#o.log.warn('shared_entry_invalid', { bucket: 'commands', key: e.key.slice(0, 200) }, 'command entry in the shared bucket is not valid; ignored');
    }
  }

  stop(): void { this.#watch?.stop(); }
}
