// device-sim/: the lean load generator's command line, `device-sim lean ...`
// (cli.ts hands over when the first argument is `lean`):
//   npm run sim -- lean --url ws://127.0.0.1:8080/v1/devices --tokens data/sim-tokens.json --devices 200 --window 32 --duration 10 --json
// Owns its flags, the run (send for --duration, then drain: no new sends,
// wait up to --drain-ms for the outstanding acks, then close cleanly and
// count what is still unacked as lost), the per-second status line, the
// summary (text, or one JSON line) and --processes (children forked from
// cli.ts, reporting counters and their HDR histogram over IPC, merged here).
// Imports: node, and this package's cli-flags, lean-fleet, stats and tokens.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { UsageError, numberFlag, parseConnection, parseFlags } from './cli-flags.ts';
import { LeanFleet, addLeanCounters, emptyLeanCounters, leanErrors, leanViolations, type LeanCounters } from './lean-fleet.ts';
import { LatencyHistogram } from './stats.ts';
import type { DeviceCredentials } from './tokens.ts';

export const LEAN_USAGE = `usage: npm run sim -- lean --url URL (--tokens FILE | SIM_TOKEN=<token>) [options]
  the lean load generator: template batches, closed loop or a fixed rate, every ack checked
  --devices N            devices (default 200; 1 with SIM_TOKEN)
  --prefix P --offset K  device ids P0000.. starting at index K (default sim-, 0)
  --readings R           readings per batch (default 20)
  --metrics M            distinct metrics per device, defined once per session (default 4)
  --window W             most batches in flight per device, never above the hub's credit (default 0: the credit)
  --rate B               batches per second per device (default 0: closed loop, as fast as credit returns)
  --duration S           send for S seconds, then drain and stop (default 0: until Ctrl-C / SIGTERM)
  --drain-ms MS          after sending stops, wait up to MS for outstanding acks (default 5000)
  --ramp-ms MS           spread connection starts over MS (default 0)
  --auth header|subprotocol   how the token is sent (default header)
  --ca FILE              extra CA to trust for wss:// (the dev certificate)
  --source-addresses A-B spread connections over addresses, e.g. 127.0.0.2-127.0.0.40
  --processes N          split the devices over N processes (default 1)
  --json                 print the summary as one JSON line
  --quiet                no per-second status line`;

export interface LeanConfig {
  url: string;
  devices: DeviceCredentials[];
  /** Whole-fleet index of devices[0] (a --processes slice): source addresses stay spread as in one process. */
  firstIndex: number;
  readings: number;
  metrics: number;
  /** 0: as the credit allows. */
  window: number;
  /** Batches per second per device; 0: closed loop. */
  rate: number;
  durationS: number;
  drainMs: number;
  rampMs: number;
  auth: 'header' | 'subprotocol';
  caFile?: string;
  sourceAddresses?: string[];
  processes: number;
  json: boolean;
  quiet: boolean;
}

/** Parses the flags after `lean` (and SIM_TOKEN); throws UsageError naming the bad flag. */
export function parseLeanCli(argv: string[], env: NodeJS.ProcessEnv = process.env): LeanConfig | 'help' {
  const values = parseFlags(argv, { readings: { type: 'string' }, metrics: { type: 'string' }, window: { type: 'string' }, rate: { type: 'string' }, duration: { type: 'string' }, 'drain-ms': { type: 'string' }, 'ramp-ms': { type: 'string' } });
  if (values.help) return 'help';
  const readings = numberFlag(values, 'readings', 20, 1, 1_000_000, true);
  const metrics = numberFlag(values, 'metrics', 4, 1, 65_536, true);
  const window = numberFlag(values, 'window', 0, 0, 1024, true);
  const rate = numberFlag(values, 'rate', 0, 0, 1_000_000);
  const durationS = numberFlag(values, 'duration', 0, 0, 366 * 86_400);
  const drainMs = numberFlag(values, 'drain-ms', 5000, 0, 600_000, true);
  const rampMs = numberFlag(values, 'ramp-ms', 0, 0, 3_600_000);
  const { url, devices, auth, caFile, sourceAddresses, processes } = parseConnection(values, env);
  return {
    url, devices, firstIndex: 0, readings, metrics, window, rate, durationS, drainMs, rampMs, auth, caFile, sourceAddresses, processes,
    json: values.json === true, quiet: values.quiet === true,
  };
}

// ---- reporting ----------------------------------------------------------------

/** What one process measured (a child sends it to the parent, which adds them). */
export interface LeanReport {
  counters: LeanCounters;
  /** The sending phase, s (the drain not included). */
  seconds: number;
  drainSeconds: number;
  /** Everything in flight was acked within --drain-ms. */
  drained: boolean;
  /** Over the sending phase. */
  sentPerSec: number;
  ackedPerSec: number;
  connectedAtEnd: number;
  lossByDevice: { id: string; sent: number; acked: number; lost: number }[];
  /** Why devices stopped by themselves (a batch over Welcome's limits), distinct. */
  stopReasons: string[];
  cpuMicros: { user: number; system: number };
  /** From the first status tick with every device connected to the end of sending: CPU (user + system, µs), batches sent, seconds. */
  steady: { cpuMicros: number; batches: number; seconds: number };
}

/** What a process sends its parent: its report and its two latency histograms (encoded). */
interface EncodedReport { report: LeanReport; latency: string; steadyLatency: string }

/** The summary --json prints, one line. */
export interface LeanSummary {
  mode: 'lean';
  devices: number;
  processes: number;
  readingsPerBatch: number;
  metrics: number;
  /** --window (0: as the credit allows). */
  window: number;
  /** --rate, batches per second per device (0: closed loop). */
  ratePerDevice: number;
  seconds: number;
  drainSeconds: number;
  drained: boolean;
  batchesSentPerSec: number;
  batchesAckedPerSec: number;
  readingsAckedPerSec: number;
  batches: { sent: number; resent: number; acked: number; ackedByWelcome: number; lost: number; behindSchedule: number };
  /** Ack messages received, and bursts written (one write each): batches per ack / per write say how well sends and acks are grouped. */
  acks: number;
  writes: number;
  readingsAcked: number;
  /** Devices that lost batches (at most 20, most first). */
  lossByDevice: { id: string; sent: number; acked: number; lost: number }[];
  /** Closes other than 1000, refusals, network errors and own timeouts, summed. */
  errors: number;
  /** Why devices stopped by themselves: the batch does not fit Welcome's limits ("over-limits" in closes). */
  stopReasons: string[];
  closes: Record<string, number>;
  violations: { ackRegressed: number; ackUnknownSeq: number; welcomeRegressed: number; creditOverWindow: number; badMessages: number; unexpectedMessages: number };
  notices: Record<string, number>;
  hubReports: { nonFiniteDropped: number; skewDropped: number; skewCorrected: number };
  sessions: number;
  reconnects: number;
  reducedCreditAcks: number;
  pacedStalls: number;
  connectedAtEnd: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number; samples: number };
  /** The same over the steady window only (every device connected, to the end of sending): no connection setup, no drain. */
  steadyLatencyMs: { p50: number; p95: number; p99: number; max: number; samples: number };
  /**
   * This process and its children. usPerBatch: all of it over the batches
   * sent (connection setup and the drain included); steady: only while every
   * device was connected and sending (what a batch costs).
   */
  cpu: {
    userSeconds: number; systemSeconds: number; percentOfOneCore: number; usPerBatch: number;
    steady: { seconds: number; batches: number; usPerBatch: number; percentOfOneCore: number };
  };
  /** No loss, no errors, no violations, everything drained. */
  clean: boolean;
}

export function mergeReports(reports: readonly LeanReport[]): LeanReport {
  const out: LeanReport = {
    counters: emptyLeanCounters(), seconds: 0, drainSeconds: 0, drained: true, sentPerSec: 0, ackedPerSec: 0, connectedAtEnd: 0,
    lossByDevice: [], stopReasons: [], cpuMicros: { user: 0, system: 0 }, steady: { cpuMicros: 0, batches: 0, seconds: 0 },
  };
  for (const r of reports) {
    addLeanCounters(out.counters, r.counters);
    out.seconds = Math.max(out.seconds, r.seconds);
    out.drainSeconds = Math.max(out.drainSeconds, r.drainSeconds);
    out.drained &&= r.drained;
    out.sentPerSec += r.sentPerSec;
    out.ackedPerSec += r.ackedPerSec;
    out.connectedAtEnd += r.connectedAtEnd;
    out.lossByDevice.push(...r.lossByDevice);
    for (const reason of r.stopReasons) if (!out.stopReasons.includes(reason)) out.stopReasons.push(reason);
    out.cpuMicros.user += r.cpuMicros.user;
    out.cpuMicros.system += r.cpuMicros.system;
    out.steady.cpuMicros += r.steady.cpuMicros;
    out.steady.batches += r.steady.batches;
    out.steady.seconds = Math.max(out.steady.seconds, r.steady.seconds);
  }
  out.lossByDevice = out.lossByDevice.sort((a, b) => b.lost - a.lost).slice(0, 20);
  return out;
}

export function summarize(cfg: LeanConfig, devices: number, r: LeanReport, latency: LatencyHistogram, steadyLatency: LatencyHistogram): LeanSummary {
  const c = r.counters;
  const cpuS = (r.cpuMicros.user + r.cpuMicros.system) / 1e6;
  const violations = {
    ackRegressed: c.ackRegressed, ackUnknownSeq: c.ackUnknownSeq, welcomeRegressed: c.welcomeRegressed, creditOverWindow: c.creditOverWindow,
    badMessages: c.badMessages, unexpectedMessages: c.unexpectedMessages,
  };
  const errors = leanErrors(c);
  const elapsed = r.seconds + r.drainSeconds;
  return {
    mode: 'lean', devices, processes: cfg.processes, readingsPerBatch: cfg.readings, metrics: cfg.metrics, window: cfg.window, ratePerDevice: cfg.rate,
    seconds: r.seconds, drainSeconds: r.drainSeconds, drained: r.drained,
    batchesSentPerSec: r.sentPerSec, batchesAckedPerSec: r.ackedPerSec, readingsAckedPerSec: r.ackedPerSec * cfg.readings,
    batches: { sent: c.sent, resent: c.resent, acked: c.acked, ackedByWelcome: c.ackedByWelcome, lost: c.lost, behindSchedule: c.behindSchedule },
    acks: c.acks, writes: c.writes,
    readingsAcked: (c.acked + c.ackedByWelcome) * cfg.readings,
    lossByDevice: r.lossByDevice, errors, stopReasons: r.stopReasons, closes: c.closes, violations, notices: c.notices,
    hubReports: { nonFiniteDropped: c.hubNonFiniteDropped, skewDropped: c.hubSkewDropped, skewCorrected: c.hubSkewCorrected },
    sessions: c.sessions, reconnects: c.reconnects, reducedCreditAcks: c.reducedCreditAcks, pacedStalls: c.pacedStalls,
    connectedAtEnd: r.connectedAtEnd,
    latencyMs: { ...latency.percentiles(), max: latency.maxMs },
    steadyLatencyMs: { ...steadyLatency.percentiles(), max: steadyLatency.maxMs },
    cpu: {
      userSeconds: r.cpuMicros.user / 1e6, systemSeconds: r.cpuMicros.system / 1e6,
      percentOfOneCore: elapsed > 0 ? (cpuS / elapsed) * 100 : 0, usPerBatch: c.sent ? (cpuS * 1e6) / c.sent : 0,
      steady: {
        seconds: r.steady.seconds, batches: r.steady.batches, usPerBatch: r.steady.batches ? r.steady.cpuMicros / r.steady.batches : 0,
        percentOfOneCore: r.steady.seconds > 0 ? r.steady.cpuMicros / 1e4 / r.steady.seconds : 0,
      },
    },
    clean: c.lost === 0 && errors === 0 && leanViolations(c) === 0 && r.drained,
  };
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

export function formatLeanSummary(s: LeanSummary): string {
  const b = s.batches;
  const l = s.latencyMs;
  const v = s.violations;
  const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : '-');
  const list = (r: Record<string, number>) => Object.entries(r).sort().map(([k, n]) => `${k}: ${fmt(n)}`).join(', ') || 'none';
  const lines = [
    '',
    `lean summary: ${fmt(s.devices)} devices in ${s.processes} process${s.processes > 1 ? 'es' : ''}, ${s.seconds.toFixed(1)} s sending + ${s.drainSeconds.toFixed(1)} s drain`
      + ` (${s.drained ? 'drained' : 'NOT drained'}); ${s.readingsPerBatch} readings x ${s.metrics} metrics per batch,`
      + ` window ${s.window || 'credit'}, ${s.ratePerDevice ? `${s.ratePerDevice} batches/s per device` : 'closed loop'}`,
    `  batches   sent ${fmt(b.sent)} (${fmt(s.batchesSentPerSec)}/s; resent ${fmt(b.resent)}), acked ${fmt(b.acked)} (${fmt(s.batchesAckedPerSec)}/s; by Welcome ${fmt(b.ackedByWelcome)}), LOST ${fmt(b.lost)}`,
    `  readings  acked ${fmt(s.readingsAcked)} (${fmt(s.readingsAckedPerSec)}/s)`,
    `  grouping  ${fmt(s.acks)} acks (${(b.acked / Math.max(1, s.acks)).toFixed(1)} batches each), ${fmt(s.writes)} writes (${(b.sent / Math.max(1, s.writes)).toFixed(1)} batches each)`,
    `  sessions  ${fmt(s.sessions)}, reconnects ${fmt(s.reconnects)}, reduced-credit acks ${fmt(s.reducedCreditAcks)}, held back by the hub's readings limit ${fmt(s.pacedStalls)}, behind schedule ${fmt(b.behindSchedule)}`,
    `  closes    ${list(s.closes)} (${fmt(s.errors)} errors)`,
    `  checks    ack regressed ${v.ackRegressed}, ack of an unsent seq ${v.ackUnknownSeq}, Welcome below an ack ${v.welcomeRegressed}, credit over window ${v.creditOverWindow},`
      + ` undecodable ${v.badMessages}, unexpected ${v.unexpectedMessages}`,
    `  notices   ${list(s.notices)}; hub reports: NaN dropped ${s.hubReports.nonFiniteDropped}, skew dropped ${s.hubReports.skewDropped}, corrected ${s.hubReports.skewCorrected}`,
    `  ack latency p50 ${ms(l.p50)}, p95 ${ms(l.p95)}, p99 ${ms(l.p99)}, max ${ms(l.max)} (${fmt(l.samples)} acked batches, send -> ack)`,
    `  steady     p50 ${ms(s.steadyLatencyMs.p50)}, p95 ${ms(s.steadyLatencyMs.p95)}, p99 ${ms(s.steadyLatencyMs.p99)}, max ${ms(s.steadyLatencyMs.max)}`
      + ` (${fmt(s.steadyLatencyMs.samples)} acked while every device was connected and sending)`,
    `  generator CPU ${s.cpu.userSeconds.toFixed(2)} s user + ${s.cpu.systemSeconds.toFixed(2)} s system = ${s.cpu.percentOfOneCore.toFixed(0)} % of one core, ${s.cpu.usPerBatch.toFixed(2)} µs per batch sent;`
      + ` steady (${s.cpu.steady.seconds.toFixed(1)} s, all connected) ${s.cpu.steady.usPerBatch.toFixed(2)} µs per batch, ${s.cpu.steady.percentOfOneCore.toFixed(0)} % of one core`,
  ];
  for (const reason of s.stopReasons) lines.push(`  stopped   ${reason}`);
  for (const d of s.lossByDevice) lines.push(`  lost      ${d.id}: sent ${fmt(d.sent)}, acked ${fmt(d.acked)}, lost ${fmt(d.lost)}`);
  lines.push(`  ${s.clean ? 'clean: no loss, no errors, no violations' : 'NOT CLEAN'}`);
  return lines.join('\n');
}

interface StatusSample { devices: number; connected: number; sent: number; acked: number; lost: number; inflight: number; errors: number }

function statusLine(elapsedS: number, now: StatusSample, prev: StatusSample | null, dtS: number): string {
  const rate = (a: number, b: number) => fmt((a - b) / dtS);
  return `[lean ${elapsedS.toFixed(0).padStart(4)}s] ${now.connected}/${now.devices} connected | ${rate(now.sent, prev?.sent ?? 0)} batches/s sent | `
    + `${rate(now.acked, prev?.acked ?? 0)} batches/s acked | ${fmt(now.inflight)} in flight | ${fmt(now.lost)} lost | ${fmt(now.errors)} errors`;
}

function write(text: string, exitCode: number): void {
  process.stdout.write(text + '\n', () => process.exit(exitCode));
}

type ChildMessage =
  | { type: 'lean-status'; status: StatusSample }
  | ({ type: 'lean-report' } & EncodedReport);

// ---- one process --------------------------------------------------------------

function runLean(cfg: LeanConfig, child: boolean): void {
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  const toParent = child ? process.send?.bind(process) : undefined;
  const fleet = new LeanFleet({
    url: cfg.url, devices: cfg.devices, firstIndex: cfg.firstIndex, readings: cfg.readings, metrics: cfg.metrics, window: cfg.window, rate: cfg.rate,
    rampMs: cfg.rampMs, authVia: cfg.auth, ca: cfg.caFile ? readFileSync(cfg.caFile) : undefined, sourceAddresses: cfg.sourceAddresses,
  });
  const sample = (): StatusSample => ({ devices: fleet.devices.length, ...fleet.totals() });
  const cpuNow = () => { const u = process.cpuUsage(); return u.user + u.system; };
  // The steady window starts at the first tick with every device connected (or 5 s in, whatever connected by then).
  let steady0: { cpu: number; sent: number; at: number; latency: LatencyHistogram } | null = null;
  let prev: StatusSample | null = null;
  let prevAt = started;
  // SIGUSR2 (a benchmark's "measure from now"): the steady window starts again here, whatever came before (warm-up).
  process.on('SIGUSR2', () => { steady0 = { cpu: cpuNow(), sent: sample().sent, at: performance.now(), latency: fleet.latency.copy() }; });
  const status = setInterval(() => {
    const s = sample();
    const now = performance.now();
    if (!steady0 && fleet.sending && (s.connected === s.devices || now - started >= 5000)) steady0 = { cpu: cpuNow(), sent: s.sent, at: now, latency: fleet.latency.copy() };
    if (toParent) toParent({ type: 'lean-status', status: s } satisfies ChildMessage);
    else if (!cfg.quiet && !cfg.json) console.log(statusLine((now - started) / 1000, s, prev, (now - prevAt) / 1000));
    prev = s;
    prevAt = now;
  }, 1000);

  let finishing = false;
  const finish = async () => {
    if (finishing) return;
    finishing = true;
    clearTimeout(durationTimer);
    const stopAt = performance.now();
    const seconds = (stopAt - started) / 1000;
    const atStop = fleet.totals();
    const cpuAtStop = cpuNow();
    // A run too short for a status tick: the whole run is the window.
    const s0 = steady0 ?? { cpu: cpu0.user + cpu0.system, sent: 0, at: started, latency: new LatencyHistogram() };
    const steady = { cpuMicros: cpuAtStop - s0.cpu, batches: atStop.sent - s0.sent, seconds: (stopAt - s0.at) / 1000 };
    const steadyLatency = fleet.latency.since(s0.latency);
    const drained = await fleet.drain(cfg.drainMs);
    clearInterval(status);
    const drainSeconds = (performance.now() - started) / 1000 - seconds;
    const connectedAtEnd = fleet.connected;
    await fleet.stop();
    const report: LeanReport = {
      counters: fleet.counters(), seconds, drainSeconds, drained, sentPerSec: atStop.sent / seconds, ackedPerSec: atStop.acked / seconds,
      connectedAtEnd, lossByDevice: fleet.lossByDevice(), stopReasons: fleet.stopReasons(), cpuMicros: process.cpuUsage(cpu0), steady,
    };
    if (toParent) {
      toParent({ type: 'lean-report', report, latency: fleet.latency.encode(), steadyLatency: steadyLatency.encode() } satisfies ChildMessage, () => process.exit(0));
    } else {
      const s = summarize(cfg, cfg.devices.length, report, fleet.latency, steadyLatency);
      write(cfg.json ? JSON.stringify(s) : formatLeanSummary(s), 0);
    }
  };
  const durationTimer = cfg.durationS > 0 ? setTimeout(() => void finish(), cfg.durationS * 1000) : undefined;
  process.on('SIGINT', () => void finish());
  process.on('SIGTERM', () => void finish());
  if (child) process.once('disconnect', () => void finish());
}

/** A --processes child: cli.ts received its slice over IPC. */
export function runLeanChild(cfg: LeanConfig): void {
  runLean(cfg, true);
}

// ---- several processes --------------------------------------------------------

function runParent(cfg: LeanConfig, entry: string): void {
  const started = performance.now();
  const per = Math.ceil(cfg.devices.length / cfg.processes);
  const statuses = new Map<number, StatusSample>();
  const children: ChildProcess[] = [];
  const results: Promise<EncodedReport>[] = [];
  for (let p = 0; p * per < cfg.devices.length; p++) {
    const slice: LeanConfig = { ...cfg, devices: cfg.devices.slice(p * per, (p + 1) * per), firstIndex: cfg.firstIndex + p * per, processes: 1 };
    const child = fork(entry, [], { env: { ...process.env, SIM_CHILD: '1' }, execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.send({ type: 'lean-config', config: slice });
    children.push(child);
    results.push(new Promise((resolve, reject) => {
      child.on('message', (m: ChildMessage) => {
        if (m.type === 'lean-status') statuses.set(p, m.status);
        else if (m.type === 'lean-report') resolve({ report: m.report, latency: m.latency, steadyLatency: m.steadyLatency });
      });
      child.once('exit', (code, signal) => reject(new Error(`lean process ${p} exited (${signal ?? code}) without a report`)));
    }));
  }
  let prev: StatusSample | null = null;
  let prevAt = started;
  const status = setInterval(() => {
    if (cfg.quiet || cfg.json || statuses.size === 0) return;
    const sum: StatusSample = { devices: cfg.devices.length, connected: 0, sent: 0, acked: 0, lost: 0, inflight: 0, errors: 0 };
    for (const s of statuses.values()) {
      sum.connected += s.connected; sum.sent += s.sent; sum.acked += s.acked; sum.lost += s.lost; sum.inflight += s.inflight; sum.errors += s.errors;
    }
    const now = performance.now();
    console.log(statusLine((now - started) / 1000, sum, prev, (now - prevAt) / 1000));
    prev = sum;
    prevAt = now;
  }, 1000);
  const stopAll = () => { for (const c of children) if (c.connected) c.kill('SIGTERM'); };
  process.on('SIGUSR2', () => { for (const c of children) if (c.connected) c.kill('SIGUSR2'); });
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);

  void Promise.allSettled(results).then((settled) => {
    clearInterval(status);
    const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    for (const r of settled) if (r.status === 'rejected') console.error(`sim lean: ${(r.reason as Error).message}`);
    if (!ok.length) process.exit(1);
    const merged = mergeReports(ok.map((r) => r.report));
    const own = process.cpuUsage();
    merged.cpuMicros.user += own.user;
    merged.cpuMicros.system += own.system;
    // HDR histograms merge exactly: the percentiles are those of one histogram of every ack.
    const latency = LatencyHistogram.merged(ok.map((r) => LatencyHistogram.decode(r.latency)));
    const steadyLatency = LatencyHistogram.merged(ok.map((r) => LatencyHistogram.decode(r.steadyLatency)));
    const s = summarize(cfg, cfg.devices.length, merged, latency, steadyLatency);
    if (ok.length !== settled.length) s.clean = false;
    write(cfg.json ? JSON.stringify(s) : formatLeanSummary(s), ok.length === settled.length ? 0 : 1);
  });
}

// ---- entry --------------------------------------------------------------------

/** `device-sim lean ARGS`; `entry` is the program to fork for --processes (cli.ts / cli.js). */
export function leanMain(argv: string[], entry: string): void {
  let cfg: LeanConfig | 'help';
  try {
    cfg = parseLeanCli(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`sim lean: ${err.message}\n${LEAN_USAGE}`);
    process.exit(2);
  }
  if (cfg === 'help') { console.log(LEAN_USAGE); return; }
  if (cfg.processes > 1) runParent(cfg, entry);
  else runLean(cfg, false);
}
