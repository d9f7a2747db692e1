// scripts/bench/: comparison 3, wire cost. The same readings (payloads.ts:
// the simulator's sensor models, 4 metrics, N readings per message) encoded
// as our protobuf Batch and as the usual alternatives, bytes per reading
// device -> server including the framing each one travels in. Pure
// computation: no process, no socket.
//
// Framing counted: a WebSocket frame from a client (RFC 6455 §5.2: 2 bytes,
// +2 for a payload of 126..65535 bytes, +8 above; +4 bytes of mask, which
// every client frame carries); an MQTT PUBLISH (fixed header, remaining
// length, topic, packet id); an HTTP/1.1 request (request line and the
// headers InfluxDB's v2 write API needs). Not counted, for any of them: TCP/IP
// headers, TLS records, and what flows back (acks, HTTP responses).
import { batchMessage, METRICS, ReadingSource, type Readings } from './payloads.ts';

/** The device id every format names (where it names one): as long as the simulator's ids. */
export const WIRE_DEVICE = 'bench-0042';

/** Bytes a WebSocket client adds to a message of `len` bytes (one frame, masked). */
export function wsFrameOverhead(len: number): number {
  return (len <= 125 ? 2 : len <= 65_535 ? 4 : 10) + 4;
}

/** Bytes of an MQTT 3.1.1 QoS 1 PUBLISH around a payload of `len` bytes on `topic`. */
export function mqttPublishOverhead(len: number, topic: string): number {
  const rest = 2 + Buffer.byteLength(topic) + 2 + len; // topic length, topic, packet id, payload
  const lenBytes = rest < 128 ? 1 : rest < 16_384 ? 2 : rest < 2_097_152 ? 3 : 4;
  return 1 + lenBytes + 2 + Buffer.byteLength(topic) + 2;
}

/** An InfluxDB v2 write request's head: what a device posting line protocol itself sends per request. */
export function influxHttpHead(bodyLen: number): string {
  return 'POST /api/v2/write?org=acme&bucket=telemetry&precision=ms HTTP/1.1\r\n'
    + 'Host: influxdb.example.com:8086\r\n'
    + `Authorization: Token ${'x'.repeat(88)}\r\n` // InfluxDB 2 API tokens are 88 characters
    + 'Content-Type: text/plain; charset=utf-8\r\n'
    + `Content-Length: ${bodyLen}\r\n\r\n`;
}

/** JS number as the shortest round-trip decimal: what line protocol and JSON writers print. */
const num = (v: number): string => String(v);

/** Line protocol, one line per reading: `metric,device=ID value=V T` (precision ms; no unit, no registry tags). */
export function lineProtocol(r: Readings, deviceId: string): string {
  const lines: string[] = [];
  for (let i = 0; i < r.ids.length; i++) {
    lines.push(`${METRICS[r.ids[i]!]!.name},device=${deviceId} value=${num(r.values[i]!)} ${r.baseTimeMs + r.offsets[i]!}`);
  }
  return lines.join('\n');
}

/** JSON, one object per reading: `{"seq":S,"readings":[{"metric":"temperature","ts":T,"value":V},...]}`. */
export function jsonObjects(r: Readings, seq: number): string {
  return JSON.stringify({
    seq,
    readings: r.ids.map((id, i) => ({ metric: METRICS[id]!.name, ts: r.baseTimeMs + r.offsets[i]!, value: r.values[i]! })),
  });
}

/**
 * JSON, compact: `{"seq":S,"t0":T,"metrics":[names],"readings":[[metricIndex,offsetMs,value],...]}`,
 * the metric names once per message (JSON carries no session state).
 */
export function jsonCompact(r: Readings, seq: number): string {
  return JSON.stringify({
    seq, t0: r.baseTimeMs, metrics: METRICS.map((m) => m.name),
    readings: r.ids.map((id, i) => [id, r.offsets[i]!, r.values[i]!]),
  });
}

export interface WireRow {
  readingsPerMessage: number;
  format: string;
  /** How the bytes travel. */
  transport: string;
  payloadBytes: number;
  framingBytes: number;
  bytesPerMessage: number;
  bytesPerReading: number;
  /** bytesPerReading / that of the steady-state protobuf Batch over WebSocket, same readings. */
  vsProtobuf: number;
}

/** Averages over `messages` consecutive messages (values and offsets differ from one to the next). */
export function wireCost(sizes: readonly number[], messages = 50): WireRow[] {
  const rows: WireRow[] = [];
  const topic = `d/${WIRE_DEVICE}`;
  for (const n of sizes) {
    const src = new ReadingSource(WIRE_DEVICE, n);
    const acc = new Map<string, { format: string; transport: string; payload: number; framing: number }>();
    const add = (format: string, transport: string, payload: number, framing: number): void => {
      const key = `${format} | ${transport}`;
      const a = acc.get(key) ?? { format, transport, payload: 0, framing: 0 };
      a.payload += payload;
      a.framing += framing;
      acc.set(key, a);
    };
    for (let i = 0; i < messages; i++) {
      const r = src.next();
      const seq = 100_000 + i;
      const sent = r.baseTimeMs + (r.offsets.at(-1) ?? 0) + 200;
      const pb = batchMessage(r, seq, sent).length;
      add('protobuf Batch', 'WebSocket binary frame', pb, wsFrameOverhead(pb));
      const pbFirst = batchMessage(r, seq, sent, true).length;
      add('protobuf Batch, first of a session (4 metric defs)', 'WebSocket binary frame', pbFirst, wsFrameOverhead(pbFirst));
      add('protobuf Batch', `MQTT QoS 1 PUBLISH, topic ${topic}`, pb, mqttPublishOverhead(pb, topic));
      const lp = Buffer.byteLength(lineProtocol(r, WIRE_DEVICE));
      add('InfluxDB line protocol', 'WebSocket text frame', lp, wsFrameOverhead(lp));
      add('InfluxDB line protocol', 'HTTP/1.1 POST /api/v2/write (request head)', lp, Buffer.byteLength(influxHttpHead(lp)));
      const jo = Buffer.byteLength(jsonObjects(r, seq));
      add('JSON, one object per reading', 'WebSocket text frame', jo, wsFrameOverhead(jo));
      const jc = Buffer.byteLength(jsonCompact(r, seq));
      add('JSON, compact arrays', 'WebSocket text frame', jc, wsFrameOverhead(jc));
    }
    let base = NaN;
    for (const a of acc.values()) {
      const perMessage = (a.payload + a.framing) / messages;
      const perReading = perMessage / n;
      if (Number.isNaN(base)) base = perReading; // the first row: protobuf over WebSocket
      rows.push({
        readingsPerMessage: n, format: a.format, transport: a.transport,
        payloadBytes: a.payload / messages, framingBytes: a.framing / messages,
        bytesPerMessage: perMessage, bytesPerReading: perReading, vsProtobuf: perReading / base,
      });
    }
  }
  return rows;
}
