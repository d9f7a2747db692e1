// device-sim/: a benchmark of the simulator's own CPU per batch: one device
// on an in-memory socket that acks every batch, ticked like a fleet ticks it
// (every 100 ms, times passed in), so the figure is sampling, batch building,
// encoding, ack decoding and latency recording, without TCP or a hub.
//   node --conditions=@telemetry/source --import tsx device-sim/bench/batch-path.ts [rate=1] [batches=50000]
// (rate: readings per second per metric, as --rate; 1 s batches.)
// Imports: @telemetry/proto, and this package's device, device-options and socket.
import { encodeHubMessage } from '@telemetry/proto';
import { SimDevice } from '../src/device.ts';
import type { DeviceClock } from '../src/device-options.ts';
import { SocketState, type DeviceSocket, type SocketConnector, type SocketListener } from '../src/socket.ts';

const rate = Number(process.argv[2] ?? 1);
const batches = Number(process.argv[3] ?? 50_000);
const BATCH_MS = 1000;
const TICK_MS = 100; // a fleet's tick for 1 s batches

const limits = { maxMessageBytes: 262_144, maxBatchReadings: 10_000, maxReadingsPerSecond: 1e12, readingsBurst: 1e13, idleTimeoutMs: 0 };
const welcome = encodeHubMessage({ welcome: { sessionId: 's', protocolVersion: 1, window: 32, credit: 32, lastSeq: 0, limits } });
// Acks encoded up front: the hub's cost is not the device's.
const acks = Array.from({ length: batches + 10 }, (_, seq) => encodeHubMessage({ ack: { seq, credit: 32 } }));

function run(): { ns: number; readingsPerBatch: number } {
  const listeners: SocketListener[] = [];
  const socket: DeviceSocket = { readyState: SocketState.OPEN, send() {}, close() {}, terminate() {} };
  const connect: SocketConnector = (_request, l) => { listeners.push(l); return socket; };
  const clock = { wall: Date.now(), mono: 0 };
  const deviceClock: DeviceClock = { wallMs: () => clock.wall, monotonicMs: () => clock.mono };
  const device = new SimDevice({
    id: 'bench-0001', token: 'bench-0001.x', url: 'ws://bench/v1/devices', rate, batchIntervalMs: BATCH_MS,
    autoTick: false, connect, clock: deviceClock,
  });
  device.start();
  const listener = listeners[0];
  if (!listener) throw new Error('the device did not connect');
  listener.onOpen();
  listener.onMessage(welcome, true);
  let acked = device.lastSeq;
  const start = performance.now();
  while (device.lastSeq < batches) {
    clock.wall += TICK_MS;
    clock.mono += TICK_MS;
    device.tick(clock.wall, clock.mono);
    if (device.lastSeq !== acked) { acked = device.lastSeq; listener.onMessage(acks[acked]!, true); }
  }
  const ns = ((performance.now() - start) * 1e6) / batches;
  if (device.counters.batchesAcked !== batches || device.latency.count !== batches) throw new Error('not every batch was acked');
  return { ns, readingsPerBatch: device.counters.readingsAcked / batches };
}

run(); // warm-up
const runs = Array.from({ length: 5 }, run);
const ns = runs.map((r) => r.ns).sort((a, b) => a - b);
console.log(`batch path: rate ${rate}, ${runs[0]!.readingsPerBatch} readings per batch, ${batches.toLocaleString('en-US')} batches x 5: `
  + `best ${Math.round(ns[0]!)} ns/batch, median ${Math.round(ns[2]!)} ns/batch`);
