// device-sim/: a "null hub" for measuring what one lean generator process can
// offer: a WebSocket endpoint on raw TCP that speaks just enough of protocol
// v1 to keep a well-behaved device going and costs far less per batch than
// the real hub: it upgrades any request (no auth), answers Hello with a
// Welcome (window = credit = WINDOW, no readings limit), reads only each
// frame's header and the batch's seq (no decoding, nothing stored), and acks
// once per read chunk with the highest seq seen (credit = WINDOW). It checks
// that seqs only go up. Not a hub: nothing is durable, nothing validated.
//   node --conditions=@telemetry/source --import tsx device-sim/bench/null-hub.ts [port=0] [window=32]
// Prints `null-hub listening PORT`; SIGUSR2 prints `count N` (batches so far); SIGTERM prints its counts and exits.
// Imports: node, @telemetry/proto.
import { createHash } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { DEVICE_SUBPROTOCOL, encodeHubMessage } from '@telemetry/proto';

const port = Number(process.argv[2] ?? 0);
const window = Number(process.argv[3] ?? 32);
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'; // RFC 6455 §1.3
const limits = { maxMessageBytes: 262_144, maxBatchReadings: 10_000, maxReadingsPerSecond: 0, readingsBurst: 0, maxMetricsPerSession: 256, maxMetricNameBytes: 64, maxFutureSkewMs: 300_000, maxPastSkewMs: 604_800_000, idleTimeoutMs: 960_000 };

let batches = 0;
let acks = 0;
let regressions = 0;

function serverFrame(opcode: number, payload: Uint8Array): Buffer {
  const len = payload.length;
  const head = len < 126 ? 2 : 4;
  const f = Buffer.allocUnsafe(head + len);
  f[0] = 0x80 | opcode;
  if (len < 126) f[1] = len;
  else { f[1] = 126; f.writeUInt16BE(len, 2); }
  f.set(payload, head);
  return f;
}

/** HubMessage{ack: {seq, credit}} in a frame, encoded by hand (the bytes the hub's encoder writes). */
function ackFrame(seq: number, credit: number): Buffer {
  const inner: number[] = [];
  if (seq > 0) {
    inner.push(0x08);
    let v = seq;
    while (v >= 128) { inner.push((v % 128) | 0x80); v = Math.floor(v / 128); }
    inner.push(v);
  }
  inner.push(0x10, credit);
  return serverFrame(2, Uint8Array.from([0x12, inner.length, ...inner]));
}

function serve(socket: Socket): void {
  socket.setNoDelay(true);
  let head = '';
  let upgraded = false;
  let carry: Buffer | null = null;
  let highest = 0;
  const welcome = (): Buffer => serverFrame(2, encodeHubMessage({ welcome: { sessionId: 'null', protocolVersion: 1, serverTimeMs: Date.now(), window, credit: window, lastSeq: highest, limits } }));

  /** Handles whole frames in buf from 0; returns where an incomplete frame starts (buf.length when none). */
  const frames = (buf: Buffer): number => {
    let p = 0;
    while (p + 2 <= buf.length) {
      const opcode = buf[p]! & 0x0f;
      const masked = (buf[p + 1]! & 0x80) !== 0;
      let len = buf[p + 1]! & 0x7f;
      let h = 2;
      if (len === 126) { if (p + 4 > buf.length) break; len = buf.readUInt16BE(p + 2); h = 4; } else if (len === 127) { if (p + 10 > buf.length) break; len = buf.readUIntBE(p + 4, 6); h = 10; }
      const keyAt = p + h;
      const at = keyAt + (masked ? 4 : 0);
      if (at + len > buf.length) break;
      const unmasked = (i: number) => (masked ? buf[at + i]! ^ buf[keyAt + (i & 3)]! : buf[at + i]!);
      if (opcode === 2 && len > 0) {
        const kind = unmasked(0);
        if (kind === 0x0a) socket.write(welcome()); // Hello
        else if (kind === 0x12) {
          // DeviceMessage.batch: skip the length varint, then Batch.seq (field 1) comes first.
          let i = 1;
          while (unmasked(i) & 0x80) i++;
          i++;
          if (unmasked(i) === 0x08) {
            i++;
            let seq = 0;
            let scale = 1;
            for (;;) { const b = unmasked(i++); seq += (b & 0x7f) * scale; if (!(b & 0x80)) break; scale *= 128; }
            if (seq <= highest) regressions++;
            highest = seq;
            batches++;
          }
        }
      } else if (opcode === 8) { // close: echo it, then end
        const body = Buffer.alloc(len);
        for (let i = 0; i < len; i++) body[i] = unmasked(i);
        socket.end(serverFrame(8, body));
      } else if (opcode === 9) { // ping
        const body = Buffer.alloc(len);
        for (let i = 0; i < len; i++) body[i] = unmasked(i);
        socket.write(serverFrame(10, body));
      }
      p = at + len;
    }
    return p;
  };

  socket.on('data', (chunk: Buffer) => {
    if (!upgraded) {
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const key = /sec-websocket-key:\s*(\S+)/i.exec(head.slice(0, end))?.[1] ?? '';
      const accept = createHash('sha1').update(key + GUID).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${DEVICE_SUBPROTOCOL}\r\n\r\n`);
      upgraded = true;
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      head = '';
      if (!rest.length) return;
      chunk = rest;
    }
    const before = highest;
    const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
    const used = frames(buf);
    carry = used < buf.length ? Buffer.from(buf.subarray(used)) : null;
    if (highest > before) { acks++; socket.write(ackFrame(highest, window)); }
  });
  socket.on('error', () => socket.destroy());
}

const server = createServer(serve);
server.listen(port, '127.0.0.1', () => {
  const a = server.address();
  console.log(`null-hub listening ${typeof a === 'object' && a ? a.port : port}`);
});
process.on('SIGUSR2', () => console.log(`count ${batches}`));
process.on('SIGTERM', () => {
  console.log(JSON.stringify({ batches, acks, regressions }));
  process.exit(0);
});
