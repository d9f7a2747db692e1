// device-sim/ tests: the live display on a fake stream and a fake clock: a
// plain line a second off a terminal, the in-place redraw on one, colour and
// TERM=dumb, finish(), truncation, a failing stream, and the number formats.
// Imports: node:test, node:stream, and this package's display.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import {
  LiveDisplay, formatBlock, formatCount, formatDuration, formatLatency, formatPlainLine, type DisplaySnapshot,
} from '../src/display.ts';

const ESC = '\x1b';
const anyEscape = new RegExp(`${ESC}\\[[0-9;]*[A-Za-z]`, 'g');
const sgrCode = new RegExp(`${ESC}\\[[0-9;]*m`, 'g');
const escapes = (out: string) => Array.from(out.matchAll(anyEscape), (m) => m[0]);
const visible = (line: string) => line.replace(sgrCode, '');

/** Collects what is written; isTTY and columns as a terminal (or a pipe) would set them. */
class FakeStream extends Writable {
  readonly chunks: string[] = [];
  isTTY: boolean | undefined;
  columns: number | undefined;
  fail: Error | undefined;
  constructor(isTTY: boolean, columns?: number) {
    super({ decodeStrings: false });
    this.isTTY = isTTY;
    this.columns = columns;
  }
  override _write(chunk: string | Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    if (this.fail) return done(this.fail);
    this.chunks.push(String(chunk));
    done();
  }
  get text(): string { return this.chunks.join(''); }
}

const clock = () => {
  const c = { t: 0, now: () => c.t };
  return c;
};

const snapshot = (over: Partial<DisplaySnapshot> = {}): DisplaySnapshot => ({
  elapsedMs: 125_000,
  phase: { name: 'reconnect-storm', kind: 'reconnect-storm', index: 2, count: 5, elapsedMs: 12_000, durationMs: 60_000 },
  devices: { target: 20_000, connected: 19_840 },
  batchesPerS: 19_312.4,
  readingsPerS: 77_247.6,
  inflight: 312,
  reconnects: 20_000,
  errors: 0,
  lost: 0,
  latency: { ackP50Ms: 4.2, ackP99Ms: 31, connectP99Ms: 1200 },
  ...over,
});
const noLatency = { ackP50Ms: NaN, ackP99Ms: NaN, connectP99Ms: NaN };
const epipe = () => Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
const EXAMPLE = '[sim   125s] phase=3/5 reconnect-storm devices=19840/20000 batches/s=19,312 readings/s=77,248 inflight=312'
  + ' reconnects=20,000 errors=0 lost=0 ack_p50=4.2ms ack_p99=31ms connect_p99=1.2s';

test('display - counts and rates: rounded, en-US thousands separators, "-" when not finite', () => {
  assert.equal(formatCount(77_247.6), '77,248');
  assert.equal(formatCount(1_234_567_890), '1,234,567,890');
  assert.equal(formatCount(999.4), '999');
  assert.equal(formatCount(0), '0');
  assert.equal(formatCount(-0.2), '0', 'no "-0"');
  assert.equal(formatCount(NaN), '-');
  assert.equal(formatCount(Infinity), '-');
});

test('display - durations in whole seconds: 45s and 60s (below 100 s), 2m05s, 1h02m05s', () => {
  assert.equal(formatDuration(125_000), '2m05s');
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(45_999), '45s', 'floored');
  assert.equal(formatDuration(60_000), '60s');
  assert.equal(formatDuration(99_999), '99s');
  assert.equal(formatDuration(100_000), '1m40s');
  assert.equal(formatDuration(3_599_999), '59m59s');
  assert.equal(formatDuration(3_725_000), '1h02m05s');
  assert.equal(formatDuration(NaN), '-');
  assert.equal(formatDuration(-1), '-');
});

test('display - latencies: ms with one decimal below 10, whole ms below 1 s, then seconds; NaN is "-"', () => {
  assert.equal(formatLatency(0.42), '0.42 ms');
  assert.equal(formatLatency(4.2), '4.2 ms');
  assert.equal(formatLatency(9.96), '10 ms');
  assert.equal(formatLatency(31), '31 ms');
  assert.equal(formatLatency(999.4), '999 ms');
  assert.equal(formatLatency(999.7), '1.0 s', 'never "1000 ms"');
  assert.equal(formatLatency(1300), '1.3 s');
  assert.equal(formatLatency(125_000), '125 s');
  assert.equal(formatLatency(4.2, ''), '4.2ms');
  assert.equal(formatLatency(NaN), '-');
  assert.equal(formatLatency(NaN, ''), '-');
});

test('display - the plain line: key=value, every field, no escape codes', () => {
  assert.equal(formatPlainLine(snapshot()), EXAMPLE);
  const early = formatPlainLine(snapshot({ elapsedMs: 900, phase: null, latency: noLatency, lost: 1_250 }));
  assert.match(early, /^\[sim {5}0s\] phase=- devices=/);
  assert.match(early, / lost=1,250 ack_p50=- ack_p99=- connect_p99=-$/);
  const spaced = formatPlainLine(snapshot({ phase: { name: 'warm up\nnow', kind: 'ramp', index: 0, count: 1, elapsedMs: 0, durationMs: 0 } }));
  assert.match(spaced, / phase=1\/1 warm_up_now devices=/, 'one token, one line');
  assert.equal(escapes(formatPlainLine(snapshot({ lost: 5 }))).length, 0);
});

test('display - the terminal block: four lines under 100 columns, phase progress, devices percent, latencies', () => {
  const lines = formatBlock(snapshot(), { color: true, columns: 0 });
  assert.equal(lines.length, 4);
  assert.equal(lines[0], 'elapsed 2m05s   phase 3/5 reconnect-storm (12s of 60s) [##--------]');
  assert.equal(lines[1], 'devices 19,840/20,000 (99.2%)   batches/s 19,312   readings/s 77,248');
  assert.equal(lines[2], 'in flight 312   reconnects 20,000   errors 0   lost 0');
  assert.equal(lines[3], 'ack p50 4.2 ms   ack p99 31 ms   connect p99 1.2 s');
  const big = formatBlock(snapshot({
    elapsedMs: 100 * 3_600_000,
    phase: { name: 'a-phase-name-much-longer-than-anyone-would-type', kind: 'x', index: 11, count: 12, elapsedMs: 3_600_000, durationMs: 7_200_000 },
    devices: { target: 1_000_000, connected: 999_999 }, batchesPerS: 1_000_000, readingsPerS: 10_000_000,
    inflight: 1_000_000, reconnects: 123_456_789, errors: 123_456_789, lost: 1_234_567_890,
    latency: { ackP50Ms: 999.4, ackP99Ms: 59_999, connectP99Ms: 120_000 },
  }), { color: true, columns: 0 });
  for (const line of big) assert.ok(visible(line).length < 100, `${visible(line).length}: ${line}`);
  assert.match(big[0]!, /12\/12 a-phase-name-much-longer-\.\.\. \(1h00m00s of 2h00m00s\) \[#####-----\]/);
  assert.match(big[1]!, /\(99\.9%\)/, 'floored, not 100.0%');
  const open = formatBlock(snapshot({ phase: { name: '', kind: 'steady', index: 0, count: 1, elapsedMs: 5000, durationMs: Infinity } }), { color: false, columns: 0 });
  assert.match(open[0]!, /phase 1\/1 steady \(5s\)$/, 'no end: no bar; no name: the kind');
  const none = formatBlock(snapshot({ phase: null, devices: { target: 0, connected: 0 } }), { color: false, columns: 0 });
  assert.equal(none[0], 'elapsed 2m05s   phase -');
  assert.match(none[1]!, /^devices 0\/0 \(-\)/);
});

test('display - NaN latencies show "-" on the terminal too', () => {
  assert.equal(formatBlock(snapshot({ latency: noLatency }), { color: false, columns: 0 })[3], 'ack p50 -   ack p99 -   connect p99 -');
  assert.equal(formatBlock(snapshot({ latency: { ...noLatency, ackP99Ms: 31 } }), { color: false, columns: 0 })[3], 'ack p50 -   ack p99 31 ms   connect p99 -');
});

test('display - lost readings in bold red only when colour is on and something was lost', () => {
  assert.equal(formatBlock(snapshot({ lost: 7 }), { color: true, columns: 0 })[2], `in flight 312   reconnects 20,000   errors 0   ${ESC}[1;31mlost 7${ESC}[0m`);
  assert.equal(escapes(formatBlock(snapshot({ lost: 7 }), { color: false, columns: 0 }).join('\n')).length, 0);
  assert.equal(escapes(formatBlock(snapshot({ lost: 0 }), { color: true, columns: 0 }).join('\n')).length, 0);
});

test('display - lines are cut to the columns, colour codes not counted, a cut colour reset', () => {
  const cut = formatBlock(snapshot({ lost: 7 }), { color: true, columns: 20 });
  for (const line of cut) assert.ok(visible(line).length <= 20, line);
  assert.equal(cut[0], 'elapsed 2m05s   phas');
  // Line 3 is 53 visible characters; its red part starts at 47.
  const red = formatBlock(snapshot({ lost: 7 }), { color: true, columns: 49 })[2]!;
  assert.equal(visible(red), 'in flight 312   reconnects 20,000   errors 0   lo');
  assert.ok(red.endsWith(`${ESC}[1;31mlo${ESC}[0m`), JSON.stringify(red));
  const whole = formatBlock(snapshot({ lost: 7 }), { color: true, columns: 53 })[2]!;
  assert.equal(visible(whole).length, 53, 'exactly fits: nothing cut');
  assert.ok(whole.endsWith(`${ESC}[0m`));
});

test('display - plain mode: one line a second however often update() is called, never an escape code', () => {
  const stream = new FakeStream(false);
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now, intervalMs: 250 });
  assert.equal(d.mode, 'plain');
  for (c.t = 0; c.t <= 10_000; c.t += 50) d.update(snapshot({ elapsedMs: c.t, lost: 3 }));
  assert.equal(stream.chunks.length, 11, 'at 0, 1 s, ... 10 s; intervalMs is for terminals');
  assert.ok(!stream.text.includes(ESC));
  assert.ok(stream.chunks.every((chunk) => chunk.endsWith('\n') && chunk.indexOf('\n') === chunk.length - 1));
  assert.deepEqual(stream.chunks.map((chunk) => /^\[sim +(\d+)s\]/.exec(chunk)?.[1]), ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
});

test('display - plain mode keeps to its grid when updates are irregular, and a stall earns no burst', () => {
  const stream = new FakeStream(false);
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now, plainIntervalMs: 1000 });
  const at = [0, 300, 600, 900, 1200, 1500, 1800, 2100, 2400, 2700, 3000, 9500, 9600, 10_400, 10_600];
  const drawn: number[] = [];
  for (const t of at) {
    c.t = t;
    const before = stream.chunks.length;
    d.update(snapshot({ elapsedMs: t }));
    if (stream.chunks.length > before) drawn.push(t);
  }
  assert.deepEqual(drawn, [0, 1200, 2100, 3000, 9500, 10_600]);
});

test('display - a pipe with no isTTY and TERM=dumb on a terminal are plain', () => {
  const pipe = new FakeStream(false);
  pipe.isTTY = undefined;
  assert.equal(new LiveDisplay({ stream: pipe, env: {} }).mode, 'plain');
  const stream = new FakeStream(true, 120);
  const c = clock();
  const d = new LiveDisplay({ stream, env: { TERM: 'dumb' }, now: c.now });
  assert.equal(d.mode, 'plain');
  d.update(snapshot({ lost: 9 }));
  c.t = 1000;
  d.update(snapshot({ lost: 9 }));
  d.finish();
  assert.equal(stream.chunks.length, 3);
  assert.ok(!stream.text.includes(ESC));
});

test('display - a terminal redraws in place: up over the last block, clear each line, rate-limited', () => {
  const stream = new FakeStream(true, 120);
  const c = clock();
  const d = new LiveDisplay({ stream, env: { TERM: 'xterm-256color' }, now: c.now, intervalMs: 250 });
  assert.equal(d.mode, 'tty');
  d.update(snapshot());
  assert.equal(stream.chunks.length, 1);
  const first = stream.chunks[0]!;
  assert.ok(!first.includes(`${ESC}[4A`), 'nothing to move over yet');
  assert.equal(first, formatBlock(snapshot(), { color: true, columns: 120 }).map((line) => `${ESC}[2K${line}\n`).join(''));
  for (c.t = 10; c.t < 250; c.t += 10) d.update(snapshot());
  assert.equal(stream.chunks.length, 1, 'within intervalMs: no draw');
  c.t = 250;
  d.update(snapshot({ elapsedMs: 126_000 }));
  assert.equal(stream.chunks.length, 2);
  const second = stream.chunks[1]!;
  assert.ok(second.startsWith(`${ESC}[4A${ESC}[2K`), JSON.stringify(second.slice(0, 12)));
  assert.equal(second.split(`${ESC}[2K`).length - 1, 4, 'each of the four lines cleared');
  assert.equal(second.split('\n').length - 1, 4);
  assert.ok(second.includes('elapsed 2m06s'));
  for (c.t = 260; c.t <= 1000; c.t += 10) d.update(snapshot());
  assert.equal(stream.chunks.length, 5, 'at 500, 750, 1000');
  assert.ok(stream.chunks.slice(1).every((chunk) => chunk.startsWith(`${ESC}[4A`)));
});

test('display - a terminal defaults to one redraw a second, in colour unless NO_COLOR', () => {
  const stream = new FakeStream(true, 120);
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now });
  for (c.t = 0; c.t <= 3000; c.t += 100) d.update(snapshot({ lost: 4 }));
  assert.equal(stream.chunks.length, 4);
  assert.ok(stream.text.includes(`${ESC}[1;31mlost 4${ESC}[0m`));
  const empty = new FakeStream(true);
  new LiveDisplay({ stream: empty, env: { NO_COLOR: '' } }).update(snapshot({ lost: 4 }));
  assert.ok(empty.text.includes(`${ESC}[1;31m`), 'an empty NO_COLOR is unset (no-color.org)');
});

test('display - NO_COLOR: no colour codes, but still the cursor movement', () => {
  const stream = new FakeStream(true, 120);
  const c = clock();
  const d = new LiveDisplay({ stream, env: { NO_COLOR: '1' }, now: c.now });
  assert.equal(d.mode, 'tty');
  d.update(snapshot({ lost: 4 }));
  c.t = 1000;
  d.update(snapshot({ lost: 5 }));
  d.finish();
  assert.equal(stream.chunks.length, 3);
  assert.ok(stream.text.includes('lost 5'));
  assert.deepEqual(new Set(escapes(stream.text)), new Set([`${ESC}[2K`, `${ESC}[4A`]), 'no SGR "m" codes');
});

test('display - finish() draws the last snapshot once more, at once, and later updates are ignored', () => {
  const stream = new FakeStream(true, 120);
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now });
  d.update(snapshot({ elapsedMs: 1000 }));
  c.t = 10;
  d.update(snapshot({ elapsedMs: 150_000 }));
  assert.equal(stream.chunks.length, 1);
  d.finish();
  assert.equal(stream.chunks.length, 2, 'unconditional: within the interval');
  assert.ok(stream.chunks[1]!.startsWith(`${ESC}[4A`), 'over the block: it stays on screen');
  assert.ok(stream.chunks[1]!.includes('elapsed 2m30s'), 'the last snapshot, not the last drawn');
  assert.ok(stream.chunks[1]!.endsWith('\n'), 'the report goes below it');
  for (c.t = 2000; c.t < 10_000; c.t += 1000) d.update(snapshot());
  d.finish();
  assert.equal(stream.chunks.length, 2);

  const plain = new FakeStream(false);
  const p = new LiveDisplay({ stream: plain, env: {}, now: c.now });
  c.t = 0;
  p.update(snapshot({ elapsedMs: 0 }));
  p.finish(snapshot({ elapsedMs: 300_000, lost: 2 }));
  assert.equal(plain.chunks.length, 2);
  assert.match(plain.chunks[1]!, /^\[sim {3}300s\] .* lost=2 /);
  p.update(snapshot());
  assert.equal(plain.chunks.length, 2);

  const idle = new FakeStream(true);
  new LiveDisplay({ stream: idle, env: {} }).finish();
  assert.equal(idle.chunks.length, 0, 'nothing to show: nothing drawn');
});

test('display - a terminal line never wraps: each is cut to the stream columns at draw time', () => {
  const stream = new FakeStream(true, 30);
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now });
  d.update(snapshot({ lost: 12 }));
  stream.columns = 24;
  c.t = 1000;
  d.update(snapshot({ lost: 12 }));
  const lines = (chunk: string) => chunk.split('\n').slice(0, -1).map((line) => visible(line.replace(`${ESC}[4A`, '').replace(`${ESC}[2K`, '')));
  assert.ok(lines(stream.chunks[0]!).every((line) => line.length <= 30));
  assert.ok(lines(stream.chunks[0]!).some((line) => line.length === 30));
  assert.ok(lines(stream.chunks[1]!).every((line) => line.length <= 24));
  const unknown = new FakeStream(true);
  new LiveDisplay({ stream: unknown, env: {} }).update(snapshot());
  assert.ok(unknown.text.includes('connect p99 1.2 s'), 'columns unknown: not cut');
});

test('display - a stream that reports an error (EPIPE) stops the display, nothing thrown', async () => {
  for (const isTTY of [true, false]) {
    const stream = new FakeStream(isTTY, 80);
    const c = clock();
    const d = new LiveDisplay({ stream, env: {}, now: c.now });
    d.update(snapshot());
    stream.fail = epipe();
    c.t = 1000;
    d.update(snapshot());
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(stream.writable, false);
    stream.fail = undefined;
    for (c.t = 2000; c.t < 6000; c.t += 1000) d.update(snapshot());
    d.finish();
    assert.equal(stream.chunks.length, 1, `isTTY ${isTTY}`);
  }
});

test('display - a write that throws (EPIPE) or an ended stream stops the display, nothing thrown', () => {
  const stream = new FakeStream(true, 80);
  let writes = 0;
  stream.write = () => {
    writes++;
    throw epipe();
  };
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now });
  assert.doesNotThrow(() => d.update(snapshot()));
  for (c.t = 1000; c.t < 5000; c.t += 1000) d.update(snapshot());
  assert.doesNotThrow(() => d.finish());
  assert.equal(writes, 1);

  const ended = new FakeStream(false);
  ended.end();
  const e = new LiveDisplay({ stream: ended, env: {}, now: c.now });
  assert.doesNotThrow(() => e.update(snapshot()));
  e.finish();
  assert.equal(ended.chunks.length, 0);
});

test('display - intervals must be finite and not negative; 0 draws on every update', () => {
  const stream = new FakeStream(true);
  assert.throws(() => new LiveDisplay({ stream, env: {}, intervalMs: -1 }), RangeError);
  assert.throws(() => new LiveDisplay({ stream: new FakeStream(false), env: {}, plainIntervalMs: NaN }), RangeError);
  const c = clock();
  const d = new LiveDisplay({ stream, env: {}, now: c.now, intervalMs: 0 });
  for (let i = 0; i < 3; i++) d.update(snapshot());
  assert.equal(stream.chunks.length, 3);
});
