// device-sim/ tests: --slo expressions. Parsing (every operator, every unit
// normalised to milliseconds, percent ratios), bad input rejected with an
// SloError naming the term (lengths bounded), and evaluation: each operator
// passing and failing, boundaries, figures the run did not measure or that
// are NaN, and the report lines.
// Imports: node:test, and this package's slo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SLO_MAX_CHARS, SLO_MAX_TERMS, SLO_NAMES, SloError, evaluateSlo, formatSloReport, parseSlo, type SloActuals, type SloTerm } from '../src/slo.ts';

/** The one term of `expr`. */
const one = (expr: string): SloTerm => {
  const terms = parseSlo(expr);
  assert.equal(terms.length, 1);
  return terms[0]!;
};

/** parseSlo(expr) throws an SloError for `term` whose message matches `message` (and names the term when it has one). */
const rejects = (expr: string, term: string, message: RegExp) => {
  assert.throws(() => parseSlo(expr), (err: unknown) => {
    assert.ok(err instanceof SloError, `${String(err)} is an SloError`);
    assert.equal(err.name, 'SloError');
    assert.equal(err.term, term);
    if (term !== '') assert.ok(err.message.includes(term), `'${err.message}' names '${term}'`);
    assert.match(err.message, message);
    return true;
  });
};

const run = (expr: string, actual: SloActuals) => evaluateSlo(parseSlo(expr), actual);

test('slo - the README example', () => {
  assert.deepEqual(parseSlo('loss=0,dup=0,ack_p99<100ms,connect_p99<5s'), [
    { text: 'loss=0', name: 'loss', op: '=', value: 0, kind: 'count' },
    { text: 'dup=0', name: 'dup', op: '=', value: 0, kind: 'count' },
    { text: 'ack_p99<100ms', name: 'ack_p99', op: '<', value: 100, kind: 'duration' },
    { text: 'connect_p99<5s', name: 'connect_p99', op: '<', value: 5000, kind: 'duration' },
  ]);
});

test('slo - every operator; = and == both mean equal; whitespace around terms and operators ignored', () => {
  assert.deepEqual(parseSlo('errors<1,errors<=1,errors>1,errors>=1,errors=1,errors==1').map((t) => t.op), ['<', '<=', '>', '>=', '=', '=']);
  assert.deepEqual(parseSlo('  loss = 0 ,\tack_p99 <= 100 ms ,reconnects>=2  '), [
    { text: 'loss = 0', name: 'loss', op: '=', value: 0, kind: 'count' },
    { text: 'ack_p99 <= 100 ms', name: 'ack_p99', op: '<=', value: 100, kind: 'duration' },
    { text: 'reconnects>=2', name: 'reconnects', op: '>=', value: 2, kind: 'count' },
  ]);
});

test('slo - duration units normalised to milliseconds', () => {
  const ms = (expr: string) => one(expr).value;
  assert.equal(ms('ack_p99<1500us'), 1.5);
  assert.equal(ms('ack_p99<1500µs'), 1.5);
  assert.equal(ms('ack_p99<250ms'), 250);
  assert.equal(ms('ack_p99<0.5ms'), 0.5);
  assert.equal(ms('connect_max<2s'), 2000);
  assert.equal(ms('connect_max<0.1s'), 100);
  assert.equal(ms('reading_ack_p999<1m'), 60000);
  assert.equal(ms('first_ack_p50<1.5m'), 90000);
  assert.equal(ms('ack_p50<.5s'), 500);
  assert.equal(ms('ack_p50>0ms'), 0);
});

test('slo - ratios as fractions or percents; rates and counts as written', () => {
  assert.deepEqual(one('loss_ratio<0.1%'), { text: 'loss_ratio<0.1%', name: 'loss_ratio', op: '<', value: 0.001, kind: 'ratio' });
  assert.equal(one('loss_ratio<0.7%').value, 0.007, 'no binary rounding (0.7 / 100 is 0.006999...)');
  assert.equal(one('dup_ratio<=0.001').value, 0.001);
  assert.equal(one('dup_ratio<100%').value, 1);
  assert.equal(one('loss_ratio=0').value, 0);
  assert.deepEqual(one('readings_per_s>=5000'), { text: 'readings_per_s>=5000', name: 'readings_per_s', op: '>=', value: 5000, kind: 'rate' });
  assert.equal(one('batches_per_s>12.5').kind, 'rate');
  assert.equal(one('reconnects<3').kind, 'count');
});

test('slo - the same name twice is fine', () => {
  assert.deepEqual(parseSlo('ack_p99<100ms,ack_p99>0ms').map((t) => [t.name, t.op, t.value]), [['ack_p99', '<', 100], ['ack_p99', '>', 0]]);
});

test('slo - SLO_NAMES: every phase x percentile, each with a kind and a description', () => {
  const names = Object.keys(SLO_NAMES);
  assert.equal(names.length, 8 + 4 * 5);
  for (const phase of ['connect', 'first_ack', 'ack', 'reading_ack']) {
    for (const pct of ['p50', 'p95', 'p99', 'p999', 'max']) assert.ok(names.includes(`${phase}_${pct}`), `${phase}_${pct}`);
  }
  for (const [name, info] of Object.entries(SLO_NAMES)) {
    assert.ok(info.description.length > 10 && !info.description.includes('\n'), name);
    assert.equal(one(`${name}${info.kind === 'duration' ? '<1ms' : '<1'}`).kind, info.kind);
  }
  assert.ok(Object.isFrozen(SLO_NAMES));
});

test('slo - unknown names: close names suggested, or the list', () => {
  rejects('loss=0,ack_p90<3ms', 'ack_p90<3ms', /unknown name 'ack_p90'; close names: .*ack_p99/);
  rejects('ack<3ms', 'ack<3ms', /close names: ack_p50, ack_p95, ack_p99, ack_p999, ack_max/);
  rejects('conect_p99<5s', 'conect_p99<5s', /close names: connect_p99/);
  rejects('Loss=0', 'Loss=0', /close names: loss$/);
  rejects('throughput>5', 'throughput>5', /unknown name 'throughput'; see the list of names: loss, dup, .*<phase>_<pct>/);
  rejects('<3ms', '<3ms', /expected a name first/);
});

test('slo - missing operator or value, a negative value, garbage', () => {
  rejects('loss', 'loss', /no operator after 'loss'/);
  rejects('loss 0', 'loss 0', /expected an operator .* after 'loss', got '0'/);
  rejects('ack_p99!=3ms', 'ack_p99!=3ms', /expected an operator/);
  rejects('loss=', 'loss=', /no value after '='/);
  rejects('dup=0,ack_p99 <= ', 'ack_p99 <=', /no value after '<='/);
  rejects('loss=-1', 'loss=-1', /negative value '-1'/);
  rejects('ack_p99>-5ms', 'ack_p99>-5ms', /negative/);
  rejects('ack_p99<<3ms', 'ack_p99<<3ms', /unexpected '<' after the operator '<'/);
  rejects('ack_p99=>3ms', 'ack_p99=>3ms', /unexpected '>'/);
  rejects('loss=zero', 'loss=zero', /'zero' is not a value/);
  rejects('ack_p99<1e3ms', 'ack_p99<1e3ms', /not a value/);
  rejects('ack_p99<1.5.3ms', 'ack_p99<1.5.3ms', /not a value/);
  rejects('loss=0 dup=0', 'loss=0 dup=0', /not a value/);
  rejects(`loss<${'9'.repeat(400)}`, `loss<${'9'.repeat(400)}`, /too large/);
});

test('slo - units: required on durations, refused elsewhere, % only on ratios', () => {
  rejects('ack_p99<100', 'ack_p99<100', /^ack_p99<100: give a unit, e.g. 100ms/);
  rejects('connect_p99<5h', 'connect_p99<5h', /unknown unit 'h'/);
  rejects('ack_p99<5%', 'ack_p99<5%', /'%' is only for ratios/);
  rejects('loss=1ms', 'loss=1ms', /loss is a count, which takes no unit/);
  rejects('readings_per_s>5s', 'readings_per_s>5s', /readings_per_s is a rate, which takes no unit/);
  rejects('loss=1%', 'loss=1%', /'%' is only for ratios .* loss is a count/);
  rejects('batches_per_s>1%', 'batches_per_s>1%', /'%' is only for ratios/);
  rejects('loss_ratio<1ms', 'loss_ratio<1ms', /not a unit for a ratio/);
  rejects('loss_ratio<5', 'loss_ratio<5', /0\.\.1; for a percent write 5%/);
  rejects('dup_ratio<150%', 'dup_ratio<150%', /at most 100%/);
});

test('slo - empty expressions and terms', () => {
  rejects('', '', /empty SLO expression/);
  rejects('   ', '', /empty SLO expression/);
  rejects('loss=0,', '', /term 2 of 'loss=0,' is empty \(a trailing comma\?\)/);
  rejects('loss=0,,dup=0', '', /term 2 .* is empty \(a doubled comma\?\)/);
  rejects(',loss=0', '', /term 1 .* is empty \(a leading comma\?\)/);
  rejects('loss=0, ,dup=0', '', /is empty/);
});

test('slo - bounded: 2,000 characters, 50 terms', () => {
  const huge = 'ack_p99<100ms,'.repeat(715).slice(0, 10000);
  assert.equal(huge.length, 10000);
  rejects(huge, `${huge.slice(0, 40)}…`, /too long: 10000 characters, the limit is 2000/);
  rejects('x'.repeat(SLO_MAX_CHARS + 1), `${'x'.repeat(40)}…`, /too long/);
  rejects(Array.from({ length: SLO_MAX_TERMS + 1 }, (_, i) => `errors<${i}`).join(','), 'errors<50', /51 terms, the limit is 50 \(term 51 is 'errors<50'\)/);
  assert.equal(parseSlo(Array(SLO_MAX_TERMS).fill('loss=0').join(',')).length, SLO_MAX_TERMS);
  // Exactly 2,000 characters is fine: 'loss=0,' x 7, then 'dup<' and 1,947 zeros.
  const atLimit = `${'loss=0,'.repeat(7)}dup<${'0'.repeat(SLO_MAX_CHARS - 7 * 7 - 4)}`;
  assert.equal(atLimit.length, SLO_MAX_CHARS);
  assert.equal(parseSlo(atLimit).length, 8);
});

test('slo - each operator passes and fails', () => {
  const cases: [string, number, boolean][] = [
    ['errors<5', 4, true], ['errors<5', 6, false],
    ['errors<=5', 4, true], ['errors<=5', 6, false],
    ['errors>5', 6, true], ['errors>5', 4, false],
    ['errors>=5', 6, true], ['errors>=5', 4, false],
    ['errors=5', 5, true], ['errors=5', 4, false],
    ['errors==5', 5, true], ['errors==5', 6, false],
  ];
  for (const [expr, errors, pass] of cases) {
    const r = run(expr, { errors });
    assert.equal(r.pass, pass, `${expr} at ${errors}`);
    assert.equal(r.results[0]!.pass, pass);
    assert.equal(r.results[0]!.actual, errors);
  }
});

test('slo - boundaries: < and > exclude the exact value, <= and >= include it', () => {
  const at = { ack_p99: 100, loss_ratio: 0.001, readings_per_s: 5000 };
  assert.equal(run('ack_p99<100ms', at).pass, false);
  assert.equal(run('ack_p99<=100ms', at).pass, true);
  assert.equal(run('ack_p99<0.1s', at).pass, false);
  assert.equal(run('ack_p99<=100000us', at).pass, true);
  assert.equal(run('readings_per_s>5000', at).pass, false);
  assert.equal(run('readings_per_s>=5000', at).pass, true);
  assert.equal(run('loss_ratio<0.1%', at).pass, false);
  assert.equal(run('loss_ratio<=0.1%', at).pass, true);
  assert.equal(run('loss_ratio=0.1%', at).pass, true);
  assert.equal(run('loss_ratio=0.7%', { loss_ratio: 7 / 1000 }).pass, true);
});

test('slo - reasons: readable units, and values that differ look different', () => {
  const reasons = (expr: string, actual: SloActuals) => run(expr, actual).results.map((r) => r.reason);
  assert.deepEqual(reasons('ack_p99<100ms', { ack_p99: 42.1 }), ['ack_p99 = 42.1 ms < 100 ms: pass']);
  assert.deepEqual(reasons('ack_p99<100ms', { ack_p99: 1234.56 }), ['ack_p99 = 1.235 s, not < 100 ms: FAIL']);
  assert.deepEqual(reasons('ack_p50<1500us', { ack_p50: 0.25 }), ['ack_p50 = 250 µs < 1.5 ms: pass']);
  assert.deepEqual(reasons('connect_max<1m', { connect_max: 75000 }), ['connect_max = 75 s, not < 60 s: FAIL']);
  assert.deepEqual(reasons('ack_p99<=100ms', { ack_p99: 100.0004 }), ['ack_p99 = 100.0004 ms, not <= 100 ms: FAIL']);
  assert.deepEqual(reasons('loss_ratio<0.1%', { loss_ratio: 0.0004 }), ['loss_ratio = 0.04 % < 0.1 %: pass']);
  assert.deepEqual(reasons('loss=0', { loss: 3 }), ['loss = 3, not = 0: FAIL']);
  assert.deepEqual(reasons('readings_per_s>1000', { readings_per_s: 1234.56 }), ['readings_per_s = 1234.56 > 1000: pass']);
  assert.deepEqual(reasons('ack_max<=0ms', { ack_max: 0 }), ['ack_max = 0 ms <= 0 ms: pass']);
});

test('slo - a figure the run did not measure, or NaN, fails the term', () => {
  const r = run('connect_p99<5s,ack_p99<100ms', { ack_p99: Number.NaN });
  assert.equal(r.pass, false);
  assert.deepEqual(r.results.map((x) => [x.pass, x.actual]), [[false, undefined], [false, Number.NaN]]);
  assert.match(r.results[0]!.reason, /^connect_p99 not measured in this run \(connect_p99<5s\): FAIL$/);
  assert.match(r.results[1]!.reason, /^ack_p99 is NaN/);
  assert.equal(run('loss=0', { loss: undefined }).results[0]!.reason, 'loss not measured in this run (loss=0): FAIL');
  assert.equal(run('ack_p99<100ms', { ack_p99: Number.POSITIVE_INFINITY }).pass, false);
});

test('slo - no terms pass trivially; every term must pass', () => {
  assert.deepEqual(evaluateSlo([], {}), { pass: true, results: [] });
  assert.equal(run('loss=0,dup=0', { loss: 0, dup: 1 }).pass, false);
  assert.equal(run('loss=0,dup=0', { loss: 0, dup: 0 }).pass, true);
});

test('slo - the report: one line per term, then the verdict', () => {
  const expr = 'loss=0,dup=0,ack_p99<100ms,connect_p99<5s';
  assert.equal(formatSloReport(run(expr, { loss: 0, dup: 0, ack_p99: 42.1, connect_p99: 812 })), [
    '  loss = 0 = 0: pass',
    '  dup = 0 = 0: pass',
    '  ack_p99 = 42.1 ms < 100 ms: pass',
    '  connect_p99 = 812 ms < 5 s: pass',
    'SLO: PASS',
  ].join('\n'));
  assert.equal(formatSloReport(run(expr, { loss: 2, dup: 0, ack_p99: 142 })), [
    '  loss = 2, not = 0: FAIL',
    '  dup = 0 = 0: pass',
    '  ack_p99 = 142 ms, not < 100 ms: FAIL',
    '  connect_p99 not measured in this run (connect_p99<5s): FAIL',
    'SLO: FAIL (3 of 4 terms failed)',
  ].join('\n'));
  assert.equal(formatSloReport(run('loss=0', { loss: 1 })).split('\n').at(-1), 'SLO: FAIL (1 of 1 term failed)');
});
