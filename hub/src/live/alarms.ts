// live/: threshold alarms evaluated in the hub every tick. A rule is
// (metric, optional tag group, condition, duration): "temperature > 80 for
// 10 s in site=north". It fires per device when the device's latest value of
// the metric has met the condition continuously for the duration, and clears
// when it stops meeting it. Rules are kept in HUB_ALARM_RULES_FILE and
// validated with zod, for the reasons given in auth/schemas.ts.
// Imports: core (errors, names, atomic-file), live/devices, zod.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { describeIssues, HubError, RuleError } from '../core/errors.ts';
import { METRIC_NAME_RE } from '../core/names.ts';
import { writeJsonAtomic } from '../core/atomic-file.ts';
import type { DeviceTracker } from './devices.ts';

export type AlarmOp = '>' | '>=' | '<' | '<=';
const OPS = ['>', '>=', '<', '<='] as const satisfies readonly AlarmOp[];
export const MAX_RULES = 200;
/** Cleared alarms kept for the "recent" list. */
export const RECENT = 200;
const GROUP_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}=[^\s=]{1,128}$/;
const RULE_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;

const NAME = '1 to 100 characters';
const METRIC = 'a metric name such as temperature';
const THRESHOLD = 'a finite number';
const FOR_S = 'whole seconds, 0 to 86400';

/** A rule as the API and the rules file give it; parseRule() gives it an id. */
const RuleInputSchema = z.object({
  // A file's id is kept when it is one; anything else gets a new id.
  id: z.string().regex(RULE_ID_RE).optional().catch(undefined),
  name: z.string(NAME).trim().min(1, NAME).max(100, NAME),
  metric: z.string(METRIC).regex(METRIC_NAME_RE, METRIC),
  // Anything but a string has always meant the whole fleet.
  group: z.preprocess((v) => (typeof v === 'string' ? v.trim() : ''), z.string().refine((g) => g === '' || GROUP_RE.test(g), 'empty (whole fleet) or key=value, e.g. site=north')),
  op: z.enum(OPS, `one of ${OPS.join(' ')}`),
  // Number(), as always: a form may send "80"; NaN and Infinity are refused.
  threshold: z.coerce.number(THRESHOLD),
  forS: z.coerce.number(FOR_S).int(FOR_S).min(0, FOR_S).max(86_400, FOR_S).default(0),
}, 'a rule is an object');

const RulesFileSchema = z.object({ rules: z.array(RuleInputSchema, 'must be a list of rules') }, 'expected {"rules": [...]}');

export interface AlarmRule {
  id: string;
  name: string;
  metric: string;
  /** "key=value" or "" for the whole fleet. */
  group: string;
  op: AlarmOp;
  threshold: number;
  forS: number;
}

export interface AlarmRec {
  id: string;
  ruleId: string;
  ruleName: string;
  device: string;
  metric: string;
  condition: string;
  value: number;
  sinceMs: number;
  untilMs: number;
  /** Tick of the last change. */
  changed: number;
}

type RuleInput = z.infer<typeof RuleInputSchema>;

function toRule(input: RuleInput, id: string | undefined): AlarmRule {
  const { name, metric, group, op, threshold, forS } = input;
  return { id: id ?? input.id ?? randomBytes(6).toString('base64url'), name, metric, group, op, threshold, forS };
}

/** Validates a rule from JSON (API or file); throws RuleError with a message for the user. */
export function parseRule(raw: unknown, id?: string): AlarmRule {
  const parsed = RuleInputSchema.safeParse(raw);
  if (!parsed.success) throw new RuleError(describeIssues(parsed.error.issues), { cause: parsed.error });
  return toRule(parsed.data, id);
}

export function describeRule(r: AlarmRule): string {
  return `${r.metric} ${r.op} ${r.threshold}${r.forS ? ` for ${r.forS} s` : ''}${r.group ? ` in ${r.group}` : ''}`;
}

function meets(op: AlarmOp, v: number, t: number): boolean {
  switch (op) {
    case '>': return v > t;
    case '>=': return v >= t;
    case '<': return v < t;
    case '<=': return v <= t;
  }
}

export class Alarms {
  readonly #file: string | null;
  #rules: AlarmRule[] = [];
  /** rule id + device -> since when the condition has held. */
  readonly #pending = new Map<string, number>();
  readonly active = new Map<string, AlarmRec>();
  readonly recent: AlarmRec[] = [];
  /** Fired so far (for tests and metrics). */
  fired = 0;

  #onChange: ((rules: readonly AlarmRule[]) => Promise<void>) | null = null;

  constructor(file: string | null) {
    this.#file = file;
    if (file && existsSync(file)) this.#rules = readRulesFile(file);
  }

  /**
   * Cluster mode: `share(rules)` is awaited after every change made here
   * (an API change is reported done once the other hubs can see it); changes
   * made on other hubs come back through adopt().
   */
  share(onChange: (rules: readonly AlarmRule[]) => Promise<void>): void { this.#onChange = onChange; }

  /** Rules another hub saved (cluster mode): validated, saved here, in force. A bad list is refused whole (RuleError). */
  adopt(raw: unknown): Promise<void> {
    const parsed = RulesFileSchema.safeParse(raw);
    if (!parsed.success) return Promise.reject(new RuleError(describeIssues(parsed.error.issues), { cause: parsed.error }));
    const rules = parsed.data.rules.map((input) => toRule(input, undefined));
    const run = this.#changes.then(async () => {
      if (JSON.stringify(rules) === JSON.stringify(this.#rules)) return;
      if (this.#file) await writeJsonAtomic(this.#file, { rules });
      this.#rules = rules;
    });
    this.#changes = run.catch(() => undefined);
    return run;
  }

  get rules(): readonly AlarmRule[] { return this.#rules; }

  /** Adds a rule; resolves once it is saved and in force. */
  async add(raw: unknown): Promise<AlarmRule> {
    const rule = parseRule(raw, randomBytes(6).toString('base64url'));
    await this.#commit((rules) => {
      if (rules.length >= MAX_RULES) throw new RuleError(`at most ${MAX_RULES} rules`);
      return [...rules, rule];
    });
    return rule;
  }

  /** Deletes a rule (false: no such rule); its active alarms clear at the next tick. */
  async remove(id: string): Promise<boolean> {
    let removed = false;
    await this.#commit((rules) => {
      const next = rules.filter((r) => r.id !== id);
      removed = next.length !== rules.length;
      return removed ? next : null;
    });
    return removed;
  }

  /** Evaluates every rule against every device's latest values. */
  evaluate(devices: DeviceTracker, now: number, tick: number): void {
    const live = new Set<string>();
    for (const rule of this.#rules) {
      const eq = rule.group.indexOf('=');
      const gk = eq > 0 ? rule.group.slice(0, eq) : '';
      const gv = eq > 0 ? rule.group.slice(eq + 1) : '';
      for (const d of devices.devices.values()) {
        if (gk && d.tags[gk] !== gv) continue;
        const i = d.metricIndex(rule.metric);
        if (i < 0) continue;
        const v = d.values[i]!;
        const key = `${rule.id}\0${d.id}`;
        if (!meets(rule.op, v, rule.threshold)) continue;
        live.add(key);
        let since = this.#pending.get(key);
        if (since === undefined) {
          // The condition has held since the reading that first met it.
          since = Math.min(now, d.times[i]!);
          this.#pending.set(key, since);
        }
        const a = this.active.get(key);
        if (a) {
          if (a.value !== v) { a.value = v; a.changed = tick; }
        } else if (now - since >= rule.forS * 1000) {
          this.fired++;
          this.active.set(key, {
            id: `${rule.id}:${d.id}:${since}`, ruleId: rule.id, ruleName: rule.name, device: d.id, metric: rule.metric,
            condition: describeRule(rule), value: v, sinceMs: since, untilMs: 0, changed: tick,
          });
        }
      }
    }
    for (const key of this.#pending.keys()) if (!live.has(key)) this.#pending.delete(key);
    for (const [key, a] of this.active) {
      if (live.has(key)) continue;
      this.active.delete(key);
      a.untilMs = now;
      a.changed = tick;
      this.recent.push(a);
      if (this.recent.length > RECENT) this.recent.shift();
    }
  }

  /** Active alarms per scope ("fleet" or "group:k=v"), for ScopeStats. */
  activeIn(scopeTags: { key: string; value: string } | null, devices: DeviceTracker): number {
    if (!scopeTags) return this.active.size;
    let n = 0;
    for (const a of this.active.values()) if (devices.devices.get(a.device)?.tags[scopeTags.key] === scopeTags.value) n++;
    return n;
  }

  /** Rule changes, one at a time, so none is computed from rules another is replacing. */
  #changes: Promise<unknown> = Promise.resolve();

  /**
   * Saves first, then applies: a rule the API reports as failed is not in
   * force either. `change` gets the rules in force (null: nothing to do).
   */
  #commit(change: (rules: readonly AlarmRule[]) => AlarmRule[] | null): Promise<void> {
    const run = this.#changes.then(async () => {
      const next = change(this.#rules);
      if (!next) return;
      await this.#onChange?.(next);
      if (this.#file) await writeJsonAtomic(this.#file, { rules: next });
      this.#rules = next;
    });
    this.#changes = run.catch(() => undefined);
    return run;
  }
}

/** The rules in HUB_ALARM_RULES_FILE; a file that breaks a rule stops the start (HUB_ERR_CONFIG). */
function readRulesFile(file: string): AlarmRule[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HubError('HUB_ERR_CONFIG', `HUB_ALARM_RULES_FILE=${file}: not readable JSON`, { cause: err });
  }
  const parsed = RulesFileSchema.safeParse(raw);
  if (!parsed.success) throw new HubError('HUB_ERR_CONFIG', `HUB_ALARM_RULES_FILE=${file}: ${describeIssues(parsed.error.issues)}`, { cause: parsed.error });
  return parsed.data.rules.map((input) => toRule(input, undefined));
}
