// device-sim/: load-test scenarios, a chain of phases (steady, ramp, burst,
// reconnect storm, flaky network, clock skew, offline burst, hub restart,
// Influx outage, bad actors), from a built-in name or a small JSON/YAML
// config file. Owns their parsing, validation (zod, strict objects, the
// limits below) and normalisation to a Plan: each phase with its unique name,
// start offset, duration, devices, rate, batch interval and its kind's own
// options, defaults applied. It runs nothing.
// Imports: node, yaml, zod.
import { closeSync, openSync, readSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';

/** The phase kinds, with the one line help text and errors show. */
export const PHASE_KINDS = [
  { kind: 'steady', description: 'devices connected, sending `rate` readings/s per metric in batches every `batchMs`' },
  { kind: 'ramp', description: 'devices and/or rate change linearly over the phase, `from: {devices, rate}` to `to: {devices, rate}`' },
  { kind: 'burst', description: 'the rate multiplied by `factor` for the phase' },
  { kind: 'reconnect-storm', description: 'every device drops its link at once (`how`: close or drop) and returns within `returnWithinMs`' },
  { kind: 'flaky-network', description: 'random disconnects mid-batch (`disconnectsPerDevicePerMin`) and a `halfOpenShare` of links that stop answering' },
  { kind: 'clock-skew', description: 'a `share` of devices with drifting (`driftPpm`) and wrong (`offsetMs`) clocks' },
  { kind: 'offline-burst', description: 'a `share` of devices go offline for `offlineMs`, buffering readings, then flush' },
  { kind: 'hub-restart', description: 'the hub gets `signal` (SIGTERM or SIGKILL) `atMs` into the phase and is started again' },
  { kind: 'influx-outage', description: 'the database is down for `downMs` from `atMs` into the phase' },
  { kind: 'bad-actors', description: 'a `share` of devices misbehave: slow-acker, window-abuser, garbage-frames, metric-explosion' },
] as const;

export type PhaseKind = (typeof PHASE_KINDS)[number]['kind'];

/** What a bad actor does, handed out round-robin over the bad share of the fleet. */
export const BAD_ACTOR_BEHAVIOURS = ['slow-acker', 'window-abuser', 'garbage-frames', 'metric-explosion'] as const;
export type BadActorBehaviour = (typeof BAD_ACTOR_BEHAVIOURS)[number];

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** What a scenario may ask for; past these it is refused, the error naming the path. */
export const LIMITS = {
  phases: 100,
  devices: 1_000_000,
  /** Readings per second per metric. */
  rate: 10_000,
  batchMs: { min: 10, max: HOUR },
  phaseMs: { min: SECOND, max: 7 * DAY },
  planMs: 30 * DAY,
  /** A scenario file, checked before it is parsed. */
  fileBytes: 1024 * 1024,
  /** YAML: most alias nodes resolved (against alias "bombs"). */
  yamlAliases: 100,
  /** burst's factor: above 0, at most this. */
  burstFactor: 1000,
  disconnectsPerDevicePerMin: 600,
  driftPpm: 100_000,
  /** clock-skew's |offsetMs|. */
  offsetMs: 30 * DAY,
  commandChars: 4096,
  nameChars: 64,
} as const;

/** The scenario defaults when a file gives none: the simulator's own flag defaults. */
export const DEFAULTS = { devices: 200, rate: 1, batchMs: 1000 } as const;

export class ScenarioError extends Error {
  override name = 'ScenarioError';
  /** Where the problem is: "phases[2].duration", "devices", "file", "" for the whole scenario. */
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.path = path;
  }
}

/** A ScenarioError whose message is "<source>: <path>: <detail>", the parts present ("file" left out). */
function fail(path: string, detail: string, source?: string): ScenarioError {
  // "file" problems name the file themselves.
  return new ScenarioError(path, [source, path === 'file' ? '' : path, detail].filter((s) => s !== undefined && s !== '').join(': '));
}

// ---------------------------------------------------------------------------
// Durations

const UNIT_MS = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: DAY } as const;
const NUMBER_RE = /^\d+(?:\.\d+)?$/;
const COMPOUND_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART_RE = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
const DURATION_HELP = 'a number of seconds or a duration like 1500ms, 30s, 5m, 1h30m, 2d';

/** ms for a duration string ("30s", "1m30s", "90" = seconds), or undefined when it is not one. */
function durationStringMs(s: string, numberUnitMs: number): number | undefined {
  const t = s.trim();
  if (NUMBER_RE.test(t)) return Number(t) * numberUnitMs;
  if (!COMPOUND_RE.test(t)) return undefined;
  let ms = 0;
  for (const m of t.matchAll(PART_RE)) ms += Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  return ms;
}

interface MsRange { minMs: number; maxMs: number }

/** ms for a string duration or a number in `numberUnitMs`, in range, else the problem as text. */
function toMs(v: string | number, numberUnitMs: number, range: MsRange): number | string {
  let ms: number | undefined;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return `must be a finite number (got ${String(v)})`;
    ms = v * numberUnitMs;
  } else {
    ms = durationStringMs(v, numberUnitMs);
    if (ms === undefined) return `${JSON.stringify(v)} is not a duration: use ${numberUnitMs === 1 ? 'a number of ms' : 'a number of seconds'} or a duration like 1500ms, 30s, 5m, 1h30m, 2d`;
  }
  ms = Math.round(ms);
  if (!(ms >= range.minMs)) return `must be at least ${formatDuration(range.minMs)} (got ${JSON.stringify(v)})`;
  if (!(ms <= range.maxMs)) return `must be at most ${formatDuration(range.maxMs)} (got ${JSON.stringify(v)})`;
  return ms;
}

/**
 * A duration in ms: a number of seconds, or a string "1500ms", "30s", "5m",
 * "1h", "2d", compounds ("1m30s") and bare numbers (seconds) included, in
 * `range` (by default a phase's: 1 s..7 days). Throws ScenarioError at `path`.
 */
export function parseDuration(v: string | number, path: string, range: MsRange = { minMs: LIMITS.phaseMs.min, maxMs: LIMITS.phaseMs.max }): number {
  if (typeof v !== 'string' && typeof v !== 'number') throw fail(path, `must be ${DURATION_HELP}`);
  const ms = toMs(v, SECOND, range);
  if (typeof ms === 'string') throw fail(path, ms);
  return ms;
}

/** "1h30m", "2m", "1s500ms", "0s": what parseDuration reads back. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  let rest = Math.round(Math.abs(ms));
  if (rest === 0) return '0s';
  let out = ms < 0 ? '-' : '';
  for (const [unit, size] of [['d', DAY], ['h', HOUR], ['m', MINUTE], ['s', SECOND], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

// ---------------------------------------------------------------------------
// The config schema (zod)

/** A string or number schema whose transform turns it into ms, range-checked. */
function msSchema(numberUnitMs: number, range: MsRange, signed = false) {
  const what = numberUnitMs === 1 ? 'a number of ms' : 'a number of seconds';
  return z.union([z.string(), z.number()], {
    error: (iss) => (iss.input === undefined ? 'required' : `must be ${what} or a duration like 1500ms, 30s, 5m, 1h (got ${describeValue(iss.input)})`),
  }).transform((v, ctx) => {
    // Signed (an offset): "-5m" or -300000 is the negative of what follows the sign.
    let raw = v;
    let negative = false;
    if (signed && typeof v === 'number' && v < 0) { raw = -v; negative = true; }
    if (signed && typeof v === 'string' && v.trim().startsWith('-')) { raw = v.trim().slice(1); negative = true; }
    const ms = toMs(raw, numberUnitMs, range);
    if (typeof ms === 'string') {
      ctx.addIssue({ code: 'custom', message: ms, input: v });
      return z.NEVER;
    }
    return negative && ms !== 0 ? -ms : ms;
  });
}

const phaseDuration = msSchema(SECOND, { minMs: LIMITS.phaseMs.min, maxMs: LIMITS.phaseMs.max });
/** An offset or length inside a phase: a number is ms. */
const withinPhaseMs = msSchema(1, { minMs: 0, maxMs: LIMITS.phaseMs.max });
const devicesSchema = z.number().int().min(0).max(LIMITS.devices);
const rateSchema = z.number().min(0).max(LIMITS.rate);
const batchMsSchema = z.number().int().min(LIMITS.batchMs.min).max(LIMITS.batchMs.max);
const shareSchema = z.number().min(0).max(1);
const nameSchema = z.string().trim().min(1).max(LIMITS.nameChars).regex(/^\P{Cc}+$/u, 'must not hold control characters');
const commandSchema = z.string().trim().min(1).max(LIMITS.commandChars);
const levelSchema = z.strictObject({ devices: devicesSchema.optional(), rate: rateSchema.optional() });

const common = {
  name: nameSchema.optional(),
  duration: phaseDuration,
  devices: devicesSchema.optional(),
  rate: rateSchema.optional(),
  batchMs: batchMsSchema.optional(),
};

const PHASE_SCHEMAS = {
  steady: z.strictObject({ kind: z.literal('steady'), ...common }),
  ramp: z.strictObject({ kind: z.literal('ramp'), ...common, from: levelSchema.optional(), to: levelSchema.optional() }),
  burst: z.strictObject({ kind: z.literal('burst'), ...common, factor: z.number().gt(0).max(LIMITS.burstFactor) }),
  'reconnect-storm': z.strictObject({
    kind: z.literal('reconnect-storm'), ...common, how: z.enum(['close', 'drop']).optional(), returnWithinMs: withinPhaseMs.optional(),
  }),
  'flaky-network': z.strictObject({
    kind: z.literal('flaky-network'), ...common,
    disconnectsPerDevicePerMin: z.number().min(0).max(LIMITS.disconnectsPerDevicePerMin), halfOpenShare: shareSchema.optional(),
  }),
  'clock-skew': z.strictObject({
    kind: z.literal('clock-skew'), ...common, share: shareSchema,
    driftPpm: z.number().min(-LIMITS.driftPpm).max(LIMITS.driftPpm).optional(),
    offsetMs: msSchema(1, { minMs: 0, maxMs: LIMITS.offsetMs }, true).optional(),
  }),
  'offline-burst': z.strictObject({ kind: z.literal('offline-burst'), ...common, share: shareSchema, offlineMs: withinPhaseMs }),
  'hub-restart': z.strictObject({
    kind: z.literal('hub-restart'), ...common, signal: z.enum(['SIGTERM', 'SIGKILL']).optional(), atMs: withinPhaseMs.optional(), command: commandSchema.optional(),
  }),
  'influx-outage': z.strictObject({
    kind: z.literal('influx-outage'), ...common, atMs: withinPhaseMs.optional(), downMs: withinPhaseMs,
    stopCommand: commandSchema.optional(), startCommand: commandSchema.optional(),
  }),
  'bad-actors': z.strictObject({
    kind: z.literal('bad-actors'), ...common, share: shareSchema, behaviours: z.array(z.enum(BAD_ACTOR_BEHAVIOURS)).min(1).max(BAD_ACTOR_BEHAVIOURS.length).optional(),
  }),
} satisfies Record<PhaseKind, z.ZodType>;

const KIND_NAMES: readonly PhaseKind[] = PHASE_KINDS.map((k) => k.kind);

function kindError(input: unknown): string {
  const kind = isRecord(input) ? input.kind : undefined;
  const known = `one of ${KIND_NAMES.join(', ')}`;
  if (kind === undefined) return `required: the phase's kind, ${known}`;
  if (typeof kind !== 'string') return `must be ${known} (got ${describeValue(kind)})`;
  const near = closest(kind, KIND_NAMES);
  return `unknown kind ${JSON.stringify(kind)}${near ? ` (did you mean ${near}?)` : ''}: the kinds are ${KIND_NAMES.join(', ')}`;
}

const phaseSchema = z.discriminatedUnion('kind', [
  PHASE_SCHEMAS.steady, PHASE_SCHEMAS.ramp, PHASE_SCHEMAS.burst, PHASE_SCHEMAS['reconnect-storm'], PHASE_SCHEMAS['flaky-network'],
  PHASE_SCHEMAS['clock-skew'], PHASE_SCHEMAS['offline-burst'], PHASE_SCHEMAS['hub-restart'], PHASE_SCHEMAS['influx-outage'], PHASE_SCHEMAS['bad-actors'],
], { error: (iss) => (iss.code === 'invalid_union' ? kindError(iss.input) : undefined) });

const scenarioSchema = z.strictObject({
  name: nameSchema.optional(),
  devices: devicesSchema.optional(),
  rate: rateSchema.optional(),
  batchMs: batchMsSchema.optional(),
  phases: z.array(phaseSchema).min(1).max(LIMITS.phases),
});

/** A scenario as a config file (or a built-in) writes it. */
export type ScenarioInput = z.input<typeof scenarioSchema>;
/** One phase as written. */
export type PhaseInput = z.input<typeof phaseSchema>;
type ParsedPhase = z.output<typeof phaseSchema>;

// ---------------------------------------------------------------------------
// Readable zod issues

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return typeof v;
}

/** "phases[2].duration"; keys that are not plain words quoted: phases[0]["foo bar"]. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The known word nearest a typo, when it is near enough (a third of its letters). */
function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

/** The keys the strict object at `path` (in the scenario) takes, and what to call it. */
function keysAt(root: unknown, path: readonly PropertyKey[]): { what: string; keys: string[] } | undefined {
  if (path.length === 0) return { what: 'a scenario', keys: Object.keys(scenarioSchema.shape) };
  if (path[0] === 'phases' && (path.length === 2 || (path.length === 3 && (path[2] === 'from' || path[2] === 'to')))) {
    if (path.length === 3) return { what: `ramp's ${String(path[2])}`, keys: Object.keys(levelSchema.shape) };
    const kind = phaseKindAt(root, path[1]);
    if (kind !== undefined) return { what: `a ${kind} phase`, keys: Object.keys(PHASE_SCHEMAS[kind].shape) };
  }
  return undefined;
}

interface Problem { path: PropertyKey[]; text: string; unknownKey: boolean }

/** The kind of phases[i] in the scenario as written, when it is a known one. */
function phaseKindAt(root: unknown, i: PropertyKey | undefined): PhaseKind | undefined {
  const phases = isRecord(root) ? root.phases : undefined;
  const phase: unknown = Array.isArray(phases) && typeof i === 'number' ? phases[i] : undefined;
  const kind = isRecord(phase) ? phase.kind : undefined;
  return typeof kind === 'string' && Object.hasOwn(PHASE_SCHEMAS, kind) ? kind as PhaseKind : undefined;
}

/** For a key a kind requires: "required by burst (the rate multiplied by `factor` for the phase)". */
function requiredText(root: unknown, path: readonly PropertyKey[]): string {
  const kind = path.length === 3 && path[0] === 'phases' ? phaseKindAt(root, path[1]) : undefined;
  if (kind === undefined || Object.hasOwn(common, String(path[2]))) return 'required';
  return `required by ${kind} (${PHASE_KINDS.find((k) => k.kind === kind)?.description ?? kind})`;
}

function issueProblems(iss: z.core.$ZodIssue, root: unknown): Problem[] {
  const path = [...iss.path];
  const one = (text: string): Problem[] => [{ path, text, unknownKey: false }];
  switch (iss.code) {
    case 'unrecognized_keys': {
      const known = keysAt(root, path);
      return iss.keys.map((key) => {
        const near = known ? closest(key, known.keys) : undefined;
        const hint = near ? `did you mean ${near}? ` : '';
        return { path: [...path, key], unknownKey: true, text: `unknown key ${JSON.stringify(key)}${known ? ` (${hint}${known.what} takes ${known.keys.join(', ')})` : ''}` };
      });
    }
    case 'invalid_type': {
      if (iss.input === undefined) return one(requiredText(root, path));
      const want: Record<string, string> = { int: 'an integer', number: 'a number', string: 'a string', object: 'a mapping', array: 'a list' };
      return one(`must be ${want[iss.expected] ?? iss.expected} (got ${describeValue(iss.input)})`);
    }
    case 'too_big': {
      const max = String(iss.maximum);
      if (iss.origin === 'array') return one(`at most ${max} ${path.at(-1) === 'phases' ? 'phases' : 'items'} (got ${Array.isArray(iss.input) ? iss.input.length : '?'})`);
      if (iss.origin === 'string') return one(`at most ${max} characters`);
      return one(`must be ${iss.inclusive === false ? 'below' : 'at most'} ${max} (got ${describeValue(iss.input)})`);
    }
    case 'too_small': {
      const min = String(iss.minimum);
      if (iss.origin === 'array') return one(`needs at least ${min} ${path.at(-1) === 'phases' ? 'phase' : 'item'}`);
      if (iss.origin === 'string') return one(iss.minimum === 1 ? 'must not be empty' : `at least ${min} characters`);
      return one(`must be ${iss.inclusive === false ? 'above' : 'at least'} ${min} (got ${describeValue(iss.input)})`);
    }
    case 'invalid_value':
      return one(`must be one of ${iss.values.map(String).join(', ')} (got ${describeValue(iss.input)})`);
    default:
      // invalid_union (the kind, durations: their own messages), custom (transforms), formats.
      return one(iss.message);
  }
}

/** Problems in zod's order, but an unknown key before the other problems of its object (a typo explains a missing key). */
function orderProblems(problems: Problem[]): Problem[] {
  const typos = problems.filter((p) => p.unknownKey);
  const out: Problem[] = [];
  const startsWith = (path: PropertyKey[], prefix: PropertyKey[]) => prefix.length <= path.length && prefix.every((s, i) => path[i] === s);
  for (const p of problems) {
    if (p.unknownKey) continue;
    for (let i = 0; i < typos.length; i++) {
      const typo = typos[i];
      if (typo && startsWith(p.path, typo.path.slice(0, -1))) { out.push(typo); typos.splice(i--, 1); }
    }
    out.push(p);
  }
  return [...out, ...typos];
}

// ---------------------------------------------------------------------------
// The plan

export interface Level { devices: number; rate: number }

interface PhaseBase {
  /** Unique in the plan: as given, else the kind, then kind-2, kind-3... */
  name: string;
  /** Offset from the plan's start. */
  startMs: number;
  durationMs: number;
  /** Devices connected; for a ramp, where it ends (`to`). Inherited from the previous phase, else the scenario defaults. */
  devices: number;
  /** Readings per second per metric; for a ramp where it ends, for a burst before the factor. Inherited likewise. */
  rate: number;
  /** Batch interval, ms. Inherited likewise. */
  batchMs: number;
}

export interface SteadyPhase extends PhaseBase { kind: 'steady' }
export interface RampPhase extends PhaseBase {
  kind: 'ramp';
  /** At the start (default: the previous phase's devices and rate) and at the end (devices and rate = to). */
  from: Level;
  to: Level;
}
export interface BurstPhase extends PhaseBase { kind: 'burst'; factor: number }
export interface ReconnectStormPhase extends PhaseBase {
  kind: 'reconnect-storm';
  /** close: a close frame; drop (default): the link just goes, no close frame. */
  how: 'close' | 'drop';
  /** Returns spread over this long from the drop (0: all at once). */
  returnWithinMs: number;
}
export interface FlakyNetworkPhase extends PhaseBase { kind: 'flaky-network'; disconnectsPerDevicePerMin: number; halfOpenShare: number }
export interface ClockSkewPhase extends PhaseBase { kind: 'clock-skew'; share: number; driftPpm: number; offsetMs: number }
export interface OfflineBurstPhase extends PhaseBase { kind: 'offline-burst'; share: number; offlineMs: number }
export interface HubRestartPhase extends PhaseBase {
  kind: 'hub-restart';
  signal: 'SIGTERM' | 'SIGKILL';
  /** Into the phase. */
  atMs: number;
  /**
   * A shell command run at atMs that restarts the hub or sends it `signal`
   * (e.g. `systemctl kill -s KILL telemetry-hub`, or a script that kills and
   * starts it); absent: the hub the tool started (not in this version: the
   * runner asks for a command).
   */
  command?: string;
}
export interface InfluxOutagePhase extends PhaseBase {
  kind: 'influx-outage';
  atMs: number;
  downMs: number;
  /** Both or neither; absent: the database the tool manages. */
  stopCommand?: string;
  startCommand?: string;
}
export interface BadActorsPhase extends PhaseBase { kind: 'bad-actors'; share: number; behaviours: BadActorBehaviour[] }

export type Phase =
  | SteadyPhase | RampPhase | BurstPhase | ReconnectStormPhase | FlakyNetworkPhase
  | ClockSkewPhase | OfflineBurstPhase | HubRestartPhase | InfluxOutagePhase | BadActorsPhase;

export interface Plan {
  name: string;
  phases: Phase[];
  /** The phases' durations added up. */
  durationMs: number;
  /** Most devices any phase has connected (a ramp's from included). */
  maxDevices: number;
}

// Every kind has its Phase type, and no Phase type has a kind that is not one.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _everyKindTyped: Same<Phase['kind'], PhaseKind> = true;

/** Names as given (unique), the others the kind made unique: steady, steady-2... */
function phaseNames(phases: readonly ParsedPhase[], source?: string): string[] {
  const taken = new Map<string, number>();
  phases.forEach((p, i) => {
    if (p.name === undefined) return;
    const other = taken.get(p.name);
    if (other !== undefined) throw fail(`phases[${i}].name`, `${JSON.stringify(p.name)} is also phases[${other}]'s name: names must be unique`, source);
    taken.set(p.name, i);
  });
  const seen = new Map<string, number>();
  return phases.map((p, i) => {
    if (p.name !== undefined) return p.name;
    let n = seen.get(p.kind) ?? 0;
    let name: string;
    do { n++; name = n === 1 ? p.kind : `${p.kind}-${n}`; } while (taken.has(name));
    seen.set(p.kind, n);
    taken.set(name, i);
    return name;
  });
}

function within(path: string, ms: number, durationMs: number, what: string, source: string | undefined, strict = true): void {
  if (strict ? ms >= durationMs : ms > durationMs) {
    throw fail(path, `${what} (${formatDuration(ms)}) must be ${strict ? 'less than' : 'at most'} the phase's duration (${formatDuration(durationMs)})`, source);
  }
}

function normalise(s: z.output<typeof scenarioSchema>, source: string | undefined): Plan {
  const names = phaseNames(s.phases, source);
  let prev = { devices: s.devices ?? DEFAULTS.devices, rate: s.rate ?? DEFAULTS.rate, batchMs: s.batchMs ?? DEFAULTS.batchMs };
  let startMs = 0;
  let maxDevices = 0;
  const phases = s.phases.map((p, i): Phase => {
    const at = `phases[${i}]`;
    const base: PhaseBase = {
      name: names[i] ?? p.kind, startMs, durationMs: p.duration,
      devices: p.devices ?? prev.devices, rate: p.rate ?? prev.rate, batchMs: p.batchMs ?? prev.batchMs,
    };
    let phase: Phase;
    switch (p.kind) {
      case 'steady': phase = { kind: p.kind, ...base }; break;
      case 'ramp': {
        for (const k of ['devices', 'rate'] as const) {
          if (p[k] !== undefined && p.to?.[k] !== undefined) throw fail(`${at}.${k}`, `a ramp's ${k} is where it ends: give ${k} or to.${k}, not both`, source);
        }
        const from = { devices: p.from?.devices ?? prev.devices, rate: p.from?.rate ?? prev.rate };
        const to = { devices: p.to?.devices ?? base.devices, rate: p.to?.rate ?? base.rate };
        phase = { kind: p.kind, ...base, devices: to.devices, rate: to.rate, from, to };
        maxDevices = Math.max(maxDevices, from.devices);
        break;
      }
      case 'burst': phase = { kind: p.kind, ...base, factor: p.factor }; break;
      case 'reconnect-storm': {
        const returnWithinMs = p.returnWithinMs ?? 0;
        within(`${at}.returnWithinMs`, returnWithinMs, base.durationMs, 'returnWithinMs', source, false);
        phase = { kind: p.kind, ...base, how: p.how ?? 'drop', returnWithinMs };
        break;
      }
      case 'flaky-network':
        phase = { kind: p.kind, ...base, disconnectsPerDevicePerMin: p.disconnectsPerDevicePerMin, halfOpenShare: p.halfOpenShare ?? 0 };
        break;
      case 'clock-skew': {
        const driftPpm = p.driftPpm ?? 0;
        const offsetMs = p.offsetMs ?? 0;
        if (driftPpm === 0 && offsetMs === 0) throw fail(at, 'a clock-skew phase needs driftPpm and/or offsetMs', source);
        phase = { kind: p.kind, ...base, share: p.share, driftPpm, offsetMs };
        break;
      }
      case 'offline-burst':
        if (p.offlineMs === 0) throw fail(`${at}.offlineMs`, 'must be above 0', source);
        within(`${at}.offlineMs`, p.offlineMs, base.durationMs, 'offlineMs (then the flush)', source);
        phase = { kind: p.kind, ...base, share: p.share, offlineMs: p.offlineMs };
        break;
      case 'hub-restart': {
        const atMs = p.atMs ?? 0;
        within(`${at}.atMs`, atMs, base.durationMs, 'atMs', source);
        phase = { kind: p.kind, ...base, signal: p.signal ?? 'SIGTERM', atMs, ...(p.command !== undefined && { command: p.command }) };
        break;
      }
      case 'influx-outage': {
        const atMs = p.atMs ?? 0;
        if (p.downMs === 0) throw fail(`${at}.downMs`, 'must be above 0', source);
        within(`${at}.atMs`, atMs, base.durationMs, 'atMs', source);
        within(`${at}.downMs`, atMs + p.downMs, base.durationMs, 'atMs + downMs', source, false);
        if ((p.stopCommand === undefined) !== (p.startCommand === undefined)) {
          const missing = p.stopCommand === undefined ? 'stopCommand' : 'startCommand';
          throw fail(`${at}.${missing}`, `required with ${missing === 'stopCommand' ? 'startCommand' : 'stopCommand'} (give both or neither)`, source);
        }
        phase = {
          kind: p.kind, ...base, atMs, downMs: p.downMs,
          ...(p.stopCommand !== undefined && p.startCommand !== undefined && { stopCommand: p.stopCommand, startCommand: p.startCommand }),
        };
        break;
      }
      case 'bad-actors': {
        const behaviours = p.behaviours ?? [...BAD_ACTOR_BEHAVIOURS];
        const dup = behaviours.findIndex((b, j) => behaviours.indexOf(b) !== j);
        if (dup >= 0) throw fail(`${at}.behaviours[${dup}]`, `${behaviours[dup]} is listed twice`, source);
        phase = { kind: p.kind, ...base, share: p.share, behaviours };
        break;
      }
    }
    maxDevices = Math.max(maxDevices, phase.devices);
    prev = { devices: phase.devices, rate: phase.rate, batchMs: phase.batchMs };
    startMs += phase.durationMs;
    return phase;
  });
  if (startMs > LIMITS.planMs) {
    throw fail('phases', `the phases add up to ${formatDuration(startMs)}, over the ${formatDuration(LIMITS.planMs)} a plan may last`, source);
  }
  const fromSource = source !== undefined && source !== '' ? basename(source, extname(source)) : '';
  return { name: s.name ?? (fromSource !== '' ? fromSource : 'scenario'), phases, durationMs: startMs, maxDevices };
}

/**
 * A scenario object (a parsed config file) validated and normalised to a
 * Plan. Throws ScenarioError: the schema's problems all joined by "; ", the
 * error's path the first one's (an unknown key first in its object); past
 * the schema, the first problem. `source` (a file name) prefixes messages and
 * names the plan when it has no name.
 */
export function planFromObject(obj: unknown, source?: string): Plan {
  if (!isRecord(obj)) throw fail('', `a scenario must be a mapping with phases (got ${obj === undefined ? 'nothing' : describeValue(obj)})`, source);
  const r = scenarioSchema.safeParse(obj, { reportInput: true });
  if (!r.success) {
    const problems = orderProblems(r.error.issues.flatMap((iss) => issueProblems(iss, obj)));
    const first = problems[0];
    const text = problems.map((p) => (p.path.length ? `${formatPath(p.path)}: ${p.text}` : p.text)).join('; ');
    throw new ScenarioError(first ? formatPath(first.path) : '', source ? `${source}: ${text}` : text);
  }
  return normalise(r.data, source);
}

// ---------------------------------------------------------------------------
// Files

/** The file's text, refused past LIMITS.fileBytes before anything is parsed (a pipe included: it reads at most one byte more). */
function readBounded(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw fail('file', `cannot open ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    const buf = Buffer.alloc(LIMITS.fileBytes + 1);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > LIMITS.fileBytes) throw fail('file', `${path} is over ${LIMITS.fileBytes} bytes (1 MiB), the most a scenario file may be`);
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
    } catch {
      throw fail('file', `${path} is not UTF-8 text`);
    }
  } catch (e) {
    if (e instanceof ScenarioError) throw e;
    throw fail('file', `cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    closeSync(fd);
  }
}

function lineCol(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, col: (lines.at(-1)?.length ?? 0) + 1 };
}

const JSON_STRING = /"(?:[\x20\x21\x23-\x5b\x5d-\u{10ffff}]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/uy;
const JSON_SCALAR = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

/**
 * Where JSON text first goes wrong (-1: nowhere): V8's messages do not all
 * give a position, and differ between Node versions. No recursion: an
 * explicit stack of the closers awaited.
 */
function jsonErrorOffset(s: string): number {
  let i = 0;
  const closers: string[] = [];
  const skip = () => { while (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r') i++; };
  const eat = (re: RegExp) => { re.lastIndex = i; if (!re.test(s)) return false; i = re.lastIndex; return true; };
  const key = () => { skip(); if (!eat(JSON_STRING)) return false; skip(); if (s[i] !== ':') return false; i++; return true; };
  for (;;) {
    // A value.
    skip();
    if (s[i] === '{' || s[i] === '[') {
      const close = s[i] === '{' ? '}' : ']';
      i++;
      skip();
      if (s[i] === close) i++;
      else {
        closers.push(close);
        if (close === '}' && !key()) return i;
        continue;
      }
    } else if (!eat(JSON_STRING) && !eat(JSON_SCALAR)) return i;
    // After a value: a comma or closers.
    for (;;) {
      skip();
      const close = closers.at(-1);
      if (close === undefined) return i < s.length ? i : -1;
      if (s[i] === close) { closers.pop(); i++; continue; }
      if (s[i] !== ',') return i;
      i++;
      if (close === '}' && !key()) return i;
      break;
    }
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    const at = jsonErrorOffset(text);
    if (at < 0) throw fail('file', `not valid JSON: ${(e instanceof Error ? e.message : String(e)).split('\n')[0] ?? ''}`, file);
    const { line, col } = lineCol(text, at);
    const what = at >= text.length ? 'the text ends too soon' : `unexpected ${JSON.stringify(String.fromCodePoint(text.codePointAt(at) ?? 0))}`;
    throw fail('file', `line ${line}, column ${col}: not valid JSON: ${what}`, file);
  }
}

function parseYamlText(text: string, file: string): unknown {
  let doc;
  try {
    doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, schema: 'core' });
  } catch (e) {
    throw fail('file', `not valid YAML: ${e instanceof Error ? e.message : String(e)}`, file);
  }
  const err = doc.errors[0];
  if (err) {
    const pos = err.linePos?.[0] ?? lineCol(text, err.pos[0]);
    const first = (err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw fail('file', `line ${pos.line}, column ${pos.col}: not valid YAML: ${first}`, file);
  }
  try {
    return doc.toJS({ maxAliasCount: LIMITS.yamlAliases }) as unknown;
  } catch (e) {
    if (e instanceof ReferenceError && /alias/i.test(e.message)) {
      throw fail('file', `YAML aliases expand to too much (over ${LIMITS.yamlAliases} resolved): refused`, file);
    }
    throw fail('file', `not valid YAML: ${e instanceof Error ? e.message : String(e)}`, file);
  }
}

/**
 * A scenario file as a Plan: read (at most 1 MiB, checked first), parsed as
 * JSON (.json), YAML (.yaml, .yml), else JSON then YAML; a syntax error names
 * the file and the line. Then planFromObject, the file as the source.
 * Throws ScenarioError (path "file" for reading and parsing).
 */
export function loadScenarioFile(path: string): Plan {
  const text = readBounded(path);
  if (text.trim() === '') throw fail('file', `${path} is empty: a scenario needs phases`);
  const ext = extname(path).toLowerCase();
  let obj: unknown;
  if (ext === '.json') obj = parseJson(text, path);
  else if (ext === '.yaml' || ext === '.yml') obj = parseYamlText(text, path);
  else {
    try {
      obj = JSON.parse(text) as unknown;
    } catch {
      obj = parseYamlText(text, path);
    }
  }
  if (obj === null || obj === undefined) throw fail('file', `${path} holds no scenario (only comments, or null)`);
  return planFromObject(obj, path);
}

// ---------------------------------------------------------------------------
// Built-in scenarios

/** What the command line gives a built-in scenario. */
export interface BuiltInOptions { devices: number; rate: number; batchMs: number; durationMs: number }

export interface BuiltInScenario {
  description: string;
  /** The plan for these options; throws ScenarioError (path "duration", "devices", ...). */
  build(o: BuiltInOptions): Plan;
}

interface Recipe {
  description: string;
  /** Each phase's share of the duration, adding up to 1. */
  shares: readonly number[];
  /** The phases, given each one's ms. */
  phases(ms: readonly number[], o: BuiltInOptions): PhaseInput[];
}

const dur = (ms: number | undefined) => `${ms ?? 0}ms`;
const part = (ms: number | undefined, f: number) => Math.floor((ms ?? 0) * f);

const RECIPES = {
  steady: {
    description: 'steady load for the whole duration',
    shares: [1],
    phases: (ms) => [{ kind: 'steady', duration: dur(ms[0]) }],
  },
  ramp: {
    description: 'devices ramp from 0 up over the first quarter, then steady',
    shares: [1 / 4, 3 / 4],
    phases: (ms, o) => [
      { kind: 'ramp', name: 'ramp-up', duration: dur(ms[0]), from: { devices: 0 }, to: { devices: o.devices } },
      { kind: 'steady', duration: dur(ms[1]) },
    ],
  },
  burst: {
    description: 'steady, the rate x10 for a fifth of the duration, steady again',
    shares: [2 / 5, 1 / 5, 2 / 5],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'burst', duration: dur(ms[1]), factor: 10 },
      { kind: 'steady', name: 'recovery', duration: dur(ms[2]) },
    ],
  },
  'reconnect-storm': {
    description: 'steady for a third, every device drops its link at once, then steady to the end (how fast they return)',
    shares: [1 / 3, 1 / 6, 1 / 2],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'reconnect-storm', name: 'storm', duration: dur(ms[1]), how: 'drop', returnWithinMs: 0 },
      { kind: 'steady', name: 'recovery', duration: dur(ms[2]) },
    ],
  },
  'flaky-network': {
    description: 'steady, then half the duration of random disconnects (1 per device per minute) and 5 % half-open links, then steady',
    shares: [1 / 4, 1 / 2, 1 / 4],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'flaky-network', duration: dur(ms[1]), disconnectsPerDevicePerMin: 1, halfOpenShare: 0.05 },
      { kind: 'steady', name: 'recovery', duration: dur(ms[2]) },
    ],
  },
  'clock-skew': {
    description: 'steady, then 20 % of the devices with clocks 5 minutes behind and drifting 500 ppm',
    shares: [1 / 5, 4 / 5],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'clock-skew', duration: dur(ms[1]), share: 0.2, driftPpm: 500, offsetMs: -5 * MINUTE },
    ],
  },
  'offline-burst': {
    description: 'steady, then 20 % of the devices offline for a quarter of the duration, buffering, then flushing; steady',
    shares: [1 / 4, 1 / 2, 1 / 4],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'offline-burst', duration: dur(ms[1]), share: 0.2, offlineMs: part(ms[1], 1 / 2) },
      { kind: 'steady', name: 'recovery', duration: dur(ms[2]) },
    ],
  },
  'hub-restart': {
    description: 'steady, the hub restarted with SIGTERM (graceful), then killed with SIGKILL and started again',
    shares: [1 / 5, 2 / 5, 2 / 5],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'hub-restart', name: 'sigterm', duration: dur(ms[1]), signal: 'SIGTERM', atMs: part(ms[1], 1 / 4) },
      { kind: 'hub-restart', name: 'sigkill', duration: dur(ms[2]), signal: 'SIGKILL', atMs: part(ms[2], 1 / 4) },
    ],
  },
  'influx-outage': {
    description: 'steady, then the database down for a fifth of the duration, then steady while the backlog drains',
    shares: [1 / 5, 3 / 5, 1 / 5],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'influx-outage', name: 'outage', duration: dur(ms[1]), atMs: part(ms[1], 1 / 6), downMs: part(ms[1], 1 / 3) },
      { kind: 'steady', name: 'recovery', duration: dur(ms[2]) },
    ],
  },
  'bad-actors': {
    description: 'steady, then 10 % of the devices misbehave (slow-acker, window-abuser, garbage-frames, metric-explosion in turn)',
    shares: [1 / 5, 4 / 5],
    phases: (ms) => [
      { kind: 'steady', name: 'warm-up', duration: dur(ms[0]) },
      { kind: 'bad-actors', duration: dur(ms[1]), share: 0.1 },
    ],
  },
} satisfies Record<string, Recipe>;

export type BuiltInName = keyof typeof RECIPES;

function buildBuiltIn(name: BuiltInName, o: BuiltInOptions): Plan {
  const r: Recipe = RECIPES[name];
  const total = o.durationMs;
  const smallest = Math.min(...r.shares);
  const largest = Math.max(...r.shares);
  const minMs = Math.ceil(LIMITS.phaseMs.min / smallest);
  const maxMs = Math.min(LIMITS.planMs, Math.floor(LIMITS.phaseMs.max / largest));
  const ms = r.shares.map((s) => Math.floor(total * s));
  ms[ms.length - 1] = total - ms.slice(0, -1).reduce((a, b) => a + b, 0);
  const range = `${formatDuration(minMs)}..${formatDuration(maxMs)}`;
  if (!Number.isSafeInteger(total) || ms.some((m) => m < LIMITS.phaseMs.min || m > LIMITS.phaseMs.max)) {
    throw fail('duration', `the ${name} scenario needs a duration of ${range} (${r.shares.length} phases of 1s..7d each; got ${Number.isFinite(total) ? formatDuration(total) : String(total)})`);
  }
  const input: ScenarioInput = { name, devices: o.devices, rate: o.rate, batchMs: o.batchMs, phases: r.phases(ms, o) };
  return planFromObject(input);
}

/** The built-in scenarios by name, each with a description and a builder (what builtInPlan calls). */
export const SCENARIOS: Readonly<Record<BuiltInName, BuiltInScenario>> = Object.fromEntries(
  (Object.keys(RECIPES) as BuiltInName[]).map((name) => [name, { description: RECIPES[name].description, build: (o: BuiltInOptions) => buildBuiltIn(name, o) }]),
) as Record<BuiltInName, BuiltInScenario>;

/** A built-in scenario's plan; an unknown name is a ScenarioError (path "scenario") listing the known ones. */
export function builtInPlan(name: string, o: BuiltInOptions): Plan {
  if (!Object.hasOwn(SCENARIOS, name)) {
    throw fail('scenario', `unknown scenario ${JSON.stringify(name)}; the built-in scenarios: ${Object.keys(SCENARIOS).join(', ')}`);
  }
  return SCENARIOS[name as BuiltInName].build(o);
}

// ---------------------------------------------------------------------------
// Describing a plan

const pct = (share: number) => `${Number((share * 100).toFixed(2))}%`;

function phaseDetail(p: Phase): string {
  switch (p.kind) {
    case 'steady': return '';
    case 'ramp': return '';
    case 'burst': return `rate x${p.factor}`;
    case 'reconnect-storm': return `${p.how}, back within ${formatDuration(p.returnWithinMs)}`;
    case 'flaky-network': return `${p.disconnectsPerDevicePerMin} disconnects/device/min, ${pct(p.halfOpenShare)} half-open`;
    case 'clock-skew': return `${pct(p.share)} of devices, drift ${p.driftPpm} ppm, offset ${formatDuration(p.offsetMs)}`;
    case 'offline-burst': return `${pct(p.share)} offline for ${formatDuration(p.offlineMs)}`;
    case 'hub-restart': return `${p.signal} at +${formatDuration(p.atMs)}${p.command !== undefined ? ` (runs: ${p.command})` : ''}`;
    case 'influx-outage': return `down at +${formatDuration(p.atMs)} for ${formatDuration(p.downMs)}${p.stopCommand !== undefined ? ' (own commands)' : ''}`;
    case 'bad-actors': return `${pct(p.share)} of devices: ${p.behaviours.join(', ')}`;
  }
}

/** A few lines: the plan, then each phase's start, name, kind, duration, devices, rate and its own options. */
export function describePlan(p: Plan): string {
  const rows = p.phases.map((ph) => [
    `+${formatDuration(ph.startMs)}`, ph.name, ph.kind, formatDuration(ph.durationMs),
    ph.kind === 'ramp' && ph.from.devices !== ph.to.devices ? `${ph.from.devices}->${ph.to.devices}` : String(ph.devices),
    ph.kind === 'ramp' && ph.from.rate !== ph.to.rate ? `${ph.from.rate}->${ph.to.rate}/s` : `${ph.rate}/s`,
    phaseDetail(ph),
  ]);
  const head = ['start', 'name', 'kind', 'duration', 'devices', 'rate', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `  ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd();
  const n = p.phases.length;
  return [
    `${p.name}: ${n} phase${n === 1 ? '' : 's'}, ${formatDuration(p.durationMs)}, up to ${p.maxDevices} devices`,
    line(head),
    ...rows.map(line),
  ].join('\n');
}
