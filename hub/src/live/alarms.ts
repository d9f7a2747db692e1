// live/: threshold alarms evaluated in the hub every tick. A rule is
// (metric, optional tag group, condition, duration): "temperature > 80 for
// 10 s in site=north". It fires per device when the device's latest value of
// the metric has met the condition continuously for the duration, and clears
// when it stops meeting it. Rules are kept in HUB_ALARM_RULES_FILE.
// Imports: errors, core/names, live/devices.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { HubError } from '../core/errors.ts';
import { METRIC_NAME_RE } from '../core/names.ts';
import { writeJsonAtomic } from '../core/atomic-file.ts';
import type { DeviceTracker } from './devices.ts';

export type AlarmOp = '>' | '>=' | '<' | '<=';
const OPS: readonly AlarmOp[] = ['>', '>=', '<', '<='];
export const MAX_RULES = 200;
/** Cleared alarms kept for the "recent" list. */
export const RECENT = 200;
const GROUP_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}=[^\s=]{1,128}$/;

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

export class RuleError extends Error {
  override readonly name = 'RuleError';
}

/** Validates a rule from JSON (API or file); throws RuleError with a message for the user. */
export function parseRule(raw: unknown, id?: string): AlarmRule {
  if (typeof raw !== 'object' || raw === null) throw new RuleError('a rule is an object');
  const r = raw as Record<string, unknown>;
  const name = typeof r.name === 'string' ? r.name.trim() : '';
  if (!name || name.length > 100) throw new RuleError('name: 1 to 100 characters');
  if (typeof r.metric !== 'string' || !METRIC_NAME_RE.test(r.metric)) throw new RuleError('metric: a metric name such as temperature');
  const group = typeof r.group === 'string' ? r.group.trim() : '';
  if (group && !GROUP_RE.test(group)) throw new RuleError('group: empty (whole fleet) or key=value, e.g. site=north');
  if (!OPS.includes(r.op as AlarmOp)) throw new RuleError(`op: one of ${OPS.join(' ')}`);
  const threshold = typeof r.threshold === 'number' ? r.threshold : Number(r.threshold);
  if (!Number.isFinite(threshold)) throw new RuleError('threshold: a finite number');
  const forS = r.forS === undefined ? 0 : typeof r.forS === 'number' ? r.forS : Number(r.forS);
  if (!Number.isInteger(forS) || forS < 0 || forS > 86_400) throw new RuleError('forS: whole seconds, 0 to 86400');
  return { id: id ?? (typeof r.id === 'string' && /^[A-Za-z0-9_-]{1,32}$/.test(r.id) ? r.id : randomBytes(6).toString('base64url')), name, metric: r.metric, group, op: r.op as AlarmOp, threshold, forS };
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

  constructor(file: string | null) {
    this.#file = file;
    if (file && existsSync(file)) {
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(file, 'utf8'));
      } catch (err) {
        throw new HubError('HUB_ERR_CONFIG', `HUB_ALARM_RULES_FILE=${file}: not readable JSON`, { cause: err });
      }
      const list = (raw as { rules?: unknown }).rules;
      if (!Array.isArray(list)) throw new HubError('HUB_ERR_CONFIG', `HUB_ALARM_RULES_FILE=${file}: expected {"rules": [...]}`);
      try {
        this.#rules = list.map((r) => parseRule(r));
      } catch (err) {
        throw new HubError('HUB_ERR_CONFIG', `HUB_ALARM_RULES_FILE=${file}: ${(err as Error).message}`);
      }
    }
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
      if (this.#file) await writeJsonAtomic(this.#file, { rules: next });
      this.#rules = next;
    });
    this.#changes = run.catch(() => undefined);
    return run;
  }
}
