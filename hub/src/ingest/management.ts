// ingest/: the device side of management (proto/README.md §5.14, §12, §15):
// what ingest needs of desired configuration and tracked commands (the
// interfaces, implemented in devices/), and ConfigSync, which checks each
// ConfigReport and sends DesiredConfig deltas, one in flight per session,
// only where `config` is in use. Nothing here runs for a Batch; a session
// without features costs nothing (its flags are bits of Session).
// Imports: proto, core (log, metrics types), ingest/session, lifecycle, send.
import {
  CloseCode, MAX_CONFIG_ERROR_CHARS, MAX_CONFIG_JSON_BYTES, encodeHubMessage,
  type ConfigReport, type DesiredConfig,
} from '@telemetry/proto';
import type { LogLimiter } from '../core/log.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { SessionLifecycle } from './lifecycle.ts';
import { sendToDevice } from './send.ts';
import type { Session, SessionTable } from './session.ts';

/** A ConfigReport as checked here (§5.16). */
export interface CheckedReport {
  version: number;
  sampleIntervalMs: number;
  batchIntervalMs: number;
  /** "" or a JSON object of at most MAX_CONFIG_JSON_BYTES bytes. */
  customJson: string;
  ok: boolean;
  error: string;
}

/** Desired configuration as ingest uses it (devices/configs.ts). */
export interface IngestConfigs {
  /** The DesiredConfig to send now (against the latest report), or null. */
  delta(deviceId: string, tags: Readonly<Record<string, string>>): DesiredConfig | null;
  /** Keeps a checked report; false when it could not be kept (over a bound). */
  report(deviceId: string, report: CheckedReport): boolean;
  /** Told the devices whose desired configuration changed, once in force. */
  onChange(listener: (deviceIds: readonly string[]) => void): () => void;
}

/** A CommandResult for a Command this session was sent, as ingest hands it over. */
export interface WireResult {
  ok: boolean;
  message: string;
  /** "" or valid JSON of at most MAX_CONFIG_JSON_BYTES bytes (unless `invalid`). */
  resultJson: string;
  /** Why result_json was refused (the session is closed with 4000), or null. */
  invalid: string | null;
}

/** Tracked commands as ingest uses them (devices/commands.ts). */
export interface IngestCommands {
  /** A session of the device was welcomed; `invoke`: in use on it. Queued commands go out now. */
  connected(deviceId: string, invoke: boolean): void;
  /** A result for wire id `id`, which this session was sent. */
  result(deviceId: string, id: number, result: WireResult): void;
}

export interface IngestManagement {
  readonly configs: IngestConfigs;
  readonly commands: IngestCommands;
}

/** Why a ConfigReport is refused (4000), or null when it is valid (§5.16). */
export function checkReport(r: ConfigReport): string | null {
  const version = r.version ?? 0;
  if (!Number.isSafeInteger(version) || version < 0) return 'ConfigReport.version must be 0..2^53-1';
  const custom = r.customJson ?? '';
  if (custom !== '') {
    const why = jsonProblem(custom, true);
    if (why) return `ConfigReport.custom_json ${why}`;
  }
  const error = r.error ?? '';
  // Code points: a string of at most 200 UTF-16 units has at most 200.
  if (error.length > MAX_CONFIG_ERROR_CHARS && [...error].length > MAX_CONFIG_ERROR_CHARS) return `ConfigReport.error longer than ${MAX_CONFIG_ERROR_CHARS} characters`;
  return null;
}

/** Why `text` is not a JSON value (an object, with `object`) of at most MAX_CONFIG_JSON_BYTES bytes, or null. */
export function jsonProblem(text: string, object: boolean): string | null {
  // A string of more than 4096 UTF-16 units is more than 4096 bytes.
  if (text.length > MAX_CONFIG_JSON_BYTES || Buffer.byteLength(text) > MAX_CONFIG_JSON_BYTES) return `longer than ${MAX_CONFIG_JSON_BYTES} bytes`;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'is not JSON';
  }
  if (object && (typeof v !== 'object' || v === null || Array.isArray(v))) return 'is not a JSON object';
  return null;
}

export interface ConfigSyncDeps {
  readonly configs: IngestConfigs;
  readonly lifecycle: SessionLifecycle;
  readonly metrics: HubMetrics;
  readonly table: SessionTable;
  readonly deviceLog: LogLimiter;
}

export class ConfigSync {
  readonly #deps: ConfigSyncDeps;
  /** The last version sent to each session (protocol: each V at most once per session). Weak: gone with the session. */
  readonly #sent = new WeakMap<Session, number>();
  readonly #unsubscribe: () => void;

  constructor(deps: ConfigSyncDeps) {
    this.#deps = deps;
    this.#unsubscribe = deps.configs.onChange((ids) => this.changed(ids));
  }

  /** protocol: a ConfigReport (§15.3); refused with 4000 outside a session where `config` is in use, or when it breaks §5.16. */
  report(session: Session, report: ConfigReport): void {
    const lifecycle = this.#deps.lifecycle;
    if (session.state !== 'open') return lifecycle.close(session, CloseCode.PROTOCOL_ERROR, 'ConfigReport before Hello', undefined, 'protocol');
    if (!session.usesConfig) return lifecycle.close(session, CloseCode.PROTOCOL_ERROR, 'ConfigReport in a session where "config" is not in use (Hello.features did not list it)', undefined, 'protocol');
    const why = checkReport(report);
    if (why) return lifecycle.close(session, CloseCode.PROTOCOL_ERROR, why, undefined, 'protocol');
    session.configReported = true;
    session.desiredInFlight = false;
    try {
      const kept = this.#deps.configs.report(session.deviceId, {
        version: report.version ?? 0, sampleIntervalMs: report.sampleIntervalMs ?? 0, batchIntervalMs: report.batchIntervalMs ?? 0,
        customJson: report.customJson ?? '', ok: report.ok === true, error: report.error ?? '',
      });
      if (!kept) this.#deps.deviceLog.warn('config_report_dropped', { device: session.deviceId }, 'ConfigReport not kept: the hub keeps configuration for no more devices');
    } catch (err) {
      this.#deps.deviceLog.warn('config_report_failed', { device: session.deviceId, err: (err as Error).message }, 'ConfigReport not kept');
    }
    this.#maybeSend(session);
  }

  /** Desired configuration changed for these devices: idle sessions here get the delta at once. */
  changed(deviceIds: readonly string[]): void {
    const table = this.#deps.table;
    for (const id of deviceIds) {
      const session = table.current(id);
      if (session && session.state === 'open' && session.usesConfig) this.#maybeSend(session);
    }
  }

  /**
   * protocol §15.3: DesiredConfig V goes out when the session has had its
   * first report, none is in flight, the latest report is below V, and V
   * was not sent in this session yet.
   */
  #maybeSend(session: Session): void {
    if (!session.configReported || session.desiredInFlight || !session.ws) return;
    let delta: DesiredConfig | null;
    try {
      delta = this.#deps.configs.delta(session.deviceId, session.tags);
    } catch (err) {
      this.#deps.deviceLog.warn('config_delta_failed', { device: session.deviceId, err: (err as Error).message }, 'desired configuration not sent');
      return;
    }
    if (!delta || this.#sent.get(session) === delta.version) return;
    this.#sent.set(session, delta.version ?? 0);
    session.desiredInFlight = true;
    const ws = session.ws;
    const metrics = this.#deps.metrics;
    ws.cork(() => sendToDevice(ws, encodeHubMessage({ desired: delta }), metrics));
  }

  stop(): void { this.#unsubscribe(); }
}
