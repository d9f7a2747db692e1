// Protocol constants shared by the hub and every device implementation.
// proto/README.md documents each one; keep the two in step.

/** The device protocol version this schema describes. */
export const PROTOCOL_VERSION = 1;

/**
 * Values of Hello.features / Welcome.features (proto/README.md §5.3, §15).
 * "config": desired/reported configuration (DesiredConfig, ConfigReport).
 * "invoke": named commands (Command.invoke). Unknown values are ignored.
 */
export const FEATURE_CONFIG = 'config';
export const FEATURE_INVOKE = 'invoke';

/** At most this many entries in Hello.features, each 1..MAX_FEATURE_BYTES bytes. */
export const MAX_FEATURES = 16;
export const MAX_FEATURE_BYTES = 32;

/**
 * Longest JSON text, in UTF-8 bytes, of DesiredConfig.custom_json,
 * ConfigReport.custom_json, Invoke.args_json and CommandResult.result_json.
 */
export const MAX_CONFIG_JSON_BYTES = 4096;

/** Longest ConfigReport.error, in characters (Unicode code points). */
export const MAX_CONFIG_ERROR_CHARS = 200;

/** Longest Invoke.name; the whole name matches COMMAND_NAME_RE. */
export const MAX_COMMAND_NAME_CHARS = 64;
export const COMMAND_NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;

/** WebSocket path of the device endpoint. */
export const DEVICE_PATH = '/v1/devices';

/** Subprotocol every device offers (and the hub selects). */
export const DEVICE_SUBPROTOCOL = 'iot.telemetry.v1';

/**
 * Prefix of the subprotocol that carries a bearer token for clients that
 * cannot set an Authorization header: `bearer.<token>`. The hub never echoes it.
 */
export const TOKEN_SUBPROTOCOL_PREFIX = 'bearer.';

/**
 * WebSocket close codes the hub uses on the device endpoint. 1xxx are
 * RFC 6455 §7.4.1 codes; 4xxx are this protocol's own (RFC 6455 §7.4.2
 * reserves 4000-4999 for applications).
 */
export const CloseCode = {
  /** Session ended normally. */
  NORMAL: 1000,
  /** The hub is shutting down; reconnect after retry-after. */
  GOING_AWAY: 1001,
  /** A text frame arrived; the protocol is binary only. */
  UNSUPPORTED_DATA: 1003,
  /** The frame was not a valid DeviceMessage. */
  INVALID_PAYLOAD: 1007,
  /** The frame exceeded max_message_bytes. */
  MESSAGE_TOO_BIG: 1009,
  /** The hub failed internally (e.g. storage error); reconnect after retry-after. */
  INTERNAL_ERROR: 1011,
  /** The hub is overloaded; reconnect after retry-after. */
  TRY_AGAIN_LATER: 1013,
  /** A valid message at the wrong time or with inconsistent content. */
  PROTOCOL_ERROR: 4000,
  /** No Hello within the handshake timeout. */
  HANDSHAKE_TIMEOUT: 4001,
  /** A newer session for the same device replaced this one. */
  SESSION_REPLACED: 4002,
  /** More unacked batches in flight than the window allows. */
  WINDOW_EXCEEDED: 4003,
  /** Readings per second above the device's limit; reconnect after retry-after. */
  RATE_LIMITED: 4004,
  /** A batch with more readings than max_batch_readings. */
  BATCH_TOO_LARGE: 4005,
  /** A metric definition with a bad name or unit, an id redefined, or too many metrics. */
  INVALID_METRIC: 4006,
  /** Hello asked for a protocol version the hub does not speak. */
  UNSUPPORTED_VERSION: 4007,
  /** The device's registration was revoked while it was connected. */
  DEVICE_REVOKED: 4008,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close codes after which a device should reconnect (after backoff or retry-after). */
export const RECONNECTABLE_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.GOING_AWAY, CloseCode.INTERNAL_ERROR, CloseCode.TRY_AGAIN_LATER,
  CloseCode.HANDSHAKE_TIMEOUT, CloseCode.RATE_LIMITED, 1006,
]);

/** Codes of Notice messages that do not close the session. */
export const NoticeCode = {
  /** Credit was reduced because storage is behind; sent when credit first drops below the window. */
  BACKPRESSURE: 100,
  /** Readings were out of the skew bounds (corrected or dropped); sent once per session, with the estimated offset. */
  CLOCK_SKEW: 101,
} as const;

/**
 * Close reasons carry machine-readable retry hints as `retry-after=<ms>`
 * (close reasons are at most 123 bytes, RFC 6455 §5.5). Returns undefined
 * when absent.
 */
export function parseRetryAfterMs(reason: string): number | undefined {
  const m = /(?:^|[\s;])retry-after=(\d{1,9})(?:$|[\s;])/.exec(reason);
  return m ? Number(m[1]) : undefined;
}

const UTF8 = new TextEncoder();

/** Formats a close reason with a retry hint, kept within 123 bytes. */
export function closeReason(text: string, retryAfterMs?: number): string {
  const hint = retryAfterMs !== undefined ? `; retry-after=${Math.max(0, Math.round(retryAfterMs))}` : '';
  const room = 123 - UTF8.encode(hint).length;
  let t = text;
  while (UTF8.encode(t).length > room) t = t.slice(0, -1);
  return t + hint;
}

/** WebSocket path of the live (dashboard) endpoint. */
export const LIVE_PATH = '/v1/live';

/** Subprotocol a dashboard offers on the live endpoint (and the hub selects). */
export const LIVE_SUBPROTOCOL = 'iot.telemetry.live.v1';

/** Close codes the hub uses on the live endpoint (besides 1001 at shutdown, 1009, 1008). */
export const LiveCloseCode = {
  /** The operator session expired or was signed out. */
  SESSION_ENDED: 4101,
  /** The client did not read its frames: past the backpressure limit even on coarse updates. */
  TOO_SLOW: 4102,
  /** Malformed LiveRequest or an unknown topic. */
  BAD_REQUEST: 4103,
} as const;
