// ingest/: every device message, checked in the order of proto/README.md §4
// (size, frame type, decoding, a known member) and handed to Hello, Batch or
// CommandResult handling, and ConfigReport where management is wired in. The per-message entry point of ingest.
// Imports: proto, core (metrics types), ingest/session, lifecycle, batches, commands.
import { CloseCode, decodeBatchMessage, decodeDeviceMessage, type DeviceMessage } from '@telemetry/proto';
import type { HubMetrics } from '../core/metrics.ts';
import type { BatchIntake } from './batches.ts';
import type { Commands } from './commands.ts';
import type { SessionLifecycle } from './lifecycle.ts';
import type { ConfigSync } from './management.ts';
import type { DeviceSocket } from './session.ts';

export interface MessageDeps {
  readonly maxMessageBytes: number;
  readonly metrics: HubMetrics;
  readonly lifecycle: SessionLifecycle;
  readonly batches: BatchIntake;
  readonly commands: Commands;
  /** Desired/reported configuration; null: this hub does not know `reported` (4000, as an unknown member). */
  readonly config?: ConfigSync | null;
}

export class MessageRouter {
  readonly #maxMessageBytes: number;
  readonly #metrics: HubMetrics;
  readonly #lifecycle: SessionLifecycle;
  readonly #batches: BatchIntake;
  readonly #commands: Commands;
  readonly #config: ConfigSync | null;

  constructor(deps: MessageDeps) {
    this.#maxMessageBytes = deps.maxMessageBytes;
    this.#metrics = deps.metrics;
    this.#lifecycle = deps.lifecycle;
    this.#batches = deps.batches;
    this.#commands = deps.commands;
    this.#config = deps.config ?? null;
  }

  /** uWS message. Check 1 of §4 (the hard cap) is uWS's maxPayloadLength, before this runs. */
  message(ws: DeviceSocket, data: ArrayBuffer, isBinary: boolean): void {
    const session = ws.getUserData().session;
    if (session.state === 'closed') return;
    const metrics = this.#metrics;
    const hot = metrics.hot;
    hot.messages++;
    hot.bytes += data.byteLength;
    const lifecycle = this.#lifecycle;
    if (data.byteLength > this.#maxMessageBytes) {
      return lifecycle.close(session, CloseCode.MESSAGE_TOO_BIG, `message of ${data.byteLength} bytes; the limit is ${this.#maxMessageBytes}`, undefined, 'message_size');
    }
    if (!isBinary) return lifecycle.close(session, CloseCode.UNSUPPORTED_DATA, 'text frames are not part of the protocol; send binary protobuf', undefined, 'text_frame');
    // The common case, a Batch as encoders write it, read straight into
    // typed arrays; anything else takes the full decoder below.
    const bytes = new Uint8Array(data);
    const fast = decodeBatchMessage(bytes);
    if (fast) return this.#batches.handle(session, ws, fast);
    let msg: DeviceMessage;
    try {
      // Decoding copies everything out of `data`, which uWS neuters on return.
      msg = decodeDeviceMessage(bytes);
    } catch (err) {
      return lifecycle.close(session, CloseCode.INVALID_PAYLOAD, `not a valid DeviceMessage: ${(err as Error).message}`, undefined, 'malformed');
    }
    // The decoder sets the member `msg` names; the checks only satisfy the types.
    switch (msg.msg) {
      case 'hello': if (msg.hello) return lifecycle.hello(session, ws, msg.hello); break;
      case 'batch': if (msg.batch) return this.#batches.handle(session, ws, msg.batch); break;
      case 'commandResult': if (msg.commandResult) return this.#commands.result(session, msg.commandResult); break;
      case 'reported': if (msg.reported && this.#config) return this.#config.report(session, msg.reported); break;
      case undefined: break;
    }
    return lifecycle.close(session, CloseCode.PROTOCOL_ERROR, 'empty or unknown DeviceMessage', undefined, 'protocol');
  }
}
