// cluster/: the hub's connection to NATS (cluster mode, HUB_NATS_URL): the
// connection options from the config, the JetStream stream that holds
// batches and the KV bucket of device owners (created when absent, their
// limits brought in line when present), and whether NATS is reachable right
// now (the store refuses appends while it is not). Names: a device id
// becomes a subject token and a KV key through deviceToken() (base64url:
// any id, injective, only characters both allow). Imports: core.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import {
  DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager,
  type JetStreamClient, type JetStreamManager, type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { HubConfig } from '../core/config.ts';
import { HubError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** Seconds JetStream remembers message ids (Nats-Msg-Id): a resend within it is stored once. */
export const DUPLICATE_WINDOW_S = 120;

/** A device id as a subject token and KV key: base64url of its UTF-8 bytes. */
export function deviceToken(deviceId: string): string {
  return Buffer.from(deviceId, 'utf8').toString('base64url');
}

/** The device id a deviceToken() came from. */
export function deviceFromToken(token: string): string {
  return Buffer.from(token, 'base64url').toString('utf8');
}

/** What cluster mode is called by: stream, subjects, buckets, consumer. */
export interface ClusterNames {
  readonly stream: string;
  /** `<prefix>.batch.<device token>` holds a device's batches. */
  readonly batchSubject: (deviceId: string) => string;
  readonly batchSubjects: string;
  /** KV bucket: device token -> its owner (hub, revision = fencing token). */
  readonly ownersBucket: string;
  /** Core NATS subject hubs publish their live partials on (`.<hub id>`). */
  readonly liveSubject: string;
  /** The durable consumer every hub's InfluxDB sink pulls from. */
  readonly sinkConsumer: string;
}

export function clusterNames(stream: string): ClusterNames {
  const prefix = stream.toLowerCase();
  return {
    stream,
    batchSubject: (deviceId) => `${prefix}.batch.${deviceToken(deviceId)}`,
    batchSubjects: `${prefix}.batch.>`,
    ownersBucket: `${stream}-owners`,
    liveSubject: `${prefix}.live`,
    sinkConsumer: 'influx-sink',
  };
}

/** This hub's name in the cluster: HUB_ID, or host name and process id. */
export function hubIdOf(config: Pick<HubConfig, 'hubId'>): string {
  return config.hubId ?? `${hostname().replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 48)}-${process.pid}`;
}

/** nats.js connection options from the HUB_NATS_* keys. */
export function connectionOptions(config: HubConfig, name: string): ConnectionOptions {
  const servers = (config.natsUrl ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const opts: ConnectionOptions = {
    servers, name,
    // Keep trying for as long as the hub runs: NATS down means no acks, not an exit.
    maxReconnectAttempts: -1, reconnectTimeWait: 250, waitOnFirstConnect: false,
    pingInterval: 10_000, maxPingOut: 3,
    // No call-site stack captured per request (a JetStream or KV call): an
    // Error with a stack per call was a sixth of the hub's time at load.
    noAsyncTraces: true,
  };
  const read = (key: string, file: string): string => {
    try { return readFileSync(file, 'utf8'); } catch (err) {
      throw new HubError('HUB_ERR_CONFIG', `${key}=${file}: cannot read it (${(err as Error).message})`, { cause: err });
    }
  };
  if (config.natsCreds !== undefined) opts.authenticator = credsAuthenticator(new TextEncoder().encode(read('HUB_NATS_CREDS', config.natsCreds)));
  if (config.natsToken !== undefined) opts.token = config.natsToken;
  if (config.natsUser !== undefined) { opts.user = config.natsUser; opts.pass = config.natsPassword; }
  if (config.natsTlsCa !== undefined || config.natsTlsCert !== undefined) {
    opts.tls = {
      ...(config.natsTlsCa !== undefined ? { ca: read('HUB_NATS_TLS_CA', config.natsTlsCa) } : {}),
      ...(config.natsTlsCert !== undefined ? { cert: read('HUB_NATS_TLS_CERT', config.natsTlsCert), key: read('HUB_NATS_TLS_KEY', config.natsTlsKey ?? '') } : {}),
    };
  }
  return opts;
}

export interface ClusterLinkOptions {
  config: HubConfig;
  log: Logger;
  /** With an InfluxDB sink the stream is a work queue (shipped = removed); without one it keeps the newest data up to its cap. */
  withSink: boolean;
  /** How long the first connection may take before startup fails. */
  connectTimeoutMs?: number;
}

/** One NATS connection and the JetStream objects cluster mode uses. */
export class ClusterLink {
  readonly hubId: string;
  readonly names: ClusterNames;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly owners: KV;
  readonly #log: Logger;
  #connected = true;
  readonly #listeners = new Set<(connected: boolean) => void>();
  /** Disconnects seen (a gauge of flapping). */
  disconnects = 0;

  private constructor(hubId: string, names: ClusterNames, nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, owners: KV, log: Logger) {
    this.hubId = hubId;
    this.names = names;
    this.nc = nc;
    this.js = js;
    this.jsm = jsm;
    this.owners = owners;
    this.#log = log;
    void this.#watchStatus();
  }

  /** Connects, and creates or updates the stream and the owners bucket. Rejects with HUB_ERR_NATS naming what failed. */
  static async open(opts: ClusterLinkOptions): Promise<ClusterLink> {
    const { config, log } = opts;
    const hubId = hubIdOf(config);
    const names = clusterNames(config.natsStream);
    const options = connectionOptions(config, `telemetry-hub ${hubId}`);
    let nc: NatsConnection;
    try {
      nc = await connect({ ...options, timeout: opts.connectTimeoutMs ?? 10_000 });
    } catch (err) {
      throw new HubError('HUB_ERR_NATS', `cannot connect to NATS at HUB_NATS_URL=${config.natsUrl}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const jsm = await jetstreamManager(nc, { timeout: 10_000 });
      await ensureStream(jsm, streamConfig(config, names, opts.withSink), log);
      const owners = await new Kvm(nc).create(names.ownersBucket, { history: 1, replicas: config.natsReplicas });
      return new ClusterLink(hubId, names, nc, jetstream(nc, { timeout: config.natsAckTimeoutMs }), jsm, owners, log);
    } catch (err) {
      await nc.close().catch(() => undefined);
      if (err instanceof HubError) throw err;
      throw new HubError('HUB_ERR_NATS', `NATS at ${config.natsUrl}: cannot set up JetStream (is it enabled on the server, -js?): ${(err as Error).message}`, { cause: err });
    }
  }

  /** The hub's logger (what the cluster's parts log through). */
  get log(): Logger { return this.#log; }

  /** False while the connection is down (nats.js reconnects by itself). */
  get connected(): boolean { return this.#connected && !this.nc.isClosed(); }

  /** `listener(connected)` on every change; returns an unsubscribe. */
  onConnection(listener: (connected: boolean) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once connected (at once when it is), or when `signal` aborts. */
  whenConnected(signal?: AbortSignal): Promise<void> {
    if (this.connected || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => { off(); signal?.removeEventListener('abort', done); resolve(); };
      const off = this.onConnection((up) => { if (up) done(); });
      signal?.addEventListener('abort', done);
    });
  }

  async #watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') {
        const up = s.type === 'reconnect';
        if (up === this.#connected) continue;
        this.#connected = up;
        if (!up) this.disconnects++;
        if (up) this.#log.info({ server: s.server }, `NATS reconnected (${s.server}): acks resume`);
        else this.#log.warn({ server: s.server }, `NATS connection lost (${s.server}): no acks and no new sessions until it is back; reconnecting`);
        for (const listener of this.#listeners) listener(up);
      }
    }
  }

  /** Drains subscriptions and closes the connection. */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try { await this.nc.drain(); } catch { await this.nc.close().catch(() => undefined); }
  }
}

/** The batch stream: file storage, replicas, the dedup window, the size cap (refuse new at it). */
export function streamConfig(config: HubConfig, names: ClusterNames, withSink: boolean): Partial<StreamConfig> & { name: string } {
  return {
    name: names.stream,
    subjects: [names.batchSubjects],
    storage: StorageType.File,
    num_replicas: config.natsReplicas,
    duplicate_window: DUPLICATE_WINDOW_S * 1e9,
    max_bytes: config.natsMaxBytes,
    // With a sink: a work queue (a batch is removed once InfluxDB confirmed
    // it) that refuses new batches at its cap: never drops unshipped data.
    // Without one: like the embedded spool, it keeps the newest up to its cap.
    retention: withSink ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    discard: withSink ? DiscardPolicy.New : DiscardPolicy.Old,
    max_msg_size: -1,
    allow_direct: true,
  };
}

/** Creates the stream, or brings its limits in line; `sizeKey` names the setting its max_bytes comes from. */
export async function ensureStream(jsm: JetStreamManager, want: Partial<StreamConfig> & { name: string }, log: Logger, sizeKey = 'HUB_NATS_MAX_BYTES'): Promise<void> {
  let existing;
  try {
    existing = await jsm.streams.info(want.name);
  } catch (err) {
    if (!/stream not found/i.test((err as Error).message)) throw err;
  }
  if (!existing) {
    try {
      await jsm.streams.add(want);
    } catch (err) {
      // JetStream reserves a stream's max_bytes up front against the server's store limit (max_file_store: 75 % of the free disk by default).
      if (/insufficient storage/i.test((err as Error).message)) {
        throw new HubError('HUB_ERR_NATS', `JetStream cannot reserve ${want.max_bytes} bytes for stream ${want.name} (${sizeKey}): the server's store limit (max_file_store) `
          + `is taken by other streams or the disk is small; lower ${sizeKey} or raise max_file_store`, { cause: err });
      }
      throw err;
    }
    log.info({ stream: want.name, replicas: want.num_replicas, maxBytes: want.max_bytes, retention: want.retention }, `JetStream stream ${want.name} created`);
    return;
  }
  const have = existing.config;
  if (have.retention !== want.retention) {
    throw new HubError('HUB_ERR_NATS', `JetStream stream ${want.name} exists with ${have.retention} retention, but this hub needs ${want.retention} `
      + `(${want.retention === RetentionPolicy.Workqueue ? 'INFLUX_URL is set: shipped batches are removed' : 'no INFLUX_URL: the stream keeps the newest batches'}); `
      + 'every hub of a cluster must agree on INFLUX_URL, or use another HUB_NATS_STREAM');
  }
  const changed = (['max_bytes', 'num_replicas', 'duplicate_window', 'discard'] as const).filter((k) => have[k] !== want[k]);
  if (changed.length) {
    await jsm.streams.update(want.name, { ...have, max_bytes: want.max_bytes, num_replicas: want.num_replicas, duplicate_window: want.duplicate_window, discard: want.discard });
    log.info({ stream: want.name, changed }, `JetStream stream ${want.name} updated: ${changed.join(', ')}`);
  }
}
