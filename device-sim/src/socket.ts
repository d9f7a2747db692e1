// device-sim/: the socket seam. The small interface a SimDevice talks to
// (DeviceSocket, handed out by a SocketConnector, reporting to a
// SocketListener) and the default connector over the `ws` client. Tests
// inject an in-memory connector, so device behaviour is tested without TCP.
// Imports: ws.
import WebSocket from 'ws';

/** WebSocket ready states (WHATWG / RFC 6455 numbering, as `ws` uses them). */
export const SocketState = { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 } as const;

/** What the device does with a connection. */
export interface DeviceSocket {
  /** One of SocketState. */
  readonly readyState: number;
  /** A string goes out as a text frame, bytes as a binary frame. */
  send(data: Uint8Array | string): void;
  /** Starts the close handshake (RFC 6455 §7.1.2). */
  close(code: number, reason?: string): void;
  /** Drops the connection without a close frame (a lost link). */
  terminate(): void;
  /** Stops reading (nothing more is heard, not even pings): with no more sends, a half-open link. Optional: in-memory sockets may lack it. */
  pause?(): void;
}

/** What the device hears from a connection, in this order: onRefused or onOpen first, onClose exactly once, last. */
export interface SocketListener {
  /** The upgrade succeeded (101). */
  onOpen(): void;
  onMessage(data: Uint8Array, isBinary: boolean): void;
  /** A WebSocket ping (the connector answers it). */
  onPing(): void;
  /** The upgrade was refused with an HTTP status (§3); `retryAfter` is the raw Retry-After header. */
  onRefused(status: number, retryAfter: string | string[] | undefined): void;
  /** A network or TLS error ('ECONNREFUSED', ...); onClose follows. */
  onError(code: string): void;
  /** The connection ended: the close frame's code and reason, 1006 when there was none. */
  onClose(code: number, reason: string): void;
}

export interface SocketRequest {
  url: string;
  /** Subprotocols to offer, in order. */
  protocols: string[];
  headers: Record<string, string>;
  /** Extra CA (PEM) to trust for wss. */
  ca?: Buffer | string;
  /** Source IP for the connection. */
  localAddress?: string;
  /** Give up on an upgrade that has not completed this long after the attempt started. */
  handshakeTimeoutMs: number;
}

/**
 * Opens a connection; may throw synchronously for a request it can never
 * serve (a bad URL). It calls the listener only after it has returned the
 * socket (events arrive later, as they do from a network).
 */
export type SocketConnector = (request: SocketRequest, listener: SocketListener) => DeviceSocket;

/** The default connector: the `ws` client, which already is a DeviceSocket. */
export const wsConnector: SocketConnector = (request, listener) => {
  const ws = new WebSocket(request.url, request.protocols, {
    headers: request.headers, ca: request.ca, localAddress: request.localAddress,
    perMessageDeflate: false, // the hub never negotiates it (§1)
    handshakeTimeout: request.handshakeTimeoutMs,
  });
  ws.binaryType = 'nodebuffer';
  ws.on('unexpected-response', (_req, res) => {
    listener.onRefused(res.statusCode ?? 0, res.headers['retry-after']);
    res.resume();
    ws.terminate();
  });
  ws.on('open', () => listener.onOpen());
  ws.on('ping', () => listener.onPing());
  ws.on('message', (data: Buffer, isBinary: boolean) => listener.onMessage(data, isBinary));
  ws.on('error', (err: NodeJS.ErrnoException) => listener.onError(err.code ?? err.name));
  ws.on('close', (code, reason) => listener.onClose(code, reason.toString()));
  return ws;
};
