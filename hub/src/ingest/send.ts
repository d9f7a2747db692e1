// ingest/: the one way the hub sends a message to a device, so that every
// send's result is looked at (Welcome, Acks, Notices, Commands).
// Imports: core (metrics type, uws types).
import type { HubMetrics } from '../core/metrics.ts';
import type { UwsTypes } from '../core/uws.ts';

/** uWS `ws.send()` results (docs/index.d.ts of the binding). */
export const SEND_OK = 1;
/** Queued behind earlier bytes the device has not read yet; drains over time. */
export const SEND_BACKPRESSURE = 0;
/** Not sent: the socket is over maxBackpressure, and uWS drops the connection. */
export const SEND_DROPPED = 2;

/**
 * Sends one binary HubMessage. A send that did not go out at once (queued or
 * dropped) counts as `send_backpressure`: a device that stops reading shows
 * there before uWS drops it at maxBackpressure (proto/README.md §1).
 */
export function sendToDevice(ws: Pick<UwsTypes.WebSocket<unknown>, 'send'>, bytes: Uint8Array, metrics: HubMetrics): void {
  if (ws.send(bytes, true) !== SEND_OK) metrics.limit('send_backpressure');
}
