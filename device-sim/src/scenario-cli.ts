// device-sim/: the simulator with a scenario (`--scenario NAME` or
// `--config FILE`): the fleet spread over processes (at most
// DEVICES_PER_PROCESS each: one process may hold ~20,000 open files) and,
// on loopback, over source addresses (the hub's HUB_MAX_CONN_PER_ADDRESS),
// the plan run phase by phase in every process from one shared start time,
// the live display, a drain at the end, the report (each phase, loss by
// device) and --slo turning it into the exit code.
// Imports: node, and this package's cli-flags, display, fleet, scenario, scenario-runner, slo, stats and tokens.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { UsageError, fromInvocation, numberFlag, parseConnection, parseFlags } from './cli-flags.ts';
import { LiveDisplay, type DisplaySnapshot } from './display.ts';
import { Fleet } from './fleet.ts';
import { SCENARIOS, ScenarioError, builtInPlan, loadScenarioFile, type Plan } from './scenario.ts';
import { ScenarioRunner, formatPhaseReports, mergePhaseResults, phaseReport, unsupported, type PhaseReport, type PhaseResult } from './scenario-runner.ts';
import { SloError, evaluateSlo, formatSloReport, parseSlo, type SloActuals, type SloResult, type SloTerm } from './slo.ts';
import { LatencyHistogram, addCounters, emptyCounters, errorCount, type SimCounters } from './stats.ts';
import type { DeviceCredentials } from './tokens.ts';
import { InfluxVerifyError, verifyStored, type InfluxTarget, type VerifyResult } from './verify-influx.ts';
import { ManagedProcess } from './managed-process.ts';

/** Devices one process runs at most (leaves room under the 20,000 open files for the runtime). */
export const DEVICES_PER_PROCESS = 19_000;
/** The hub's default HUB_MAX_CONN_PER_ADDRESS: on loopback the fleet is spread so that no address carries more. */
export const DEVICES_PER_ADDRESS = 1_000;
/** How long after the plan devices get to deliver what they hold. */
export const DEFAULT_DRAIN_MS = 15_000;
/** --verify-influx: how long the database's counts get to match what was acked (the sink may still be shipping). */
export const DEFAULT_SETTLE_MS = 60_000;

export interface ScenarioConfig {
  url: string;
  devices: DeviceCredentials[];
  plan: Plan;
  slo: SloTerm[] | null;
  batchMs: number;
  badActors: number;
  auth: 'header' | 'subprotocol';
  caFile?: string;
  sourceAddresses?: string[];
  processes: number;
  /** --v1: devices without features (no Hello.features, no ConfigReport, no Invoke). Absent: false. */
  v1?: boolean;
  drainMs: number;
  /** --verify-influx: the database to count stored readings in, the device id prefix, the settle timeout. */
  verify: { target: InfluxTarget; prefix: string; settleMs: number } | null;
  /** --hub-command / --influx-command: processes the tool starts before the run, restarts for hub-restart and influx-outage phases, and ends after it. */
  hubCommand: { command: string; readyUrl: string } | null;
  influxCommand: { command: string; readyUrl: string } | null;
  json: boolean;
  quiet: boolean;
  /** Wall-clock start of the plan, shared by every process (set by the top process). */
  t0?: number;
}

/** Processes and source addresses for a fleet when the user gave none: what one process and one address can carry. */
export function autoScale(o: { devices: number; url: string; processes?: number; sourceAddresses?: string[] }): { processes: number; sourceAddresses?: string[]; notes: string[] } {
  const notes: string[] = [];
  const processes = o.processes ?? Math.max(1, Math.ceil(o.devices / DEVICES_PER_PROCESS));
  if (o.processes === undefined && processes > 1) notes.push(`${o.devices} devices: ${processes} processes (at most ${DEVICES_PER_PROCESS} each: one process may hold ~20,000 open files)`);
  let sourceAddresses = o.sourceAddresses;
  const host = new URL(o.url).hostname;
  const loopback = host === 'localhost' || host.startsWith('127.');
  if (!sourceAddresses && loopback && o.devices > DEVICES_PER_ADDRESS) {
    const n = Math.min(250, Math.ceil(o.devices / DEVICES_PER_ADDRESS));
    sourceAddresses = Array.from({ length: n }, (_, i) => `127.0.0.${i + 2}`);
    notes.push(`${o.devices} devices on loopback: source addresses 127.0.0.2-127.0.0.${n + 1} (${DEVICES_PER_ADDRESS} each, the hub's default HUB_MAX_CONN_PER_ADDRESS)`);
  }
  return { processes, sourceAddresses, notes };
}

/** The hub settings a plan needs beyond the defaults, in the hub's own key names. */
export function hubLimitAdvice(plan: Plan, o: { perAddress: number }): string[] {
  const out: string[] = [];
  if (plan.maxDevices > 100_000) out.push(`HUB_MAX_CONNECTIONS=${plan.maxDevices} or more (default 100,000): ${plan.maxDevices} devices at once`);
  if (plan.maxDevices > DEVICES_PER_PROCESS) {
    out.push(`an open-file limit (ulimit -n) above ${plan.maxDevices + 1000} for the hub process: one file per connection (the hub lowers HUB_MAX_CONNECTIONS to fit its limit and says so at startup)`);
  }
  if (o.perAddress > DEVICES_PER_ADDRESS) out.push(`HUB_MAX_CONN_PER_ADDRESS=${o.perAddress} or more (default 1,000): ${o.perAddress} devices per source address`);
  const storms = plan.phases.filter((p) => p.kind === 'reconnect-storm' || p.kind === 'hub-restart');
  const stormDevices = Math.max(0, ...storms.map((p) => p.devices));
  if (stormDevices > 1_000) {
    out.push(`HUB_ADMISSION_RATE / HUB_ADMISSION_BURST (default 500/s, burst 1,000): ${stormDevices} devices return at once; at the defaults the hub admits them over ~${Math.ceil((stormDevices - 1000) / 500)} s `
      + '(refusals with Retry-After, counted): raise them for a faster return, or keep them to test the admission control');
  }
  const maxRate = Math.max(...plan.phases.map((p) => (p.kind === 'burst' ? p.rate * p.factor : p.kind === 'ramp' ? Math.max(p.from.rate, p.to.rate) : p.rate)));
  const readingsPerS = maxRate * 4;
  if (readingsPerS > 1_000) out.push(`HUB_MAX_READINGS_PER_SEC=${Math.ceil(readingsPerS)} or more (default 1,000 per device): ${maxRate} readings/s per metric x 4 metrics`);
  return out;
}

// ---- one process ----------------------------------------------------------------

interface Totals { connected: number; inflight: number; pending: number; counters: SimCounters; active: number }

type ToParent =
  | { type: 'scenario-status'; status: Totals; ack: string; connect: string }
  | { type: 'scenario-result'; result: ProcessResult };

interface ProcessResult {
  phases: PhaseResult[];
  counters: SimCounters;
  latency: string;
  timings: { connect: string; firstAck: string; readingAck: string };
  pendingAtEnd: number;
  connectedAtEnd: number;
  /** Over the well-behaved devices (a bad actor's readings are meant to be refused). */
  loss: { readings: number; droppedByDevice: number };
  /** Per well-behaved device: readings acked that the hub did not report dropping (NaN, skew): what the database must hold. */
  expected: [string, number][];
  /** Ids of the bad actors (their readings are meant to be refused: not compared with the database). */
  badActorIds: string[];
  lossByDevice: DeviceLoss[];
  drained: boolean;
  cpuMicros: { user: number; system: number };
}

export interface DeviceLoss { id: string; generated: number; acked: number; held: number; droppedByDevice: number }

/** Readings generated and not acked, per well-behaved device (a bad actor's are meant to be refused): the total and the 20 worst. */
function deviceLosses(fleet: Fleet): { readings: number; droppedByDevice: number; worst: DeviceLoss[]; expected: [string, number][] } {
  const all: DeviceLoss[] = [];
  const expected: [string, number][] = [];
  let readings = 0;
  let droppedByDevice = 0;
  for (const d of fleet.devices) {
    if (d.behaviour !== 'good') continue;
    const c = d.counters;
    const missing = c.readingsGenerated - c.readingsAcked;
    droppedByDevice += c.readingsDropped;
    expected.push([d.id, c.readingsAcked - c.hubNonFiniteDropped - c.hubSkewDropped]);
    if (missing <= 0) continue;
    readings += missing;
    all.push({ id: d.id, generated: c.readingsGenerated, acked: c.readingsAcked, held: d.outboxSize, droppedByDevice: c.readingsDropped });
  }
  all.sort((a, b) => (b.generated - b.acked) - (a.generated - a.acked));
  return { readings, droppedByDevice, worst: all.slice(0, 20), expected };
}

async function drain(fleet: Fleet, ms: number): Promise<boolean> {
  fleet.stopSampling();
  // Devices taken offline by the plan come back to deliver what they hold.
  for (const d of fleet.devices) if (d.offline) d.setOffline(false);
  const end = Date.now() + ms;
  while (fleet.pending > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return fleet.pending === 0;
}

interface Managed { hub?: ManagedProcess; database?: ManagedProcess }

function runOne(cfg: ScenarioConfig, toParent: ((m: ToParent, cb?: () => void) => void) | null, onDone: (r: ProcessResult, fleet: Fleet) => void, managed: Managed = {}): { fleet: Fleet; runner: ScenarioRunner } {
  const cpu0 = process.cpuUsage();
  const fleet = new Fleet({
    url: cfg.url, devices: cfg.devices, rate: 0, batchIntervalMs: cfg.batchMs, badActors: cfg.badActors, authVia: cfg.auth,
    ca: cfg.caFile ? readFileSync(cfg.caFile) : undefined, sourceAddresses: cfg.sourceAddresses, autoStart: false, v1: cfg.v1 === true,
  });
  const runner = new ScenarioRunner(fleet, cfg.plan, {
    t0: cfg.t0 ?? Date.now(), controlsProcesses: toParent === null, ...managed,
    log: (l) => { if (!cfg.json) console.error(l); },
  });
  const status = toParent
    ? setInterval(() => toParent({ type: 'scenario-status', status: totals(fleet), ack: fleet.latency.encode(), connect: fleet.timings.connect.encode() }), 1000)
    : null;
  let finishing = false;
  const finish = async (): Promise<void> => {
    if (finishing) return;
    finishing = true;
    runner.stop();
    const phases = await runner.done;
    const drained = await drain(fleet, cfg.drainMs);
    if (status) clearInterval(status);
    const pendingAtEnd = fleet.pending;
    const connectedAtEnd = fleet.connected;
    const loss = deviceLosses(fleet);
    await fleet.stop();
    onDone({
      phases, counters: fleet.counters(), latency: fleet.latency.encode(),
      timings: { connect: fleet.timings.connect.encode(), firstAck: fleet.timings.firstAck.encode(), readingAck: fleet.timings.readingAck.encode() },
      pendingAtEnd, connectedAtEnd, loss: { readings: loss.readings, droppedByDevice: loss.droppedByDevice }, expected: loss.expected,
      badActorIds: fleet.devices.filter((d) => d.behaviour !== 'good').map((d) => d.id), lossByDevice: loss.worst, drained,
      cpuMicros: process.cpuUsage(cpu0),
    }, fleet);
  };
  void runner.done.then(() => finish());
  process.on('SIGINT', () => void finish());
  process.on('SIGTERM', () => void finish());
  if (toParent) process.once('disconnect', () => void finish());
  runner.start();
  return { fleet, runner };
}

function totals(fleet: Fleet): Totals {
  return { connected: fleet.connected, inflight: fleet.inflight, pending: fleet.pending, counters: fleet.counters(), active: fleet.active };
}

/** A --processes child: its slice of the fleet, the shared plan and start time. */
export function runScenarioChild(cfg: ScenarioConfig): void {
  if (!process.send) throw new Error('runScenarioChild: no IPC channel (a --processes child is forked by the simulator)');
  const send = process.send.bind(process) as (m: ToParent, cb?: () => void) => void;
  runOne(cfg, send, (result) => send({ type: 'scenario-result', result }, () => process.exit(0)));
}

// ---- the top process -------------------------------------------------------------

export interface ScenarioSummary {
  scenario: string;
  devices: number;
  processes: number;
  seconds: number;
  counters: SimCounters;
  errors: number;
  /**
   * Readings the well-behaved devices generated and never saw acked after
   * the drain: still held at the end (heldBatches), or dropped by a full
   * outbox (droppedByDevice, readings); the worst devices.
   */
  loss: { readings: number; heldBatches: number; droppedByDevice: number; byDevice: DeviceLoss[] };
  /** Readings stored more than once (--verify-influx); null without it. */
  dup: number | null;
  /** --verify-influx: what the database holds against what was acked, per device; null without it. */
  storage: (VerifyResult & { error?: string }) | null;
  drained: boolean;
  latencyMs: Record<'connect' | 'firstAck' | 'ack' | 'readingAck', { p50: number; p95: number; p99: number; p999: number; max: number; samples: number }>;
  phases: PhaseReport[];
  hubAdvice: string[];
  scaling: string[];
  slo: { pass: boolean; results: SloResult[] } | null;
  cpu: { userSeconds: number; systemSeconds: number };
}

const pct = (h: LatencyHistogram) => ({ p50: h.percentile(50), p95: h.percentile(95), p99: h.percentile(99), p999: h.percentile(99.9), max: h.maxMs, samples: h.count });

/** The figures --slo is evaluated against. */
export function sloActuals(s: ScenarioSummary): SloActuals {
  const a: SloActuals = {
    loss: s.loss.readings, errors: s.errors, reconnects: s.counters.reconnects,
    loss_ratio: s.counters.readingsGenerated > 0 ? s.loss.readings / s.counters.readingsGenerated : 0,
    readings_per_s: s.counters.readingsAcked / s.seconds, batches_per_s: s.counters.batchesAcked / s.seconds,
  };
  if (s.dup !== null) { a.dup = s.dup; a.dup_ratio = s.counters.readingsGenerated > 0 ? s.dup / s.counters.readingsGenerated : 0; }
  const map = { connect: 'connect', firstAck: 'first_ack', ack: 'ack', readingAck: 'reading_ack' } as const;
  for (const [k, name] of Object.entries(map) as [keyof typeof map, (typeof map)[keyof typeof map]][]) {
    const l = s.latencyMs[k];
    if (!l.samples) continue;
    a[`${name}_p50`] = l.p50; a[`${name}_p95`] = l.p95; a[`${name}_p99`] = l.p99; a[`${name}_p999`] = l.p999; a[`${name}_max`] = l.max;
  }
  return a;
}

function summarize(cfg: ScenarioConfig, parts: ProcessResult[], seconds: number, scaling: string[], hubAdvice: string[]): ScenarioSummary {
  const counters = emptyCounters();
  for (const p of parts) addCounters(counters, p.counters);
  const merged = (k: 'connect' | 'firstAck' | 'readingAck') => LatencyHistogram.merged(parts.map((p) => LatencyHistogram.decode(p.timings[k])));
  const ack = LatencyHistogram.merged(parts.map((p) => LatencyHistogram.decode(p.latency)));
  const byDevice = parts.flatMap((p) => p.lossByDevice).sort((a, b) => (b.generated - b.acked) - (a.generated - a.acked)).slice(0, 20);
  const s: ScenarioSummary = {
    scenario: cfg.plan.name, devices: cfg.devices.length, processes: parts.length, seconds, counters, errors: errorCount(counters),
    loss: {
      readings: parts.reduce((a, p) => a + p.loss.readings, 0), heldBatches: parts.reduce((a, p) => a + p.pendingAtEnd, 0),
      droppedByDevice: parts.reduce((a, p) => a + p.loss.droppedByDevice, 0), byDevice,
    },
    dup: null, storage: null, drained: parts.every((p) => p.drained),
    latencyMs: { connect: pct(merged('connect')), firstAck: pct(merged('firstAck')), ack: pct(ack), readingAck: pct(merged('readingAck')) },
    phases: mergePhaseResults(parts.map((p) => p.phases)).map(phaseReport), hubAdvice, scaling, slo: null,
    cpu: { userSeconds: parts.reduce((a, p) => a + p.cpuMicros.user, 0) / 1e6, systemSeconds: parts.reduce((a, p) => a + p.cpuMicros.system, 0) / 1e6 },
  };
  return s;
}

/** --verify-influx: counts the run's readings in the database (until they match or the settle timeout) into the summary: dup, and the missing ones into loss. */
async function verifyInto(cfg: ScenarioConfig, s: ScenarioSummary, parts: ProcessResult[]): Promise<void> {
  if (!cfg.verify) return;
  const expected = new Map<string, number>();
  for (const p of parts) for (const [id, n] of p.expected) expected.set(id, n);
  const t0 = cfg.t0 ?? Date.now();
  try {
    // Readings carry device time: the run's window, a minute either side for batching, more for the clocks a clock-skew phase sets wrong.
    const skewMs = Math.max(0, ...cfg.plan.phases.map((p) => (p.kind === 'clock-skew' ? Math.abs(p.offsetMs) + (Math.abs(p.driftPpm) * p.durationMs) / 1e6 : 0)));
    const ignore = new Set(parts.flatMap((p) => p.badActorIds));
    const r = await verifyStored(cfg.verify.target, expected, {
      prefix: cfg.verify.prefix, fromMs: t0 - 60_000 - skewMs, toMs: Date.now() + 60_000 + skewMs, settleMs: cfg.verify.settleMs, ignore,
    });
    s.storage = r;
    s.dup = r.doubled;
    s.loss.readings += r.missing;
  } catch (err) {
    if (!(err instanceof InfluxVerifyError)) throw err;
    s.storage = { devices: expected.size, expected: 0, stored: 0, missing: NaN, doubled: NaN, worst: [], unexpectedDevices: 0, settledMs: 0, settled: false, queries: 0, error: err.message };
  }
}

const n0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

export function formatScenarioSummary(s: ScenarioSummary): string {
  const c = s.counters;
  const ms = (v: number) => (!Number.isFinite(v) ? '-' : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);
  const lines = [
    '',
    `scenario ${s.scenario}: ${n0(s.devices)} devices in ${s.processes} process${s.processes > 1 ? 'es' : ''}, ${s.seconds.toFixed(1)} s (${s.drained ? 'drained' : 'NOT drained'})`,
    ...s.scaling.map((l) => `  scaling   ${l}`),
    `  readings  generated ${n0(c.readingsGenerated)}, acked ${n0(c.readingsAcked)}, LOST ${n0(s.loss.readings)} (batches held at the end ${n0(s.loss.heldBatches)}, readings dropped by full outboxes ${n0(s.loss.droppedByDevice)}); `
      + `duplicates ${s.dup === null ? 'not measured (needs the database: --verify-influx)' : n0(s.dup)}`,
    `  batches   sent ${n0(c.batchesSent)} (resent ${n0(c.batchesResent)}), acked ${n0(c.batchesAcked)}; sessions ${n0(c.sessions)}, reconnects ${n0(c.reconnects)}`,
    `  closes    ${Object.entries(c.closes).sort().map(([k, v]) => `${k}: ${n0(v)}`).join(', ') || 'none'} (${n0(s.errors)} errors)`,
  ];
  for (const [k, label] of [['connect', 'connect'], ['firstAck', 'first ack'], ['ack', 'send -> ack'], ['readingAck', 'reading -> ack']] as const) {
    const l = s.latencyMs[k];
    lines.push(`  ${label.padEnd(15)} p50 ${ms(l.p50)}, p95 ${ms(l.p95)}, p99 ${ms(l.p99)}, p99.9 ${ms(l.p999)}, max ${ms(l.max)} (${n0(l.samples)})`);
  }
  if (s.storage) {
    const v = s.storage;
    if (v.error) lines.push(`  storage   NOT VERIFIED: ${v.error}`);
    else {
      lines.push(`  storage   InfluxDB holds ${n0(v.stored)} of the ${n0(v.expected)} readings acked for ${n0(v.devices)} devices: MISSING ${n0(v.missing)}, DOUBLED ${n0(v.doubled)}`
        + ` (${v.settled ? `matched after ${(v.settledMs / 1000).toFixed(1)} s` : `still off after ${(v.settledMs / 1000).toFixed(1)} s`}, ${v.queries} queries)`);
      for (const d of v.worst.slice(0, 10)) lines.push(`  stored    ${d.id}: acked ${n0(d.expected)}, in InfluxDB ${n0(d.stored)}`);
    }
  }
  lines.push(formatPhaseReports(s.phases));
  for (const d of s.loss.byDevice.slice(0, 10)) lines.push(`  lost      ${d.id}: generated ${n0(d.generated)}, acked ${n0(d.acked)}, held ${n0(d.held)}, dropped by the device ${n0(d.droppedByDevice)}`);
  for (const a of s.hubAdvice) lines.push(`  hub limit ${a}`);
  lines.push(`  simulator CPU ${s.cpu.userSeconds.toFixed(2)} s user + ${s.cpu.systemSeconds.toFixed(2)} s system`);
  if (s.slo) lines.push(formatSloReport(s.slo));
  return lines.join('\n');
}

function snapshot(cfg: ScenarioConfig, startedAt: number, t: Totals, prev: { at: number; c: SimCounters } | null, ack: LatencyHistogram, connect: LatencyHistogram, phase: { name: string; kind: string; index: number; startMs: number; durationMs: number } | null): DisplaySnapshot {
  const now = Date.now();
  const dt = prev ? (now - prev.at) / 1000 : 1;
  const pc = prev?.c ?? emptyCounters();
  return {
    elapsedMs: now - startedAt,
    phase: phase ? { name: phase.name, kind: phase.kind, index: phase.index, count: cfg.plan.phases.length, elapsedMs: now - (cfg.t0 ?? startedAt) - phase.startMs, durationMs: phase.durationMs } : null,
    devices: { target: t.active, connected: t.connected },
    batchesPerS: (t.counters.batchesAcked - pc.batchesAcked) / dt, readingsPerS: (t.counters.readingsAcked - pc.readingsAcked) / dt,
    inflight: t.inflight, reconnects: t.counters.reconnects, errors: errorCount(t.counters), lost: t.counters.readingsDropped,
    latency: { ackP50Ms: ack.percentile(50), ackP99Ms: ack.percentile(99), connectP99Ms: connect.percentile(99) },
  };
}

function phaseAt(cfg: ScenarioConfig): { name: string; kind: string; index: number; startMs: number; durationMs: number } | null {
  const into = Date.now() - (cfg.t0 ?? Date.now());
  const i = cfg.plan.phases.findIndex((p) => into >= p.startMs && into < p.startMs + p.durationMs);
  const p = cfg.plan.phases[i];
  return p ? { name: p.name, kind: p.kind, index: i, startMs: p.startMs, durationMs: p.durationMs } : null;
}

async function finishTop(cfg: ScenarioConfig, display: LiveDisplay | null, parts: ProcessResult[], startedAt: number, scaling: string[], advice: string[], complete: boolean, managed: Managed): Promise<void> {
  display?.finish();
  const s = summarize(cfg, parts, (Date.now() - startedAt) / 1000, scaling, advice);
  if (cfg.verify && !cfg.json) console.error(`sim: counting the run's readings in InfluxDB (${cfg.verify.target.url}, ${cfg.verify.target.db}; up to ${cfg.verify.settleMs / 1000} s for the sink to catch up)`);
  await verifyInto(cfg, s, parts);
  if (cfg.slo) s.slo = evaluateSlo(cfg.slo, sloActuals(s));
  const text = cfg.json ? JSON.stringify(s) : formatScenarioSummary(s);
  const code = !complete ? 1 : s.slo && !s.slo.pass ? 1 : 0;
  // The hub kept running through the check (its sink was still shipping); now what the tool started ends.
  await managed.hub?.stop('SIGTERM');
  await managed.database?.stop('SIGTERM');
  process.stdout.write(text + '\n', () => process.exit(code));
}

/** Starts what --influx-command and --hub-command name (the database first: the hub ships to it). */
async function startManaged(cfg: ScenarioConfig): Promise<Managed> {
  const log = (l: string) => { if (!cfg.json) console.error(l); };
  const m: Managed = {};
  if (cfg.influxCommand) {
    m.database = new ManagedProcess({ name: 'database', command: cfg.influxCommand.command, readyUrl: cfg.influxCommand.readyUrl, log });
    await m.database.start();
  }
  if (cfg.hubCommand) {
    m.hub = new ManagedProcess({ name: 'hub', command: cfg.hubCommand.command, readyUrl: cfg.hubCommand.readyUrl, log });
    await m.hub.start();
  }
  const stop = () => { void m.hub?.stop('SIGKILL', 0); void m.database?.stop('SIGKILL', 0); };
  process.once('exit', stop);
  return m;
}

/** The top process of a scenario run: one fleet here, or --processes children and their merged reports. */
export async function runScenario(cfg: ScenarioConfig, entry: string, scaling: string[], advice: string[]): Promise<void> {
  const managed = await startManaged(cfg);
  const startedAt = Date.now();
  const display = cfg.json || cfg.quiet ? null : new LiveDisplay({ stream: process.stderr });
  if (!cfg.json) {
    for (const l of scaling) console.error(`sim: ${l}`);
    for (const a of advice) console.error(`sim: the hub needs ${a}`);
  }
  if (cfg.processes <= 1) {
    const t0 = Date.now();
    const one = { ...cfg, t0 };
    let prev: { at: number; c: SimCounters } | null = null;
    let tick: NodeJS.Timeout | null = null;
    const { fleet } = runOne(one, null, (result) => {
      if (tick) clearInterval(tick);
      void finishTop(one, display, [result], startedAt, scaling, advice, true, managed);
    }, managed);
    if (display) {
      tick = setInterval(() => {
        const t = totals(fleet);
        display.update(snapshot(one, startedAt, t, prev, fleet.latency, fleet.timings.connect, phaseAt(one)));
        prev = { at: Date.now(), c: t.counters };
      }, 1000);
    }
    return;
  }
  // Children get their slices and one start time a little ahead, so that they all start phase 1 together.
  const t0 = Date.now() + 2000;
  const shared = { ...cfg, t0 };
  const per = Math.ceil(cfg.devices.length / cfg.processes);
  const children: ChildProcess[] = [];
  const statuses = new Map<number, { t: Totals; ack: string; connect: string }>();
  const results: Promise<ProcessResult>[] = [];
  for (let p = 0; p * per < cfg.devices.length; p++) {
    const slice: ScenarioConfig = { ...shared, devices: cfg.devices.slice(p * per, (p + 1) * per), processes: 1, plan: slicePlan(cfg.plan, p * per, per) };
    const child = fork(entry, [], { env: { ...process.env, SIM_CHILD: '1' }, execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.send({ type: 'scenario-config', config: slice });
    children.push(child);
    results.push(new Promise((resolve, reject) => {
      child.on('message', (m: ToParent) => {
        if (m.type === 'scenario-status') statuses.set(p, { t: m.status, ack: m.ack, connect: m.connect });
        else resolve(m.result);
      });
      child.once('exit', (code, signal) => reject(new Error(`simulator process ${p} exited (${signal ?? code}) without a result`)));
    }));
  }
  // The shell commands of the plan (hub restart, database outage) run here, once.
  const controller = new ScenarioRunner(new Fleet({ url: cfg.url, devices: [], rate: 0, autoStart: false }), { ...cfg.plan, maxDevices: 0 }, { t0, controlsProcesses: true, log: (l) => { if (!cfg.json) console.error(l); }, ...managed });
  controller.start();
  let prev: { at: number; c: SimCounters } | null = null;
  const tick = display ? setInterval(() => {
    if (!statuses.size) return;
    const sum: Totals = { connected: 0, inflight: 0, pending: 0, counters: emptyCounters(), active: 0 };
    for (const { t } of statuses.values()) { sum.connected += t.connected; sum.inflight += t.inflight; sum.pending += t.pending; sum.active += t.active; addCounters(sum.counters, t.counters); }
    const ack = LatencyHistogram.merged([...statuses.values()].map((s) => LatencyHistogram.decode(s.ack)));
    const connect = LatencyHistogram.merged([...statuses.values()].map((s) => LatencyHistogram.decode(s.connect)));
    display.update(snapshot(shared, startedAt, sum, prev, ack, connect, phaseAt(shared)));
    prev = { at: Date.now(), c: sum.counters };
  }, 1000) : null;
  const stopAll = () => { controller.stop(); for (const c of children) if (c.connected) c.kill('SIGTERM'); };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  void Promise.allSettled(results).then((settled) => {
    if (tick) clearInterval(tick);
    controller.stop();
    const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    for (const r of settled) if (r.status === 'rejected') console.error(`sim: ${(r.reason as Error).message}`);
    if (!ok.length) process.exit(1);
    void finishTop(shared, display, ok, startedAt, scaling, advice, ok.length === settled.length, managed);
  });
}

/** A process's share of a plan: the devices of each phase that fall in its slice [first, first + count). */
export function slicePlan(plan: Plan, first: number, count: number): Plan {
  const share = (n: number) => Math.max(0, Math.min(count, n - first));
  const phases = plan.phases.map((p) => (p.kind === 'ramp'
    ? { ...p, devices: share(p.devices), from: { ...p.from, devices: share(p.from.devices) }, to: { ...p.to, devices: share(p.to.devices) } }
    : { ...p, devices: share(p.devices) }));
  return { ...plan, phases, maxDevices: share(plan.maxDevices) };
}

// ---- flags -----------------------------------------------------------------------

export const SCENARIO_USAGE = `usage: npm run sim -- (--scenario NAME | --config FILE) --url URL --tokens FILE [options]
  a fleet run as a chain of phases; the final report, --json, --slo for CI
  --scenario NAME        a built-in scenario: ${Object.keys(SCENARIOS).join(', ')}
  --config FILE          phases from a JSON or YAML file (device-sim/README.md: Scenarios)
  --devices N            devices (a built-in scenario's size; a config file's largest phase by default)
  --rate R --batch-ms MS readings/s per metric and batch interval of a built-in scenario (defaults 1, 1000)
  --duration S           a built-in scenario's length (default 60)
  --slo EXPR             e.g. 'loss=0,ack_p99<100ms,connect_p99<5s': exit 1 when a term fails
  --drain-ms MS          after the plan, how long devices get to deliver what they hold (default ${DEFAULT_DRAIN_MS})
  --verify-influx URL --influx-db NAME [--influx-token T]   count every device's readings in InfluxDB at the end:
                         missing and doubled per device (InfluxQL /query: 1.x database or 2.x/3.x bucket; token also INFLUX_TOKEN)
  --settle-ms MS         how long the database's counts get to match (default ${DEFAULT_SETTLE_MS})
  --hub-command CMD      start the hub with CMD before the run (ready when --hub-ready URL answers; default: /healthz of --url's host),
                         restart it for hub-restart phases, end it after the run
  --influx-command CMD   the same for the database (ready: --influx-ready URL, default --verify-influx's /ping), for influx-outage phases
  --bad-actors F         fraction of devices that misbehave for the whole run (default 0)
  --processes N          default: one per ${DEVICES_PER_PROCESS} devices
  --source-addresses A-B default on loopback: 127.0.0.2.. with ${DEVICES_PER_ADDRESS} devices each
  --v1                   plain v1 devices (no features), as for the simulator
  --prefix --offset --auth --ca --json --quiet   as for the simulator`;

/** The hub's health URL for a device URL: ws://host:port/... -> http://host:port/healthz. */
export function healthUrl(deviceUrl: string): string {
  const u = new URL(deviceUrl);
  return `${u.protocol === 'wss:' ? 'https' : 'http'}://${u.host}/healthz`;
}

/** Whether argv asks for a scenario run. */
export function wantsScenario(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--scenario' || a.startsWith('--scenario=') || a === '--config' || a.startsWith('--config='));
}

/** Parses a scenario run's flags; throws UsageError naming the flag (a scenario or SLO error included). */
export function parseScenarioCli(argv: string[], env: NodeJS.ProcessEnv = process.env): { cfg: ScenarioConfig; scaling: string[]; advice: string[] } | 'help' {
  const values = parseFlags(argv, { scenario: { type: 'string' }, config: { type: 'string' }, slo: { type: 'string' }, rate: { type: 'string' }, 'batch-ms': { type: 'string' }, duration: { type: 'string' }, 'drain-ms': { type: 'string' }, 'bad-actors': { type: 'string' }, 'verify-influx': { type: 'string' }, 'influx-db': { type: 'string' }, 'influx-token': { type: 'string' }, 'settle-ms': { type: 'string' },
    'hub-command': { type: 'string' }, 'hub-ready': { type: 'string' }, 'influx-command': { type: 'string' }, 'influx-ready': { type: 'string' },
    v1: { type: 'boolean', default: false } });
  if (values.help) return 'help';
  if (values.scenario !== undefined && values.config !== undefined) throw new UsageError('give --scenario NAME or --config FILE, not both');
  const rate = numberFlag(values, 'rate', 1, 0, 10_000);
  const batchMs = numberFlag(values, 'batch-ms', 1000, 10, 3_600_000, true);
  const durationS = numberFlag(values, 'duration', 60, 1, 7 * 86_400);
  const drainMs = numberFlag(values, 'drain-ms', DEFAULT_DRAIN_MS, 0, 3_600_000, true);
  const badActors = numberFlag(values, 'bad-actors', 0, 0, 1);
  const settleMs = numberFlag(values, 'settle-ms', DEFAULT_SETTLE_MS, 0, 3_600_000, true);
  let verify: ScenarioConfig['verify'] = null;
  if (values['verify-influx'] !== undefined) {
    const url = String(values['verify-influx']);
    let u: URL;
    try { u = new URL(url); } catch { throw new UsageError(`--verify-influx is not a URL: ${JSON.stringify(url)}`); }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--verify-influx must be http:// or https:// (got ${u.protocol}//)`);
    if (values['influx-db'] === undefined) throw new UsageError('--verify-influx needs --influx-db NAME (the 1.x database, or the 2.x/3.x bucket)');
    const token = values['influx-token'] === undefined ? env.INFLUX_TOKEN : String(values['influx-token']);
    verify = { target: { url, db: String(values['influx-db']), ...(token ? { token } : {}) }, prefix: String(values.prefix), settleMs };
  } else if (values['influx-db'] !== undefined || values['influx-token'] !== undefined) {
    throw new UsageError('--influx-db and --influx-token go with --verify-influx URL');
  }
  let plan: Plan;
  try {
    if (values.scenario !== undefined) {
      const devices = numberFlag(values, 'devices', 200, 1, 1_000_000, true);
      plan = builtInPlan(String(values.scenario), { devices, rate, batchMs, durationMs: durationS * 1000 });
    } else {
      plan = loadScenarioFile(fromInvocation(String(values.config), env));
    }
  } catch (err) {
    if (err instanceof ScenarioError) throw new UsageError(`${values.scenario !== undefined ? '--scenario' : '--config'}: ${err.path ? `${err.path}: ` : ''}${err.message}`);
    throw err;
  }
  const hubCommand = values['hub-command'] === undefined ? null : { command: String(values['hub-command']), readyUrl: String(values['hub-ready'] ?? healthUrl(String(values.url))) };
  const influxReady = values['influx-ready'] ?? (values['verify-influx'] === undefined ? undefined : `${String(values['verify-influx']).replace(/\/+$/, '')}/ping`);
  if (values['influx-command'] !== undefined && influxReady === undefined) throw new UsageError('--influx-command needs --influx-ready URL (or --verify-influx URL, whose /ping is used)');
  const influxCommand = values['influx-command'] === undefined ? null : { command: String(values['influx-command']), readyUrl: String(influxReady) };
  if (values['hub-ready'] !== undefined && !hubCommand) throw new UsageError('--hub-ready goes with --hub-command');
  const refused = unsupported(plan, { hub: hubCommand !== null, database: influxCommand !== null });
  if (refused.length) throw new UsageError(`${values.scenario !== undefined ? '--scenario' : '--config'}: ${refused.join('; ')}`);
  // The fleet is as large as the plan's largest phase (a config file says it; --devices may ask for more).
  if (values.devices === undefined || Number(values.devices) < plan.maxDevices) values.devices = String(Math.max(1, plan.maxDevices));
  let slo: SloTerm[] | null = null;
  if (values.slo !== undefined) {
    try { slo = parseSlo(String(values.slo)); } catch (err) { if (err instanceof SloError) throw new UsageError(`--slo: ${err.message}`); throw err; }
  }
  const conn = parseConnection(values, env);
  const scale = autoScale({
    devices: conn.devices.length, url: conn.url, processes: values.processes === undefined ? undefined : conn.processes, sourceAddresses: conn.sourceAddresses,
  });
  const perAddress = scale.sourceAddresses ? Math.ceil(conn.devices.length / scale.sourceAddresses.length) : conn.devices.length;
  return {
    cfg: {
      url: conn.url, devices: conn.devices, plan, slo, batchMs, badActors, auth: conn.auth, caFile: conn.caFile, sourceAddresses: scale.sourceAddresses,
      processes: Math.min(scale.processes, conn.devices.length), v1: values.v1 === true, drainMs, verify, hubCommand, influxCommand, json: values.json === true, quiet: values.quiet === true,
    },
    scaling: scale.notes,
    advice: hubLimitAdvice(plan, { perAddress }),
  };
}
