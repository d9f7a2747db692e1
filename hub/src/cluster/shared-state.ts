// cluster/: the state operators change, shared by every hub of a cluster in
// JetStream KV buckets, each watched by every hub:
//
// - devices (`<stream>-devices`, key: device token): the registry. Each hub
//   publishes the devices of its HUB_DEVICES_FILE that the bucket lacks at
//   start, and what changes in that file while it runs (a device added,
//   changed or removed there is added, changed or removed cluster-wide). The
//   registry a hub authenticates with is the bucket's content, so a device
//   revoked through any hub's file is closed (4008) wherever its session is.
// - operators (`<stream>-operators`, key: name): accounts; a password set on
//   one hub (HUB_ADMIN_PASSWORD, first run) is the password on all.
// - operator sessions (`<stream>-op-sessions`, key: the token's SHA-256, so
//   the bucket never holds a usable token; entries expire with
//   HUB_SESSION_TTL_S): a sign-in on one hub works on all, a sign-out or a
//   password change ends the session on all.
// - alarm rules (`<stream>-alarm-rules`, one key): the rules list.
//
// Every entry read is validated as the files are (a bad one is skipped and
// logged, at most HUB_LOG_LINES_PER_MIN lines); buckets are bounded in size.
// Imports: core, auth (types), live (the Alarms type), cluster/link.
import type { KV, KvWatchEntry } from '@nats-io/kv';
import { Kvm } from '@nats-io/kv';
import type { OperatorRecord, Operators, SessionRecord } from '../auth/operators.ts';
import { OperatorsFileSchema, RegistryFileSchema } from '../auth/schemas.ts';
import type { DeviceEntry, DeviceRegistry, RegistryFile } from '../auth/registry.ts';
import type { HubConfig } from '../core/config.ts';
import type { LogLimiter } from '../core/log.ts';
import type { Alarms } from '../live/alarms.ts';
import { deviceFromToken, deviceToken, type ClusterLink } from './link.ts';

/** Largest entry read or written (a device entry with 32 tags of 256 bytes fits; the rules list at 200 rules too). */
const MAX_VALUE_BYTES = 256 << 10;
const BUCKET_BYTES = { devices: 256 << 20, operators: 4 << 20, sessions: 64 << 20, rules: 4 << 20 };
const RULES_KEY = 'rules';

export interface SharedStateOptions {
  link: ClusterLink;
  config: HubConfig;
  log: LogLimiter;
  registry: DeviceRegistry;
  operators: Operators;
  alarms: Alarms;
  /** The served registry changed (the live path lists registered devices). */
  onRegistry?: () => void;
}

function json(data: Uint8Array): unknown {
  if (data.length === 0 || data.length > MAX_VALUE_BYTES) return undefined;
  try { return JSON.parse(Buffer.from(data).toString('utf8')); } catch { return undefined; }
}

/**
 * Runs a watch of every key until it is stopped, handing each entry to
 * `seen`; resolves once the entries present at the start were handed over
 * (the last of them has delta 0), at once for an empty bucket.
 */
export async function follow(kv: KV, seen: (e: KvWatchEntry) => void): Promise<{ stop(): void }> {
  let caughtUp: () => void = () => undefined;
  const initial = new Promise<void>((resolve) => { caughtUp = resolve; });
  const watch = await kv.watch({ key: '>' });
  void (async () => {
    for await (const e of watch) {
      seen(e);
      if (!e.delta) caughtUp();
    }
  })();
  const { values } = await kv.status();
  if (values === 0) caughtUp();
  await initial;
  return watch;
}

export class SharedState {
  readonly #o: SharedStateOptions;
  #devices!: KV;
  #operators!: KV;
  #sessions!: KV;
  #rules!: KV;
  readonly #watches: { stop(): void }[] = [];
  /** The registry as the devices bucket has it (what this hub authenticates with). */
  readonly #cluster = new Map<string, DeviceEntry>();
  /** The bucket revision each device's entry in #cluster is from. */
  readonly #revisions = new Map<string, number>();
  /** start() is still merging the bucket and this hub's file: no registry is put in force before it is whole. */
  #starting = true;
  /** This hub's file as last read: what changed in it is published. */
  #file: RegistryFile;
  #registryTimer: NodeJS.Timeout | null = null;
  /** Session hashes the bucket held at start (and since). */
  readonly #sessionsSeen = new Set<string>();
  /** Entries skipped because they did not validate. */
  rejected = 0;

  constructor(o: SharedStateOptions, file: RegistryFile) {
    this.#o = o;
    this.#file = file;
  }

  async start(): Promise<void> {
    const { link, config } = this.#o;
    const kvm = new Kvm(link.nc);
    const stream = config.natsStream;
    const opts = { history: 1, replicas: config.natsReplicas, maxValueSize: MAX_VALUE_BYTES };
    this.#devices = await kvm.create(`${stream}-devices`, { ...opts, max_bytes: BUCKET_BYTES.devices });
    this.#operators = await kvm.create(`${stream}-operators`, { ...opts, max_bytes: BUCKET_BYTES.operators });
    this.#sessions = await kvm.create(`${stream}-op-sessions`, { ...opts, max_bytes: BUCKET_BYTES.sessions, ttl: config.sessionTtlS * 1000 });
    this.#rules = await kvm.create(`${stream}-alarm-rules`, { ...opts, max_bytes: BUCKET_BYTES.rules });

    // Devices: what the bucket holds, plus this hub's file where the bucket has nothing.
    this.#watches.push(await follow(this.#devices, (e) => this.#device(e)));
    for (const [id, entry] of Object.entries(this.#file.devices)) {
      // The bucket decides for every id it has held, deleted ones included (a
      // device removed through the API stays removed when a hub whose file
      // still lists it starts).
      if (this.#revisions.has(id)) continue;
      const revision = await this.#devices.put(deviceToken(id), JSON.stringify(entry));
      // In force now, not once the watch brings the put back: the hub takes
      // devices right after start(), and this device must not be unknown for
      // that moment. A newer entry the watch already brought stays.
      if ((this.#revisions.get(id) ?? 0) < revision) { this.#cluster.set(id, entry); this.#revisions.set(id, revision); }
    }
    this.#starting = false;
    this.#applyRegistry();

    const { operators, alarms } = this.#o;
    this.#watches.push(await follow(this.#operators, (e) => this.#account(e)));
    const known = new Set<string>();
    for await (const key of await this.#operators.keys()) known.add(key);
    const mine = operators.snapshot();
    for (const account of mine.accounts) if (!known.has(account.name)) await this.#operators.put(account.name, JSON.stringify(account));
    // Sessions: the bucket is the truth. One this hub kept in its file and
    // the bucket lacks was ended (or expired) elsewhere: it ends here too,
    // never published again.
    this.#watches.push(await follow(this.#sessions, (e) => this.#session(e)));
    operators.dropSessions(mine.sessions.map((s) => s.hash).filter((h) => !this.#sessionsSeen.has(h)));
    operators.share({
      putSession: async (s: SessionRecord) => { await this.#sessions.put(s.hash, JSON.stringify(s)); },
      deleteSessions: async (hashes) => { for (const h of hashes) await this.#sessions.delete(h); },
      putAccount: async (a: OperatorRecord, firstOnly: boolean) => {
        // The first account of a cluster: only if no hub made one meanwhile (create fails when the key exists).
        if (firstOnly) await this.#operators.create(a.name, JSON.stringify(a));
        else await this.#operators.put(a.name, JSON.stringify(a));
      },
    });

    const current = await this.#rules.get(RULES_KEY);
    if (!current || current.operation !== 'PUT') await this.#rules.put(RULES_KEY, JSON.stringify({ rules: alarms.rules }));
    this.#watches.push(await follow(this.#rules, (e) => this.#rulesChanged(e)));
    alarms.share(async (rules) => { await this.#rules.put(RULES_KEY, JSON.stringify({ rules })); });
  }

  /** This hub's registry file changed (its watcher read it): the difference goes to the bucket. */
  /**
   * A change made through the API (auth/device-admin.ts): the changed
   * devices' entries put (or deleted) in the bucket, then in force here at
   * once (the other hubs take it from their watch). Resolves once the bucket
   * holds it: a KV put is a JetStream publish, acknowledged once stored (R1)
   * or replicated (R3). The hub's own file is not written: in cluster mode
   * the bucket is the registry.
   */
  async commitDevices(next: RegistryFile, changed: readonly string[]): Promise<void> {
    for (const id of changed) {
      const entry = Object.hasOwn(next.devices, id) ? next.devices[id] : undefined;
      const revision = entry ? await this.#devices.put(deviceToken(id), JSON.stringify(entry)) : await this.#devices.delete(deviceToken(id)).then(() => 0);
      if (entry) {
        if ((this.#revisions.get(id) ?? 0) < revision) { this.#cluster.set(id, entry); this.#revisions.set(id, revision); }
      } else {
        this.#cluster.delete(id);
      }
    }
    this.#applyRegistry();
  }

  async fileChanged(file: RegistryFile): Promise<void> {
    const before = this.#file.devices;
    this.#file = file;
    for (const [id, entry] of Object.entries(file.devices)) {
      if (JSON.stringify(before[id]) !== JSON.stringify(entry)) await this.#devices.put(deviceToken(id), JSON.stringify(entry));
    }
    for (const id of Object.keys(before)) if (!(id in file.devices)) await this.#devices.delete(deviceToken(id));
  }

  #device(e: KvWatchEntry): void {
    let id: string;
    try { id = deviceFromToken(e.key); } catch { return; }
    if (e.revision <= (this.#revisions.get(id) ?? 0)) return;
    this.#revisions.set(id, e.revision);
    if (e.operation !== 'PUT') {
      this.#cluster.delete(id);
    } else {
      const entry = json(e.value);
      const parsed = RegistryFileSchema.safeParse({ version: 1, devices: { [id]: entry } });
      if (!parsed.success) {
        this.rejected++;
        this.#o.log.warn('shared_entry_invalid', { bucket: 'devices', key: e.key.slice(0, 200) }, 'device entry in the shared registry is not valid; ignored');
        return;
      }
      this.#cluster.set(id, entry as DeviceEntry);
    }
    // Coalesced: a burst of changes (a hub publishing its file) is applied
    // once; while start() publishes this hub's file, once at its end.
    if (!this.#registryTimer && !this.#starting) {
      this.#registryTimer = setTimeout(() => { this.#registryTimer = null; this.#applyRegistry(); }, 20);
      this.#registryTimer.unref();
    }
  }

  #applyRegistry(): void {
    if (this.#registryTimer) { clearTimeout(this.#registryTimer); this.#registryTimer = null; }
    this.#o.registry.replace({ version: 1, devices: Object.fromEntries(this.#cluster) });
    this.#o.onRegistry?.();
  }

  #account(e: KvWatchEntry): void {
    if (e.operation !== 'PUT') return; // accounts are removed by editing every hub's file
    const parsed = OperatorsFileSchema.safeParse({ operators: [json(e.value)] });
    const account = parsed.success ? parsed.data.operators[0] : undefined;
    if (!account || account.name !== e.key) {
      this.rejected++;
      this.#o.log.warn('shared_entry_invalid', { bucket: 'operators', key: e.key.slice(0, 200) }, 'operator entry in the shared bucket is not valid; ignored');
      return;
    }
    this.#o.operators.adoptAccount(account).catch((err: unknown) => this.#o.log.error('shared_account_not_saved', { err }, 'operator account from another hub not saved'));
  }

  #session(e: KvWatchEntry): void {
    if (e.operation !== 'PUT') { this.#sessionsSeen.delete(e.key); this.#o.operators.dropSessions([e.key]); return; }
    const v = json(e.value) as Partial<SessionRecord> | undefined;
    if (!v || v.hash !== e.key || typeof v.user !== 'string' || typeof v.expires !== 'number') {
      this.rejected++;
      this.#o.log.warn('shared_entry_invalid', { bucket: 'op-sessions', key: e.key.slice(0, 200) }, 'operator session entry in the shared bucket is not valid; ignored');
      return;
    }
    this.#sessionsSeen.add(v.hash);
    this.#o.operators.adoptSession({ hash: v.hash, user: v.user, expires: v.expires });
  }

  #rulesChanged(e: KvWatchEntry): void {
    if (e.operation !== 'PUT' || e.key !== RULES_KEY) return;
    this.#o.alarms.adopt(json(e.value)).catch((err: unknown) => {
      this.rejected++;
      this.#o.log.warn('shared_entry_invalid', { bucket: 'alarm-rules', err: (err as Error).message }, 'alarm rules in the shared bucket are not valid; the rules in force stay');
    });
  }

  stop(): void {
    for (const w of this.#watches.splice(0)) w.stop();
    if (this.#registryTimer) clearTimeout(this.#registryTimer);
  }
}
