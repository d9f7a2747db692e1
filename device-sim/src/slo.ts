// device-sim/: --slo, service-level objectives that turn a load test's final
// report into a pass/fail exit code for CI: the expression's grammar and its
// names (SLO_NAMES), parsing it into terms (a bad expression is an SloError
// naming the bad term, which the command lines report as a usage error),
// checking the terms against a finished run's figures, and the report lines.
// Which figure of a run each name means is the command line's business; this
// module only compares numbers.
// Imports: none.
//
// Grammar:
//
//   expression := term ("," term)*      at most 2,000 characters, 50 terms
//   term       := NAME OP VALUE
//   OP         := "<" | "<=" | ">" | ">=" | "=" | "=="   ("=" and "==" both mean equal)
//   VALUE      := NUMBER UNIT?          NUMBER: a non-negative decimal (12, 0.5, .5; no sign, no exponent)
//
// Whitespace around terms, operators and before a unit is ignored; an empty
// term (a trailing or doubled comma) is an error. A name may appear more than
// once (`ack_p99<100ms,ack_p99>0ms`). Names, by kind of VALUE:
//
//   counts     loss, dup, errors, reconnects                      plain number, no unit
//   ratios     loss_ratio, dup_ratio                              fraction of readings generated, 0..1,
//                                                                 or a percent: loss_ratio<0.1%
//   rates      readings_per_s, batches_per_s                      plain number (per second), no unit
//   latencies  <phase>_<pct>                                      a unit is required: us (or µs), ms, s,
//              phase: connect, first_ack, ack, reading_ack        m (minutes); normalised to milliseconds
//              pct:   p50, p95, p99, p999, max
//
// `%` is only for the ratios, and a ratio above 1 (100 %) is an error (did
// `loss_ratio<5` mean 5 %?). Equality is exact: `loss=0`, `dup=0`.

/** What a term's VALUE is, and how it is written and shown. */
export type SloKind = 'count' | 'ratio' | 'rate' | 'duration';
export type SloOp = '<' | '<=' | '>' | '>=' | '=';

export const SLO_PHASES = ['connect', 'first_ack', 'ack', 'reading_ack'] as const;
export const SLO_PERCENTILES = ['p50', 'p95', 'p99', 'p999', 'max'] as const;
export type SloPhase = (typeof SLO_PHASES)[number];
export type SloPercentile = (typeof SLO_PERCENTILES)[number];

export type SloName =
  | 'loss' | 'dup' | 'errors' | 'reconnects'
  | 'loss_ratio' | 'dup_ratio' | 'readings_per_s' | 'batches_per_s'
  | `${SloPhase}_${SloPercentile}`;

export interface SloNameInfo { kind: SloKind; description: string }

const PHASE_TEXT: Record<SloPhase, string> = {
  connect: 'connect time (upgrade request to Welcome)',
  first_ack: 'time from a session\'s Welcome to its first Ack',
  ack: 'ack latency (a batch\'s send to the Ack that covers it)',
  reading_ack: 'reading latency (a reading\'s intended sample time to the Ack that covers it)',
};
const PERCENTILE_TEXT: Record<SloPercentile, string> = { p50: 'median', p95: '95th percentile', p99: '99th percentile', p999: '99.9th percentile', max: 'maximum' };

const latencyNames = Object.fromEntries(SLO_PHASES.flatMap((phase) => SLO_PERCENTILES.map((pct) => [
  `${phase}_${pct}`, { kind: 'duration', description: `${PERCENTILE_TEXT[pct]} ${PHASE_TEXT[phase]}` } satisfies SloNameInfo,
]))) as Record<`${SloPhase}_${SloPercentile}`, SloNameInfo>;

/** Every name an --slo term may use, with its kind and a one-line description. */
export const SLO_NAMES: Readonly<Record<SloName, Readonly<SloNameInfo>>> = Object.freeze({
  loss: { kind: 'count', description: 'readings acked by the hub but missing from the database (without a database check: batches sent and never acked)' },
  dup: { kind: 'count', description: 'readings stored more than once' },
  errors: { kind: 'count', description: 'closes other than a clean one (1000), HTTP refusals and client errors (network errors, timeouts)' },
  reconnects: { kind: 'count', description: 'reconnect attempts' },
  loss_ratio: { kind: 'ratio', description: 'loss as a fraction of readings generated (a percent allowed: loss_ratio<0.1%)' },
  dup_ratio: { kind: 'ratio', description: 'dup as a fraction of readings generated (a percent allowed: dup_ratio<0.1%)' },
  readings_per_s: { kind: 'rate', description: 'readings acked per second over the run' },
  batches_per_s: { kind: 'rate', description: 'batches acked per second over the run' },
  ...latencyNames,
});

export class SloError extends Error {
  override name = 'SloError';
  /** The term at fault as written (trimmed); '' for an empty term or expression. */
  readonly term: string;
  constructor(term: string, message: string) {
    super(message);
    this.term = term;
  }
}

export interface SloTerm {
  /** The term as written, trimmed. */
  text: string;
  name: SloName;
  op: SloOp;
  /** Milliseconds for durations, a fraction for ratios, as written otherwise. */
  value: number;
  kind: SloKind;
}

export const SLO_MAX_CHARS = 2000;
export const SLO_MAX_TERMS = 50;

const isName = (s: string): s is SloName => Object.hasOwn(SLO_NAMES, s);

const NAMES_LIST = `${Object.keys(SLO_NAMES).filter((n) => SLO_NAMES[n as SloName].kind !== 'duration').join(', ')}, `
  + `and <phase>_<pct> with phase ${SLO_PHASES.join('|')} and pct ${SLO_PERCENTILES.join('|')} (e.g. ack_p99)`;

/** Edit distance, for suggesting a name close to a misspelt one. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function closeNames(name: string): string[] {
  const lower = name.toLowerCase();
  const all = Object.keys(SLO_NAMES);
  if (isName(lower)) return [lower];
  const prefixed = all.filter((n) => lower.length >= 2 && n.startsWith(`${lower}_`));
  if (prefixed.length) return prefixed;
  const limit = lower.length <= 4 ? 1 : 2;
  return all.map((n) => ({ n, d: distance(lower, n) })).filter((x) => x.d <= limit).sort((x, y) => x.d - y.d).slice(0, 5).map((x) => x.n);
}

const OPS: readonly string[] = ['<=', '>=', '==', '<', '>', '='];
/** A duration unit as a power of ten of milliseconds, times a factor (minutes). */
const UNITS: Record<string, { exp: number; factor: number }> = {
  us: { exp: -3, factor: 1 }, 'µs': { exp: -3, factor: 1 }, ms: { exp: 0, factor: 1 }, s: { exp: 3, factor: 1 }, m: { exp: 3, factor: 60 },
};

/** A decimal scaled by a power of ten without binary rounding: 0.7% is 0.007 (not 0.7 / 100 = 0.006999...), 1500us is 1.5 ms. */
const scaled = (digits: string, exp: number) => Number(`${digits}e${exp}`);

function parseTerm(text: string): SloTerm {
  const bad = (what: string) => new SloError(text, `${text}: ${what}`);
  const rawName = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text)?.[0];
  if (rawName === undefined) throw bad(`expected a name first, e.g. ack_p99<100ms (names: ${NAMES_LIST})`);
  if (!isName(rawName)) {
    const close = closeNames(rawName);
    throw bad(`unknown name '${rawName}'; ${close.length ? `close names: ${close.join(', ')}` : `see the list of names: ${NAMES_LIST}`}`);
  }
  const name = rawName;
  const { kind } = SLO_NAMES[name];

  const afterName = text.slice(name.length).trimStart();
  const opText = OPS.find((o) => afterName.startsWith(o));
  if (opText === undefined) {
    throw bad(afterName === ''
      ? `no operator after '${name}'; write NAME OP VALUE with OP one of < <= > >= = ==`
      : `expected an operator (< <= > >= = ==) after '${name}', got '${afterName}'`);
  }
  const op = (opText === '==' ? '=' : opText) as SloOp;
  const rest = afterName.slice(opText.length).trim();
  if (rest === '') throw bad(`no value after '${opText}'`);
  if (/^[<>=!]/.test(rest)) throw bad(`unexpected '${rest[0]}' after the operator '${opText}' (operators are < <= > >= = ==)`);
  if (rest.startsWith('-')) throw bad(`negative value '${rest}': values are non-negative`);

  const m = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-zµ%]*)$/i.exec(rest);
  if (!m) throw bad(`'${rest}' is not a value: a non-negative decimal number${kind === 'duration' ? ' with a unit, e.g. 100ms' : ''}`);
  const digits = m[1] ?? '';
  const unit = m[2] ?? '';
  let value = Number(digits);
  if (!Number.isFinite(value)) throw bad(`'${digits}' is too large`);

  switch (kind) {
    case 'duration': {
      if (unit === '') throw bad(`give a unit, e.g. ${digits}ms (us, ms, s or m)`);
      if (unit === '%') throw bad(`'%' is only for ratios (loss_ratio, dup_ratio); ${name} is a duration: give us, ms, s or m`);
      const u = UNITS[unit];
      if (u === undefined) throw bad(`unknown unit '${unit}'; durations take us, ms, s or m (minutes)`);
      value = scaled(digits, u.exp) * u.factor;
      break;
    }
    case 'ratio':
      if (unit !== '' && unit !== '%') throw bad(`'${unit}' is not a unit for a ratio: write a fraction (0.001) or a percent (0.1%)`);
      if (unit === '%') value = scaled(digits, -2);
      if (value > 1) {
        throw bad(unit === '%' ? 'a ratio is at most 100%' : `a ratio is a fraction of readings generated, 0..1; for a percent write ${digits}%`);
      }
      break;
    case 'count':
    case 'rate':
      if (unit === '%') throw bad(`'%' is only for ratios (loss_ratio, dup_ratio); ${name} is a ${kind}`);
      if (unit !== '') throw bad(`${name} is a ${kind}, which takes no unit (got '${unit}')`);
      break;
  }
  return { text, name, op, value, kind };
}

/** The terms of an --slo expression. Throws SloError naming the term and what is wrong. */
export function parseSlo(expr: string): SloTerm[] {
  if (expr.length > SLO_MAX_CHARS) {
    const head = `${expr.slice(0, 40)}…`;
    throw new SloError(head, `SLO expression too long: ${expr.length} characters, the limit is ${SLO_MAX_CHARS} (starts '${head}')`);
  }
  if (expr.trim() === '') throw new SloError('', 'empty SLO expression: give terms like loss=0,ack_p99<100ms');
  const parts = expr.split(',');
  if (parts.length > SLO_MAX_TERMS) {
    const extra = (parts[SLO_MAX_TERMS] ?? '').trim();
    throw new SloError(extra, `SLO expression has ${parts.length} terms, the limit is ${SLO_MAX_TERMS} (term ${SLO_MAX_TERMS + 1} is '${extra}')`);
  }
  return parts.map((part, i) => {
    const text = part.trim();
    if (text === '') {
      const where = i === parts.length - 1 ? 'a trailing comma?' : i === 0 ? 'a leading comma?' : 'a doubled comma?';
      throw new SloError('', `term ${i + 1} of '${expr.trim()}' is empty (${where})`);
    }
    return parseTerm(text);
  });
}

/** The figures of a finished run, by SLO name; a name missing from `actual` (the run did not measure it) fails that term with a reason. */
export type SloActuals = Partial<Record<SloName, number>>;

export interface SloResult {
  term: SloTerm;
  actual: number | undefined;
  pass: boolean;
  /** e.g. "ack_p99 = 42.1 ms < 100 ms: pass", "connect_p99 not measured in this run". */
  reason: string;
}

const trimmed = (x: number, decimals: number) => (Number.isFinite(x) ? String(Number(x.toFixed(decimals))) : String(x));

/** A value as the report shows it: durations in µs, ms or s, ratios as a percent. */
function shown(kind: SloKind, v: number, decimals: number): string {
  switch (kind) {
    case 'duration': {
      const a = Math.abs(v);
      if (a > 0 && a < 1) return `${trimmed(v * 1e3, decimals)} µs`;
      if (a >= 1e3) return `${trimmed(v / 1e3, decimals)} s`;
      return `${trimmed(v, decimals)} ms`;
    }
    case 'ratio': return `${trimmed(v * 100, decimals)} %`;
    case 'count':
    case 'rate': return trimmed(v, decimals);
  }
}

/** The pair shown, with decimals enough that values which differ also look different. */
function shownPair(kind: SloKind, actual: number, limit: number): [string, string] {
  for (let d = 3; ; d++) {
    const pair: [string, string] = [shown(kind, actual, d), shown(kind, limit, d)];
    if (pair[0] !== pair[1] || actual === limit || d >= 15) return pair;
  }
}

function holds(op: SloOp, a: number, v: number): boolean {
  switch (op) {
    case '<': return a < v;
    case '<=': return a <= v;
    case '>': return a > v;
    case '>=': return a >= v;
    case '=': return a === v;
  }
}

/** Each term against the run's figures; the run passes when every term does. */
export function evaluateSlo(terms: SloTerm[], actual: SloActuals): { pass: boolean; results: SloResult[] } {
  const results = terms.map((term): SloResult => {
    const a = actual[term.name];
    if (a === undefined) return { term, actual: a, pass: false, reason: `${term.name} not measured in this run (${term.text}): FAIL` };
    if (Number.isNaN(a)) return { term, actual: a, pass: false, reason: `${term.name} is NaN in this run, not a figure (${term.text}): FAIL` };
    const pass = holds(term.op, a, term.value);
    const [got, want] = shownPair(term.kind, a, term.value);
    return { term, actual: a, pass, reason: pass ? `${term.name} = ${got} ${term.op} ${want}: pass` : `${term.name} = ${got}, not ${term.op} ${want}: FAIL` };
  });
  return { pass: results.every((r) => r.pass), results };
}

/** One line per term, then "SLO: PASS" or "SLO: FAIL (n of m terms failed)". */
export function formatSloReport(r: { pass: boolean; results: SloResult[] }): string {
  const failed = r.results.filter((x) => !x.pass).length;
  const lines = r.results.map((x) => `  ${x.reason}`);
  lines.push(r.pass ? 'SLO: PASS' : `SLO: FAIL (${failed} of ${r.results.length} term${r.results.length === 1 ? '' : 's'} failed)`);
  return lines.join('\n');
}
