// cluster/: the SpoolReader the InfluxDB sink ships from in cluster mode: a
// durable JetStream pull consumer that every hub's sink shares, so each
// stored batch is delivered to one hub at a time. A message is acked to
// JetStream (and so removed from the work-queue stream) only when the sink
// commits past it, which it does only for what InfluxDB confirmed. Messages
// held here are kept from redelivery while they wait (working(), every few
// seconds); when a hub dies mid-write, its unacked messages are redelivered
// to another hub after the ack wait. InfluxDB points are idempotent
// (measurement, tags, time), so a redelivery written twice is stored once.
// Positions are local to this process: byte offsets in the order messages
// were delivered here. Memory is bounded: no fetch while MAX_HELD_BYTES are
// held. Imports: core, spool (reader seam, record codec), cluster/link.
import { AckPolicy, DeliverPolicy, type Consumer, type JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../core/log.ts';
import { checkFrame, decodeRecord } from '../spool/codec.ts';
import type { Position, SpoolReader, SpoolRecord } from '../spool/reader.ts';
import type { ClusterLink } from './link.ts';

/** Unacked messages the consumer hands out, all hubs together. */
export const MAX_ACK_PENDING = 20_000;
/** A message not acked (nor marked working) within this is redelivered to another hub. */
export const ACK_WAIT_MS = 15_000;
const WORKING_EVERY_MS = 5_000;
/** Held here (delivered, not yet confirmed by InfluxDB) before fetching stops. */
const MAX_HELD_BYTES = 32 << 20;
/**
 * Messages asked for in one fetch, at most (by count: a fetch by bytes
 * alone gets nats.js's default of 100 messages and then waits out its
 * expiry). Fewer when the room left under MAX_HELD_BYTES is smaller at the
 * average size seen.
 */
const FETCH_MESSAGES = 2000;
const FETCH_EXPIRES_MS = 1_000;
/** Records larger than this are not ours (device messages are capped far below it). */
const MAX_RECORD_BYTES = 64 << 20;

interface Held { readonly msg: JsMsg; readonly record: SpoolRecord; readonly start: number; readonly bytes: number }

export interface StreamReaderOptions {
  link: ClusterLink;
  log: Logger;
}

export class StreamReader implements SpoolReader {
  readonly #link: ClusterLink;
  readonly #log: Logger;
  /** Delivered and not yet committed, in delivery order. */
  #held: Held[] = [];
  #heldAt = 0;
  #heldBytes = 0;
  #next = 0;
  readonly #listeners = new Set<() => void>();
  #consumer: Consumer | null = null;
  #closed = false;
  #room: (() => void) | null = null;
  #working: NodeJS.Timeout | null = null;
  #loop: Promise<void> | null = null;
  #bytesSeen = 0;
  delivered = 0;
  redelivered = 0;
  acked = 0;
  corrupt = 0;

  constructor(opts: StreamReaderOptions) {
    this.#link = opts.link;
    this.#log = opts.log;
  }

  /** Creates (or updates) the shared consumer and starts fetching. */
  async start(): Promise<void> {
    const { jsm, js, names } = this.#link;
    const config = {
      durable_name: names.sinkConsumer, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All,
      ack_wait: ACK_WAIT_MS * 1e6, max_ack_pending: MAX_ACK_PENDING, max_deliver: -1, filter_subject: names.batchSubjects,
    };
    try {
      await jsm.consumers.add(names.stream, config);
    } catch (err) {
      if (!/consumer already exists|already in use/i.test((err as Error).message)) throw err;
      await jsm.consumers.update(names.stream, names.sinkConsumer, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending, max_deliver: -1 });
    }
    this.#consumer = await js.consumers.get(names.stream, names.sinkConsumer);
    this.#working = setInterval(() => this.#keepWorking(), WORKING_EVERY_MS);
    this.#working.unref();
    this.#loop = this.#pull();
  }

  get checkpoint(): Position { return { segment: 0, offset: this.#heldAt < this.#held.length ? this.#held[this.#heldAt]!.start : this.#next }; }
  get head(): Position { return { segment: 0, offset: this.#next }; }
  /** Bytes delivered here and not yet confirmed. */
  get heldBytes(): number { return this.#heldBytes; }
  get heldMessages(): number { return this.#held.length - this.#heldAt; }

  readFrom(from: Position, maxBytes = 1 << 20): Promise<{ records: SpoolRecord[]; next: Position }> {
    const held = this.#held;
    // First held record starting at or after `from` (binary search: offsets grow).
    let lo = this.#heldAt;
    let hi = held.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (held[mid]!.start < from.offset) lo = mid + 1; else hi = mid;
    }
    const records: SpoolRecord[] = [];
    let bytes = 0;
    let next = from;
    for (let i = lo; i < held.length; i++) {
      const h = held[i]!;
      if (records.length > 0 && bytes + h.bytes > maxBytes) break;
      records.push(h.record);
      bytes += h.bytes;
      next = h.record.end;
    }
    return Promise.resolve({ records, next });
  }

  commit(upTo: Position): void {
    const held = this.#held;
    let i = this.#heldAt;
    while (i < held.length && held[i]!.record.end.offset <= upTo.offset) {
      const h = held[i]!;
      h.msg.ack();
      this.acked++;
      this.#heldBytes -= h.bytes;
      i++;
    }
    this.#heldAt = i;
    // Compact once the acked prefix is most of the array.
    if (i > 1024 && i * 2 > held.length) { this.#held = held.slice(i); this.#heldAt = 0; }
    if (this.#room && this.#heldBytes < MAX_HELD_BYTES) { const wake = this.#room; this.#room = null; wake(); }
  }

  onDurable(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #keepWorking(): void {
    for (let i = this.#heldAt; i < this.#held.length; i++) this.#held[i]!.msg.working();
  }

  async #pull(): Promise<void> {
    const consumer = this.#consumer;
    if (!consumer) return;
    while (!this.#closed) {
      if (!this.#link.connected) { await this.#link.whenConnected(); continue; }
      if (this.#heldBytes >= MAX_HELD_BYTES) { await new Promise<void>((resolve) => { this.#room = resolve; }); continue; }
      let got = 0;
      try {
        const avg = this.delivered > 0 ? Math.max(64, this.#bytesSeen / this.delivered) : 1024;
        const room = Math.max(1, Math.floor((MAX_HELD_BYTES - this.#heldBytes) / avg));
        const batch = await consumer.fetch({ max_messages: Math.min(FETCH_MESSAGES, room), expires: FETCH_EXPIRES_MS });
        for await (const msg of batch) { if (this.#add(msg)) got++; }
      } catch (err) {
        if (this.#closed) break;
        this.#log.warn({ err: (err as Error).message }, 'JetStream fetch for the InfluxDB sink failed; trying again');
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      if (got > 0) for (const listener of this.#listeners) listener();
    }
  }

  #add(msg: JsMsg): boolean {
    this.delivered++;
    if (msg.redelivered) this.redelivered++;
    const data = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
    const frame = checkFrame(data, 0, MAX_RECORD_BYTES);
    let batch;
    try {
      if (frame.kind !== 'ok' || frame.next !== data.length) throw new Error(frame.kind === 'corrupt' ? frame.why : 'incomplete or trailing bytes');
      batch = decodeRecord(frame.payload);
    } catch (err) {
      // Not a batch this hub can read: it would be redelivered forever.
      this.corrupt++;
      this.#log.error({ subject: msg.subject, seq: msg.seq, err: (err as Error).message }, 'JetStream message is not a readable batch record; removed from the stream (term)');
      msg.term();
      return false;
    }
    const start = this.#next;
    this.#next += data.length;
    this.#bytesSeen += data.length;
    this.#held.push({ msg, record: { batch, end: { segment: 0, offset: this.#next } }, start, bytes: data.length });
    this.#heldBytes += data.length;
    return true;
  }

  /**
   * Stops fetching and hands back (nak) what is held and not committed, so
   * another hub's sink gets it at once rather than after the ack wait. The
   * fetch in progress is let finish first (at most FETCH_EXPIRES_MS): what
   * it delivers is handed back too, not left with a pull nobody reads.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#working) clearInterval(this.#working);
    if (this.#room) { const wake = this.#room; this.#room = null; wake(); }
    await Promise.race([this.#loop, new Promise((resolve) => setTimeout(resolve, FETCH_EXPIRES_MS + 500).unref())]);
    for (let i = this.#heldAt; i < this.#held.length; i++) this.#held[i]!.msg.nak();
    this.#held = [];
    this.#heldAt = 0;
    this.#heldBytes = 0;
  }
}
