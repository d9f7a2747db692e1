// cluster/: cluster mode as main.ts wires it (HUB_NATS_URL). One object owns
// the NATS link, the JetStream BatchStore, device ownership, the sink's
// shared consumer, the live bridge between hubs and the hubs' heartbeats:
//
// - ownership: before Welcome a hub claims the device (owners.ts) and reads
//   what the stream holds for it; another hub's newer claim ends the session
//   here with 4002.
// - live: each tick every hub publishes the partials its own batches added
//   (live-share.ts) and merges the other hubs', so a dashboard on any hub
//   shows the whole fleet; presence of devices on other hubs comes from the
//   owner entries. (Without InfluxDB, /api/v1/history of a hub covers the
//   devices whose batches it stored: the in-memory history is per hub.)
// - hubs: each hub publishes a heartbeat every HEARTBEAT_MS (id, devices,
//   connections); a hub unseen for HUB_GONE_MS is down.
// Imports: core, spool (codec), ingest (the SessionOwnership seam, types),
// live (LiveFeed, types), cluster/*.
import type { Subscription } from '@nats-io/transport-node';
import { Counter, Gauge } from 'prom-client';
import type { HubConfig } from '../core/config.ts';
import type { Logger } from '../core/log.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { SessionOwnership } from '../ingest/lifecycle.ts';
import type { LiveState } from '../live/state.ts';
import { decodeLiveShare, encodeLiveShare } from './live-share.ts';
import { ClusterLink } from './link.ts';
import { DeviceOwners, type OwnerChange } from './owners.ts';
import { StreamReader } from './stream-reader.ts';
import { StreamStore } from './stream-store.ts';

export const HEARTBEAT_MS = 2_000;
export const HUB_GONE_MS = 3 * HEARTBEAT_MS;
/** At most one early heartbeat (for a hub just seen) per this interval. */
const ANSWER_EVERY_MS = 200;
/** Hubs remembered at most (heartbeats are unauthenticated within the NATS account: bounded anyway). */
const MAX_HUBS = 1024;
const MAX_HEARTBEAT_BYTES = 1024;
/** Close code the live path is told for a device gone offline on another hub when its entry does not say (an older hub, or an entry deleted). */
const REMOTE_CLOSE = 1000;

export interface HubInfo {
  id: string;
  devices: number;
  connections: number;
  startedAtMs: number;
  lastSeenMs: number;
  up: boolean;
  self: boolean;
}


export interface ClusterOptions {
  config: HubConfig;
  log: Logger;
  metrics: HubMetrics;
  /** INFLUX_URL is set: the stream is a work queue and this hub runs a sink on the shared consumer. */
  withSink: boolean;
  now?: () => number;
  connectTimeoutMs?: number;
}

/** What the cluster needs of the hub it serves, once the hub is built. */
export interface ClusterPeer {
  devices: { moved(deviceId: string, toHub: string): void; stats(): { connections: number } };
  live: Pick<LiveState, 'enableSharing' | 'takeLocal' | 'mergeRemote' | 'sessionOpened' | 'sessionClosed'>;
  /** How often the live partials are published (HUB_LIVE_TICK_MS, at most 1 s). */
  shareEveryMs?: number;
  /** Registry tags of a device (for presence of devices on other hubs). */
  tagsOf(deviceId: string): Readonly<Record<string, string>> | undefined;
}

export class Cluster {
  readonly link: ClusterLink;
  readonly store: StreamStore;
  readonly owners: DeviceOwners;
  /** The InfluxDB sink's log (null without INFLUX_URL). */
  readonly reader: StreamReader | null;
  readonly ownership: SessionOwnership;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #startedAtMs: number;
  #peer: ClusterPeer | null = null;
  readonly #hubs = new Map<string, HubInfo>();
  #partials: Subscription | null = null;
  #heartbeats: Subscription | null = null;
  #share: NodeJS.Timeout | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #consumerLag = 0;
  #answeredAt = 0;
  #lagPoll: NodeJS.Timeout | null = null;
  /** Remote presence as the live path was last told, so a repeat of an entry changes nothing. */
  readonly #remoteOnline = new Set<string>();
  /** Live partial messages merged from other hubs, and dropped as malformed. */
  partialsMerged = 0;
  partialsDropped = 0;

  private constructor(link: ClusterLink, opts: ClusterOptions) {
    this.link = link;
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
    this.#startedAtMs = this.#now();
    const config = opts.config;
    this.store = new StreamStore({ link, log: opts.log, maxBytes: config.natsMaxBytes, ackTimeoutMs: config.natsAckTimeoutMs });
    this.owners = new DeviceOwners({
      link, log: opts.log, now: this.#now,
      onLost: (deviceId, toHub) => this.#moved(deviceId, toHub),
      onChange: (change) => this.#presence(change),
    });
    this.reader = opts.withSink ? new StreamReader({ link, log: opts.log }) : null;
    const owners = this.owners;
    const store = this.store;
    this.ownership = {
      async claim(deviceId) {
        const prev = await owners.claim(deviceId);
        await store.resume(deviceId, prev?.seq ?? 0);
      },
      release(deviceId, code, byHub) { void owners.release(deviceId, store.durableSeq(deviceId), { code, byHub }); },
    };
    this.#registerMetrics(opts.metrics);
  }

  /** Connects and sets up the stream and buckets; fails with HUB_ERR_NATS naming what went wrong. */
  static async open(opts: ClusterOptions): Promise<Cluster> {
    const link = await ClusterLink.open({ config: opts.config, log: opts.log, withSink: opts.withSink, connectTimeoutMs: opts.connectTimeoutMs });
    return new Cluster(link, opts);
  }

  get hubId(): string { return this.link.hubId; }

  /** Starts watching owners, the live bridge, heartbeats and the sink's consumer. */
  async start(peer: ClusterPeer): Promise<void> {
    this.#peer = peer;
    const { nc, names } = this.link;
    peer.live.enableSharing(() => this.hubs().map(({ id, up, devices, connections, self }) => ({ id, up, devices, connections, self })));
    this.#partials = nc.subscribe(`${names.liveSubject}.partials.*`, { callback: (err, msg) => { if (!err) this.#remotePartials(msg.data); } });
    this.#share = setInterval(() => this.#publishPartials(), Math.min(1000, peer.shareEveryMs ?? 1000));
    this.#share.unref();
    this.#heartbeats = nc.subscribe(`${names.liveSubject}.hub.*`, { callback: (err, msg) => { if (!err) this.#sawHeartbeat(msg.data); } });
    this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
    this.#beat();
    await this.owners.start();
    if (this.reader) {
      await this.reader.start();
      this.#lagPoll = setInterval(() => void this.#readLag(), 5_000);
      this.#lagPoll.unref();
    }
  }

  #publishPartials(): void {
    const peer = this.#peer;
    if (!peer) return;
    const local = peer.live.takeLocal();
    if (!this.link.connected) return; // the live view of this tick is lost, nothing else
    const subject = `${this.link.names.liveSubject}.partials.${this.#subjectToken}`;
    for (const msg of encodeLiveShare(this.link.hubId, local)) {
      try { this.link.nc.publish(subject, msg); } catch { /* reconnecting */ }
    }
  }

  #remotePartials(data: Uint8Array): void {
    const peer = this.#peer;
    if (!peer) return;
    const share = decodeLiveShare(data);
    if (!share) { this.partialsDropped++; return; }
    if (share.hub === this.link.hubId) return;
    try {
      peer.live.mergeRemote(share, (id) => peer.tagsOf(id));
      this.partialsMerged++;
    } catch (err) {
      this.partialsDropped++;
      this.#log.error({ err }, 'live path failed on partials from another hub');
    }
  }

  /** The hub id as one subject token. */
  get #subjectToken(): string { return this.link.hubId.replace(/[.*>\s]/g, '_'); }

  /** Another hub took the device: its session here ends (4002), and the live path shows it online there. */
  #moved(deviceId: string, toHub: string): void {
    const peer = this.#peer;
    if (!peer) return;
    peer.devices.moved(deviceId, toHub);
    const tags = peer.tagsOf(deviceId);
    if (tags && this.#remoteOnline.has(deviceId)) peer.live.sessionOpened(deviceId, tags, '', `hub ${toHub}`);
  }

  /** A device's owner entry changed: presence of devices whose session lives on another hub. */
  #presence(change: OwnerChange): void {
    const peer = this.#peer;
    if (!peer) return;
    const { deviceId, entry } = change;
    const remote = entry !== null && entry.hub !== this.link.hubId;
    const onlineThere = remote && entry.online;
    if (onlineThere && !this.#remoteOnline.has(deviceId)) {
      const tags = peer.tagsOf(deviceId);
      if (!tags) return; // not in this hub's registry: nothing to show
      this.#remoteOnline.add(deviceId);
      peer.live.sessionOpened(deviceId, tags, '', `hub ${entry.hub}`);
    } else if (!onlineThere && this.#remoteOnline.delete(deviceId) && (entry === null || entry.hub !== this.link.hubId)) {
      // Gone offline on the other hub (a device that moved here is opened by
      // its own session), with the close that hub saw.
      peer.live.sessionClosed(deviceId, entry?.code ?? REMOTE_CLOSE, entry?.byHub ?? false);
    }
  }

  #beat(): void {
    if (!this.link.connected) return;
    const devices = this.owners.held;
    const connections = this.#peer?.devices.stats().connections ?? 0;
    const body = JSON.stringify({ id: this.link.hubId, devices, connections, startedAtMs: this.#startedAtMs });
    try { this.link.nc.publish(`${this.link.names.liveSubject}.hub.${this.#subjectToken}`, body); } catch { /* reconnecting */ }
    this.#sawHeartbeat(new TextEncoder().encode(body));
  }

  #sawHeartbeat(data: Uint8Array): void {
    if (data.length > MAX_HEARTBEAT_BYTES) return;
    let v: Partial<HubInfo>;
    try { v = JSON.parse(Buffer.from(data).toString('utf8')) as Partial<HubInfo>; } catch { return; }
    if (typeof v.id !== 'string' || v.id.length > 64 || typeof v.devices !== 'number' || typeof v.connections !== 'number' || typeof v.startedAtMs !== 'number') return;
    if (!this.#hubs.has(v.id) && this.#hubs.size >= MAX_HUBS) {
      // Forget the one unseen longest.
      let oldest: HubInfo | null = null;
      for (const h of this.#hubs.values()) if (!oldest || h.lastSeenMs < oldest.lastSeenMs) oldest = h;
      if (oldest) this.#hubs.delete(oldest.id);
    }
    const known = this.#hubs.has(v.id);
    const now = this.#now();
    this.#hubs.set(v.id, { id: v.id, devices: v.devices, connections: v.connections, startedAtMs: v.startedAtMs, lastSeenMs: now, up: true, self: v.id === this.link.hubId });
    // A hub new to this one hears back at once, not at the next heartbeat.
    if (!known && v.id !== this.link.hubId && now - this.#answeredAt >= ANSWER_EVERY_MS) {
      this.#answeredAt = now;
      this.#beat();
    }
  }

  /** A session of the device lives on another hub (as its owner entry says). */
  onlineElsewhere(deviceId: string): boolean { return this.#remoteOnline.has(deviceId); }

  /** The hubs seen, this one first; `up`: a heartbeat within HUB_GONE_MS. */
  hubs(): HubInfo[] {
    const now = this.#now();
    const list = [...this.#hubs.values()].map((h) => ({ ...h, up: h.self || now - h.lastSeenMs <= HUB_GONE_MS }));
    return list.sort((a, b) => Number(b.self) - Number(a.self) || a.id.localeCompare(b.id));
  }

  async #readLag(): Promise<void> {
    if (!this.link.connected) return;
    try {
      const info = await this.link.jsm.consumers.info(this.link.names.stream, this.link.names.sinkConsumer);
      this.#consumerLag = info.num_pending + info.num_ack_pending;
    } catch { /* next poll */ }
  }

  /** What /readyz and /api/v1/status show of the cluster (http/ops-routes.ts ClusterHealth). */
  health(): { connected: boolean; streamFull: boolean; detail: Record<string, unknown> } {
    const connected = this.link.connected;
    return {
      connected, streamFull: this.store.pressure() >= 1,
      detail: {
        hub: this.link.hubId, nats: connected ? 'connected' : 'reconnecting', stream: this.link.names.stream,
        streamBytes: this.store.bytes, devicesHere: this.owners.held,
        hubs: this.hubs().map((h) => ({ id: h.id, up: h.up, devices: h.devices, connections: h.connections })),
        ...(this.reader ? { sinkLag: this.#consumerLag, held: this.reader.heldMessages, redelivered: this.reader.redelivered } : {}),
      },
    };
  }

  #registerMetrics(metrics: HubMetrics): void {
    const registers = [metrics.registry];
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({ name, help, registers, collect() { this.set(read()); } });
    };
    const counter = (name: string, help: string, read: () => number): void => {
      new Counter({ name, help, registers, collect() { this.reset(); this.inc(read()); } });
    };
    gauge('hub_cluster_nats_connected', 'Cluster mode: 1 while this hub is connected to NATS', () => (this.link.connected ? 1 : 0));
    gauge('hub_cluster_hubs_up', 'Cluster mode: hubs with a heartbeat in the last 6 s, this one included', () => this.hubs().filter((h) => h.up).length);
    gauge('hub_cluster_devices_here', 'Cluster mode: devices whose session this hub owns', () => this.owners.held);
    gauge('hub_cluster_consumer_lag', 'Cluster mode: batches in the stream not yet confirmed by InfluxDB (all hubs: pending + in progress)', () => this.#consumerLag);
    gauge('hub_cluster_publishes_in_flight', 'Cluster mode: batches published to JetStream and not yet acknowledged', () => this.store.inFlight);
    counter('hub_cluster_publish_retries_total', 'Cluster mode: JetStream publishes sent again after a failed attempt', () => this.store.retries);
    counter('hub_cluster_publish_duplicates_total', 'Cluster mode: publishes JetStream answered as duplicates (a resend another hub or attempt had stored)', () => this.store.duplicates);
    counter('hub_cluster_redeliveries_total', 'Cluster mode: batches delivered to this hub\'s sink again (another hub died mid-write, or an ack wait passed)', () => this.reader?.redelivered ?? 0);
    counter('hub_cluster_takeovers_total', 'Cluster mode: device sessions this hub took over from another hub', () => this.owners.takeovers);
    counter('hub_cluster_sessions_moved_total', 'Cluster mode: device sessions here ended because another hub took the device (4002)', () => this.owners.lost);
    const partials = (): [number, number] => [this.partialsMerged, this.partialsDropped];
    new Counter({
      name: 'hub_cluster_live_partials_total', help: 'Cluster mode: live partial messages from other hubs, merged or dropped as malformed', labelNames: ['result'], registers,
      collect() { const [merged, dropped] = partials(); this.reset(); this.labels('merged').inc(merged); this.labels('dropped').inc(dropped); },
    });
  }

  /**
   * Shutdown, after the hub closed its sessions: the sink's held messages
   * go back to the consumer, devices are released, the connection drains.
   */
  async close(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    if (this.#share) clearInterval(this.#share);
    this.#partials?.unsubscribe();
    if (this.#lagPoll) clearInterval(this.#lagPoll);
    this.#heartbeats?.unsubscribe();
    await this.reader?.close();
    await this.store.close();
    if (this.link.connected) await Promise.race([this.owners.releaseAll((d) => this.store.durableSeq(d)), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.owners.stop();
    await this.link.close();
  }
}
