// core/: the hub's one config module: every key, its default, its env var and its
// safe range. `loadConfig(env)` validates (an error names the key and the bad
// value), clamps to safe ranges (with a warning), and freezes.
// Imports: errors only. Only main.ts passes process.env.
import { HubError } from './errors.ts';

export interface HubConfig {
  readonly host: string;
  readonly port: number;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly devicesFile: string | undefined;
  readonly dataDir: string;
  readonly allowUwsFallback: boolean;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Max unacked batches per session (protocol: Welcome.window). */
  readonly window: number;
  readonly maxMessageBytes: number;
  readonly maxBatchReadings: number;
  readonly maxReadingsPerSecond: number;
  readonly readingsBurst: number;
  readonly maxMetricsPerSession: number;
  readonly maxMetricNameBytes: number;
  readonly maxConnectionsPerAddress: number;
  readonly maxConnections: number;
  readonly admissionRate: number;
  readonly admissionBurst: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutS: number;
  readonly maxFutureSkewMs: number;
  readonly maxPastSkewMs: number;
  readonly skewPolicy: 'correct' | 'drop';
  readonly retryAfterMs: number;
  readonly shutdownTimeoutMs: number;
  readonly spoolMaxBytes: number;
  readonly spoolSegmentBytes: number;
  readonly spoolCommitMs: number;
  readonly influxUrl: string | undefined;
  readonly influxToken: string | undefined;
  readonly influxOrg: string | undefined;
  readonly influxBucket: string | undefined;
  readonly sinkBatchLines: number;
  readonly sinkMaxInFlight: number;
  readonly operatorsFile: string | undefined;
  readonly adminPassword: string | undefined;
  readonly sessionTtlS: number;
  readonly metricsToken: string | undefined;
  readonly dashboardDir: string | undefined;
  readonly liveTickMs: number;
  readonly liveOrigins: string | undefined;
  readonly liveSkipBytes: number;
  readonly liveMaxBackpressure: number;
  readonly liveMaxDashboards: number;
  readonly liveMaxSeries: number;
  readonly liveMaxDevices: number;
  readonly alarmRulesFile: string | undefined;
  readonly maxMetricsPerDevice: number;
  readonly maxMetricNames: number;
  readonly historyMaxSeries: number;
  readonly historyMaxDeviceSeries: number;
  readonly loginFailuresPerAddress: number;
  readonly loginFailuresPerAccount: number;
  readonly loginRetryS: number;
  readonly loginMaxConcurrent: number;
  readonly loginMaxTracked: number;
  readonly tlsProxy: boolean;
  readonly deadLetterMaxBytes: number;
  readonly logLinesPerMinute: number;
  readonly natsUrl: string | undefined;
  readonly natsCreds: string | undefined;
  readonly natsToken: string | undefined;
  readonly natsUser: string | undefined;
  readonly natsPassword: string | undefined;
  readonly natsTlsCa: string | undefined;
  readonly natsTlsCert: string | undefined;
  readonly natsTlsKey: string | undefined;
  readonly natsStream: string;
  readonly natsReplicas: number;
  readonly auditMaxBytes: number;
  readonly natsMaxBytes: number;
  readonly natsAckTimeoutMs: number;
  readonly hubId: string | undefined;
  readonly workers: number;
}

type Kind = 'int' | 'string' | 'bool' | 'enum';
interface KeyDef {
  env: string;
  kind: Kind;
  default: number | string | boolean | undefined;
  min?: number;
  max?: number;
  values?: readonly string[];
  /** Why the range is what it is; shown when a value is clamped. */
  why?: string;
  /** Out of range is an error, not a clamp (no safe value to pick for the user). */
  strict?: boolean;
  doc: string;
}

/** Every key; README's config table is generated from the same facts. */
export const CONFIG_KEYS = {
  host: { env: 'HUB_HOST', kind: 'string', default: '0.0.0.0', doc: 'Address to listen on.' },
  port: { env: 'HUB_PORT', kind: 'int', default: 8080, min: 0, max: 65535, strict: true, doc: 'Port for devices, dashboards, HTTP (0 = any free port).' },
  tlsCert: { env: 'HUB_TLS_CERT', kind: 'string', default: undefined, doc: 'PEM certificate file; with HUB_TLS_KEY the hub serves wss:// and https://. Reloaded on SIGHUP and when it or the key changes (open connections keep the old one).' },
  tlsKey: { env: 'HUB_TLS_KEY', kind: 'string', default: undefined, doc: 'PEM private key file for HUB_TLS_CERT.' },
  devicesFile: { env: 'HUB_DEVICES_FILE', kind: 'string', default: undefined, doc: 'Device registry (default: HUB_DATA_DIR/devices.json) (ids, token hashes, tags). Reloaded when it changes.' },
  dataDir: { env: 'HUB_DATA_DIR', kind: 'string', default: './data', doc: 'Directory for the hub\'s local state. Relative paths, here and in every other path variable, are taken from the directory the command was run in (for npm scripts: where npm was run).' },
  allowUwsFallback: { env: 'HUB_ALLOW_UWS_FALLBACK', kind: 'bool', default: false, doc: 'Start even when only the slow pure-JS uWebSockets.js fallback loads.' },
  logLevel: { env: 'HUB_LOG_LEVEL', kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], doc: 'Log level (pino).' },
  window: { env: 'HUB_WINDOW', kind: 'int', default: 32, min: 1, max: 1024, why: 'each in-flight batch may be held in memory until it is durable', doc: 'Max unacked batches per device session (credit window).' },
  maxMessageBytes: { env: 'HUB_MAX_MESSAGE_BYTES', kind: 'int', default: 256 * 1024, min: 1024, max: 16 * 1024 * 1024, why: 'window x message size bounds per-session memory', doc: 'Max size of one device message; larger closes with 1009.' },
  maxBatchReadings: { env: 'HUB_MAX_BATCH_READINGS', kind: 'int', default: 10_000, min: 1, max: 1_000_000, doc: 'Max readings in one batch; more closes with 4005.' },
  maxReadingsPerSecond: { env: 'HUB_MAX_READINGS_PER_SEC', kind: 'int', default: 1_000, min: 1, max: 10_000_000, doc: 'Sustained readings/s per device (token bucket); above it closes with 4004.' },
  readingsBurst: { env: 'HUB_READINGS_BURST', kind: 'int', default: 20_000, min: 1, max: 100_000_000, doc: 'Token bucket size for readings/s; raised to at least HUB_MAX_BATCH_READINGS.' },
  maxMetricsPerSession: { env: 'HUB_MAX_METRICS_PER_SESSION', kind: 'int', default: 256, min: 1, max: 65_536, why: 'metric tables are per session memory', doc: 'Max distinct metric ids one session may define.' },
  maxMetricNameBytes: { env: 'HUB_MAX_METRIC_NAME_BYTES', kind: 'int', default: 64, min: 1, max: 255, why: 'names become InfluxDB field keys and dashboard labels; the spool stores them with a 1-byte length', doc: 'Max metric name length.' },
  maxConnectionsPerAddress: { env: 'HUB_MAX_CONN_PER_ADDRESS', kind: 'int', default: 1_000, min: 1, max: 1_000_000, doc: 'Max device connections from one remote address; more are refused with 429.' },
  maxConnections: { env: 'HUB_MAX_CONNECTIONS', kind: 'int', default: 100_000, min: 1, max: 10_000_000, doc: 'Max device connections in total; more are refused with 503. Lowered at startup, with a warning, to what the open-file limit allows (one file per connection).' },
  admissionRate: { env: 'HUB_ADMISSION_RATE', kind: 'int', default: 500, min: 1, max: 1_000_000, doc: 'New device sessions admitted per second (reconnect storms); more are refused with 503.' },
  admissionBurst: { env: 'HUB_ADMISSION_BURST', kind: 'int', default: 1_000, min: 1, max: 10_000_000, doc: 'Burst size for the admission rate.' },
  handshakeTimeoutMs: { env: 'HUB_HANDSHAKE_TIMEOUT_MS', kind: 'int', default: 10_000, min: 100, max: 300_000, doc: 'Time a device has to send Hello after the upgrade; then closes with 4001.' },
  idleTimeoutS: { env: 'HUB_IDLE_TIMEOUT_S', kind: 'int', default: 60, min: 8, max: 960, why: 'uWebSockets.js accepts 8..960 s at a 4 s granularity', doc: 'A silent session is pinged, and dropped when it stays silent.' },
  maxFutureSkewMs: { env: 'HUB_MAX_FUTURE_SKEW_MS', kind: 'int', default: 5 * 60_000, min: 1_000, max: 366 * 86_400_000, doc: 'Readings further ahead of hub time are out of bounds.' },
  maxPastSkewMs: { env: 'HUB_MAX_PAST_SKEW_MS', kind: 'int', default: 7 * 86_400_000, min: 1_000, max: 3_660 * 86_400_000, doc: 'Readings older than this are out of bounds.' },
  skewPolicy: { env: 'HUB_SKEW_POLICY', kind: 'enum', default: 'correct', values: ['correct', 'drop'], doc: 'Out-of-bounds readings: `correct` applies the estimated clock offset when that brings them in bounds (else drops), `drop` drops them. Either way the Ack reports it.' },
  retryAfterMs: { env: 'HUB_RETRY_AFTER_MS', kind: 'int', default: 5_000, min: 100, max: 3_600_000, doc: 'Base retry hint for load refusals (jittered up to 2x).' },
  shutdownTimeoutMs: { env: 'HUB_SHUTDOWN_TIMEOUT_MS', kind: 'int', default: 10_000, min: 100, max: 300_000, doc: 'Deadline for a graceful shutdown.' },
  spoolMaxBytes: { env: 'HUB_SPOOL_MAX_BYTES', kind: 'int', default: 1024 ** 3, min: 1 << 20, max: 2 ** 50, doc: 'Spool size cap: device credit shrinks past half of it and batches are refused (1013) at it. Without a database it is the size of the local history.' },
  spoolSegmentBytes: { env: 'HUB_SPOOL_SEGMENT_BYTES', kind: 'int', default: 16 << 20, min: 64 << 10, max: 1 << 30, why: 'recovery reads a segment at once', doc: 'Spool segment file size.' },
  influxUrl: { env: 'INFLUX_URL', kind: 'string', default: undefined, doc: 'InfluxDB base URL (1.8+, 2.x, 3.x, Cloud: /api/v2/write). Unset: the embedded default, nothing reaches a database.' },
  influxToken: { env: 'INFLUX_TOKEN', kind: 'string', default: undefined, doc: 'InfluxDB API token (1.8: `user:password`).' },
  influxOrg: { env: 'INFLUX_ORG', kind: 'string', default: undefined, doc: 'InfluxDB organization (ignored by 1.8).' },
  influxBucket: { env: 'INFLUX_BUCKET', kind: 'string', default: undefined, doc: 'InfluxDB bucket (1.8: `database/retention-policy`).' },
  sinkBatchLines: { env: 'HUB_SINK_BATCH_LINES', kind: 'int', default: 10_000, min: 1, max: 1_000_000, doc: 'Lines per InfluxDB write request (whole spool records: a request may end a record past it).' },
  sinkMaxInFlight: { env: 'HUB_SINK_MAX_IN_FLIGHT', kind: 'int', default: 8, min: 1, max: 64, doc: 'InfluxDB write requests in flight at once (one kept-alive connection each); the spool checkpoint still moves only over what InfluxDB confirmed, in order.' },
  spoolCommitMs: { env: 'HUB_SPOOL_COMMIT_MS', kind: 'int', default: 2, min: 1, max: 1000, why: 'acks wait for the group commit', doc: 'Group-commit window: batches arriving within it share one fdatasync.' },
  operatorsFile: { env: 'HUB_OPERATORS_FILE', kind: 'string', default: undefined, doc: 'Operator accounts (default: HUB_DATA_DIR/operators.json) (names, scrypt password hashes). On first run, with none and no HUB_ADMIN_PASSWORD, an `admin` account is created and its password printed once.' },
  adminPassword: { env: 'HUB_ADMIN_PASSWORD', kind: 'string', default: undefined, doc: 'Sets the `admin` operator\'s password at start (stored hashed). Otherwise use `npm run operator -- NAME`.' },
  sessionTtlS: { env: 'HUB_SESSION_TTL_S', kind: 'int', default: 12 * 3600, min: 60, max: 30 * 86_400, doc: 'Operator sign-in lifetime (session cookie).' },
  metricsToken: { env: 'HUB_METRICS_TOKEN', kind: 'string', default: undefined, doc: 'Bearer token that may read /metrics without signing in (for Prometheus). Unset: /metrics needs an operator session.' },
  dashboardDir: { env: 'HUB_DASHBOARD_DIR', kind: 'string', default: undefined, doc: 'Built dashboard to serve at / (default: dashboard/dist of this checkout).' },
  liveTickMs: { env: 'HUB_LIVE_TICK_MS', kind: 'int', default: 1000, min: 100, max: 60_000, doc: 'How often dashboards get a frame.' },
  liveOrigins: { env: 'HUB_LIVE_ORIGINS', kind: 'string', default: undefined, doc: 'Comma-separated Origins allowed on /v1/live and sign-in (e.g. https://ops.example.com). Unset: same origin as the hub only.' },
  liveSkipBytes: { env: 'HUB_LIVE_SKIP_BYTES', kind: 'int', default: 256 * 1024, min: 1024, max: 1 << 30, doc: 'A dashboard socket with more unsent bytes than this skips ticks (latest wins); after 3 skips it gets coarse 10 s updates.' },
  liveMaxBackpressure: { env: 'HUB_LIVE_MAX_BACKPRESSURE', kind: 'int', default: 16 << 20, min: 64 * 1024, max: 1 << 30, doc: 'A dashboard socket with more unsent bytes than this is closed (4102).' },
  liveMaxDashboards: { env: 'HUB_LIVE_MAX_DASHBOARDS', kind: 'int', default: 256, min: 1, max: 100_000, doc: 'Max live dashboard connections; more are refused with 503.' },
  liveMaxSeries: { env: 'HUB_LIVE_MAX_SERIES', kind: 'int', default: 4096, min: 1, max: 1_000_000, why: 'each live series takes ~5 KB', doc: 'Max live (scope, metric) series with windowed stats and sketches.' },
  liveMaxDevices: { env: 'HUB_LIVE_MAX_DEVICES', kind: 'int', default: 200_000, min: 1, max: 10_000_000, doc: 'Max devices the live path tracks (presence, latest values).' },
  alarmRulesFile: { env: 'HUB_ALARM_RULES_FILE', kind: 'string', default: undefined, doc: 'Alarm threshold rules (default: HUB_DATA_DIR/alarm-rules.json; edited from the dashboard\'s Alarms page).' },
  maxMetricsPerDevice: { env: 'HUB_MAX_METRICS_PER_DEVICE', kind: 'int', default: 256, min: 1, max: 65_536, why: 'live state and history keep series per metric name of each device', doc: 'Max distinct metric names one device may use across all its sessions (while the hub runs); a new name past it closes with 4006.' },
  maxMetricNames: { env: 'HUB_MAX_METRIC_NAMES', kind: 'int', default: 10_000, min: 1, max: 1_000_000, why: 'each name is an InfluxDB measurement and a live/history series per scope', doc: 'Max distinct metric names fleet-wide; a device defining a new name past it is closed with 4006.' },
  historyMaxSeries: { env: 'HUB_HISTORY_MAX_SERIES', kind: 'int', default: 4096, min: 1, max: 1_000_000, why: 'a fleet or group series holds 1 h of 10 s buckets, 14.4 KB', doc: 'Embedded mode: max fleet and tag-group (scope, metric) series in the in-memory history (14.4 KB each).' },
  historyMaxDeviceSeries: { env: 'HUB_HISTORY_MAX_DEVICE_SERIES', kind: 'int', default: 50_000, min: 1, max: 10_000_000, why: 'a device series holds 1 h of 1 min buckets, 2.4 KB', doc: 'Embedded mode: max per-device (device, metric) series in the in-memory history (2.4 KB each).' },
  loginFailuresPerAddress: { env: 'HUB_LOGIN_FAILURES_PER_ADDRESS', kind: 'int', default: 5, min: 1, max: 1000, doc: 'Failed sign-ins one address (an IPv6 /64 counts as one) may make before it gets one attempt per HUB_LOGIN_RETRY_S; past it 429 with Retry-After.' },
  loginFailuresPerAccount: { env: 'HUB_LOGIN_FAILURES_PER_ACCOUNT', kind: 'int', default: 20, min: 1, max: 10_000, doc: 'Failed sign-ins for one operator name, from any address, before it gets one attempt per HUB_LOGIN_RETRY_S; past it 429 with Retry-After.' },
  loginRetryS: { env: 'HUB_LOGIN_RETRY_S', kind: 'int', default: 10, min: 1, max: 3600, doc: 'Once an address or account is limited: one sign-in attempt per this many seconds.' },
  loginMaxConcurrent: { env: 'HUB_LOGIN_MAX_CONCURRENT', kind: 'int', default: 4, min: 1, max: 64, why: 'each password check takes ~50 ms of a core and 32 MiB in the hashing thread', doc: 'Password checks running or queued at once (hub-wide); more sign-ins are refused with 503 and Retry-After.' },
  loginMaxTracked: { env: 'HUB_LOGIN_MAX_TRACKED', kind: 'int', default: 10_000, min: 100, max: 10_000_000, doc: 'Addresses and accounts whose failed sign-ins are remembered; past it the ones idle longest are forgotten first (never one still limited while others are idle).' },
  tlsProxy: { env: 'HUB_TLS_PROXY', kind: 'bool', default: false, doc: 'A TLS-terminating proxy serves the hub to browsers over https: operator session cookies get Secure and the __Host- prefix (automatic when the hub terminates TLS itself).' },
  deadLetterMaxBytes: { env: 'HUB_DEAD_LETTER_MAX_BYTES', kind: 'int', default: 32 << 20, min: 64 << 10, max: 2 ** 40, doc: 'Size at which HUB_DATA_DIR/dead-letter.ndjson is rotated to dead-letter.1.ndjson (the previous .1 is deleted): dead letters take at most twice this on disk.' },
  logLinesPerMinute: { env: 'HUB_LOG_LINES_PER_MIN', kind: 'int', default: 60, min: 1, max: 1_000_000, why: 'devices and anonymous clients must not be able to fill the disk with log lines', doc: 'Log lines per minute for each kind of event a device or an anonymous client can trigger; the rest are counted and summarized in one line.' },
  natsUrl: { env: 'HUB_NATS_URL', kind: 'string', default: undefined, doc: 'Cluster mode: NATS server URLs, comma-separated (nats://n1:4222,nats://n2:4222). Batches are stored in a JetStream stream, shipped by a consumer all hubs share, one session per device cluster-wide. Unset: the embedded default (local spool, no services).' },
  natsCreds: { env: 'HUB_NATS_CREDS', kind: 'string', default: undefined, doc: 'Cluster mode: a NATS credentials file (.creds: JWT and NKey seed).' },
  natsToken: { env: 'HUB_NATS_TOKEN', kind: 'string', default: undefined, doc: 'Cluster mode: a NATS authentication token.' },
  natsUser: { env: 'HUB_NATS_USER', kind: 'string', default: undefined, doc: 'Cluster mode: NATS user name (with HUB_NATS_PASSWORD).' },
  natsPassword: { env: 'HUB_NATS_PASSWORD', kind: 'string', default: undefined, doc: 'Cluster mode: NATS password for HUB_NATS_USER.' },
  natsTlsCa: { env: 'HUB_NATS_TLS_CA', kind: 'string', default: undefined, doc: 'Cluster mode: PEM CA file that signed the NATS servers\' certificates (tls:// URLs, or servers that require TLS).' },
  natsTlsCert: { env: 'HUB_NATS_TLS_CERT', kind: 'string', default: undefined, doc: 'Cluster mode: PEM client certificate for NATS (with HUB_NATS_TLS_KEY).' },
  natsTlsKey: { env: 'HUB_NATS_TLS_KEY', kind: 'string', default: undefined, doc: 'Cluster mode: PEM private key for HUB_NATS_TLS_CERT.' },
  natsStream: { env: 'HUB_NATS_STREAM', kind: 'string', default: 'TELEMETRY', doc: 'Cluster mode: JetStream stream the batches are stored in (created if absent). Its subjects are `<stream, lower case>.batch.>`; the KV buckets are named after it too.' },
  natsReplicas: { env: 'HUB_NATS_REPLICAS', kind: 'int', default: 1, min: 1, max: 5, strict: true, doc: 'Cluster mode: JetStream replicas of the stream and KV buckets. 1: a batch is acked once one server stored it; 3: once a majority of three did.' },
  auditMaxBytes: { env: 'HUB_AUDIT_MAX_BYTES', kind: 'int', default: 16 * 1024 ** 2, min: 64 * 1024, max: 2 ** 40, doc: 'The audit trail of operator actions (<data>/audit.jsonl and one rotated file) takes at most this many bytes on disk; the oldest entries go first.' },
  natsMaxBytes: { env: 'HUB_NATS_MAX_BYTES', kind: 'int', default: 1024 ** 3, min: 1 << 20, max: 2 ** 50, doc: 'Cluster mode: stream size cap, like HUB_SPOOL_MAX_BYTES: credit shrinks past half of it and batches are refused (1013) at it.' },
  natsAckTimeoutMs: { env: 'HUB_NATS_ACK_TIMEOUT_MS', kind: 'int', default: 5_000, min: 100, max: 120_000, doc: 'Cluster mode: how long one JetStream publish waits for its acknowledgement before it is sent again (the same message id: stored once).' },
  hubId: { env: 'HUB_ID', kind: 'string', default: undefined, doc: 'Cluster mode: this hub\'s name in the cluster (default: host name and process id). Must be unique among running hubs.' },
  workers: { env: 'HUB_WORKERS', kind: 'int', default: 1, min: 1, max: 256, strict: true, doc: 'Hub processes on this machine sharing HUB_PORT (SO_REUSEPORT; the kernel splits connections). Above 1 needs HUB_NATS_URL and a fixed HUB_PORT.' },
} as const satisfies Record<keyof HubConfig, KeyDef>;

export interface ConfigWarning { key: string; message: string }

/**
 * Builds the config from env-style strings plus overrides (tests pass
 * overrides; main.ts passes process.env). Absent, empty or zero numeric
 * values mean the default (except port, where 0 means "any free port").
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>> = {},
  overrides: Partial<HubConfig> = {},
  warnings: ConfigWarning[] = [],
): HubConfig {
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(CONFIG_KEYS) as [keyof HubConfig, KeyDef][]) {
    const has = Object.prototype.hasOwnProperty.call(overrides, key);
    const raw: unknown = has ? overrides[key] : env[def.env];
    out[key] = parseValue(key, def, raw, warnings);
  }
  const cfg = out as unknown as HubConfig;
  if ((cfg.tlsCert === undefined) !== (cfg.tlsKey === undefined)) {
    throw new HubError('HUB_ERR_CONFIG', `HUB_TLS_CERT and HUB_TLS_KEY must be set together (got ${cfg.tlsCert ? 'only HUB_TLS_CERT' : 'only HUB_TLS_KEY'})`);
  }
  if (cfg.influxUrl !== undefined) {
    try {
      new URL(cfg.influxUrl);
    } catch {
      throw new HubError('HUB_ERR_CONFIG', `INFLUX_URL=${JSON.stringify(cfg.influxUrl)} is invalid: expected a URL such as http://influxdb:8086`);
    }
    for (const [env, v] of [['INFLUX_TOKEN', cfg.influxToken], ['INFLUX_BUCKET', cfg.influxBucket]] as const) {
      if (!v) throw new HubError('HUB_ERR_CONFIG', `${env} must be set when INFLUX_URL is`);
    }
  }
  if (cfg.natsUrl !== undefined) {
    for (const url of cfg.natsUrl.split(',')) {
      if (!/^(nats|tls|ws|wss):\/\/[^\s/]+\/?$|^[^\s:/]+:\d+$/.test(url.trim())) {
        throw new HubError('HUB_ERR_CONFIG', `HUB_NATS_URL=${JSON.stringify(cfg.natsUrl)} is invalid: expected comma-separated server URLs such as nats://nats-1:4222 (got ${JSON.stringify(url.trim())})`);
      }
    }
    if ((cfg.natsTlsCert === undefined) !== (cfg.natsTlsKey === undefined)) throw new HubError('HUB_ERR_CONFIG', 'HUB_NATS_TLS_CERT and HUB_NATS_TLS_KEY must be set together');
    if ((cfg.natsUser === undefined) !== (cfg.natsPassword === undefined)) throw new HubError('HUB_ERR_CONFIG', 'HUB_NATS_USER and HUB_NATS_PASSWORD must be set together');
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(cfg.natsStream)) throw new HubError('HUB_ERR_CONFIG', `HUB_NATS_STREAM=${JSON.stringify(cfg.natsStream)} is invalid: expected 1-32 letters, digits, - or _`);
    if (cfg.hubId !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(cfg.hubId)) throw new HubError('HUB_ERR_CONFIG', `HUB_ID=${JSON.stringify(cfg.hubId)} is invalid: expected 1-64 letters, digits, '.', - or _`);
  }
  if (cfg.workers > 1) {
    if (cfg.natsUrl === undefined) throw new HubError('HUB_ERR_CONFIG', `HUB_WORKERS=${cfg.workers} needs HUB_NATS_URL: hub processes share batches, devices and dashboards through NATS JetStream (the embedded spool belongs to one process)`);
    if (cfg.port === 0) throw new HubError('HUB_ERR_CONFIG', `HUB_WORKERS=${cfg.workers} needs a fixed HUB_PORT (every worker listens on the same one), not 0`);
  }
  if (cfg.readingsBurst < cfg.maxBatchReadings) {
    // A full batch must fit in the bucket, or a legal batch could never pass.
    warnings.push({ key: 'readingsBurst', message: `HUB_READINGS_BURST=${cfg.readingsBurst} raised to HUB_MAX_BATCH_READINGS=${cfg.maxBatchReadings} so a full batch fits` });
    (out as { readingsBurst: number }).readingsBurst = cfg.maxBatchReadings;
  }
  return Object.freeze(cfg);
}

/** Files the hub keeps open besides device connections: dashboards (HUB_LIVE_MAX_DASHBOARDS), the sink's connections, the spool, logs, the listener. */
export function reservedFiles(cfg: Pick<HubConfig, 'liveMaxDashboards' | 'sinkMaxInFlight'>): number {
  return cfg.liveMaxDashboards + cfg.sinkMaxInFlight + 64;
}

/**
 * HUB_MAX_CONNECTIONS within what this process may open: each connection is
 * a file, so past the open-file limit (less reservedFiles) new connections
 * would fail inside the server instead of being refused with a 503 that
 * names the key. Lowers it with a warning that says what to raise.
 */
export function withinOpenFiles(cfg: HubConfig, openFiles: number, warnings: ConfigWarning[]): HubConfig {
  if (!Number.isFinite(openFiles)) return cfg;
  const fit = Math.max(1, openFiles - reservedFiles(cfg));
  if (cfg.maxConnections <= fit) return cfg;
  warnings.push({
    key: 'maxConnections',
    message: `HUB_MAX_CONNECTIONS=${cfg.maxConnections} lowered to ${fit}: this process may open ${openFiles} files (RLIMIT_NOFILE), one per connection, `
      + `and keeps ${reservedFiles(cfg)} for dashboards, the sink and the spool; raise the limit (ulimit -n, systemd LimitNOFILE=, docker --ulimit nofile=) for more`,
  });
  return Object.freeze({ ...cfg, maxConnections: fit });
}

/** The soft open-file limit in the text of /proc/<pid>/limits (Linux); Infinity when it says unlimited or nothing. */
export function parseOpenFileLimit(text: string): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
}

/** A raw config value as the text it was written as (objects as JSON). */
function text(raw: unknown): string {
  return typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : JSON.stringify(raw);
}

function parseValue(key: string, def: KeyDef, raw: unknown, warnings: ConfigWarning[]): unknown {
  const name = def.env;
  const absent = raw === undefined || raw === null || raw === '';
  switch (def.kind) {
    case 'string':
      if (absent) return def.default;
      if (typeof raw !== 'string') throw bad(name, raw, 'a string');
      return raw;
    case 'bool': {
      if (absent) return def.default;
      if (typeof raw === 'boolean') return raw;
      const s = text(raw).toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(s)) return true;
      if (['0', 'false', 'no', 'off'].includes(s)) return false;
      throw bad(name, raw, 'one of 1/0/true/false');
    }
    case 'enum': {
      if (absent) return def.default;
      const s = text(raw);
      const values = def.values ?? [];
      if (!values.includes(s)) throw bad(name, raw, `one of ${values.join(', ')}`);
      return s;
    }
    case 'int': {
      if (absent) return def.default;
      const n = typeof raw === 'number' ? raw : /^\s*-?\d+\s*$/.test(text(raw)) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n)) throw bad(name, raw, 'an integer');
      if (n === 0 && key !== 'port') return def.default; // zero means default
      if (def.strict && ((def.min !== undefined && n < def.min) || (def.max !== undefined && n > def.max))) {
        throw bad(name, raw, `an integer in ${def.min}..${def.max}`);
      }
      if (def.min !== undefined && n < def.min) {
        warnings.push({ key, message: `${name}=${n} raised to ${def.min}${def.why ? ` (${def.why})` : ''}` });
        return def.min;
      }
      if (def.max !== undefined && n > def.max) {
        warnings.push({ key, message: `${name}=${n} lowered to ${def.max}${def.why ? ` (${def.why})` : ''}` });
        return def.max;
      }
      return n;
    }
  }
}

function bad(name: string, raw: unknown, want: string): HubError {
  return new HubError('HUB_ERR_CONFIG', `${name}=${JSON.stringify(raw)} is invalid: expected ${want}`);
}
