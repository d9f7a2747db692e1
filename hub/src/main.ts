// The hub process: reads the environment, wires the real dependencies,
// listens, and shuts down in order on SIGTERM/SIGINT (stop listening, settle
// pending acks, close devices with 1001, exit by the deadline). SIGHUP and
// changed certificate files reload TLS. Nothing imports this file.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEVICE_PATH } from '@telemetry/proto';
import { buildApp, membersOf } from './app.ts';
import { generatePassword, Operators } from './auth/operators.ts';
import { LiveState } from './live/state.ts';
import { DeviceRegistry, readRegistryFile, watchRegistryFile } from './auth/registry.ts';
import { AuditLog } from './auth/audit.ts';
import { DeviceAdmin } from './auth/device-admin.ts';
import { CommandTracker } from './devices/commands.ts';
import { DeviceConfigs } from './devices/configs.ts';
import { CommandFile } from './devices/command-file.ts';
import { writeJsonAtomic } from './core/atomic-file.ts';
import { loadConfig, parseOpenFileLimit, withinOpenFiles, type ConfigWarning, type HubConfig } from './core/config.ts';
import { HubError } from './core/errors.ts';
import { watchContent } from './file-watch.ts';
import { hubPaths } from './core/paths.ts';
import { LogLimiter, createLogger } from './core/log.ts';
import { HubMetrics } from './core/metrics.ts';
import { InfluxHistory } from './sinks/influx/history.ts';
import { MemoryHistory } from './live/rollups.ts';
import { InfluxSink } from './sinks/influx/influx-sink.ts';
import { Spool } from './spool/spool.ts';
import type { SpoolReader } from './spool/reader.ts';
import type { BatchStore } from './spool/store.ts';
import { Cluster } from './cluster/cluster.ts';
import { SharedState } from './cluster/shared-state.ts';
import { SharedConfigs } from './cluster/shared-configs.ts';
import { SharedCommands } from './cluster/shared-commands.ts';
import { SharedAudit } from './cluster/shared-audit.ts';
import { superviseWorkers, workerIndex } from './workers.ts';
import { loadUws } from './core/uws.ts';

/** Renewals replace the certificate and the key one after the other: wait for both. */
const TLS_WATCH_DEBOUNCE_MS = 500;

function fail(err: unknown): never {
  const e = err as HubError;
  console.error(`hub: ${e.code ? `${e.code}: ` : ''}${e.message}`);
  if (e.cause) console.error(`  cause: ${e.cause instanceof Error ? e.cause.message : JSON.stringify(e.cause)}`);
  process.exit(1);
}

/** This process's soft open-file limit (Linux); Infinity elsewhere. */
function openFiles(): number {
  try { return parseOpenFileLimit(readFileSync('/proc/self/limits', 'utf8')); } catch { return Infinity; }
}

function operatorsFileOf(config: HubConfig): string {
  return resolve(config.operatorsFile ?? resolve(config.dataDir, 'operators.json'));
}

/**
 * Operators: the first run creates `admin` with a generated password, shown
 * once (`create`: false in a worker, whose supervisor did that already).
 */
async function openOperators(config: HubConfig, create: boolean): Promise<{ operators: Operators; firstRunPassword: string | null }> {
  const operators = new Operators({
    file: operatorsFileOf(config), sessionsFile: resolve(config.dataDir, 'sessions.json'), sessionTtlMs: config.sessionTtlS * 1000,
    limits: config,
  });
  let firstRunPassword: string | null = null;
  if (config.adminPassword !== undefined) {
    if (create) await operators.ensurePassword('admin', config.adminPassword);
  } else if (operators.size === 0 && create) {
    firstRunPassword = generatePassword();
    await operators.setPassword('admin', firstRunPassword);
  }
  return { operators, firstRunPassword };
}

async function main(): Promise<void> {
  const warnings: ConfigWarning[] = [];
  let config;
  // Relative paths are the user's, from where they ran the command (INIT_CWD
  // under npm), like the tools'; the config then holds absolute paths only.
  const paths = hubPaths(process.env, process.cwd());
  try {
    config = loadConfig(process.env, { ...paths }, warnings);
    config = withinOpenFiles(config, openFiles(), warnings);
  } catch (err) {
    fail(err);
  }
  const log = createLogger(config.logLevel);
  const worker = workerIndex(process.env);
  if (config.workers > 1 && worker === null) {
    for (const w of warnings) log.warn({ key: w.key }, w.message);
    // The supervisor runs HUB_WORKERS hub processes on one port; they share
    // everything through NATS (the first operator account too).
    return superviseWorkers({ count: config.workers, hubId: config.hubId, log });
  }
  if (worker === null) for (const w of warnings) log.warn({ key: w.key }, w.message);

  let binding;
  try {
    binding = loadUws({ allowFallback: config.allowUwsFallback });
  } catch (err) {
    fail(err);
  }
  if (binding.native) log.info({ binding: binding.description }, `uWebSockets.js binding: ${binding.description}`);
  else log.warn({ binding: binding.description }, `uWebSockets.js binding: ${binding.description}`);

  const devicesFile = paths.devicesFile;
  let registry: DeviceRegistry;
  try {
    registry = new DeviceRegistry(readRegistryFile(devicesFile));
  } catch (err) {
    fail(err);
  }
  let onRegistryReload = (): void => {};
  // Cluster mode: the file's changes go to the shared registry (SharedState),
  // which is what `registry` then holds; this copy only tracks the file.
  let onFileChanged: (() => void) | null = null;
  const fileView = config.natsUrl !== undefined ? new DeviceRegistry(readRegistryFile(devicesFile)) : registry;
  const stopWatching = watchRegistryFile(devicesFile, fileView,
    (err) => log.error({ err }, `device registry ${devicesFile} not reloaded; the previous one stays in force`),
    () => {
      log.info({ devices: fileView.size }, onFileChanged ? 'device registry file changed: publishing the change to the cluster' : 'device registry reloaded');
      if (onFileChanged) onFileChanged(); else onRegistryReload();
    });
  if (registry.size === 0) log.warn(`no devices in ${devicesFile}: add one with \`npm run device-token -- --add DEVICE_ID\``);

  const metrics = new HubMetrics({ defaultMetrics: true });
  let store: BatchStore & { close(): Promise<void> };
  let reader: SpoolReader | null;
  let cluster: Cluster | null = null;
  const spoolDir = resolve(config.dataDir, 'spool');
  // loadConfig refuses INFLUX_URL without INFLUX_TOKEN and INFLUX_BUCKET.
  const { influxUrl, influxToken, influxBucket } = config;
  const target = influxUrl !== undefined && influxToken !== undefined && influxBucket !== undefined
    ? { url: influxUrl, token: influxToken, bucket: influxBucket } : null;
  const influx = target !== null;
  if (config.natsUrl !== undefined) {
    try {
      cluster = await Cluster.open({ config, log, metrics, withSink: influx });
    } catch (err) {
      fail(err);
    }
    store = cluster.store;
    reader = cluster.reader;
    log.info({ hub: cluster.hubId, nats: config.natsUrl, stream: config.natsStream, replicas: config.natsReplicas },
      `cluster mode: hub ${cluster.hubId}, batches in JetStream stream ${config.natsStream} (R${config.natsReplicas}) at ${config.natsUrl}`);
  } else {
    let spool: Spool;
    try {
      spool = await Spool.open({
        dir: spoolDir, maxBytes: config.spoolMaxBytes, segmentBytes: config.spoolSegmentBytes,
        commitDelayMs: config.spoolCommitMs, mode: influx ? 'sink' : 'embedded', log,
      });
    } catch (err) {
      fail(new HubError('HUB_ERR_STORE', `cannot open the spool in ${spoolDir} (HUB_DATA_DIR)`, { cause: err }));
    }
    store = spool;
    reader = spool;
  }
  const where = cluster ? `JetStream stream ${config.natsStream}` : `spool ${spoolDir}`;

  let sink: InfluxSink | null = null;
  if (target && reader) {
    sink = new InfluxSink({
      url: target.url, token: target.token, org: config.influxOrg ?? '', bucket: target.bucket,
      spool: reader, log, metrics, deadLetterFile: resolve(config.dataDir, worker === null ? 'dead-letter.ndjson' : `dead-letter.worker-${worker}.ndjson`),
      deadLetterMaxBytes: config.deadLetterMaxBytes, logLinesPerMinute: config.logLinesPerMinute,
      batchLines: config.sinkBatchLines, maxInFlight: config.sinkMaxInFlight,
    });
    log.info({ url: config.influxUrl, org: config.influxOrg, bucket: config.influxBucket, store: where },
      `storage: ${where} -> InfluxDB ${config.influxUrl} bucket ${config.influxBucket}`);
  } else if (cluster) {
    log.warn({ stream: config.natsStream, maxBytes: config.natsMaxBytes },
      `storage: no database configured (INFLUX_URL unset); readings are kept only in JetStream stream ${config.natsStream}, the oldest dropped past HUB_NATS_MAX_BYTES. Nothing reaches a database.`);
  } else {
    log.warn({ spool: spoolDir, maxBytes: config.spoolMaxBytes },
      `storage: no database configured (INFLUX_URL unset); readings are kept only in the local spool (${spoolDir}), the oldest rotated out past HUB_SPOOL_MAX_BYTES. Nothing reaches a database.`);
  }
  const rollups = influx ? null : new MemoryHistory({ maxSeries: config.historyMaxSeries, maxDeviceSeries: config.historyMaxDeviceSeries, metrics });

  let operators: Operators;
  let firstRunPassword: string | null = null;
  const operatorsFile = operatorsFileOf(config);
  try {
    // Cluster mode: the first account is made once the cluster's accounts are known (below).
    ({ operators, firstRunPassword } = await openOperators(config, cluster === null));
  } catch (err) {
    fail(err);
  }
  const sweepSessions = setInterval(() => operators.sweep(), 60_000);
  sweepSessions.unref();

  let live: LiveState;
  try {
    live = new LiveState({
      maxSeries: config.liveMaxSeries, maxDevices: config.liveMaxDevices, alarmRulesFile: resolve(config.alarmRulesFile ?? resolve(config.dataDir, 'alarm-rules.json')),
      spoolBytes: () => store.bytes, sinkStatus: sink ? () => sink.status() : undefined, knownDevices: () => registry.entries(),
    });
  } catch (err) {
    fail(err);
  }
  onRegistryReload = () => live.syncRegistry();

  // What the shared state (cluster mode) and the stores of device management log: at most HUB_LOG_LINES_PER_MIN lines a kind.
  const sharedLog = new LogLimiter(log, { perMinute: config.logLinesPerMinute, onSuppressed: (kind, n) => metrics.logLinesSuppressed.labels(kind).inc(n) });
  // Cluster mode: registry, operator accounts and sessions, alarm rules
  // shared through KV buckets; the first operator account of the cluster.
  let shared: SharedState | null = null;
  if (cluster) {
    const s = new SharedState({
      link: cluster.link, config, registry, operators, alarms: live.alarms, onRegistry: () => onRegistryReload(),
      log: sharedLog,
    }, readRegistryFile(devicesFile));
    shared = s;
    try {
      await s.start();
      if (config.adminPassword !== undefined) {
        await operators.ensurePassword('admin', config.adminPassword);
      } else if (operators.size === 0) {
        const password = generatePassword();
        if (await operators.setPassword('admin', password, { firstOnly: true })) firstRunPassword = password;
      }
    } catch (err) {
      fail(new HubError('HUB_ERR_NATS', `cannot share the registry, operators and alarm rules through NATS KV: ${(err as Error).message}`, { cause: err }));
    }
    onFileChanged = () => {
      let file;
      try { file = readRegistryFile(devicesFile); } catch (err) { log.error({ err }, `device registry ${devicesFile} not read; nothing published`); return; }
      s.fileChanged(file).catch((err: unknown) => log.error({ err }, 'device registry change not published to the cluster; edit the file again once NATS is reachable'));
    };
  }

  // The audit trail of operator actions, bounded on disk (HUB_AUDIT_MAX_BYTES).
  const audit = await AuditLog.open({ file: resolve(config.dataDir, 'audit.jsonl'), maxBytes: config.auditMaxBytes });
  // Cluster mode: one trail for every hub (each hub's files hold all of it).
  let sharedAudit: SharedAudit | null = null;
  if (cluster) {
    sharedAudit = new SharedAudit({
      link: cluster.link, config, metrics,
      log: sharedLog,
    });
    try {
      await sharedAudit.start(audit);
    } catch (err) {
      fail(new HubError('HUB_ERR_NATS', `cannot share the audit trail through JetStream: ${(err as Error).message}`, { cause: err }));
    }
  }
  // Registry changes from the API: durable before in force. Embedded: the
  // registry file (the watcher then reads back what was written); cluster
  // mode: the shared bucket (the hub's file is left as it is).
  const deviceAdmin = new DeviceAdmin({
    registry,
    commit: shared
      ? (next, changed) => shared.commitDevices(next, changed)
      : async (next) => { await writeJsonAtomic(devicesFile, next); registry.replace(next); onRegistryReload(); },
  });

  // Desired device configuration (durable before in force) and tracked
  // commands (stored before sent): embedded, files; cluster mode, shared KV buckets
  // (every hub and worker the same; a change or command taken by one hub is
  // sent by the hub holding the device's session).
  let configs: DeviceConfigs;
  let sharedConfigs: SharedConfigs | null = null;
  let sharedCommands: SharedCommands | null = null;
  let commandFile: CommandFile | null = null;
  let commands: CommandTracker;
  const configOptions = {
    membersOf: (k: string, v: string) => membersOf(registry, k, v), tagsOf: (id: string) => registry.get(id)?.tags,
    onSaveError: (err: unknown) => log.error({ err }, 'device configuration reports not saved; retrying'),
  };
  try {
    if (cluster) {
      sharedConfigs = new SharedConfigs({
        link: cluster.link, config, metrics,
        log: sharedLog,
      });
      await sharedConfigs.open();
      configs = new DeviceConfigs({ ...configOptions, persistence: sharedConfigs });
      await sharedConfigs.start(configs);
      const c = cluster;
      sharedCommands = new SharedCommands({
        link: c.link, config, metrics, onlineElsewhere: (id) => c.onlineElsewhere(id),
        log: sharedLog,
      });
      await sharedCommands.open();
      commands = new CommandTracker({ share: sharedCommands, onShareError: (err) => sharedLog.warn('command_not_shared', { err }, 'a command\'s state change was not stored in the cluster; it holds on this hub') });
      await sharedCommands.start(commands);
    } else {
      configs = await DeviceConfigs.open({ ...configOptions, file: resolve(config.dataDir, 'device-config.json') });
      commandFile = new CommandFile(resolve(config.dataDir, 'commands.jsonl'));
      commands = new CommandTracker({ share: commandFile, onShareError: (err) => sharedLog.warn('command_not_saved', { err }, `a command's state change was not saved to ${resolve(config.dataDir, 'commands.jsonl')}; it holds until the hub restarts`) });
      await commandFile.start(commands);
    }
  } catch (err) {
    fail(cluster ? new HubError('HUB_ERR_NATS', `cannot share device configuration and commands through NATS KV: ${(err as Error).message}`, { cause: err }) : err);
  }

  let hub;
  try {
    hub = buildApp(config, {
      operators, live, audit, deviceAdmin, management: { configs, commands },
      store, auth: registry, log, metrics, binding, sinkStatus: sink ? () => sink.status() : undefined,
      ownership: cluster?.ownership, clusterHealth: cluster ? () => cluster.health() : undefined,
      // InfluxDB 2.x serves InfluxQL for a bucket through its v1 API (a DBRP
      // mapping named like the bucket). Without a database: the last hour, in memory.
      history: target ? new InfluxHistory({ url: target.url, token: target.token, database: target.bucket }) : rollups ?? undefined,
      onDurable: rollups ? (b) => rollups.record(b) : undefined,
    });
  } catch (err) {
    fail(err);
  }
  try {
    // Cluster mode: watching device owners before the first device can claim one.
    await cluster?.start({
      devices: hub.devices, live, tagsOf: (deviceId) => registry.tagsOf(deviceId), shareEveryMs: config.liveTickMs,
    });
    await hub.listen();
  } catch (err) {
    fail(err);
  }
  sink?.start();
  // Signals are handled before the hub says it listens: whoever started it
  // may signal it as soon as it does.

  // TLS renewals without a restart: SIGHUP, or new content in the
  // certificate or key file. Open connections keep the certificate they got.
  let stopTlsWatch = (): void => {};
  const reloadTls = (why: string): void => {
    log.info(`${why}: reloading the TLS certificate`);
    // reloadTls logs what it loaded, or why not (the previous certificate stays).
    void hub.reloadTls().then((r) => { if (r.unchanged) log.info('TLS certificate and key unchanged: nothing to reload'); });
  };
  if (config.tlsCert !== undefined && config.tlsKey !== undefined) {
    stopTlsWatch = watchContent([config.tlsCert, config.tlsKey], () => reloadTls('TLS certificate files changed'), {
      debounceMs: TLS_WATCH_DEBOUNCE_MS,
      onError: (err) => log.warn({ err }, 'cannot watch the TLS certificate files for renewals; send SIGHUP after replacing them'),
    });
  }

  // A stop signal usually arrives more than once: sent to a process group
  // (systemd, Docker, CI runners, Ctrl-C in a terminal) it reaches the hub
  // directly and again forwarded by npm start. A repeat never cuts the
  // graceful shutdown short; the deadline does, or a second Ctrl-C: a SIGINT
  // more than SECOND_CTRL_C_MS after the first signal.
  const SECOND_CTRL_C_MS = 1000;
  let stoppingSince = 0;
  const stop = (signal: NodeJS.Signals): void => {
    if (stoppingSince) {
      const since = Date.now() - stoppingSince;
      if (signal === 'SIGINT' && since > SECOND_CTRL_C_MS) {
        log.warn('SIGINT again: exiting now, without waiting for acks');
        process.exit(130);
      }
      log.info({ signal }, `${signal} again: already shutting down (deadline in ${Math.max(0, config.shutdownTimeoutMs - since)} ms)`);
      return;
    }
    stoppingSince = Date.now();
    log.info({ signal, deadlineMs: config.shutdownTimeoutMs }, 'shutting down: no new connections, settling acks, closing devices (1001)');
    const hard = setTimeout(() => {
      log.error('shutdown deadline passed; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs + 1000);
    hard.unref();
    stopWatching();
    stopTlsWatch();
    // Order: stop listening, settle acks, devices get 1001 (hub.close, with
    // the spool kept open), ship what the sink can by the deadline, close the spool.
    const deadline = Date.now() + config.shutdownTimeoutMs;
    hub.close({ deadlineMs: config.shutdownTimeoutMs, keepStore: true })
      .then(() => sink?.close(deadline))
      .then(() => { sharedAudit?.stop(); return audit.close(); })
      .then(() => configs.close())
      .then(() => commandFile?.close())
      .then(() => { shared?.stop(); sharedConfigs?.stop(); sharedCommands?.stop(); return cluster ? cluster.close() : store.close(); })
      .then(() => {
        log.info({ sink: sink?.status() }, 'shutdown complete');
        process.exit(0);
      }, (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // A worker started with an IPC channel (workers.ts): when the supervisor is
  // gone (the channel closed, before this line or after), shut down as on SIGTERM.
  if (worker !== null && typeof process.send === 'function') {
    const orphaned = (): void => {
      log.warn('the HUB_WORKERS supervisor is gone; this worker shuts down');
      stop('SIGTERM');
    };
    if (!process.connected) orphaned();
    else {
      process.channel?.unref();
      process.on('disconnect', orphaned);
    }
  }
  process.on('SIGHUP', () => {
    if (!hub.tls) log.info('SIGHUP: nothing to reload (HUB_TLS_CERT unset)');
    else if (!stoppingSince) reloadTls('SIGHUP');
  });

  const scheme = hub.tls ? 'wss' : 'ws';
  const http = hub.tls ? 'https' : 'http';
  const shown = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  log.info({ port: hub.port, devices: registry.size, tls: hub.tls },
    `hub listening: devices ${scheme}://${shown}:${hub.port}${DEVICE_PATH}  health ${http}://${shown}:${hub.port}/healthz  metrics ${http}://${shown}:${hub.port}/metrics`);
  log.info({ url: `${http}://${shown}:${hub.port}/` }, `dashboard: ${http}://${shown}:${hub.port}/`);
  if (firstRunPassword) {
    // Printed on stdout once, outside the JSON log, for a person to read.
    console.log(`\n  Dashboard: ${http}://${shown}:${hub.port}/\n  First run: created operator "admin" with password  ${firstRunPassword}\n  (stored hashed in ${operatorsFile}; change it with \`npm run operator -- admin\`)\n`);
  }
}

main().catch((err: unknown) => fail(err));
