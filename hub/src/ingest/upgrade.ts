// ingest/: the HTTP upgrade of /v1/devices (proto/README.md §2, §3): the
// refusal checks in their documented order (shutting down, storage,
// connection caps, token, admission rate), each an HTTP status with a
// counter, and for a device that passes, its Session and the 101.
// Imports: proto, auth (DeviceAuthenticator, types), spool (the BatchStore
// seam, types), core (config, metrics types, token bucket, uws types),
// ingest/session, limits.
import { DEVICE_SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX } from '@telemetry/proto';
import type { DeviceAuthenticator } from '../auth/registry.ts';
import type { HubConfig } from '../core/config.ts';
import type { HubMetrics, RefusalReason } from '../core/metrics.ts';
import { TokenBucket } from '../core/token-bucket.ts';
import type { UwsTypes } from '../core/uws.ts';
import type { BatchStore } from '../spool/store.ts';
import { jitteredRetryMs } from './limits.ts';
import { Session, type SessionTable, type SocketData } from './session.ts';

type HttpResponse = UwsTypes.HttpResponse;

export type RefusalStatus = 401 | 403 | 429 | 503;

const STATUS_LINES: Readonly<Record<RefusalStatus, string>> = {
  401: '401 Unauthorized', 403: '403 Forbidden', 429: '429 Too Many Requests', 503: '503 Service Unavailable',
};

/** protocol: `Authorization: Bearer <token>`, scheme case-insensitive, nothing else in the header (§2.2). */
const BEARER_RE = /^Bearer\s+(\S+)\s*$/i;

export interface UpgradeCredentials {
  /** The device token, '' when none was presented. */
  readonly token: string;
  /** The subprotocol to select: ours when offered, else ''. */
  readonly subprotocol: string;
}

/**
 * The token and the subprotocol to answer with, from the upgrade's
 * Sec-WebSocket-Protocol and Authorization headers ('' when absent). A
 * Bearer header wins over a bearer.<token> subprotocol; a header in any other
 * form is ignored.
 */
export function upgradeCredentials(offeredProtocols: string, authorization: string): UpgradeCredentials {
  let token = '';
  let subprotocol = '';
  for (const offered of offeredProtocols.split(',')) {
    const protocol = offered.trim();
    if (protocol === DEVICE_SUBPROTOCOL) subprotocol = protocol;
    else if (protocol.startsWith(TOKEN_SUBPROTOCOL_PREFIX)) token = protocol.slice(TOKEN_SUBPROTOCOL_PREFIX.length);
  }
  if (authorization) {
    const bearer = BEARER_RE.exec(authorization);
    if (bearer) token = bearer[1]!;
  }
  return { token, subprotocol };
}

export interface UpgradeDeps {
  readonly config: HubConfig;
  readonly store: Pick<BatchStore, 'healthy'>;
  readonly auth: DeviceAuthenticator;
  readonly metrics: HubMetrics;
  readonly now: () => number;
  /** The open connections the caps count. */
  readonly table: SessionTable;
}

export class DeviceUpgrade {
  readonly #deps: UpgradeDeps;
  /** New sessions per second (HUB_ADMISSION_RATE, burst HUB_ADMISSION_BURST). */
  readonly #admission: TokenBucket;
  /** Session ids: this hub instance, then a counter. */
  readonly #instance = Math.random().toString(36).slice(2, 8);
  #sessionCounter = 0;
  #shuttingDown = false;

  constructor(deps: UpgradeDeps) {
    this.#deps = deps;
    this.#admission = new TokenBucket(deps.config.admissionRate, deps.config.admissionBurst, deps.now());
  }

  /** From now on every upgrade is refused with 503 (shutdown). */
  stopAdmitting(): void {
    this.#shuttingDown = true;
  }

  /** uWS upgrade: refuses with an HTTP status, or upgrades with a new Session. */
  upgrade(res: HttpResponse, req: UwsTypes.HttpRequest, context: UwsTypes.us_socket_context_t): void {
    // Everything is read from req synchronously: req is invalid after return.
    const key = req.getHeader('sec-websocket-key');
    const offered = req.getHeader('sec-websocket-protocol');
    const authorization = req.getHeader('authorization');
    const addr = Buffer.from(res.getRemoteAddressAsText()).toString();
    const { config, metrics, table } = this.#deps;

    // protocol: the refusal checks run in the order of the table in §3; the first that fails answers.
    if (this.#shuttingDown) return this.#refuse(res, 503, 'shutting_down', 'hub is shutting down', config.retryAfterMs);
    if (!this.#deps.store.healthy) return this.#refuse(res, 503, 'store_unavailable', 'storage unavailable', config.retryAfterMs);
    if (table.sockets.size >= config.maxConnections) {
      metrics.limit('max_connections');
      return this.#refuse(res, 503, 'max_connections', `hub at its connection limit (HUB_MAX_CONNECTIONS=${config.maxConnections})`, config.retryAfterMs);
    }
    if (table.addresses.get(addr) >= config.maxConnectionsPerAddress) {
      metrics.limit('per_address');
      return this.#refuse(res, 429, 'per_address', `more than ${config.maxConnectionsPerAddress} connections from this address`, config.retryAfterMs);
    }

    const { token, subprotocol } = upgradeCredentials(offered, authorization);
    if (!token) return this.#refuse(res, 401, 'no_token', 'missing bearer token (Authorization header or bearer.<token> subprotocol)');
    const auth = this.#deps.auth.authenticate(token);
    if (!auth.ok) return this.#refuse(res, auth.status, auth.status === 403 ? 'disabled' : 'bad_token', auth.reason);

    // Admission control last, so junk without a valid token cannot use up
    // the budget that keeps reconnect storms from starving the hub.
    const now = this.#deps.now();
    if (!this.#admission.take(1, now)) {
      metrics.limit('admission');
      return this.#refuse(res, 503, 'admission', 'too many new sessions right now', Math.max(config.retryAfterMs, this.#admission.waitMs(1, now)));
    }

    const device = table.device(auth.deviceId, now);
    const session = new Session(this.#instance, ++this.#sessionCounter, auth.deviceId, auth.tags, addr, device);
    // protocol: never echo the token subprotocol; select ours or none.
    res.cork(() => res.upgrade<SocketData>({ session }, key, subprotocol, '', context));
  }

  #refuse(res: HttpResponse, status: RefusalStatus, reason: RefusalReason, text: string, retryAfterMs?: number): void {
    this.#deps.metrics.refusal(status, reason);
    res.cork(() => {
      res.writeStatus(STATUS_LINES[status]).writeHeader('Content-Type', 'text/plain; charset=utf-8');
      if (status === 401) res.writeHeader('WWW-Authenticate', 'Bearer realm="devices"');
      // RFC 9110 §10.2.3: delay-seconds.
      if (retryAfterMs !== undefined) res.writeHeader('Retry-After', String(Math.ceil(jitteredRetryMs(retryAfterMs) / 1000)));
      res.end(text + '\n', true);
    });
  }
}
