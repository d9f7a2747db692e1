// sinks/influx/: spooled batches -> InfluxDB line protocol.
// Schema (README "InfluxDB schema"): one measurement per metric name, tags
// `device` + the device's registry tags (+ `unit` when set), field `value`
// (float), plus integer field `device_time_ms` when the hub corrected the
// reading's time; timestamp in ms. A point is identified by measurement,
// tags and time, so replaying a batch rewrites the same points.
//
// Escaping is exactly what InfluxDB undoes, nothing more:
// https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters
// measurements escape comma and space (0x20 only); tag keys and values also
// the equals sign. That is what the client's `escape.measurement` and
// `escape.tag` do, used here, except for `\t` `\n` `\r`, which they write as
// `\t` `\n` `\r` and InfluxDB stores as two characters. Backslashes have no
// exact form either: the docs read `\\` as one, influxd 1.6 stores both, and
// one before a comma or at the end breaks the line. So the registry and
// ingest refuse backslashes and control characters, and a reading that would
// carry one anyway (a spool from an older version) is refused here
// (unrepresentable) and never sent; its dead-letter copy is the line as the
// escapers write it.
//
// The sink's path (LineBody.appendBatch) writes lines straight into one
// Buffer, the request body: the prefix "measurement,tags value=" of each
// series is escaped once and kept as bytes (SeriesPrefixes, per device and
// metric, as long as the device's tags stay the same), then each reading adds
// only its value, timestamp and a newline; no string per line. batchToLines
// gives the same lines as strings (tests, and what a refused reading's
// dead-letter copy is). Imports: core, @influxdata/influxdb-client.
import { escape } from '@influxdata/influxdb-client';
import type { AcceptedBatch } from '../../core/batch.ts';

const escMeasurement = escape.measurement;
const escTag = escape.tag;

/** Backslash, C0/C1 controls and DEL, lone surrogates (not valid UTF-8). */
const UNREPRESENTABLE = /[\\\p{Cc}\p{Cs}]/u;

/**
 * Tag keys the hub sets itself (`device`, `unit`), that InfluxDB refuses
 * (`time`) or reserves (`_field`, `_measurement`, any `_` prefix in 2.x/3.x),
 * and the field keys (a tag and a field of one name collide in 3.x). The
 * registry refuses them; a spool from an older version may still hold them.
 */
export function isReservedTagKey(key: string): boolean {
  return key === 'device' || key === 'unit' || key === 'value' || key === 'device_time_ms' || key.toLowerCase() === 'time' || key.startsWith('_');
}

/** Why `text` cannot be written exactly as a measurement, tag key or tag value; null if it can. */
export function unrepresentable(text: string): string | null {
  const match = UNREPRESENTABLE.exec(text);
  if (!match) return null;
  const char = match[0];
  if (char === '\\') return 'a backslash';
  return char.length === 1 && char.charCodeAt(0) >= 0xd800 && char.charCodeAt(0) <= 0xdfff ? 'a lone surrogate' : `control character U+${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** A reading that is not sent: the line as it would have been, and why. */
export interface RefusedLine { readonly line: string; readonly reason: string }

/** `device=<id>` then the registry tags, sorted; reserved keys and empty values left out. */
export function tagSet(deviceId: string, tags: Readonly<Record<string, string>>): string {
  let out = `device=${escTag(deviceId)}`;
  // Sorted keys: InfluxDB's preferred order, and stable series keys.
  for (const key of Object.keys(tags).sort()) {
    const value = tags[key]!;
    if (isReservedTagKey(key) || value === '') continue;
    out += `,${escTag(key)}=${escTag(value)}`;
  }
  return out;
}

function tagsProblem(deviceId: string, tags: Readonly<Record<string, string>>): string | null {
  const bad = unrepresentable(deviceId);
  if (bad) return `device id contains ${bad}`;
  for (const key of Object.keys(tags)) {
    if (isReservedTagKey(key) || tags[key] === '') continue;
    const why = unrepresentable(key) ?? unrepresentable(tags[key]!);
    if (why) return `tag ${JSON.stringify(key)} contains ${why}`;
  }
  return null;
}

/** A series' line prefix, "measurement,tags value=", as text and UTF-8 bytes, and why it cannot be sent (null: it can). */
export interface SeriesPrefix { readonly text: string; readonly bytes: Buffer; readonly problem: string | null }

/** The line prefix of one metric of a device whose tag set (tagSet()) and its problem are given. */
function seriesPrefix(name: string, unit: string, tags: string, tagsBad: string | null): SeriesPrefix {
  const text = `${escMeasurement(name)},${tags}${unit ? `,unit=${escTag(unit)}` : ''} value=`;
  const nameBad = unrepresentable(name);
  const unitBad = unrepresentable(unit);
  const problem = tagsBad ?? (nameBad ? `metric name contains ${nameBad}` : unitBad ? `unit contains ${unitBad}` : null);
  return { text, bytes: Buffer.from(text, 'utf8'), problem };
}

/** Same keys, same values (key order aside: tagSet() sorts). */
function sameTags(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  let n = 0;
  for (const key in a) {
    if (!Object.prototype.hasOwnProperty.call(b, key) || a[key] !== b[key]) return false;
    n++;
  }
  for (const _key in b) if (--n < 0) return false;
  return n === 0;
}

interface DeviceSeries { tags: Readonly<Record<string, string>>; tagSet: string; tagsBad: string | null; series: Map<string, SeriesPrefix> }

/**
 * Line prefixes kept per device and (metric name, unit): escaped once, not
 * for every batch. An entry is dropped as soon as a batch of the device
 * carries other tags (a registry edit), so a prefix is always exactly what
 * seriesPrefix() makes of the batch at hand. Bounded: past `maxDevices`
 * devices, or `maxSeriesPerDevice` series of one device, it starts over.
 */
export class SeriesPrefixes {
  readonly #devices = new Map<string, DeviceSeries>();
  readonly #maxDevices: number;
  readonly #maxSeriesPerDevice: number;

  constructor(maxDevices = 100_000, maxSeriesPerDevice = 1000) {
    this.#maxDevices = maxDevices;
    this.#maxSeriesPerDevice = maxSeriesPerDevice;
  }

  get devices(): number { return this.#devices.size; }

  /** The prefixes of the batch's metrics, in metricNames order. */
  forBatch(batch: AcceptedBatch): SeriesPrefix[] {
    let device = this.#devices.get(batch.deviceId);
    if (device === undefined || !sameTags(device.tags, batch.tags)) {
      if (device === undefined && this.#devices.size >= this.#maxDevices) this.#devices.clear();
      device = { tags: batch.tags, tagSet: tagSet(batch.deviceId, batch.tags), tagsBad: tagsProblem(batch.deviceId, batch.tags), series: new Map() };
      this.#devices.set(batch.deviceId, device);
    }
    const out: SeriesPrefix[] = [];
    for (let i = 0; i < batch.metricNames.length; i++) {
      const name = batch.metricNames[i]!;
      const unit = batch.metricUnits[i] ?? '';
      // Length first: no name/unit pair can be read as another.
      const key = `${name.length}:${name}${unit}`;
      let prefix = device.series.get(key);
      if (prefix === undefined) {
        if (device.series.size >= this.#maxSeriesPerDevice) device.series.clear();
        prefix = seriesPrefix(name, unit, device.tagSet, device.tagsBad);
        device.series.set(key, prefix);
      }
      out.push(prefix);
    }
    return out;
  }
}

/** The prefixes of the batch's metrics, computed afresh. */
function batchPrefixes(batch: AcceptedBatch): SeriesPrefix[] {
  const tags = tagSet(batch.deviceId, batch.tags);
  const tagsBad = tagsProblem(batch.deviceId, batch.tags);
  return batch.metricNames.map((name, i) => seriesPrefix(name, batch.metricUnits[i] ?? '', tags, tagsBad));
}

/** Why reading `i` cannot be sent (null: it can). */
function readingProblem(prefix: SeriesPrefix, value: number, timeMs: number): string | null {
  return prefix.problem ?? (!Number.isFinite(value) ? 'value is not a finite number' : !Number.isSafeInteger(timeMs) ? 'timestamp is not a safe integer' : null);
}

/** The device_time_ms field of reading `i`, or '' (same time, or not an exact integer). */
function deviceTimeField(batch: AcceptedBatch, i: number, timeMs: number): string {
  // Line protocol integers are int64; a JS number is exact only up to 2^53,
  // and String() of a larger or fractional one is not an integer literal.
  const deviceTimeMs = batch.deviceTimesMs === null ? timeMs : batch.deviceTimesMs[i]!;
  return deviceTimeMs !== timeMs && Number.isSafeInteger(deviceTimeMs) ? `,device_time_ms=${deviceTimeMs}i` : '';
}

/** Reading `i` as a line, as text (no newline). */
function lineText(prefix: SeriesPrefix, batch: AcceptedBatch, i: number): string {
  const timeMs = batch.timesMs[i]!;
  return `${prefix.text}${formatFloat(batch.values[i]!)}${deviceTimeField(batch, i, timeMs)} ${timeMs}`;
}

/**
 * Appends the batch's lines to `out`; returns how many. Readings that cannot
 * be written exactly go to `refused` (with the reason) instead of being sent
 * as lines InfluxDB would reject or store altered.
 */
export function batchToLines(batch: AcceptedBatch, out: string[], refused: RefusedLine[], prefixes?: SeriesPrefixes): number {
  const series = prefixes ? prefixes.forBatch(batch) : batchPrefixes(batch);
  let written = 0;
  for (let i = 0; i < batch.values.length; i++) {
    const prefix = series[batch.metricIndex[i]!]!;
    const line = lineText(prefix, batch, i);
    const why = readingProblem(prefix, batch.values[i]!, batch.timesMs[i]!);
    if (why !== null) {
      refused.push({ line, reason: `not representable in line protocol: ${why}` });
      continue;
    }
    out.push(line);
    written++;
  }
  return written;
}

/** Line protocol floats: a plain JS number string is valid (1.5, 21, 1e+21, -0). */
function formatFloat(value: number): string {
  return Object.is(value, -0) ? '0' : String(value);
}

const NEWLINE = 0x0a;
const DEVICE_TIME_FIELD = Buffer.from(',device_time_ms=', 'latin1');
/** Room for what follows a prefix: a value (at most 24 characters), device_time_ms, a timestamp, separators. */
const LINE_TAIL_BYTES = 24 + DEVICE_TIME_FIELD.length + 18 + 1 + 18 + 1;

/** Writes a safe integer in decimal at `at` (as String() does; -0 as 0); returns the end. */
function writeInteger(buf: Buffer, at: number, n: number): number {
  if (n < 0) {
    buf[at++] = 0x2d;
    n = -n;
  }
  let digits = 1;
  for (let p = 10; p <= n; p *= 10) digits++;
  const end = at + digits;
  for (let k = end - 1; k >= at; k--) {
    const q = Math.floor(n / 10);
    buf[k] = 0x30 + (n - q * 10);
    n = q;
  }
  return end;
}

/** Writes an ASCII string (a number's String()) at `at`; returns the end. */
function writeAscii(buf: Buffer, at: number, text: string): number {
  for (let k = 0; k < text.length; k++) buf[at++] = text.charCodeAt(k);
  return at;
}

/**
 * Lines of line protocol in one Buffer, each ending in a newline: a write
 * request's body, built in place. A line never holds a newline of its own
 * (control characters are refused), so the newlines are the line boundaries.
 */
export class LineBody {
  #buf: Buffer;
  #length = 0;
  #count = 0;

  constructor(capacity = 1 << 16) {
    this.#buf = Buffer.allocUnsafe(Math.max(256, capacity));
  }

  /** A body of these lines (each without a newline). */
  static of(lines: readonly string[]): LineBody {
    const body = new LineBody(lines.reduce((n, line) => n + Buffer.byteLength(line) + 1, 0));
    for (const line of lines) body.appendLine(line);
    return body;
  }

  /** Lines in the body. */
  get count(): number { return this.#count; }
  get byteLength(): number { return this.#length; }

  /** The request body: a view of the bytes written so far. */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#length);
  }

  /** The lines, as text (no newlines): for the rare paths (a rejected write). */
  lines(): string[] {
    const out: string[] = [];
    for (let start = 0; start < this.#length;) {
      let end = this.#buf.indexOf(NEWLINE, start);
      if (end < 0 || end > this.#length) end = this.#length;
      out.push(this.#buf.toString('utf8', start, end));
      start = end + 1;
    }
    return out;
  }

  /** Lines [from, to) as a body of their own. */
  slice(from: number, to: number): LineBody {
    const out = new LineBody(0);
    let start = 0;
    for (let i = 0; i < from; i++) start = this.#buf.indexOf(NEWLINE, start) + 1;
    let end = start;
    for (let i = from; i < to; i++) end = this.#buf.indexOf(NEWLINE, end) + 1;
    out.#buf = Buffer.from(this.#buf.subarray(start, end));
    out.#length = end - start;
    out.#count = to - from;
    return out;
  }

  appendLine(line: string): void {
    this.#reserve(Buffer.byteLength(line) + 1);
    this.#length += this.#buf.write(line, this.#length, 'utf8');
    this.#buf[this.#length++] = NEWLINE;
    this.#count++;
  }

  /**
   * Appends the batch's lines, the same bytes batchToLines() gives as text;
   * returns how many. Readings that cannot be written exactly go to
   * `refused` instead, as batchToLines() has them.
   */
  appendBatch(batch: AcceptedBatch, refused: RefusedLine[], prefixes?: SeriesPrefixes): number {
    const series = prefixes ? prefixes.forBatch(batch) : batchPrefixes(batch);
    const { values, timesMs, metricIndex, deviceTimesMs } = batch;
    const n = values.length;
    // The readings of one instant share a timestamp: copy the previous one's digits.
    let lastTime = NaN;
    let lastTimeAt = 0;
    let lastTimeLength = 0;
    let written = 0;
    for (let i = 0; i < n; i++) {
      const prefix = series[metricIndex[i]!]!;
      const value = values[i]!;
      const timeMs = timesMs[i]!;
      const why = readingProblem(prefix, value, timeMs);
      if (why !== null) {
        refused.push({ line: lineText(prefix, batch, i), reason: `not representable in line protocol: ${why}` });
        continue;
      }
      const head = prefix.bytes;
      if (this.#length + head.length + LINE_TAIL_BYTES > this.#buf.length) this.#reserve(head.length + LINE_TAIL_BYTES);
      const buf = this.#buf;
      let at = this.#length;
      buf.set(head, at);
      at = writeAscii(buf, at + head.length, formatFloat(value));
      if (deviceTimesMs !== null) {
        const deviceTimeMs = deviceTimesMs[i]!;
        if (deviceTimeMs !== timeMs && Number.isSafeInteger(deviceTimeMs)) {
          buf.set(DEVICE_TIME_FIELD, at);
          at = writeInteger(buf, at + DEVICE_TIME_FIELD.length, deviceTimeMs);
          buf[at++] = 0x69; // i
        }
      }
      buf[at++] = 0x20;
      if (timeMs === lastTime) {
        buf.copyWithin(at, lastTimeAt, lastTimeAt + lastTimeLength);
        at += lastTimeLength;
      } else {
        lastTimeAt = at;
        at = writeInteger(buf, at, timeMs);
        lastTimeLength = at - lastTimeAt;
        lastTime = timeMs;
      }
      buf[at++] = NEWLINE;
      this.#length = at;
      this.#count++;
      written++;
    }
    return written;
  }

  /** Room for `bytes` more. */
  #reserve(bytes: number): void {
    const need = this.#length + bytes;
    if (need <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(need, this.#buf.length * 2));
    this.#buf.copy(grown, 0, 0, this.#length);
    this.#buf = grown;
  }
}
