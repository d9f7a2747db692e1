// device-sim/: the lean load generator's connection: socket.ts's DeviceSocket
// that also takes raw bytes. A burst of batches (FrameWriter: begin(), add()
// per message, end()) is framed as masked binary WebSocket frames (RFC 6455
// §5.2, §5.3: a fresh masking key per frame) straight into one slab shared by
// the whole fleet and handed to the TCP socket in one write: no per-message
// objects, no per-message syscall. The slab is written again from its start
// as soon as the socket has taken a burst synchronously (nothing queued),
// so it stays small and in cache. The `ws` client still does everything
// else: the upgrade, receiving, pings, close. Measured on the real hub, ws's
// send() per message (framing, a masked copy, a stream write each) cost more
// CPU than the rest of the generator.
// Imports: node, ws, and this package's socket (types).
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import type { DeviceSocket, SocketListener, SocketRequest } from './socket.ts';

/** Where a burst goes. */
export interface FrameSink {
  /** Bytes of whole frames; true when the sink no longer needs them once it returns (it copied or wrote them). */
  write(frames: Buffer): boolean;
}

export interface LeanSocket extends DeviceSocket, FrameSink {
  /** One message on its own, through ws (Hello, CommandResult). */
  send(data: Buffer): void;
}

export type LeanConnector = (request: SocketRequest, listener: SocketListener) => LeanSocket;

let maskState = 0x2545f491;
/**
 * A masking key: xorshift32, not crypto. The key only keeps proxies from
 * being fooled by crafted payloads (RFC 6455 §10.3); a load generator's
 * payloads are ours. Never 0 (xorshift never yields it from a non-zero state).
 */
export function nextMaskKey(): number {
  let x = maskState;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  maskState = x;
  return x >>> 0;
}

/** The slab's size (a bigger one for a bigger message). */
const SLAB_BYTES = 256 * 1024;
/** The largest frame header: 2 + 8 (64-bit length) + 4 (key). */
const MAX_HEADER = 14;

/**
 * Writes bursts of client frames into a slab and hands each burst to the
 * sink as one Buffer. While every sink has taken its burst at once, the next
 * burst reuses the slab from the start; once a sink keeps one (a socket with
 * writes queued), the slab only moves forward, and a new slab follows when
 * it is full: a part a sink may still hold is never written again.
 */
export class FrameWriter {
  readonly #slabBytes: number;
  #slab: Buffer;
  /** The slab as 32-bit words (slabs start on a word boundary). */
  #words: Int32Array;
  #start = 0;
  #pos = 0;
  /** A sink holds part of this slab. */
  #pinned = false;
  #sink: FrameSink | null = null;
  /** The key's four bytes, and the same memory as a word (in the platform's byte order, as #words). */
  readonly #key = new Uint8Array(4);
  readonly #keyWord = new Int32Array(this.#key.buffer);
  /** The key rotated to start at byte r, as a word. */
  readonly #rot = new Uint8Array(4);
  readonly #rotWord = new Int32Array(this.#rot.buffer);

  constructor(slabBytes = SLAB_BYTES) {
    this.#slabBytes = slabBytes;
    this.#slab = Buffer.from(new ArrayBuffer(slabBytes));
    this.#words = new Int32Array(this.#slab.buffer, 0, slabBytes >> 2);
  }

  begin(sink: FrameSink): void {
    this.#sink = sink;
    this.#start = this.#pos;
  }

  /** Frames `message` (FIN, binary, masked) after the burst's earlier ones: copied at once, so the caller may overwrite it. */
  add(message: Uint8Array): void {
    const len = message.length;
    if (this.#pos + len + MAX_HEADER > this.#slab.length) {
      this.#emit(); // what the burst holds so far goes out; the rest follows in a new slab
      this.#newSlab(len + MAX_HEADER);
    }
    const b = this.#slab;
    let p = this.#pos;
    b[p++] = 0x82; // FIN, binary
    if (len < 126) {
      b[p++] = 0x80 | len;
    } else if (len < 0x10000) {
      b[p++] = 0x80 | 126;
      b[p++] = len >>> 8;
      b[p++] = len & 0xff;
    } else {
      b[p++] = 0x80 | 127;
      b.writeUIntBE(0, p, 2);
      b.writeUIntBE(len, p + 2, 6);
      p += 8;
    }
    const key = this.#key;
    this.#keyWord[0] = nextMaskKey() | 0;
    b[p++] = key[0]!;
    b[p++] = key[1]!;
    b[p++] = key[2]!;
    b[p++] = key[3]!;
    // Copy (native), then mask in place: payload byte i ^= key[i % 4]; the
    // bytes up to a word boundary one by one, then whole words with the key
    // rotated to where the boundary falls, then the tail.
    b.set(message, p);
    const head = Math.min(len, (4 - (p & 3)) & 3);
    let i = 0;
    for (; i < head; i++) b[p + i] = b[p + i]! ^ key[i & 3]!;
    const words = (len - head) >> 2;
    if (words > 0) {
      const rot = this.#rot;
      rot[0] = key[head & 3]!;
      rot[1] = key[(head + 1) & 3]!;
      rot[2] = key[(head + 2) & 3]!;
      rot[3] = key[(head + 3) & 3]!;
      const w = this.#rotWord[0]!;
      const ws = this.#words;
      const first = (p + head) >> 2;
      for (let k = 0; k < words; k++) ws[first + k] = ws[first + k]! ^ w;
      i = head + words * 4;
    }
    for (; i < len; i++) b[p + i] = b[p + i]! ^ key[i & 3]!;
    this.#pos = p + len;
  }

  /** Hands the burst to the sink (nothing when it is empty). */
  end(): void {
    this.#emit();
    this.#sink = null;
  }

  #emit(): void {
    const sink = this.#sink;
    if (!sink || this.#pos === this.#start) return;
    const taken = sink.write(this.#slab.subarray(this.#start, this.#pos));
    if (!taken) this.#pinned = true;
    if (this.#pinned) this.#start = this.#pos;
    else this.#start = this.#pos = 0;
  }

  #newSlab(atLeast: number): void {
    const size = Math.max(this.#slabBytes, atLeast + 3) & ~3;
    this.#slab = Buffer.from(new ArrayBuffer(size));
    this.#words = new Int32Array(this.#slab.buffer, 0, size >> 2);
    this.#start = this.#pos = 0;
    this.#pinned = false;
  }
}

/**
 * Reads back client frames (FIN binary frames, as FrameWriter writes them):
 * their unmasked payloads. For tests and fake hubs; throws on anything else.
 */
export function readClientFrames(bytes: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < bytes.length) {
    if (bytes[p] !== 0x82 || !(bytes[p + 1]! & 0x80)) throw new Error(`not a masked FIN binary frame at ${p}`);
    let len = bytes[p + 1]! & 0x7f;
    p += 2;
    if (len === 126) { len = (bytes[p]! << 8) | bytes[p + 1]!; p += 2; } else if (len === 127) { len = Buffer.from(bytes.subarray(p, p + 8)).readUIntBE(2, 6); p += 8; }
    const key = bytes.subarray(p, p + 4);
    p += 4;
    if (p + len > bytes.length) throw new Error('truncated frame');
    const payload = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i++) payload[i] = bytes[p + i]! ^ key[i & 3]!;
    out.push(payload);
    p += len;
  }
  return out;
}

/** The `ws` client as a LeanSocket; bursts are written to the upgraded TCP socket itself. */
export const leanWsConnector: LeanConnector = (request, listener) => {
  const ws = new WebSocket(request.url, request.protocols, {
    headers: request.headers, ca: request.ca, localAddress: request.localAddress,
    perMessageDeflate: false, // the hub never negotiates it (§1)
    handshakeTimeout: request.handshakeTimeoutMs,
  });
  ws.binaryType = 'nodebuffer';
  // The upgraded socket: the 101 response's socket is the one ws reads from and writes to.
  let tcp: Socket | null = null;
  ws.on('upgrade', (res) => { tcp = res.socket; });
  ws.on('unexpected-response', (_req, res) => {
    listener.onRefused(res.statusCode ?? 0, res.headers['retry-after']);
    res.resume();
    ws.terminate();
  });
  ws.on('open', () => listener.onOpen());
  ws.on('ping', () => listener.onPing());
  ws.on('message', (data: Buffer, isBinary: boolean) => listener.onMessage(data, isBinary));
  // A network error by its code (ECONNREFUSED); one without (a bad handshake) by its message, which says what was wrong.
  ws.on('error', (err: NodeJS.ErrnoException) => listener.onError(err.code ?? err.message.slice(0, 80)));
  ws.on('close', (code, reason) => { tcp = null; listener.onClose(code, reason.toString()); });
  return {
    get readyState() { return ws.readyState; },
    send: (data) => ws.send(data),
    write: (frames) => {
      // Whole frames only, and only while open: never after ws's close frame.
      if (!tcp || ws.readyState !== WebSocket.OPEN) return true;
      tcp.write(frames);
      return tcp.writableLength === 0; // taken at once: nothing of it is queued
    },
    close: (code, reason) => ws.close(code, reason),
    terminate: () => ws.terminate(),
  };
};
