// Spool batches -> line protocol (sinks/influx/lines.ts): the schema, the
// escaping (influxdb-client's escape helpers), what is refused instead of
// sent, and which lines a 400 names (failures.ts). No server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escape } from '@influxdata/influxdb-client';
import { DEVICE_ID_RE, METRIC_NAME_RE } from '../src/core/names.ts';
import { linesNamedIn } from '../src/sinks/influx/failures.ts';
import { batchToLines, tagSet, type RefusedLine } from '../src/sinks/influx/lines.ts';
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
