// device-sim/: the load-test command line:
//   npm run sim -w device-sim -- --url ws://127.0.0.1:8080/v1/devices --devices 200 --rate 1 --tokens data/sim-tokens.json
// Owns flag parsing and validation, the per-second status line, the final
// summary (text, or one JSON line with --json), and --processes: N forked
// children each run a slice of the fleet and report over IPC (counters and
// their latency histogram), because one process may hold only ~20,000 open files.
// `device-sim lean ...` (the first argument) is the lean load generator
// instead: lean-cli.ts owns its flags and summary; its --processes children
// are forked from this entry too (SIM_CHILD, a 'lean-config' message).
// `--scenario NAME` / `--config FILE` is a scenario run: scenario-cli.ts owns
// it (children: a 'scenario-config' message).
// Imports: this package's cli-flags, fleet, lean-cli, scenario-cli, stats and tokens, and node.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError, fromInvocation, numberFlag, parseConnection, parseFlags } from './cli-flags.ts';
import { Fleet, behaviourFor } from './fleet.ts';
import { LEAN_USAGE, leanMain, runLeanChild, type LeanConfig } from './lean-cli.ts';
import { SCENARIO_USAGE, parseScenarioCli, runScenario, runScenarioChild, wantsScenario, type ScenarioConfig } from './scenario-cli.ts';
import { LatencyHistogram, addCounters, emptyCounters, errorCount, type Percentiles, type SimCounters } from './stats.ts';
import type { DeviceCredentials } from './tokens.ts';

export const USAGE = `usage: npm run sim -- --url URL (--tokens FILE | SIM_TOKEN=<token>) [options]
  --devices N            fleet size (default 200; 1 with SIM_TOKEN)
  --rate R               readings per second per metric, 4 metrics (default 1; 0 = idle sessions)
  --batch-ms MS          batch interval (default 1000)
  --duration S           stop after S seconds (default 0: until Ctrl-C / SIGTERM)
  --prefix P --offset K  device ids P0000.. starting at index K (default sim-, 0)
  --ramp-ms MS           spread device starts over MS (default 0)
  --churn F              fraction of devices per minute that drop their link (default 0)
  --bad-actors F         fraction of devices that misbehave (default 0)
  --auth header|subprotocol   how the token is sent (default header)
  --ca FILE              extra CA to trust for wss:// (the dev certificate)
  --source-addresses A-B spread connections over addresses, e.g. 127.0.0.2-127.0.0.40
  --processes N          split the fleet over N processes (default 1)
  --v1                   plain v1 devices: no Hello.features, no ConfigReport, no Invoke (default: features config, invoke)
  --json                 print the summary as one JSON line
  --quiet                no per-second status line`;

/** ~20,000 open files per process here; leave room for the runtime's own. */
const DEVICES_PER_PROCESS_HINT = 19_000;

export { UsageError, fromInvocation };

export interface CliConfig {
  url: string;
  devices: DeviceCredentials[];
  rate: number;
  batchMs: number;
  durationS: number;
  rampMs: number;
  churn: number;
  badActors: number;
  auth: 'header' | 'subprotocol';
  caFile?: string;
  sourceAddresses?: string[];
  processes: number;
  /** --v1: devices without features (Hello lists none; no ConfigReport, no Invoke). Absent: false. */
  v1?: boolean;
  json: boolean;
  quiet: boolean;
}

/** Parses and validates the flags (and SIM_TOKEN); throws UsageError naming the bad flag. */
export function parseCli(argv: string[], env: NodeJS.ProcessEnv = process.env): CliConfig | 'help' {
  const values = parseFlags(argv, { rate: { type: 'string' }, 'batch-ms': { type: 'string' }, duration: { type: 'string' }, 'ramp-ms': { type: 'string' }, churn: { type: 'string' }, 'bad-actors': { type: 'string' }, v1: { type: 'boolean', default: false } });
  if (values.help) return 'help';

  const rate = numberFlag(values, 'rate', 1, 0, 100_000);
  const batchMs = numberFlag(values, 'batch-ms', 1000, 10, 3_600_000, true);
  const durationS = numberFlag(values, 'duration', 0, 0, 366 * 86_400);
  const rampMs = numberFlag(values, 'ramp-ms', 0, 0, 3_600_000);
  const churn = numberFlag(values, 'churn', 0, 0, 60);
  const badActors = numberFlag(values, 'bad-actors', 0, 0, 1);
  const { url, devices, auth, caFile, sourceAddresses, processes } = parseConnection(values, env);
  return {
    url, devices, rate, batchMs, durationS, rampMs, churn, badActors, auth, caFile, sourceAddresses, processes,
    v1: values.v1 === true, json: values.json === true, quiet: values.quiet === true,
  };
}

// ---- reporting ----------------------------------------------------------------

/** What one status tick (and a child's IPC status message) carries. */
interface StatusSample { devices: number; connected: number; pending: number; inflight: number; counters: SimCounters }

export interface Summary {
  devices: number;
  badActors: number;
  processes: number;
  seconds: number;
  counters: SimCounters;
  /** Closes other than 1000, refusals and network errors, summed. */
  errors: number;
  latencyMs: Percentiles;
  readingsAckedPerSec: number;
  batchesAckedPerSec: number;
  connectedAtEnd: number;
  /** Batches devices still held (unacked) when they stopped. */
  pendingAtEnd: number;
  /** This process and its children: user + system CPU. */
  cpu: { userSeconds: number; systemSeconds: number; percentOfOneCore: number };
}

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

function statusLine(elapsedS: number, now: StatusSample, prev: StatusSample | null, dtS: number): string {
  const c = now.counters;
  const p = prev?.counters ?? emptyCounters();
  const rate = (a: number, b: number) => fmt((a - b) / dtS);
  const errs = Object.entries(c.closes).filter(([k]) => k !== '1000').sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k}:${v}`).join(' ');
  return `[sim ${elapsedS.toFixed(0).padStart(4)}s] ${now.connected}/${now.devices} connected | ${rate(c.batchesSent, p.batchesSent)} batches/s sent | `
    + `${rate(c.readingsAcked, p.readingsAcked)} readings/s acked | ${now.inflight} in flight, ${now.pending} pending | `
    + `${c.reconnects} reconnects | ${errorCount(c)} errors${errs ? ` (${errs})` : ''}`;
}

function formatSummary(s: Summary): string {
  const c = s.counters;
  const l = s.latencyMs;
  const ms = (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '-');
  const lines = [
    '',
    `sim summary: ${fmt(s.devices)} devices (${fmt(s.badActors)} bad actors) in ${s.processes} process${s.processes > 1 ? 'es' : ''}, ${s.seconds.toFixed(1)} s`,
    `  batches   sent ${fmt(c.batchesSent)} (resent ${fmt(c.batchesResent)}), acked ${fmt(c.batchesAcked)}, dropped by full outbox ${fmt(c.batchesDropped)}, still held at the end ${fmt(s.pendingAtEnd)}`,
    `  readings  generated ${fmt(c.readingsGenerated)}, acked ${fmt(c.readingsAcked)} (${fmt(s.readingsAckedPerSec)}/s); hub dropped NaN ${fmt(c.hubNonFiniteDropped)}, skew ${fmt(c.hubSkewDropped)}; corrected ${fmt(c.hubSkewCorrected)}`,
  ];
  if (c.readingsSkipped) lines.push(`  SATURATED: ${fmt(c.readingsSkipped)} readings not generated in time (the simulator, not the hub, was the limit)`);
  lines.push(
    `  sessions  ${fmt(c.sessions)}, reconnects ${fmt(c.reconnects)}, acks with reduced credit ${fmt(c.reducedCreditAcks)}`,
    `  managed   config updates applied ${fmt(c.configUpdatesApplied)}, refused ${fmt(c.configUpdatesRefused)}; commands answered ${fmt(c.commandsAnswered)}`,
    `  closes    ${Object.entries(c.closes).sort().map(([k, v]) => `${k}: ${fmt(v)}`).join(', ') || 'none'} (${fmt(s.errors)} errors)`,
    `  notices   ${Object.entries(c.notices).sort().map(([k, v]) => `${k}: ${fmt(v)}`).join(', ') || 'none'}`,
    `  ack latency p50 ${ms(l.p50)}, p95 ${ms(l.p95)}, p99 ${ms(l.p99)} (${fmt(l.samples)} acked batches, send -> ack)`,
    `  simulator CPU ${s.cpu.userSeconds.toFixed(2)} s user + ${s.cpu.systemSeconds.toFixed(2)} s system = ${s.cpu.percentOfOneCore.toFixed(0)} % of one core`,
  );
  return lines.join('\n');
}

function summarize(o: {
  cfg: CliConfig; seconds: number; counters: SimCounters; latency: LatencyHistogram; connected: number; pending: number;
  cpuMicros: { user: number; system: number }; badActors?: number;
}): Summary {
  const { counters: c, seconds } = o;
  const cpuS = (o.cpuMicros.user + o.cpuMicros.system) / 1e6;
  let bad = o.badActors ?? 0;
  if (o.badActors === undefined) for (let i = 0; i < o.cfg.devices.length; i++) if (behaviourFor(i, o.cfg.badActors) !== 'good') bad++;
  return {
    devices: o.cfg.devices.length, badActors: bad, processes: o.cfg.processes, seconds, counters: c, errors: errorCount(c),
    latencyMs: o.latency.percentiles(), readingsAckedPerSec: c.readingsAcked / seconds, batchesAckedPerSec: c.batchesAcked / seconds,
    connectedAtEnd: o.connected, pendingAtEnd: o.pending,
    cpu: { userSeconds: o.cpuMicros.user / 1e6, systemSeconds: o.cpuMicros.system / 1e6, percentOfOneCore: (cpuS / seconds) * 100 },
  };
}

function write(text: string, exitCode: number): void {
  // Exit only once the text is out: a pipe to a benchmark script must get the whole JSON line.
  process.stdout.write(text + '\n', () => process.exit(exitCode));
}

// ---- one process --------------------------------------------------------------

type ChildMessage =
  | { type: 'status'; status: StatusSample }
  | { type: 'summary'; summary: Summary; latency: string }; // latency: LatencyHistogram.encode(), every count

function runFleet(cfg: CliConfig, child: boolean): void {
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  // A child reports to its parent over the IPC channel fork() opened.
  const toParent = child ? process.send?.bind(process) : undefined;
  if (!child && cfg.devices.length > DEVICES_PER_PROCESS_HINT) {
    console.error(`sim: ${cfg.devices.length} devices in one process; a process may hold only ~20,000 open files. Use --processes ${Math.ceil(cfg.devices.length / DEVICES_PER_PROCESS_HINT)} or more.`);
  }
  const fleet = new Fleet({
    url: cfg.url, devices: cfg.devices, rate: cfg.rate, batchIntervalMs: cfg.batchMs, rampMs: cfg.rampMs, churn: cfg.churn,
    badActors: cfg.badActors, authVia: cfg.auth, ca: cfg.caFile ? readFileSync(cfg.caFile) : undefined, sourceAddresses: cfg.sourceAddresses,
    v1: cfg.v1 === true,
  });
  const sample = (): StatusSample => ({ devices: fleet.devices.length, connected: fleet.connected, pending: fleet.pending, inflight: fleet.inflight, counters: fleet.counters() });
  let prev: StatusSample | null = null;
  let prevAt = started;
  const status = setInterval(() => {
    const s = sample();
    const now = performance.now();
    if (toParent) toParent({ type: 'status', status: s } satisfies ChildMessage);
    else if (!cfg.quiet && !cfg.json) console.log(statusLine((now - started) / 1000, s, prev, (now - prevAt) / 1000));
    prev = s;
    prevAt = now;
  }, 1000);

  let finishing = false;
  const finish = async () => {
    if (finishing) return;
    finishing = true;
    clearInterval(status);
    clearTimeout(durationTimer);
    const seconds = (performance.now() - started) / 1000;
    const connected = fleet.connected;
    await fleet.stop();
    const summary = summarize({ cfg, seconds, counters: fleet.counters(), latency: fleet.latency, connected, pending: fleet.pending, cpuMicros: process.cpuUsage(cpu0) });
    if (toParent) toParent({ type: 'summary', summary, latency: fleet.latency.encode() } satisfies ChildMessage, () => process.exit(0));
    else write(cfg.json ? JSON.stringify(summary) : formatSummary(summary), 0);
  };
  const durationTimer = cfg.durationS > 0 ? setTimeout(() => void finish(), cfg.durationS * 1000) : undefined;
  // `on`, not `once`: a signal sent to a process group reaches us twice (directly
  // and forwarded by npm start); the second must not kill us mid-summary.
  process.on('SIGINT', () => void finish());
  process.on('SIGTERM', () => void finish());
  if (child) process.once('disconnect', () => void finish()); // the parent went away
}

// ---- several processes --------------------------------------------------------

function runParent(cfg: CliConfig): void {
  const started = performance.now();
  const self = fileURLToPath(import.meta.url);
  const per = Math.ceil(cfg.devices.length / cfg.processes);
  const statuses = new Map<number, StatusSample>();
  const children: ChildProcess[] = [];
  const results: Promise<{ summary: Summary; latency: string }>[] = [];
  for (let p = 0; p * per < cfg.devices.length; p++) {
    const slice: CliConfig = { ...cfg, devices: cfg.devices.slice(p * per, (p + 1) * per), processes: 1 };
    // The slice travels over IPC: no re-parsing, the tokens stay off the command
    // line (ps), and there is no size limit (an environment variable is capped
    // at 128 KiB, about 1,800 tokens).
    const child = fork(self, [], {
      env: { ...process.env, SIM_CHILD: '1' }, execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    child.send({ type: 'config', config: slice });
    children.push(child);
    results.push(new Promise((resolve, reject) => {
      child.on('message', (m: ChildMessage) => {
        if (m.type === 'status') statuses.set(p, m.status);
        else resolve({ summary: m.summary, latency: m.latency });
      });
      child.once('exit', (code, signal) => reject(new Error(`simulator process ${p} exited (${signal ?? code}) without a summary`)));
    }));
  }
  let prev: StatusSample | null = null;
  let prevAt = started;
  const status = setInterval(() => {
    if (cfg.quiet || cfg.json || statuses.size === 0) return;
    const sum: StatusSample = { devices: cfg.devices.length, connected: 0, pending: 0, inflight: 0, counters: emptyCounters() };
    for (const s of statuses.values()) {
      sum.connected += s.connected; sum.pending += s.pending; sum.inflight += s.inflight;
      addCounters(sum.counters, s.counters);
    }
    const now = performance.now();
    console.log(statusLine((now - started) / 1000, sum, prev, (now - prevAt) / 1000));
    prev = sum;
    prevAt = now;
  }, 1000);
  const stopAll = () => { for (const c of children) if (c.connected) c.kill('SIGTERM'); };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);

  void Promise.allSettled(results).then((settled) => {
    clearInterval(status);
    const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    for (const r of settled) if (r.status === 'rejected') console.error(`sim: ${(r.reason as Error).message}`);
    if (!ok.length) process.exit(1);
    const counters = emptyCounters();
    let user = 0; let system = 0; let connected = 0; let pending = 0; let seconds = 0; let badActors = 0;
    for (const { summary: s } of ok) {
      addCounters(counters, s.counters);
      badActors += s.badActors;
      user += s.cpu.userSeconds * 1e6;
      system += s.cpu.systemSeconds * 1e6;
      connected += s.connectedAtEnd;
      pending += s.pendingAtEnd;
      seconds = Math.max(seconds, s.seconds);
    }
    // HDR histograms merge exactly: the parent's percentiles are those of one histogram of every ack.
    const latency = LatencyHistogram.merged(ok.map((r) => LatencyHistogram.decode(r.latency)));
    const own = process.cpuUsage();
    const summary = summarize({ cfg, seconds, counters, latency, connected, pending, badActors, cpuMicros: { user: user + own.user, system: system + own.system } });
    // A lost process makes a failed run even if the others reported.
    write(cfg.json ? JSON.stringify(summary) : formatSummary(summary), ok.length === settled.length ? 0 : 1);
  });
}

// ---- entry --------------------------------------------------------------------

function main(): void {
  const self = fileURLToPath(import.meta.url);
  if (process.env.SIM_CHILD === '1' && typeof process.send === 'function') {
    process.once('message', (m: { type: 'config'; config: CliConfig } | { type: 'lean-config'; config: LeanConfig } | { type: 'scenario-config'; config: ScenarioConfig }) => {
      if (m.type === 'config') runFleet(m.config, true);
      else if (m.type === 'lean-config') runLeanChild(m.config);
      else if (m.type === 'scenario-config') runScenarioChild(m.config);
    });
    return;
  }
  // `lean`: the lean load generator (lean-cli.ts), its own flags.
  if (process.argv[2] === 'lean') { leanMain(process.argv.slice(3), self); return; }
  // --scenario / --config: a scenario run (scenario-cli.ts), its own flags.
  if (wantsScenario(process.argv.slice(2))) {
    let parsed: ReturnType<typeof parseScenarioCli>;
    try {
      parsed = parseScenarioCli(process.argv.slice(2));
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      console.error(`sim: ${err.message}\n${SCENARIO_USAGE}`);
      process.exit(2);
    }
    if (parsed === 'help') { console.log(SCENARIO_USAGE); return; }
    runScenario(parsed.cfg, self, parsed.scaling, parsed.advice).catch((err: unknown) => {
      console.error(`sim: ${(err as Error).message}`);
      process.exit(1);
    });
    return;
  }
  let cfg: CliConfig | 'help';
  try {
    cfg = parseCli(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`sim: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (cfg === 'help') { console.log(`${USAGE}\n\n${SCENARIO_USAGE}\n\n${LEAN_USAGE}`); return; }
  if (cfg.processes > 1) runParent(cfg);
  else runFleet(cfg, false);
}

const isEntry = (() => {
  try { return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url)); } catch { return false; }
})();
if (isEntry) main();
