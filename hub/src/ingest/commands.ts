// ingest/: downlink commands (proto/README.md §12): ids from one counter per
// hub process, the ids each session was sent and not yet answered, and the
// CommandResults that come back. Only results for those ids are logged, so
// a device cannot fill the log with results. A result for a tracked Invoke
// is handed to the command tracker (management.ts IngestCommands), with
// result_json checked (§5.11: "" or JSON of at most 4096 bytes; else 4000).
// Imports: proto, core (log, metrics types), ingest/session, lifecycle, management (types), send.
import { CloseCode, encodeHubMessage, type Command, type CommandResult } from '@telemetry/proto';
import type { LogLimiter } from '../core/log.ts';
import type { HubMetrics } from '../core/metrics.ts';
import type { SessionLifecycle } from './lifecycle.ts';
import { jsonProblem, type IngestCommands } from './management.ts';
import { sendToDevice } from './send.ts';
import type { DeviceSocket, Session } from './session.ts';

/**
 * Command ids a session remembers as sent and not yet answered; past it the
 * oldest is forgotten (its late result counts as unknown), so a device that
 * never answers cannot block newer commands nor grow the list.
 */
export const MAX_OUTSTANDING_COMMANDS = 16;
/** A CommandResult message is logged up to this many characters. */
export const MAX_LOGGED_MESSAGE_CHARS = 200;

export interface CommandDeps {
  readonly metrics: HubMetrics;
  readonly lifecycle: SessionLifecycle;
  readonly deviceLog: LogLimiter;
  /** Tracked commands: told each result for an id this session was sent. */
  readonly tracker?: IngestCommands | undefined;
}

export class Commands {
  readonly #deps: CommandDeps;
  #nextCommandId = 1;
  readonly #resultOk: { inc(): void };
  readonly #resultFailed: { inc(): void };
  readonly #resultUnknown: { inc(): void };

  constructor(deps: CommandDeps) {
    this.#deps = deps;
    const results = deps.metrics.commandResults;
    this.#resultOk = results.labels('ok');
    this.#resultFailed = results.labels('failed');
    this.#resultUnknown = results.labels('unknown');
  }

  /** Sends a Command on an open session's socket; returns its id. */
  send(session: Session, ws: DeviceSocket, command: Omit<Command, 'id'>): number {
    const id = this.#nextCommandId++;
    const ids = session.commandIds ??= [];
    if (ids.push(id) > MAX_OUTSTANDING_COMMANDS) ids.shift();
    const metrics = this.#deps.metrics;
    ws.cork(() => sendToDevice(ws, encodeHubMessage({ command: { ...command, id } }), metrics));
    return id;
  }

  /**
   * Counts and logs a result for a command this session was sent; a result
   * for any other id (never sent, already answered, forgotten) is only
   * counted.
   */
  result(session: Session, result: CommandResult): void {
    if (session.state !== 'open') return this.#deps.lifecycle.close(session, CloseCode.PROTOCOL_ERROR, 'CommandResult before Hello', undefined, 'protocol');
    const id = result.id ?? 0;
    const resultJson = result.resultJson ?? '';
    // protocol: result_json is "" or JSON of at most 4096 bytes; anything else closes with 4000 (§5.11).
    const invalid = resultJson === '' ? null : jsonProblem(resultJson, false);
    const ids = session.commandIds;
    const at = ids ? ids.indexOf(id) : -1;
    if (!ids || at < 0) {
      this.#resultUnknown.inc();
      if (invalid) this.#deps.lifecycle.close(session, CloseCode.PROTOCOL_ERROR, `CommandResult.result_json ${invalid}`, undefined, 'protocol');
      return;
    }
    ids.splice(at, 1);
    const ok = result.ok === true && !invalid;
    (ok ? this.#resultOk : this.#resultFailed).inc();
    const tracker = this.#deps.tracker;
    if (tracker) {
      try {
        tracker.result(session.deviceId, id, { ok, message: result.message ?? '', resultJson: invalid ? '' : resultJson, invalid: invalid ? `result_json ${invalid}` : null });
      } catch (err) {
        this.#deps.deviceLog.warn('command_tracker_failed', { device: session.deviceId, err: (err as Error).message }, 'command result not tracked');
      }
    }
    if (invalid) return this.#deps.lifecycle.close(session, CloseCode.PROTOCOL_ERROR, `CommandResult.result_json ${invalid}`, undefined, 'protocol');
    const text = result.message ?? '';
    const message = text.length > MAX_LOGGED_MESSAGE_CHARS ? `${text.slice(0, MAX_LOGGED_MESSAGE_CHARS)}…` : text;
    this.#deps.deviceLog.info('command_result', { device: session.deviceId, session: session.id, command: id, ok, message, messageChars: text.length }, 'command result');
  }
}
