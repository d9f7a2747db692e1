// Spool batches -> line protocol (sinks/influx/lines.ts): the schema, the
// escaping (influxdb-client's escape helpers), what is refused instead of
// sent, and which lines a 400 names (failures.ts). No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escape } from '@influxdata/influxdb-client';
import { DEVICE_ID_RE, METRIC_NAME_RE } from '../src/core/names.ts';
import { linesNamedIn } from '../src/sinks/influx/failures.ts';
import { LineBody, SeriesPrefixes, batchToLines, tagSet, type RefusedLine } from '../src/sinks/influx/lines.ts';
import type { AcceptedBatch } from '../src/spool/store.ts';
import { T0, batch } from './influx-batches.ts';

function lines(b: AcceptedBatch): { out: string[]; refused: RefusedLine[] } {
  const out: string[] = [];
  const refused: RefusedLine[] = [];
  batchToLines(b, out, refused);
  return { out, refused };
}

test('influx lines - schema and escaping: exactly comma, equals sign and space, nothing else', () => {
  const { out } = lines({ ...batch('dev-1', 1, { n: 2 }), tags: { site: 'a=b c,d', device: 'spoof', empty: '', note: 'é\u00a0x\u3000y "q" #h 🛰️' } });
  assert.deepEqual(out, [
    `temperature,device=dev-1,note=é\u00a0x\u3000y\\ "q"\\ #h\\ 🛰️,site=a\\=b\\ c\\,d,unit=degC value=1 ${T0 + 1000}`,
    `humidity,device=dev-1,note=é\u00a0x\u3000y\\ "q"\\ #h\\ 🛰️,site=a\\=b\\ c\\,d,unit=% value=1.25 ${T0 + 1050}`,
  ]);
  // Measurements escape comma and space only.
  assert.match(lines(batch('d', 1, { n: 1, metric: 'a=b' })).out[0]!, /^a=b,device=d,/);
  const corrected = lines(batch('d', 2, { n: 1, corrected: true })).out;
  assert.match(corrected[0]!, new RegExp(`value=2,device_time_ms=${T0 + 2000 + 3_600_000}i ${T0 + 2000}$`));
  assert.equal(tagSet('d', { b: '2', a: '1' }), 'device=d,a=1,b=2', 'sorted tag keys');
  assert.equal(tagSet('d', { time: 'x', _field: 'y', unit: 'z', value: 'v', device_time_ms: '1', ok: 'k' }), 'device=d,ok=k', 'reserved tag keys left out');
});

test('influx lines - what cannot be written exactly (backslash, control characters, lone surrogates) is refused, not sent', () => {
  for (const [where, b] of [
    ['unit', batch('d', 1, { n: 2, units: ['deg\\', '%'] })],
    ['unit', batch('d', 1, { n: 2, units: ['x\\,y', '%'] })],
    ['tag', batch('d', 1, { n: 2, tags: { site: 'a\nb' } })],
    ['tag', batch('d', 1, { n: 2, tags: { site: 'a\u0085b' } })],
    ['tag', batch('d', 1, { n: 2, tags: { site: 'a\ud800b' } })],
    ['device', batch('d\\1', 1, { n: 2 })],
  ] as const) {
    const { out, refused } = lines(b);
    const bad = where === 'unit' ? 1 : 2; // a bad unit spoils only its metric's readings
    assert.equal(refused.length, bad, `${where}: ${JSON.stringify(b.tags)} ${b.metricUnits.join(',')}`);
    assert.equal(out.length, 2 - bad);
    assert.match(refused[0]!.reason, /^not representable in line protocol: /);
  }
});

test('influx lines - device_time_ms is an integer literal or absent; a non-integer timestamp or non-finite value is refused', () => {
  const b = batch('d', 1, { n: 6, corrected: true });
  const dev = b.deviceTimesMs!;
  dev[0] = 1.5; dev[1] = 2 ** 53; dev[2] = 1e21; dev[3] = NaN; dev[4] = -(2 ** 53) + 1;
  const { out, refused } = lines(b);
  assert.equal(refused.length, 0);
  for (const l of out.slice(0, 4)) assert.doesNotMatch(l, /device_time_ms/, l);
  assert.match(out[4]!, new RegExp(`,device_time_ms=${-(2 ** 53) + 1}i `));
  assert.match(out[5]!, /,device_time_ms=\d+i /);
  for (const l of out) {
    const m = /device_time_ms=([^i]*)i/.exec(l);
    if (m) assert.ok(Number.isSafeInteger(Number(m[1])) && /^-?\d+$/.test(m[1]!), l);
  }
  const times = batch('d', 1, { n: 4 });
  times.timesMs[0] = T0 + 0.5;
  times.timesMs[1] = 2 ** 60;
  times.values[2] = Infinity;
  const r = lines(times);
  assert.equal(r.out.length, 1);
  assert.deepEqual(r.refused.map((x) => x.reason.replace(/^.*: /, '')), ['timestamp is not a safe integer', 'timestamp is not a safe integer', 'value is not a finite number']);
});

test('influx lines - device ids and metric names the hub accepts contain nothing to escape', () => {
  for (let c = 0x20; c < 0x7f; c++) {
    const ch = String.fromCharCode(c);
    if (DEVICE_ID_RE.test(`a${ch}`) || METRIC_NAME_RE.test(`a${ch}`)) assert.ok(!/[,= \\"]/.test(ch), `${JSON.stringify(ch)} is accepted and special`);
  }
});

test('influx lines - the server names unparseable lines: 1.x and 2.x messages, lines that contain quotes and colons', () => {
  const sent = ["m,unit=a\\ value=1 1", "m,unit=it's:\\ x value=2 2", 'm value=3 3', "m,k=': value=4 4"];
  const v1 = `partial write: unable to parse '${sent[0]}': invalid tag format\nunable to parse '${sent[1]}': missing tag value\nunable to parse '${sent[3]}': bad dropped=0`;
  assert.deepEqual([...linesNamedIn(v1, sent)], [[sent[0], 'invalid tag format'], [sent[1], 'missing tag value'], [sent[3], 'bad']]);
  const v2 = `Unable to parse '${sent[1]}': missing tag value`;
  assert.deepEqual([...linesNamedIn(v2, sent)], [[sent[1], 'missing tag value']]);
  assert.equal(linesNamedIn("unable to parse 'not sent': x", sent).size, 0, 'a line that was not sent is not taken out');
  assert.equal(linesNamedIn('partial write: field type conflict: input field "value" on measurement "m" is type float dropped=1', sent).size, 0);
});

test('influx lines - measurements and tags are escaped by the client\'s escape helpers: exactly comma, equals sign and space', () => {
  const samples = [...Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)), '\u00a0', '\u3000', 'é', '🛰️'].filter((c) => c !== '\\');
  for (const c of samples) {
    const value = `a${c}b`;
    const { out, refused } = lines({ ...batch('d', 1, { n: 1, metric: 'm', units: [value, ''] }), tags: { site: value } });
    assert.equal(refused.length, 0, JSON.stringify(c));
    assert.equal(out[0], `m,device=d,site=${escape.tag(value)},unit=${escape.tag(value)} value=1 ${T0 + 1000}`, JSON.stringify(c));
    assert.equal(tagSet('d', { [value]: 'v' }), `device=d,${escape.tag(value)}=v`, 'tag keys too');
    // What the helpers do on everything the hub sends: nothing but these.
    assert.equal(escape.tag(value), /[,= ]/.test(c) ? `a\\${c}b` : value);
    assert.equal(escape.measurement(value), /[, ]/.test(c) ? `a\\${c}b` : value);
  }
});

test('influx lines - a refused reading\'s dead-letter copy is the line as the escape helpers write it (tab, newline, CR as \\t \\n \\r)', () => {
  for (const [c, written] of [['\t', '\\t'], ['\n', '\\n'], ['\r', '\\r']] as const) {
    const { out, refused } = lines({ ...batch('d', 1, { n: 2 }), tags: { site: `a${c}b` } });
    assert.equal(out.length, 0);
    assert.equal(refused.length, 2);
    assert.ok(refused[0]!.line.includes(`,site=a${written}b,`), JSON.stringify(refused[0]!.line));
    assert.ok(!refused[0]!.line.includes(c), 'no raw control character in the dead-letter copy');
    assert.equal(refused[0]!.reason, `not representable in line protocol: tag "site" contains control character U+000${c.charCodeAt(0).toString(16)}`);
  }
});

// ---- the sink's path: cached prefixes, lines written into one Buffer ----------

/** lines.ts before the prefix cache and LineBody, verbatim: the reference both must match. */
function referenceLines(b: AcceptedBatch): { out: string[]; refused: RefusedLine[] } {
  const escMeasurement = escape.measurement;
  const escTag = escape.tag;
  const UNREPRESENTABLE = /[\\\p{Cc}\p{Cs}]/u;
  const isReservedTagKey = (key: string) => key === 'device' || key === 'unit' || key === 'value' || key === 'device_time_ms' || key.toLowerCase() === 'time' || key.startsWith('_');
  const unrepresentable = (text: string): string | null => {
    const match = UNREPRESENTABLE.exec(text);
    if (!match) return null;
    const char = match[0];
    if (char === '\\') return 'a backslash';
    return char.length === 1 && char.charCodeAt(0) >= 0xd800 && char.charCodeAt(0) <= 0xdfff ? 'a lone surrogate' : `control character U+${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
  };
  const tagSetOf = (deviceId: string, tags: Readonly<Record<string, string>>) => {
    let s = `device=${escTag(deviceId)}`;
    for (const key of Object.keys(tags).sort()) {
      const value = tags[key]!;
      if (isReservedTagKey(key) || value === '') continue;
      s += `,${escTag(key)}=${escTag(value)}`;
    }
    return s;
  };
  const tagsProblem = (deviceId: string, tags: Readonly<Record<string, string>>): string | null => {
    const bad = unrepresentable(deviceId);
    if (bad) return `device id contains ${bad}`;
    for (const key of Object.keys(tags)) {
      if (isReservedTagKey(key) || tags[key] === '') continue;
      const why = unrepresentable(key) ?? unrepresentable(tags[key]!);
      if (why) return `tag ${JSON.stringify(key)} contains ${why}`;
    }
    return null;
  };
  const formatFloat = (value: number) => (Object.is(value, -0) ? '0' : String(value));
  const out: string[] = [];
  const refused: RefusedLine[] = [];
  const tags = tagSetOf(b.deviceId, b.tags);
  const tagsBad = tagsProblem(b.deviceId, b.tags);
  const prefixes: string[] = [];
  const problems: (string | null)[] = [];
  for (let i = 0; i < b.metricNames.length; i++) {
    const name = b.metricNames[i]!;
    const unit = b.metricUnits[i] ?? '';
    prefixes.push(`${escMeasurement(name)},${tags}${unit ? `,unit=${escTag(unit)}` : ''} value=`);
    const nameBad = unrepresentable(name);
    const unitBad = unrepresentable(unit);
    problems.push(tagsBad ?? (nameBad ? `metric name contains ${nameBad}` : unitBad ? `unit contains ${unitBad}` : null));
  }
  for (let i = 0; i < b.values.length; i++) {
    const metric = b.metricIndex[i]!;
    const timeMs = b.timesMs[i]!;
    const value = b.values[i]!;
    const deviceTimeMs = b.deviceTimesMs === null ? timeMs : b.deviceTimesMs[i]!;
    const extra = deviceTimeMs !== timeMs && Number.isSafeInteger(deviceTimeMs) ? `,device_time_ms=${deviceTimeMs}i` : '';
    const line = `${prefixes[metric]}${formatFloat(value)}${extra} ${timeMs}`;
    const why = problems[metric] ?? (!Number.isFinite(value) ? 'value is not a finite number' : !Number.isSafeInteger(timeMs) ? 'timestamp is not a safe integer' : null);
    if (why !== null) { refused.push({ line, reason: `not representable in line protocol: ${why}` }); continue; }
    out.push(line);
  }
  return { out, refused };
}

/** Hostile inputs: what line protocol treats specially, what has no exact form, reserved keys, odd numbers. */
const NASTY_TEXT = [
  'plain', 'a,b', 'a=b', 'a b', ' lead', 'trail ', ' ', '=', ',', '==,, ', "'q'", '"dq"', '#hash', 'nbsp\u00a0x', 'ideo\u3000x', 'line\u2028sep',
  '\ufeffbom', 'emoji 🛰️👩‍🚀', '中文 名称', 'עברית\u200f', 'e\u0301', 'key=value,other=x', 'value=1 1000', 'ü'.repeat(100),
  'back\\slash', 'trail\\', '\\,', 'tab\there', 'nl\nhere', 'cr\rhere', 'nul\u0000', 'del\u007f', 'c1\u0085', 'lone\ud800', 'lone\udfffx', '',
];
const NASTY_NUMBERS = [0, -0, 1, -1.5, 21.37, 1e21, -1e21, 1e-7, 5e-324, Number.MAX_VALUE, -Number.MAX_VALUE, 2 ** 53, NaN, Infinity, -Infinity, 0.1 + 0.2];
const NASTY_TIMES = [T0, 0, -0, -1, 1, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 53, 1.5, -0.5, NaN, Infinity, 1e21];

/** Batches built from the nasty inputs: hostile device ids, tag keys and values, metric names, units, values, times. */
function nastyBatches(): AcceptedBatch[] {
  const out: AcceptedBatch[] = [];
  let seq = 0;
  const n = NASTY_NUMBERS.length * NASTY_TIMES.length;
  for (let i = 0; i < NASTY_TEXT.length; i++) {
    const text = NASTY_TEXT[i]!;
    const other = NASTY_TEXT[(i * 7 + 3) % NASTY_TEXT.length]!;
    const device = i % 5 === 0 ? text || 'd' : `dev-${i % 4}`;
    const tagSets: Record<string, string>[] = [
      { site: text, zone: other },
      { [text || 'k']: other, model: 'th-2' },
      { device: 'spoof', unit: 'spoof', time: 'x', Time: 'y', _field: 'z', value: 'v', device_time_ms: '1', empty: '', site: text },
    ];
    for (const tags of tagSets) {
      const b = batch(device, ++seq, { n, corrected: true, tags, units: [text, other] });
      const metricNames = [text || 'm', `m.${i}`];
      for (let k = 0; k < n; k++) {
        b.values[k] = NASTY_NUMBERS[k % NASTY_NUMBERS.length]!;
        b.timesMs[k] = NASTY_TIMES[Math.floor(k / NASTY_NUMBERS.length)]!;
        // device_time_ms: the same, an unsafe, a fractional, a negative, an ordinary other time.
        b.deviceTimesMs![k] = [b.timesMs[k]!, 2 ** 60, 1.5, -(2 ** 40), T0 + 3_600_000][k % 5]!;
      }
      out.push({ ...b, metricNames });
    }
  }
  return out;
}

test('influx lines - the sink\'s path (cached prefixes, one Buffer) writes exactly the lines the old escaping did, on hostile input', () => {
  const prefixes = new SeriesPrefixes();
  const body = new LineBody(16);
  const bodyRefused: RefusedLine[] = [];
  const expected: string[] = [];
  const expectedRefused: RefusedLine[] = [];
  // Twice through: the second pass is all cache hits.
  for (const pass of [1, 2]) {
    for (const b of nastyBatches()) {
      const ref = referenceLines(b);
      expected.push(...ref.out);
      expectedRefused.push(...ref.refused);
      // The string path, cached and not, is the reference too.
      assert.deepEqual(lines(b), ref, `uncached strings, pass ${pass}`);
      const cachedOut: string[] = [];
      const cachedRefused: RefusedLine[] = [];
      assert.equal(batchToLines(b, cachedOut, cachedRefused, prefixes), ref.out.length);
      assert.deepEqual({ out: cachedOut, refused: cachedRefused }, ref, `cached strings, pass ${pass}`);
      assert.equal(body.appendBatch(b, bodyRefused, prefixes), ref.out.length);
    }
  }
  assert.ok(expected.length > 1000 && expectedRefused.length > 1000, `${expected.length} lines, ${expectedRefused.length} refused`);
  assert.equal(body.count, expected.length);
  assert.equal(body.bytes().toString('utf8'), expected.map((l) => `${l}\n`).join(''), 'the body: the lines, each ending in a newline');
  assert.equal(body.byteLength, Buffer.byteLength(body.bytes().toString('utf8')));
  assert.deepEqual(body.lines(), expected);
  assert.deepEqual(bodyRefused, expectedRefused);
  assert.deepEqual(body.slice(3, 9).lines(), expected.slice(3, 9));
  assert.deepEqual(body.slice(0, 0).lines(), []);
  assert.deepEqual(LineBody.of(expected.slice(10, 20)).lines(), expected.slice(10, 20));
});

test('influx lines - a cached prefix follows the device\'s tags: a registry edit is written with the new tags at once', () => {
  const prefixes = new SeriesPrefixes();
  const write = (b: AcceptedBatch) => {
    const body = new LineBody();
    body.appendBatch(b, [], prefixes);
    return body.lines();
  };
  const first = batch('dev-1', 1, { n: 2, tags: { site: 'north', model: 'th-2' } });
  assert.deepEqual(write(first), referenceLines(first).out);
  const edits: Record<string, string>[] = [
    { site: 'south', model: 'th-2' }, // a value changed
    { site: 'south' }, // a key removed
    { site: 'south', model: 'th-2', zone: 'a b' }, // a key added
    { zone: 'a b', model: 'th-2', site: 'south' }, // the same, in another order
    { site: 'south', model: 'th-2', zone: '' }, // an empty value (left out)
    { site: 'bad\\', model: 'th-2' }, // now unrepresentable: refused
    { site: 'north', model: 'th-2' }, // and back
  ];
  for (const tags of edits) {
    const b = batch('dev-1', 2, { n: 2, tags });
    const ref = referenceLines(b);
    const refused: RefusedLine[] = [];
    const body = new LineBody();
    body.appendBatch(b, refused, prefixes);
    assert.deepEqual({ out: body.lines(), refused }, ref, JSON.stringify(tags));
  }
  // Same tags, another unit or metric name: another series.
  const unit = batch('dev-1', 3, { n: 2, units: ['K', '%'] });
  assert.deepEqual(write(unit), referenceLines(unit).out);
  // A name/unit pair that concatenates like another ("ab" + "c" vs "a" + "bc").
  const pairs = [batch('dev-2', 1, { n: 1, metric: 'ab', units: ['c', ''] }), batch('dev-2', 2, { n: 1, metric: 'a', units: ['bc', ''] })];
  for (const b of pairs) assert.deepEqual(write(b), referenceLines(b).out);
  // Past its bounds the cache starts over, and stays exact.
  const small = new SeriesPrefixes(2, 1);
  for (let i = 0; i < 20; i++) {
    const b = batch(`dev-${i % 5}`, i + 1, { n: 4, metric: `m${i % 3}`, tags: { site: `s${i % 2}` } });
    const body = new LineBody();
    body.appendBatch(b, [], small);
    assert.deepEqual(body.lines(), referenceLines(b).out);
    assert.ok(small.devices <= 2);
  }
});
