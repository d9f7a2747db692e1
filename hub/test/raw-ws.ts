// A WebSocket client on a bare TCP socket (manual HTTP upgrade, frames parsed
// by hand), for tests about what the hub does on the wire: when its close
// frame arrives, and when it ends the TCP connection. The `ws` package ends
// TCP itself after the close handshake, which would hide a server that never
// does; this client keeps its half open (RFC 6455 §7.1.1: the server closes
// the TCP connection first) unless told otherwise.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { DEVICE_PATH, DEVICE_SUBPROTOCOL, encodeDeviceMessage } from '@telemetry/proto';

export interface RawFrame { opcode: number; payload: Buffer; atMs: number }

export class RawWsClient {
  readonly socket: Socket;
  readonly frames: RawFrame[] = [];
  /** The 101 response arrived (or the upgrade was refused: rejects). */
  readonly upgraded: Promise<void>;
  /** The hub's close frame: its code and when it arrived (performance.now()). */
  readonly closeFrame: Promise<{ code: number; reason: string; atMs: number }>;
  /** The hub ended TCP (FIN, or a reset): when. */
  readonly tcpEnded: Promise<number>;
  #buf = Buffer.alloc(0);
  #upgraded = false;
  #onUpgrade!: () => void;
  #onUpgradeFailed!: (e: Error) => void;
  #onCloseFrame!: (c: { code: number; reason: string; atMs: number }) => void;
  /** Send our close frame back when the hub's arrives (a conforming client). */
  answerClose = true;

  constructor(port: number, token: string, path = DEVICE_PATH) {
    this.socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    this.upgraded = new Promise((resolve, reject) => { this.#onUpgrade = resolve; this.#onUpgradeFailed = reject; });
    this.closeFrame = new Promise((resolve) => { this.#onCloseFrame = resolve; });
    this.tcpEnded = new Promise((resolve) => {
      let done = false;
      const end = (): void => { if (!done) { done = true; resolve(performance.now()); } };
      this.socket.once('end', end);
      this.socket.once('close', end);
    });
    this.socket.on('error', (e) => { if (!this.#upgraded) this.#onUpgradeFailed(e); });
    this.socket.once('connect', () => {
      this.socket.write([
        `GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`, 'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Protocol: ${DEVICE_SUBPROTOCOL}`, `Authorization: Bearer ${token}`, '', '',
      ].join('\r\n'));
    });
    this.socket.on('data', (chunk: Buffer) => this.#data(chunk));
  }

  #data(chunk: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    if (!this.#upgraded) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.#buf.subarray(0, end).toString();
      this.#buf = this.#buf.subarray(end + 4);
      if (!/^HTTP\/1\.1 101/.test(head)) return this.#onUpgradeFailed(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
      this.#upgraded = true;
      this.#onUpgrade();
    }
    // RFC 6455 §5.2: server frames are unmasked.
    for (;;) {
      if (this.#buf.length < 2) return;
      const opcode = this.#buf[0]! & 0x0f;
      let len = this.#buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) { if (this.#buf.length < 4) return; len = this.#buf.readUInt16BE(2); at = 4; }
      else if (len === 127) { if (this.#buf.length < 10) return; len = Number(this.#buf.readBigUInt64BE(2)); at = 10; }
      if (this.#buf.length < at + len) return;
      const payload = Buffer.from(this.#buf.subarray(at, at + len));
      this.#buf = this.#buf.subarray(at + len);
      const atMs = performance.now();
      this.frames.push({ opcode, payload, atMs });
      if (opcode === 0x8) {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        if (this.answerClose && !this.socket.destroyed) this.sendFrame(0x8, payload.subarray(0, 2));
        this.#onCloseFrame({ code, reason: payload.subarray(2).toString(), atMs });
      }
    }
  }

  /** Sends one masked frame (RFC 6455 §5.3: client frames are masked). */
  sendFrame(opcode: number, payload: Uint8Array): void {
    const mask = randomBytes(4);
    const n = payload.length;
    const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n])
      : n < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff])
        : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
    const body = Buffer.alloc(n);
    for (let i = 0; i < n; i++) body[i] = payload[i]! ^ mask[i & 3]!;
    this.socket.write(Buffer.concat([head, mask, body]));
  }

  send(m: Parameters<typeof encodeDeviceMessage>[0]): void { this.sendFrame(0x2, encodeDeviceMessage(m)); }
  sendText(text: string): void { this.sendFrame(0x1, Buffer.from(text)); }
  destroy(): void { this.socket.destroy(); }
}
