// device-sim/: runs a scenario's plan (scenario.ts) on a Fleet, phase after
// phase, on the wall clock from a start time every process of a run shares
// (so that a fleet split over --processes changes phase together), and
// measures each phase: its own HDR histograms of connect, first-ack,
// send -> ack and reading -> ack latency, counters, and per second the
// sessions admitted, the refusals, the devices connected. A reconnect storm
// also measures the time until every device in use was back.
// What needs a process of its own (a hub restart, a database outage: shell
// commands) runs in one place only: `controlsProcesses` says where.
// Imports: node, and this package's fleet, scenario and stats.
import { spawn } from 'node:child_process';
import type { Fleet } from './fleet.ts';
import type { ManagedProcess } from './managed-process.ts';
import type { Phase, Plan } from './scenario.ts';
import { LatencyHistogram, addCounters, emptyCounters, errorCount, type SimCounters } from './stats.ts';

/** How often the runner looks at the plan and the fleet. */
export const RUNNER_TICK_MS = 250;

/** Phase kinds this version runs, and why the others are refused (before anything starts). */
export function unsupported(plan: Plan, managed: { hub: boolean; database: boolean } = { hub: false, database: false }): string[] {
  const out: string[] = [];
  for (const p of plan.phases) {
    if (p.kind === 'bad-actors') out.push(`${p.name}: bad-actors phases are not supported yet; use --bad-actors F for the whole run`);
    if (p.kind === 'hub-restart' && !p.command && !managed.hub) {
      out.push(`${p.name}: give the run --hub-command CMD (the tool starts the hub and restarts it), or the phase a command (e.g. command: "systemctl restart telemetry-hub")`);
    }
    if (p.kind === 'influx-outage' && !(p.stopCommand && p.startCommand) && !managed.database) {
      out.push(`${p.name}: give the run --influx-command CMD (the tool starts the database, stops and starts it), or the phase stopCommand and startCommand`);
    }
  }
  return out;
}

/** What a phase measured, in one process (merge() adds processes up). */
export interface PhaseResult {
  name: string;
  kind: Phase['kind'];
  startMs: number;
  durationMs: number;
  counters: SimCounters;
  /** Encoded LatencyHistograms (IPC-safe): send -> ack, connect, first ack, reading -> ack. */
  latency: { ack: string; connect: string; firstAck: string; readingAck: string };
  /** Per whole second of the phase: sessions reaching Welcome, HTTP refusals (429/503, each with Retry-After), devices connected at its end. */
  perSecond: { sessions: number[]; refusals: number[]; connected: number[] };
  /** Devices in use at the phase's end. */
  active: number;
  /** reconnect-storm: ms from the storm until every device it dropped was connected again (in this phase or a later one); null: not before the plan ended. */
  allBackMs: number | null;
  /** Commands run (hub restart, database outage) with their exit codes. */
  commands: { command: string; atMs: number; exitCode: number | null }[];
}

interface Marks {
  counters: SimCounters;
  ack: LatencyHistogram;
  connect: LatencyHistogram;
  firstAck: LatencyHistogram;
  readingAck: LatencyHistogram;
}

function marks(fleet: Fleet): Marks {
  return {
    counters: fleet.counters(), ack: fleet.latency.copy(), connect: fleet.timings.connect.copy(),
    firstAck: fleet.timings.firstAck.copy(), readingAck: fleet.timings.readingAck.copy(),
  };
}

function subtractCounters(a: SimCounters, b: SimCounters): SimCounters {
  const out = emptyCounters();
  for (const k of Object.keys(out) as (keyof SimCounters)[]) {
    const va = a[k], vb = b[k];
    if (typeof va === 'number' && typeof vb === 'number') (out as unknown as Record<string, number>)[k] = va - vb;
  }
  for (const rk of ['closes', 'notices'] as const) {
    const rec: Record<string, number> = {};
    for (const [key, v] of Object.entries(a[rk])) {
      const d = v - (b[rk][key] ?? 0);
      if (d) rec[key] = d;
    }
    out[rk] = rec;
  }
  return out;
}

const refusals = (c: SimCounters): number => (c.closes['http-503'] ?? 0) + (c.closes['http-429'] ?? 0);

export interface RunnerOptions {
  /** Wall-clock ms (Date.now()) at which the plan starts, the same in every process of the run. */
  t0: number;
  /** Whether this process runs the plan's shell commands (one process of a run does). */
  controlsProcesses: boolean;
  random?: () => number;
  now?: () => number;
  /** Told each phase as it starts (the live display). */
  onPhase?: (p: Phase, index: number) => void;
  /** A command's output line, for the log. */
  log?: (line: string) => void;
  /** The hub and the database the tool started (--hub-command, --influx-command), for phases without commands of their own. */
  hub?: ManagedProcess;
  database?: ManagedProcess;
}

/**
 * Drives the fleet through the plan. The fleet must have been built with
 * autoStart: false and at least plan.maxDevices devices. Resolves with one
 * result per phase once the plan is over (or stop() was called).
 */
export class ScenarioRunner {
  readonly #fleet: Fleet;
  readonly #plan: Plan;
  readonly #o: RunnerOptions;
  readonly #random: () => number;
  readonly #now: () => number;
  readonly #results: PhaseResult[] = [];
  #index = -1;
  #phaseMarks: Marks | null = null;
  #second = { at: 0, sessions: 0, refusals: 0 };
  #current: PhaseResult | null = null;
  /** The last reconnect storm until every device it dropped is back (measured into later phases too). */
  #storm: { at: number; devices: { stopped: boolean; connected: boolean }[]; result: PhaseResult } | null = null;
  #timer: NodeJS.Timeout | null = null;
  #pending: NodeJS.Timeout[] = [];
  /** What the current phase undoes when it ends (a clock-skew phase's clocks). */
  #onEnd: (() => void) | null = null;
  #done: (results: PhaseResult[]) => void = () => {};
  readonly done: Promise<PhaseResult[]>;

  constructor(fleet: Fleet, plan: Plan, o: RunnerOptions) {
    this.#fleet = fleet;
    this.#plan = plan;
    this.#o = o;
    this.#random = o.random ?? Math.random;
    this.#now = o.now ?? Date.now;
    this.done = new Promise((resolve) => { this.#done = resolve; });
    if (fleet.devices.length < plan.maxDevices) throw new RangeError(`scenario: the plan uses ${plan.maxDevices} devices, the fleet has ${fleet.devices.length}`);
  }

  /** The phase running now, and its index; null before the start and after the end. */
  get phase(): { phase: Phase; index: number } | null {
    return this.#index >= 0 && this.#index < this.#plan.phases.length ? { phase: this.#plan.phases[this.#index]!, index: this.#index } : null;
  }

  start(): void {
    const wait = Math.max(0, this.#o.t0 - this.#now());
    this.#timer = setTimeout(() => {
      this.#timer = setInterval(() => this.#tick(), RUNNER_TICK_MS);
      this.#tick();
    }, wait);
  }

  /** Ends the current phase now (its result covers what ran of it) and the plan. */
  stop(): void {
    if (this.#index >= this.#plan.phases.length) return;
    this.#endPhase();
    this.#index = this.#plan.phases.length;
    this.#finish();
  }

  #finish(): void {
    if (this.#timer) { clearInterval(this.#timer); clearTimeout(this.#timer); }
    this.#timer = null;
    for (const t of this.#pending) clearTimeout(t);
    this.#pending = [];
    this.#done(this.#results);
  }

  #tick(): void {
    const elapsed = this.#now() - this.#o.t0;
    const phases = this.#plan.phases;
    let i = this.#index < 0 ? 0 : this.#index;
    while (i < phases.length && elapsed >= phases[i]!.startMs + phases[i]!.durationMs) i++;
    if (i !== this.#index) {
      if (this.#index >= 0) this.#endPhase();
      // Phases skipped whole (a stalled event loop) still start and end, so each has a result.
      for (let k = Math.max(this.#index + 1, 0); k < i; k++) { this.#startPhase(k); this.#endPhase(); }
      if (i >= phases.length) { this.#index = phases.length; this.#finish(); return; }
      this.#startPhase(i);
    }
    this.#during(phases[i]!, elapsed - phases[i]!.startMs);
  }

  #startPhase(i: number): void {
    const p = this.#plan.phases[i]!;
    this.#index = i;
    this.#phaseMarks = marks(this.#fleet);
    const c = this.#phaseMarks.counters;
    this.#second = { at: this.#now(), sessions: c.sessions, refusals: refusals(c) };
    this.#current = {
      name: p.name, kind: p.kind, startMs: p.startMs, durationMs: p.durationMs, counters: emptyCounters(),
      latency: { ack: '', connect: '', firstAck: '', readingAck: '' }, perSecond: { sessions: [], refusals: [], connected: [] },
      active: 0, allBackMs: null, commands: [],
    };
    this.#o.onPhase?.(p, i);
    const fleet = this.#fleet;
    switch (p.kind) {
      case 'ramp':
        fleet.setRates(p.from.rate, p.batchMs);
        fleet.setActive(p.from.devices);
        break;
      case 'burst':
        fleet.setRates(p.rate * p.factor, p.batchMs);
        fleet.setActive(p.devices);
        break;
      case 'reconnect-storm': {
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
        const inUse = fleet.devices.slice(0, fleet.active);
        this.#storm = { at: this.#now(), devices: inUse, result: this.#current };
        if (p.returnWithinMs > 0) {
          for (const d of inUse) d.setOffline(true);
          for (const d of inUse) this.#later(this.#random() * p.returnWithinMs, () => d.setOffline(false));
        } else {
          for (const d of inUse) if (p.how === 'close') d.closeLink(); else d.injectDrop();
        }
        break;
      }
      case 'flaky-network': {
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
        // Half-open links: the chosen devices' links stop answering now; the hub's idle timeout or their ack timeout ends each.
        if (p.halfOpenShare > 0) for (const d of fleet.devices.slice(0, fleet.active)) if (this.#random() < p.halfOpenShare) d.freezeLink();
        break;
      }
      case 'clock-skew': {
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
        // The share's clocks go wrong for the phase, and are set right (an NTP sync) when it ends.
        const skewed = fleet.devices.slice(0, fleet.active).filter(() => this.#random() < p.share);
        for (const d of skewed) d.setClock(p.offsetMs, p.driftPpm);
        this.#onEnd = () => { for (const d of skewed) d.setClock(0, 0); };
        break;
      }
      case 'offline-burst': {
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
        const inUse = fleet.devices.slice(0, fleet.active);
        const away = inUse.filter(() => this.#random() < p.share);
        for (const d of away) d.setOffline(true);
        this.#later(p.offlineMs, () => { for (const d of away) d.setOffline(false); });
        break;
      }
      case 'hub-restart':
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
        if (this.#o.controlsProcesses && p.command) {
          const command = p.command;
          this.#later(p.atMs, () => this.#run(command, p.atMs));
        } else if (this.#o.controlsProcesses && this.#o.hub) {
          const hub = this.#o.hub;
          this.#later(p.atMs, () => this.#managed(hub, `hub ${p.signal}`, p.atMs, (m) => m.restart(p.signal)));
        }
        break;
      case 'influx-outage':
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
        if (this.#o.controlsProcesses && p.stopCommand && p.startCommand) {
          const { stopCommand, startCommand } = p;
          this.#later(p.atMs, () => this.#run(stopCommand, p.atMs));
          this.#later(p.atMs + p.downMs, () => this.#run(startCommand, p.atMs + p.downMs));
        } else if (this.#o.controlsProcesses && this.#o.database) {
          const db = this.#o.database;
          this.#later(p.atMs, () => this.#managed(db, 'database stopped', p.atMs, (m) => m.stop('SIGTERM')));
          this.#later(p.atMs + p.downMs, () => this.#managed(db, 'database started', p.atMs + p.downMs, (m) => m.start()));
        }
        break;
      default:
        fleet.setRates(p.rate, p.batchMs);
        fleet.setActive(p.devices);
    }
  }

  /** Every tick of a phase: ramps move, flaky links drop, the per-second series and a storm's return are sampled. */
  #during(p: Phase, intoMs: number): void {
    const fleet = this.#fleet;
    if (p.kind === 'ramp') {
      const f = Math.min(1, intoMs / p.durationMs);
      fleet.setRates(p.from.rate + (p.to.rate - p.from.rate) * f, p.batchMs);
      fleet.setActive(p.from.devices + (p.to.devices - p.from.devices) * f);
    } else if (p.kind === 'flaky-network' && p.disconnectsPerDevicePerMin > 0) {
      const expected = (p.disconnectsPerDevicePerMin * fleet.active * RUNNER_TICK_MS) / 60_000;
      let k = Math.floor(expected) + (this.#random() < expected % 1 ? 1 : 0);
      while (k-- > 0) fleet.devices[Math.floor(this.#random() * fleet.active)]!.injectDrop();
    }
    const storm = this.#storm;
    if (storm && this.#now() - storm.at >= RUNNER_TICK_MS && storm.devices.every((d) => d.connected || d.stopped)) {
      storm.result.allBackMs = this.#now() - storm.at;
      this.#storm = null;
    }
    const now = this.#now();
    if (now - this.#second.at >= 1000) this.#sampleSecond(now);
  }

  #sampleSecond(now: number): void {
    const cur = this.#current;
    if (!cur) return;
    const c = this.#fleet.counters();
    cur.perSecond.sessions.push(c.sessions - this.#second.sessions);
    cur.perSecond.refusals.push(refusals(c) - this.#second.refusals);
    cur.perSecond.connected.push(this.#fleet.connected);
    this.#second = { at: now, sessions: c.sessions, refusals: refusals(c) };
  }

  #endPhase(): void {
    this.#onEnd?.();
    this.#onEnd = null;
    const cur = this.#current;
    const m = this.#phaseMarks;
    if (!cur || !m) return;
    const fleet = this.#fleet;
    cur.counters = subtractCounters(fleet.counters(), m.counters);
    cur.latency = {
      ack: fleet.latency.since(m.ack).encode(), connect: fleet.timings.connect.since(m.connect).encode(),
      firstAck: fleet.timings.firstAck.since(m.firstAck).encode(), readingAck: fleet.timings.readingAck.since(m.readingAck).encode(),
    };
    cur.active = fleet.active;
    this.#results.push(cur);
    this.#current = null;
    this.#phaseMarks = null;
  }

  #later(ms: number, f: () => void): void {
    const t = setTimeout(() => { this.#pending = this.#pending.filter((x) => x !== t); f(); }, ms);
    this.#pending.push(t);
  }

  /** An action on a process the tool manages, recorded like a command (exit 0: done, 1: it failed). */
  #managed(m: ManagedProcess, what: string, atMs: number, action: (m: ManagedProcess) => Promise<unknown>): void {
    const record = { command: what, atMs, exitCode: null as number | null };
    this.#current?.commands.push(record);
    void action(m).then(() => { record.exitCode = 0; }, (err: unknown) => { record.exitCode = 1; this.#o.log?.(`scenario: ${what} failed: ${(err as Error).message}`); });
  }

  #run(command: string, atMs: number): void {
    const record = { command, atMs, exitCode: null as number | null };
    this.#current?.commands.push(record);
    const log = this.#o.log ?? (() => {});
    log(`scenario: running ${JSON.stringify(command)}`);
    const child = spawn(command, { shell: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = (b: Buffer) => { for (const l of b.toString().split('\n')) if (l.trim()) log(`  ${l.slice(0, 500)}`); };
    child.stdout.on('data', lines);
    child.stderr.on('data', lines);
    child.on('error', (err) => log(`scenario: ${JSON.stringify(command)} failed to start: ${err.message}`));
    child.on('exit', (code) => { record.exitCode = code; log(`scenario: ${JSON.stringify(command)} exited ${code}`); });
  }
}

/** One phase's results from every process, added up: counters and histograms exactly, per-second series by second, a storm's return as the slowest process's. */
export function mergePhaseResults(parts: PhaseResult[][]): PhaseResult[] {
  const first = parts[0] ?? [];
  return first.map((p, i) => {
    const same = parts.map((r) => r[i]).filter((r): r is PhaseResult => !!r && r.name === p.name);
    const counters = emptyCounters();
    for (const r of same) addCounters(counters, r.counters);
    const hist = (k: keyof PhaseResult['latency']) => LatencyHistogram.merged(same.filter((r) => r.latency[k]).map((r) => LatencyHistogram.decode(r.latency[k]))).encode();
    const series = (k: keyof PhaseResult['perSecond']) => {
      const len = Math.max(...same.map((r) => r.perSecond[k].length));
      return Array.from({ length: len }, (_, s) => same.reduce((a, r) => a + (r.perSecond[k][s] ?? 0), 0));
    };
    const backs = same.map((r) => r.allBackMs);
    return {
      ...p, counters, latency: { ack: hist('ack'), connect: hist('connect'), firstAck: hist('firstAck'), readingAck: hist('readingAck') },
      perSecond: { sessions: series('sessions'), refusals: series('refusals'), connected: series('connected') },
      active: same.reduce((a, r) => a + r.active, 0),
      allBackMs: backs.some((b) => b === null) ? null : Math.max(...(backs as number[])),
      commands: same.flatMap((r) => r.commands),
    };
  });
}

export interface PhaseReport {
  name: string;
  kind: Phase['kind'];
  startS: number;
  seconds: number;
  devices: number;
  batchesSent: number;
  batchesAcked: number;
  readingsAcked: number;
  readingsPerSec: number;
  errors: number;
  reconnects: number;
  sessions: number;
  refusals: number;
  /** Readings the hub reported correcting or dropping for clock skew (Ack reports) in the phase. */
  hubSkew: number;
  latencyMs: Record<'connect' | 'firstAck' | 'ack' | 'readingAck', { p50: number; p95: number; p99: number; p999: number; max: number; samples: number }>;
  perSecond: PhaseResult['perSecond'];
  allBackMs: number | null;
  commands: PhaseResult['commands'];
}

export function phaseReport(r: PhaseResult): PhaseReport {
  const pct = (enc: string) => {
    const h = enc ? LatencyHistogram.decode(enc) : new LatencyHistogram();
    return { p50: h.percentile(50), p95: h.percentile(95), p99: h.percentile(99), p999: h.percentile(99.9), max: h.maxMs, samples: h.count };
  };
  const c = r.counters;
  return {
    name: r.name, kind: r.kind, startS: r.startMs / 1000, seconds: r.durationMs / 1000, devices: r.active,
    batchesSent: c.batchesSent, batchesAcked: c.batchesAcked, readingsAcked: c.readingsAcked, readingsPerSec: c.readingsAcked / (r.durationMs / 1000),
    errors: errorCount(c), reconnects: c.reconnects, sessions: c.sessions, refusals: refusals(c), hubSkew: c.hubSkewCorrected + c.hubSkewDropped,
    latencyMs: { connect: pct(r.latency.connect), firstAck: pct(r.latency.firstAck), ack: pct(r.latency.ack), readingAck: pct(r.latency.readingAck) },
    perSecond: r.perSecond, allBackMs: r.allBackMs, commands: r.commands,
  };
}

const n0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const ms = (v: number) => (!Number.isFinite(v) ? '-' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);

export function formatPhaseReports(reports: PhaseReport[]): string {
  const lines: string[] = [];
  for (const r of reports) {
    lines.push(`  phase ${r.name} (${r.kind}) at ${r.startS.toFixed(0)} s for ${r.seconds.toFixed(0)} s: ${n0(r.devices)} devices, ${n0(r.readingsPerSec)} readings/s acked, `
      + `${n0(r.sessions)} sessions, ${n0(r.reconnects)} reconnects, ${n0(r.refusals)} refusals, ${n0(r.errors)} errors${r.hubSkew ? `, ${n0(r.hubSkew)} readings the hub corrected or dropped for clock skew` : ''}`);
    for (const [k, label] of [['connect', 'connect'], ['firstAck', 'first ack'], ['ack', 'send -> ack'], ['readingAck', 'reading -> ack']] as const) {
      const l = r.latencyMs[k];
      if (!l.samples) continue;
      lines.push(`    ${label.padEnd(15)} p50 ${ms(l.p50)}, p95 ${ms(l.p95)}, p99 ${ms(l.p99)}, p99.9 ${ms(l.p999)}, max ${ms(l.max)} (${n0(l.samples)})`);
    }
    if (r.kind === 'reconnect-storm') {
      lines.push(`    all back        ${r.allBackMs === null ? 'NOT within the phase' : `after ${ms(r.allBackMs)}`}`);
      lines.push(`    sessions/s      ${r.perSecond.sessions.map(n0).join(' ')}`);
      lines.push(`    refusals/s      ${r.perSecond.refusals.map(n0).join(' ')} (429/503 with Retry-After)`);
    }
    for (const c of r.commands) lines.push(`    command at ${(c.atMs / 1000).toFixed(1)} s: ${c.command} -> exit ${c.exitCode ?? 'still running'}`);
  }
  return lines.join('\n');
}
