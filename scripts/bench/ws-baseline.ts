// The ws baseline of `npm run bench`: the least a server can do and still
// speak the device protocol (proto/README.md) to the same clients as the
// hub. A `ws` WebSocketServer on /v1/devices selects `iot.telemetry.v1`,
// decodes every message with the generated decoder (@telemetry/proto),
// answers Hello with a Welcome (window and credit = --window, last_seq 0,
// the hub's limits as the benchmark lifts them) and each Batch with an Ack of
// its seq and full credit, at once. No token check, no validation, no
// storage, no live path: what is left is WebSocket and protobuf.
//   node --import tsx scripts/bench/ws-baseline.ts --port 9000 [--host 127.0.0.1] [--window 32] [--capture FILE [--capture-count 64]]
// GET /stats answers {"sessions","connections","batches","readings","bytes"}
// (counters since start) for the benchmark to read between two instants.
// --capture: the first --capture-count steady-state Batch messages (no
// metric definitions) exactly as received, one base64 line each, written to
// FILE once there are that many: the bytes the MQTT clients then publish.
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer, type RawData } from 'ws';
import { DEVICE_PATH, DEVICE_SUBPROTOCOL, PROTOCOL_VERSION, decodeDeviceMessage, encodeHubMessage, type Limits } from '@telemetry/proto';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    window: { type: 'string', default: '32' },
    capture: { type: 'string' },
    'capture-count': { type: 'string', default: '64' },
  },
});
const window = Number(values.window);
const captureFile = values.capture;
const captureCount = Number(values['capture-count']);
const captured: string[] = [];

/** The limits the benchmark's hub runs with (limits lifted), so clients pace and size batches alike. */
const LIMITS: Limits = {
  maxMessageBytes: 256 * 1024, maxBatchReadings: 10_000, maxReadingsPerSecond: 10_000_000, readingsBurst: 100_000_000,
  maxMetricsPerSession: 256, maxMetricNameBytes: 64, maxFutureSkewMs: 300_000, maxPastSkewMs: 604_800_000, idleTimeoutMs: 60_000,
};

const stats = { sessions: 0, connections: 0, batches: 0, readings: 0, bytes: 0 };
let nextSession = 1;

const http = createServer((req, res) => {
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  res.writeHead(404).end('not found');
});

const wss = new WebSocketServer({
  server: http, path: DEVICE_PATH, perMessageDeflate: false, clientTracking: false, maxPayload: 512 * 1024,
  handleProtocols: (offered) => (offered.has(DEVICE_SUBPROTOCOL) ? DEVICE_SUBPROTOCOL : false),
});

wss.on('connection', (ws) => {
  stats.connections++;
  let hello = false;
  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (!isBinary) { ws.close(1003, 'binary frames only'); return; }
    const bytes = data as Buffer; // binaryType 'nodebuffer' and one frame per message: a Buffer
    stats.bytes += bytes.length;
    let m;
    try { m = decodeDeviceMessage(bytes); } catch { ws.close(1007, 'not a DeviceMessage'); return; }
    if (m.batch) {
      if (!hello) { ws.close(4000, 'Batch before Hello'); return; }
      const seq = Number(m.batch.seq);
      stats.batches++;
      stats.readings += m.batch.values?.length ?? 0;
      if (captureFile && captured.length < captureCount && !m.batch.metricDefs?.length) {
        captured.push(bytes.toString('base64'));
        if (captured.length === captureCount) writeFileSync(captureFile, `${captured.join('\n')}\n`);
      }
      ws.send(encodeHubMessage({ ack: { seq, credit: window } }));
    } else if (m.hello) {
      if (hello) { ws.close(4000, 'second Hello'); return; }
      hello = true;
      stats.sessions++;
      ws.send(encodeHubMessage({
        welcome: {
          sessionId: `b${nextSession++}`, protocolVersion: PROTOCOL_VERSION, serverTimeMs: Date.now(),
          echoDeviceTimeMs: m.hello.deviceTimeMs, window, credit: window, lastSeq: 0, limits: LIMITS,
        },
      }));
    }
  });
  ws.on('close', () => { stats.connections--; if (hello) stats.sessions--; });
  ws.on('error', () => { /* the close follows */ });
});

http.listen(Number(values.port), values.host, () => {
  const a = http.address() as { port: number };
  console.log(`ws-baseline listening on ${values.host}:${a.port}`);
});

const stop = (): void => { http.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
