// cluster/: the BatchStore of cluster mode. A batch is durable once JetStream
// acknowledged its publish to the batch stream (R1: stored by that server;
// R3: by a majority). Every publish carries Nats-Msg-Id `<device>:<seq>`, so
// a resend, whichever hub it reaches, is stored once within the stream's
// duplicate window. A publish that fails (timeout, NATS gone, stream full) is
// sent again, with the same id, until it is stored or the store closes: a
// device's durable seq only moves over a stored prefix, so a later batch
// stored ahead of a failed one never makes the hub claim the earlier one.
// New appends are refused while NATS is unreachable (1013, nothing acked) or
// the stream is at its cap (1013, like the spool). resume() reads what the
// cluster holds for a device before its Welcome: the last message of its
// subject. Imports: core, spool (the BatchStore seam, the record codec),
// cluster/link.
import type { AcceptedBatch } from '../core/batch.ts';
import { StoreError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { encodeRecord } from '../spool/codec.ts';
import type { BatchStore } from '../spool/store.ts';
import type { ClusterLink } from './link.ts';
import { Publisher } from './publisher.ts';

/** The device seq of a stored message (a header, so a reader needs no decoding to find it). */
export const SEQ_HEADER = 'Telemetry-Seq';
/** The hub that stored it. */
export const HUB_HEADER = 'Telemetry-Hub';

/** How often the stream's size is read (pressure, the full flag). */
const STATE_POLL_MS = 1000;
/** A full stream takes batches again below this share of its cap (and with room for twice the largest batch it refused). */
const RESUME_BELOW = 0.95;
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 2000;

export interface StreamStoreOptions {
  link: ClusterLink;
  log: Logger;
  /** HUB_NATS_MAX_BYTES: the stream's cap (pressure is its fill). */
  maxBytes: number;
  /** HUB_NATS_ACK_TIMEOUT_MS: one publish attempt. */
  ackTimeoutMs: number;
}

interface Pending { readonly seq: number; done: boolean }

/** JetStream's refusal at a stream limit (discard new). */
function isLimitError(err: unknown): boolean {
  return /maximum (bytes|messages)|resource limits exceeded|insufficient resources/i.test((err as Error)?.message ?? '');
}

export class StreamStore implements BatchStore {
  readonly #link: ClusterLink;
  readonly #log: Logger;
  readonly #maxBytes: number;
  readonly #accepted = new Map<string, number>();
  readonly #durable = new Map<string, number>();
  /** Per device, its appends not yet durable, in seq order; absent when none. */
  readonly #pending = new Map<string, Pending[]>();
  /** What resume() found while a device still had appends pending here: applied once they settle. */
  readonly #floor = new Map<string, number>();
  #inFlight = 0;
  #idle: (() => void)[] = [];
  #closed = false;
  readonly #stop = new AbortController();
  #full = false;
  /** The largest publish refused at the cap (the room it needs). */
  #refusedBytes = 0;
  #streamBytes = 0;
  readonly #poll: NodeJS.Timeout;
  readonly #publisher: Publisher;
  /** Publishes sent again after a failed attempt. */
  retries = 0;
  /** Publishes JetStream answered as duplicates (a resend already stored, by any hub). */
  duplicates = 0;
  batchesStored = 0;

  constructor(opts: StreamStoreOptions) {
    this.#link = opts.link;
    this.#log = opts.log;
    this.#maxBytes = opts.maxBytes;
    this.#publisher = new Publisher(opts.link.nc, opts.ackTimeoutMs);
    this.#poll = setInterval(() => void this.#readState(), STATE_POLL_MS);
    this.#poll.unref();
    void this.#readState();
  }

  get healthy(): boolean { return !this.#closed && this.#link.connected; }
  acceptedSeq(deviceId: string): number { return this.#accepted.get(deviceId) ?? 0; }
  durableSeq(deviceId: string): number { return this.#durable.get(deviceId) ?? 0; }
  /** The stream's fill against HUB_NATS_MAX_BYTES (1 while it refuses at its cap). */
  pressure(): number { return this.#full ? 1 : Math.min(1, this.#streamBytes / this.#maxBytes); }
  /** Bytes in the stream not yet shipped (all hubs'). */
  get bytes(): number { return this.#streamBytes; }
  /** Appends not yet stored. */
  get inFlight(): number { return this.#inFlight; }

  async #readState(): Promise<void> {
    if (this.#closed || !this.#link.connected) return;
    try {
      const info = await this.#link.jsm.streams.info(this.#link.names.stream);
      this.#streamBytes = info.state.bytes;
      // Full until the sink has made room for what was refused, twice over.
      if (this.#full && info.state.bytes < Math.min(this.#maxBytes * RESUME_BELOW, this.#maxBytes - 2 * this.#refusedBytes)) {
        this.#full = false;
        this.#log.info({ bytes: info.state.bytes }, 'JetStream stream below its cap again: batches accepted');
      }
    } catch {
      // Unreachable for now: the connection status says so; the next poll tries again.
    }
  }

  /**
   * Before a device's Welcome: raises what this hub knows of it to what the
   * cluster holds (`hint`: a seq another source vouches for, e.g. the owner
   * entry written when its last session ended). Rejects with
   * HUB_ERR_STORE_UNAVAILABLE when the stream cannot be read.
   */
  async resume(deviceId: string, hint = 0): Promise<number> {
    let seq = hint;
    try {
      const last = await this.#link.jsm.streams.getMessage(this.#link.names.stream, { last_by_subj: this.#link.names.batchSubject(deviceId) });
      const stored = Number(last?.header.get(SEQ_HEADER) ?? 0);
      if (Number.isSafeInteger(stored) && stored > seq) seq = stored;
    } catch (err) {
      if (!/no message found|not found/i.test((err as Error).message)) {
        throw new StoreError('HUB_ERR_STORE_UNAVAILABLE', `cannot read device ${deviceId}'s last batch from JetStream: ${(err as Error).message}`, { cause: err });
      }
    }
    if (seq > this.acceptedSeq(deviceId)) this.#accepted.set(deviceId, seq);
    if (seq > this.durableSeq(deviceId)) {
      if (this.#pending.has(deviceId)) this.#floor.set(deviceId, Math.max(seq, this.#floor.get(deviceId) ?? 0));
      else this.#durable.set(deviceId, seq);
    }
    return this.durableSeq(deviceId);
  }

  append(batch: AcceptedBatch): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreError('HUB_ERR_STORE_CLOSED', 'store is closed'));
    if (!this.#link.connected) return Promise.reject(new StoreError('HUB_ERR_STORE_UNAVAILABLE', 'NATS is unreachable'));
    if (this.#full) return Promise.reject(new StoreError('HUB_ERR_STORE_FULL', `JetStream stream ${this.#link.names.stream} is at its cap (HUB_NATS_MAX_BYTES=${this.#maxBytes})`));
    const { deviceId, seq } = batch;
    if (seq <= this.acceptedSeq(deviceId)) {
      return Promise.reject(new StoreError('HUB_ERR_STORE', `seq ${seq} for ${deviceId} is not above the accepted ${this.acceptedSeq(deviceId)}`));
    }
    this.#accepted.set(deviceId, seq);
    // The record frame (its CRC included) is the message: the codec may
    // reuse the memory of a small frame, and a retry sends it again.
    const frame = encodeRecord(batch);
    const payload = new Uint8Array(frame.length);
    payload.set(frame);
    const entry: Pending = { seq, done: false };
    let queue = this.#pending.get(deviceId);
    if (!queue) this.#pending.set(deviceId, queue = []);
    queue.push(entry);
    this.#inFlight++;
    return this.#publish(deviceId, seq, payload).then(
      () => { entry.done = true; this.batchesStored++; this.#advance(deviceId); this.#settled(); },
      (err: unknown) => { this.#failed(deviceId, entry); this.#settled(); throw err; },
    );
  }

  async #publish(deviceId: string, seq: number, payload: Uint8Array): Promise<void> {
    const link = this.#link;
    const subject = link.names.batchSubject(deviceId);
    const msgID = `${subject.slice(subject.lastIndexOf('.') + 1)}:${seq}`;
    let wait = RETRY_FIRST_MS;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) {
        if (this.#stop.signal.aborted) throw new StoreError('HUB_ERR_STORE_CLOSED', `store closed before batch ${seq} of ${deviceId} was stored`);
        await link.whenConnected(this.#stop.signal);
        if (this.#stop.signal.aborted) throw new StoreError('HUB_ERR_STORE_CLOSED', `store closed before batch ${seq} of ${deviceId} was stored`);
        this.retries++;
      }
      try {
        const ack = await this.#publisher.publish(subject, payload, [['Nats-Msg-Id', msgID], [SEQ_HEADER, String(seq)], [HUB_HEADER, link.hubId]]);
        if (ack.duplicate) this.duplicates++;
        return;
      } catch (err) {
        if (isLimitError(err)) {
          this.#refusedBytes = Math.max(this.#refusedBytes, payload.length);
          if (!this.#full) this.#log.warn({ stream: link.names.stream }, `JetStream stream ${link.names.stream} is full (HUB_NATS_MAX_BYTES): batches refused with 1013 until the sink drains it`);
          this.#full = true;
        }
        if (attempt === 0) this.#log.warn({ err: (err as Error).message, device: deviceId, seq }, 'JetStream publish failed; sending it again (same message id) until it is stored');
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, wait);
          this.#stop.signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
        });
        wait = Math.min(RETRY_MAX_MS, wait * 2);
      }
    }
  }

  /** Durable moves over the stored prefix of the device's appends, in order. */
  #advance(deviceId: string): void {
    const queue = this.#pending.get(deviceId);
    if (!queue) return;
    let upTo = 0;
    let done = 0;
    while (done < queue.length && queue[done]!.done) upTo = queue[done++]!.seq;
    if (done > 0) queue.splice(0, done);
    if (upTo > this.durableSeq(deviceId)) this.#durable.set(deviceId, upTo);
    if (queue.length === 0) this.#drained(deviceId);
  }

  /**
   * A failed append (the store closed before it was stored): it stays in the
   * device's queue, so durable never moves past it in this process, and
   * accepted falls back below it, so that a resend is stored.
   */
  #failed(deviceId: string, entry: Pending): void {
    if (entry.seq - 1 < this.acceptedSeq(deviceId)) this.#accepted.set(deviceId, Math.max(entry.seq - 1, this.durableSeq(deviceId)));
  }

  #drained(deviceId: string): void {
    this.#pending.delete(deviceId);
    const floor = this.#floor.get(deviceId);
    if (floor !== undefined) {
      this.#floor.delete(deviceId);
      if (floor > this.durableSeq(deviceId)) this.#durable.set(deviceId, floor);
    }
  }

  #settled(): void {
    if (--this.#inFlight === 0) for (const wake of this.#idle.splice(0)) wake();
  }

  /** Resolves once every append settled: publishes in flight finish their attempt; none is sent again. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#poll);
    this.#stop.abort();
    if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#idle.push(resolve));
    this.#publisher.close();
  }
}
