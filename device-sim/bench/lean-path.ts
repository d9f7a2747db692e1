// device-sim/: a benchmark of the lean load generator's own CPU per batch,
// without TCP or a hub. A LeanFleet of N devices, closed loop, on in-memory
// sockets, with everything the real connector does per frame but the kernel:
// each burst is framed and masked by the fleet's FrameWriter (lean-socket.ts)
// and handed to a socket that walks the frame headers (counting batches) and
// drops the bytes; each Ack comes back as a server frame through a real ws
// Receiver, as on a real connection. A fake hub
// acks every device once per event-loop turn (cumulatively, full credit),
// as the real hub groups its acks. The figure is process CPU (user + system,
// process.cpuUsage) over the batches sent: the generator's work plus the fake
// hub's (a counter per batch, one small ack per device per turn).
//   node --conditions=@telemetry/source --import tsx device-sim/bench/lean-path.ts [devices=200] [window=32] [readings=20] [batches=2000000]
// Imports: node, ws, @telemetry/proto, and this package's lean-fleet, lean-socket and socket.
import { createRequire } from 'node:module';
import { encodeHubMessage } from '@telemetry/proto';
import { LeanFleet } from '../src/lean-fleet.ts';
import type { LeanConnector, LeanSocket } from '../src/lean-socket.ts';
import { SocketState } from '../src/socket.ts';

const args = process.argv.slice(2);
const devices = Number(args[0] ?? 200);
const window = Number(args[1] ?? 32);
const readings = Number(args[2] ?? 20);
const batches = Number(args[3] ?? 2_000_000);

// ws's frame parser (exported at runtime, not in @types/ws).
interface WsReceiver { on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): void; write(chunk: Buffer): boolean }
const wsLib = createRequire(import.meta.url)('ws') as { Receiver: new (options: object) => WsReceiver };

const limits = { maxMessageBytes: 262_144, maxBatchReadings: 10_000, maxReadingsPerSecond: 0, readingsBurst: 0, maxMetricsPerSession: 256, idleTimeoutMs: 0 };
const welcome = encodeHubMessage({ welcome: { sessionId: 's', protocolVersion: 1, window, credit: window, lastSeq: 0, limits } });

/** An unmasked server frame around a HubMessage. */
function serverFrame(payload: Uint8Array): Buffer {
  if (payload.length > 125) throw new Error('bench acks stay small');
  const f = Buffer.allocUnsafe(2 + payload.length);
  f[0] = 0x82;
  f[1] = payload.length;
  f.set(payload, 2);
  return f;
}

/** HubMessage{ack: {seq, credit}}, encoded by hand (what the hub's encoder writes). */
function ackFrame(seq: number, credit: number): Buffer {
  const body: number[] = [0x08];
  let v = seq;
  while (v >= 128) { body.push((v % 128) | 0x80); v = Math.floor(v / 128); }
  body.push(v, 0x10, credit);
  return serverFrame(Uint8Array.from([0x12, body.length, ...body]));
}

interface Conn { deliver: (frame: Buffer) => void; received: number }

/** Frames in a burst, by their headers (payloads skipped). */
function countFrames(bytes: Buffer): number {
  let n = 0;
  let p = 0;
  while (p < bytes.length) {
    let len = bytes[p + 1]! & 0x7f;
    p += 2;
    if (len === 126) { len = bytes.readUInt16BE(p); p += 2; } else if (len === 127) { len = bytes.readUIntBE(p + 2, 6); p += 8; }
    p += 4 + len;
    n++;
  }
  return n;
}

async function measure(): Promise<{ usPerBatch: number; sent: number; wallS: number; batchesPerWrite: number }> {
  const dirty = new Set<Conn>();
  let ackScheduled = false;
  let sent = 0;
  let writes = 0;
  const ackAll = () => {
    ackScheduled = false;
    for (const c of dirty) c.deliver(ackFrame(c.received, window));
    dirty.clear();
  };
  const connect: LeanConnector = (_request, listener) => {
    let state: number = SocketState.CONNECTING;
    const receiver = new wsLib.Receiver({ binaryType: 'nodebuffer', extensions: {}, isServer: false, maxPayload: 0, skipUTF8Validation: true });
    receiver.on('message', (data, isBinary) => listener.onMessage(data, isBinary));
    const conn: Conn = { deliver: (f) => { receiver.write(f); }, received: 0 };
    const socket: LeanSocket = {
      get readyState() { return state; },
      send() { setImmediate(() => conn.deliver(serverFrame(welcome))); }, // Hello
      write(frames) {
        const n = countFrames(frames);
        writes++;
        conn.received += n;
        sent += n;
        dirty.add(conn);
        if (!ackScheduled) { ackScheduled = true; setImmediate(ackAll); }
        return true;
      },
      close() { state = SocketState.CLOSED; setImmediate(() => listener.onClose(1000, '')); },
      terminate() { state = SocketState.CLOSED; setImmediate(() => listener.onClose(1006, '')); },
    };
    setImmediate(() => { state = SocketState.OPEN; listener.onOpen(); });
    return socket;
  };
  const creds = Array.from({ length: devices }, (_, i) => ({ id: `bench-${i}`, token: `bench-${i}.x` }));
  const fleet = new LeanFleet({ url: 'ws://bench/v1/devices', devices: creds, readings, metrics: 4, window, connect });
  while (fleet.connected < devices) await new Promise((r) => setImmediate(r));
  const sent0 = sent;
  const writes0 = writes;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (sent - sent0 < batches) await new Promise((r) => setTimeout(r, 5));
  const cpu = process.cpuUsage(cpu0);
  const wallS = (performance.now() - t0) / 1000;
  const n = sent - sent0;
  const w = writes - writes0;
  if (!(await fleet.drain(5000))) throw new Error('bench: not drained');
  await fleet.stop();
  const c = fleet.counters();
  if (c.lost !== 0 || c.ackRegressed + c.ackUnknownSeq !== 0) throw new Error(`bench: lost ${c.lost}, violations ${c.ackRegressed + c.ackUnknownSeq}`);
  return { usPerBatch: (cpu.user + cpu.system) / n, sent: n, wallS, batchesPerWrite: n / w };
}

await measure(); // warm-up
const runs: Awaited<ReturnType<typeof measure>>[] = [];
for (let i = 0; i < 5; i++) runs.push(await measure());
const us = runs.map((r) => r.usPerBatch).sort((a, b) => a - b);
const rate = runs.map((r) => r.sent / r.wallS).sort((a, b) => b - a);
console.log(`lean path: ${devices} devices, window ${window}, ${readings} readings per batch, ${batches.toLocaleString('en-US')} batches x 5: `
  + `CPU best ${us[0]!.toFixed(2)} µs/batch, median ${us[2]!.toFixed(2)} µs/batch; best ${Math.round(rate[0]!).toLocaleString('en-US')} batches/s on one core, ${runs[0]!.batchesPerWrite.toFixed(1)} batches per write`);
