// cluster/: one audit trail for the whole cluster. Each hub publishes the
// entries its own trail takes (auth/audit.ts: bounded, rate-keyed, one line
// each) to the JetStream stream `<stream>-audit` (subject
// `<prefix>.audit.<hub>`; the newest HUB_AUDIT_MAX_BYTES kept, the oldest
// dropped), and copies every other hub's entries into its own trail as it
// reads them, with the hub's name and the stream sequence. So
// `/api/v1/audit` and the Audit page on any hub show what was done on all
// of them; each hub's files stay within HUB_AUDIT_MAX_BYTES as before.
//
// Resuming: a hub reads the stream from the sequence after the last entry
// its trail copied (none: what the stream still holds), through an ordered
// consumer (nothing to clean up when a hub goes away). Publishing is not
// waited for: an entry published while NATS is unreachable is in this
// hub's trail only (counted: hub_cluster_audit_entries_total{result="unshared"}).
// Imports: core, auth (the AuditLog type), cluster/link.
import type { ConsumerMessages } from '@nats-io/jetstream';
import { DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { AuditEntry, AuditLog } from '../auth/audit.ts';
import { Counter } from 'prom-client';
import type { HubConfig } from '../core/config.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { LogLimiter } from '../core/log.ts';
import { ensureStream, type ClusterLink } from './link.ts';

/** An entry is at most a few KiB (auth/audit.ts LIMITS); anything bigger is not one. */
const MAX_ENTRY_BYTES = 16 << 10;

export function auditStream(stream: string): string { return `${stream}-audit`; }

export interface SharedAuditOptions {
  link: ClusterLink;
  config: HubConfig;
  log: LogLimiter;
  metrics?: HubMetrics;
}

export class SharedAudit {
  readonly #o: SharedAuditOptions;
  readonly #subject: string;
  #messages: ConsumerMessages | null = null;
  /** Entries of other hubs copied into this hub's trail. */
  copied = 0;
  /** Messages skipped: not an entry, or too big. */
  rejected = 0;
  /** Entries of this hub that could not be published. */
  unshared = 0;

  constructor(o: SharedAuditOptions) {
    this.#o = o;
    this.#subject = `${o.config.natsStream.toLowerCase()}.audit.${o.link.hubId.replace(/[.*>\s]/g, '_')}`;
    if (o.metrics) {
      const registers = [o.metrics.registry];
      const read = (): [number, number, number] => [this.copied, this.rejected, this.unshared];
      new Counter({
        name: 'hub_cluster_audit_entries_total', help: 'Cluster mode: audit entries of other hubs copied into this trail, messages of the shared audit stream rejected, and entries of this hub not shared (NATS unreachable)',
        labelNames: ['result'], registers,
        collect() { const [c, r, u] = read(); this.reset(); this.labels('copied').inc(c); this.labels('rejected').inc(r); this.labels('unshared').inc(u); },
      });
    }
  }

  /** Creates (or brings in line) the stream, publishes this trail's entries from now on, and copies the others' from after `audit.lastSharedSeq()`. */
  async start(audit: AuditLog): Promise<void> {
    const { link, config } = this.#o;
    const name = auditStream(config.natsStream);
    await ensureStream(link.jsm, {
      name, subjects: [`${config.natsStream.toLowerCase()}.audit.>`], storage: StorageType.File, num_replicas: config.natsReplicas,
      retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old, max_bytes: config.auditMaxBytes, max_msg_size: MAX_ENTRY_BYTES,
    }, link.log, 'HUB_AUDIT_MAX_BYTES');
    audit.share(link.hubId, (entry) => this.#publish(entry));
    const from = audit.lastSharedSeq() + 1;
    const consumer = await link.js.consumers.get(name, from > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from } : { deliver_policy: DeliverPolicy.All });
    const messages = await consumer.consume();
    this.#messages = messages;
    void (async () => {
      for await (const m of messages) {
        if (m.data.length > MAX_ENTRY_BYTES) { this.#reject(m.subject); continue; }
        let raw: unknown;
        try { raw = m.json(); } catch { this.#reject(m.subject); continue; }
        const hub = (raw as { hub?: unknown } | null)?.hub;
        if (hub === link.hubId) continue; // this hub's own, already in its trail
        if (audit.adopt(raw, m.seq)) this.copied++;
        else this.#reject(m.subject);
      }
    })().catch((err: unknown) => this.#o.log.error('shared_audit_ended', { err }, 'the shared audit trail stopped being read; entries of other hubs no longer reach this one'));
  }

  #publish(entry: AuditEntry): void {
    if (!this.#o.link.connected) { this.unshared++; return; }
    this.#o.link.js.publish(this.#subject, JSON.stringify(entry)).catch(() => { this.unshared++; });
  }

  #reject(subject: string): void {
    this.rejected++;
    this.#o.log.warn('shared_entry_invalid', { stream: 'audit', subject: subject.slice(0, 200) }, 'a message in the shared audit stream is not an audit entry; ignored');
  }

  stop(): void { this.#messages?.stop(); }
}
