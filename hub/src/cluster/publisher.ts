// cluster/: JetStream publishes at the rate ingest makes them. A JetStream
// publish is a core NATS publish with a reply subject; the stream answers
// there with a PubAck ({"stream", "seq", "duplicate"} or {"error"}). This
// publisher sends them on one wildcard inbox of its own and matches the
// answers by the last token, instead of going through js.publish(): that
// costs a request object, several Error objects (stack traces) and, because
// nats.js flushes after each publish in a microtask and uWebSockets.js runs
// microtasks after every message, one write syscall per batch (the profile
// of 1 hub on 1 JetStream server: writeBuffer 29 % of the main thread,
// Error construction 18 %). Publishes made in one event-loop turn are sent
// together on the next (one write), and one timer sweeps the answers that
// did not come in time. Imports: core (errors).
import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { HubError } from '../core/errors.ts';

export interface PubAck { seq: number; duplicate: boolean }

/** A publish JetStream answered with an error (`code`: its HTTP-like code, e.g. 503 no stream, 400 limits). */
export class PublishError extends Error {
  constructor(message: string, readonly code: number) { super(message); }
}

interface Waiting { resolve: (ack: PubAck) => void; reject: (err: Error) => void; deadline: number }
interface Queued { subject: string; payload: Uint8Array; headerPairs: readonly [string, string][]; id: number }

const SWEEP_MS = 100;

export class Publisher {
  readonly #nc: NatsConnection;
  readonly #inbox: string;
  readonly #sub: Subscription;
  readonly #waiting = new Map<number, Waiting>();
  #queue: Queued[] = [];
  #scheduled = false;
  #next = 0;
  readonly #sweep: NodeJS.Timeout;
  readonly #timeoutMs: number;

  constructor(nc: NatsConnection, timeoutMs: number) {
    this.#nc = nc;
    this.#timeoutMs = timeoutMs;
    this.#inbox = createInbox();
    this.#sub = nc.subscribe(`${this.#inbox}.*`, { callback: (err, msg) => { if (!err) this.#answer(msg); } });
    this.#sweep = setInterval(() => this.#expire(), SWEEP_MS);
    this.#sweep.unref();
  }

  /** Answers not yet in. */
  get waiting(): number { return this.#waiting.size; }

  /** Publishes to the stream; resolves with its PubAck, rejects with PublishError or a timeout. */
  publish(subject: string, payload: Uint8Array, headerPairs: readonly [string, string][]): Promise<PubAck> {
    const id = ++this.#next;
    return new Promise<PubAck>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject, deadline: Date.now() + this.#timeoutMs });
      this.#queue.push({ subject, payload, headerPairs, id });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#send());
      }
    });
  }

  #send(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    for (const q of queue) {
      const h = headers();
      for (const [k, v] of q.headerPairs) h.set(k, v);
      try {
        this.#nc.publish(q.subject, q.payload, { reply: `${this.#inbox}.${q.id}`, headers: h });
      } catch (err) {
        const w = this.#waiting.get(q.id);
        this.#waiting.delete(q.id);
        w?.reject(err as Error);
      }
    }
  }

  #answer(msg: Msg): void {
    const id = Number(msg.subject.slice(this.#inbox.length + 1));
    const w = this.#waiting.get(id);
    if (!w) return; // timed out already: the retry carries the same message id
    this.#waiting.delete(id);
    const h = msg.headers;
    if (h?.hasError && msg.data.length === 0) return w.reject(new PublishError(`JetStream: ${h.code} ${h.description || 'no responders'}`, h.code));
    let ack: { seq?: unknown; duplicate?: unknown; error?: { code?: number; description?: string } };
    try {
      ack = JSON.parse(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString('utf8')) as typeof ack;
    } catch {
      return w.reject(new PublishError('JetStream: an answer that is not a PubAck', 500));
    }
    if (ack.error) return w.reject(new PublishError(`JetStream: ${ack.error.description ?? 'error'}`, ack.error.code ?? 500));
    if (typeof ack.seq !== 'number') return w.reject(new PublishError('JetStream: a PubAck without seq', 500));
    w.resolve({ seq: ack.seq, duplicate: ack.duplicate === true });
  }

  #expire(): void {
    if (this.#waiting.size === 0) return;
    const now = Date.now();
    for (const [id, w] of this.#waiting) {
      if (w.deadline > now) continue;
      this.#waiting.delete(id);
      w.reject(new HubError('HUB_ERR_NATS', `JetStream publish not acknowledged within ${this.#timeoutMs} ms (HUB_NATS_ACK_TIMEOUT_MS)`));
    }
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#sub.unsubscribe();
    for (const w of this.#waiting.values()) w.reject(new HubError('HUB_ERR_NATS', 'publisher closed'));
    this.#waiting.clear();
  }
}
