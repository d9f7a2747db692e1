// core/: Prometheus metrics for one hub instance (its own registry, so tests can
// build several apps in a process). Label children are bound once: the
// ingest hot path only calls inc()/observe().
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';

/** One sample of an exposed metric, as prom-client's registry reads it. */
export interface MetricSample { labels: Record<string, string | number>; value: number; metricName: string }

export type RefusalReason = 'no_token' | 'bad_token' | 'disabled' | 'per_address' | 'max_connections' | 'admission' | 'shutting_down' | 'store_unavailable';
export type LimitName =
  | 'message_size' | 'batch_readings' | 'readings_rate' | 'window' | 'metric_name' | 'metric_unit'
  | 'metric_redefined' | 'metrics_per_session' | 'handshake_timeout' | 'per_address' | 'max_connections'
  | 'admission' | 'non_finite' | 'skew' | 'protocol' | 'text_frame' | 'malformed' | 'version' | 'send_backpressure'
  | 'metrics_per_device' | 'metric_names';

/**
 * A Prometheus histogram for the ack path, one observation per acked batch:
 * a bucket search and three additions, no label lookup or object (what
 * prom-client's Histogram.observe costs per call is what an ack should not).
 * Exposed through the registry like any histogram.
 */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #bounds: readonly number[];
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(readonly name: string, readonly help: string, bounds: readonly number[], registry: Registry) {
    this.#bounds = bounds;
    this.#counts = new Float64Array(bounds.length + 1);
    registry.registerMetric(this as unknown as Metric);
  }

  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++; // le: a bucket holds values <= its bound
    this.#counts[i]!++;
    this.#sum += value;
    this.#count++;
  }

  /** What the registry exposes (prom-client's shape for a histogram). */
  get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: MetricSample[] }> {
    const values: MetricSample[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i]!;
      values.push({ labels: { le: this.#bounds[i]! }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    values.push({ labels: { le: '+Inf' }, value: this.#count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.#sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.#count, metricName: `${this.name}_count` });
    return Promise.resolve({ name: this.name, help: this.help, type: 'histogram', values, aggregator: 'sum' });
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sum = 0;
    this.#count = 0;
  }
}

/** What ingest counts per message and per batch: plain numbers, added to their counters when scraped. */
export interface HotCounts {
  messages: number;
  bytes: number;
  batchesAccepted: number;
  readingsAccepted: number;
}

export class HubMetrics {
  readonly registry = new Registry();
  readonly connections: Gauge;
  readonly sessions: Gauge;
  readonly upgradeRefusals: Counter<'status' | 'reason'>;
  readonly closes: Counter<'code'>;
  readonly batches: Counter<'result'>;
  readonly readings: Counter<'result'>;
  readonly limitViolations: Counter<'limit'>;
  readonly ackLatency: FastHistogram;
  /**
   * Ingest's per-message counts as plain numbers (the hot path adds to
   * them); hub_ingest_messages_total, hub_ingest_bytes_total and the
   * accepted hub_batches_total / hub_readings_total take them when scraped.
   */
  readonly hot: HotCounts = { messages: 0, bytes: 0, batchesAccepted: 0, readingsAccepted: 0 };
  readonly #flushed: HotCounts = { messages: 0, bytes: 0, batchesAccepted: 0, readingsAccepted: 0 };
  readonly storeErrors: Counter;
  readonly commandResults: Counter<'result'>;
  readonly ingestBytes: Counter;
  readonly sinkLinesWritten: Counter;
  readonly sinkLinesDeadLettered: Counter;
  readonly sinkErrors: Counter<'kind'>;
  readonly sinkWriteSeconds: Histogram;
  readonly ingestMessages: Counter;

  readonly batchAccepted;
  readonly batchDuplicate;
  readonly readingsAccepted;
  readonly readingsNonFinite;
  readonly readingsSkewDropped;
  readonly readingsSkewCorrected;
  readonly #limit = new Map<LimitName, Counter.Internal>();
  readonly liveDashboards: Gauge;
  readonly liveFrames: Counter;
  readonly liveFrameBytes: Counter;
  readonly liveSkipped: Counter;
  readonly liveDegraded: Counter;
  readonly liveCloses: Counter<'reason'>;
  readonly liveRefusals: Counter<'status'>;
  readonly liveTickSeconds: Histogram;
  readonly signIns: Counter<'result'>;
  readonly passwordChecksInFlight: Gauge;
  readonly metricNames: Gauge;
  readonly logLinesSuppressed: Counter<'kind'>;
  readonly deadLetterBytes: Gauge;
  readonly deadLetterRotations: Counter;
  readonly historySeries: Gauge<'kind'>;
  readonly historySeriesRefused: Counter<'kind'>;
  readonly tlsReloads: Counter<'result'>;
  readonly tlsCertExpiry: Gauge;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const r = this.registry;
    if (opts.defaultMetrics) collectDefaultMetrics({ register: r });
    this.connections = new Gauge({ name: 'hub_device_connections', help: 'Open device WebSocket connections', registers: [r] });
    this.sessions = new Gauge({ name: 'hub_device_sessions', help: 'Device sessions past Hello/Welcome', registers: [r] });
    this.upgradeRefusals = new Counter({ name: 'hub_upgrade_refusals_total', help: 'Device upgrades refused with an HTTP status', labelNames: ['status', 'reason'], registers: [r] });
    this.closes = new Counter({ name: 'hub_device_closes_total', help: 'Device connections closed, by WebSocket close code', labelNames: ['code'], registers: [r] });
    const flushHot = (): void => this.#flushHot();
    this.batches = new Counter({ name: 'hub_batches_total', help: 'Batches received: accepted (stored) or duplicate (already held, acked again)', labelNames: ['result'], registers: [r], collect: flushHot });
    this.readings = new Counter({ name: 'hub_readings_total', help: 'Readings by outcome', labelNames: ['result'], registers: [r], collect: flushHot });
    this.limitViolations = new Counter({ name: 'hub_limit_violations_total', help: 'Limit and protocol violations by limit', labelNames: ['limit'], registers: [r] });
    this.ackLatency = new FastHistogram('hub_ack_latency_seconds', 'Batch receipt to ack sent', [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], r);
    this.storeErrors = new Counter({ name: 'hub_store_errors_total', help: 'Appends the store failed', registers: [r] });
    this.commandResults = new Counter({ name: 'hub_command_results_total', help: 'CommandResults from devices by result: ok, failed (the device did not apply it), unknown (an id this session was not sent or already answered; not logged)', labelNames: ['result'], registers: [r] });
    this.liveDashboards = new Gauge({ name: 'hub_live_dashboards', help: 'Open live (dashboard) connections', registers: [r] });
    this.liveFrames = new Counter({ name: 'hub_live_frames_total', help: 'Live frames sent to dashboards', registers: [r] });
    this.liveFrameBytes = new Counter({ name: 'hub_live_frame_bytes_total', help: 'Live frame bytes sent to dashboards', registers: [r] });
    this.liveSkipped = new Counter({ name: 'hub_live_ticks_skipped_total', help: 'Ticks not sent to a slow dashboard (latest wins)', registers: [r] });
    this.liveDegraded = new Counter({ name: 'hub_live_degraded_total', help: 'Times a slow dashboard was switched to coarse 10 s updates', registers: [r] });
    this.liveCloses = new Counter({ name: 'hub_live_closes_total', help: 'Live connections closed, by reason', labelNames: ['reason'], registers: [r] });
    this.liveRefusals = new Counter({ name: 'hub_live_refusals_total', help: 'Live upgrades refused, by HTTP status', labelNames: ['status'], registers: [r] });
    this.liveTickSeconds = new Histogram({ name: 'hub_live_tick_seconds', help: 'Time to advance live state and send every frame of a tick', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1], registers: [r] });
    this.signIns = new Counter({ name: 'hub_operator_sign_ins_total', help: 'Operator sign-in attempts by result: ok, failed (wrong name or password), limited (429: address or account over its failure limit), busy (503: HUB_LOGIN_MAX_CONCURRENT checks already running or waiting), error (503: the hashing thread failed or the session could not be saved)', labelNames: ['result'], registers: [r] });
    this.passwordChecksInFlight = new Gauge({ name: 'hub_password_checks_in_flight', help: 'Password checks running or queued in the hashing thread (at most HUB_LOGIN_MAX_CONCURRENT)', registers: [r] });
    this.metricNames = new Gauge({ name: 'hub_metric_names', help: 'Distinct metric names defined fleet-wide since start (at most HUB_MAX_METRIC_NAMES)', registers: [r] });
    this.logLinesSuppressed = new Counter({ name: 'hub_log_lines_suppressed_total', help: 'Log lines a device or client caused that were not written (over HUB_LOG_LINES_PER_MIN), by kind', labelNames: ['kind'], registers: [r] });
    this.deadLetterBytes = new Gauge({ name: 'hub_sink_dead_letter_bytes', help: 'Bytes in the dead-letter files (current and rotated; at most 2 x HUB_DEAD_LETTER_MAX_BYTES)', registers: [r] });
    this.deadLetterRotations = new Counter({ name: 'hub_sink_dead_letter_rotations_total', help: 'Times the dead-letter file reached HUB_DEAD_LETTER_MAX_BYTES and was rotated (the older rotated file is deleted)', registers: [r] });
    this.historySeries = new Gauge({ name: 'hub_history_series', help: 'In-memory history series (embedded mode), by kind: group (fleet and tag groups) or device', labelNames: ['kind'], registers: [r] });
    this.historySeriesRefused = new Counter({ name: 'hub_history_series_refused_total', help: 'In-memory history series not created because HUB_HISTORY_MAX_SERIES / HUB_HISTORY_MAX_DEVICE_SERIES was reached, by kind', labelNames: ['kind'], registers: [r] });
    this.ingestBytes = new Counter({ name: 'hub_ingest_bytes_total', help: 'Device WebSocket message payload bytes received', registers: [r], collect: flushHot });
    this.ingestMessages = new Counter({ name: 'hub_ingest_messages_total', help: 'Device WebSocket messages received', registers: [r], collect: flushHot });
    this.sinkLinesWritten = new Counter({ name: 'hub_sink_lines_written_total', help: 'Lines InfluxDB confirmed', registers: [r] });
    this.sinkLinesDeadLettered = new Counter({ name: 'hub_sink_lines_dead_lettered_total', help: 'Lines InfluxDB rejected as invalid, or readings the hub cannot write exactly as line protocol, written to the dead-letter file', registers: [r] });
    this.sinkErrors = new Counter({ name: 'hub_sink_errors_total', help: 'Failed sink writes: retry (429/5xx/network) or auth (401/403)', labelNames: ['kind'], registers: [r] });
    this.sinkWriteSeconds = new Histogram({ name: 'hub_sink_write_seconds', help: 'InfluxDB write request time', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [r] });
    this.tlsReloads = new Counter({ name: 'hub_tls_reloads_total', help: 'TLS certificate reloads (SIGHUP or changed files), by result: ok, or error (the previous certificate stays)', labelNames: ['result'], registers: [r] });
    this.tlsCertExpiry = new Gauge({ name: 'hub_tls_certificate_expiry_timestamp_seconds', help: 'When the certificate new TLS connections get expires (Unix seconds)', registers: [r] });
    this.batchAccepted = this.batches.labels('accepted');
    this.batchDuplicate = this.batches.labels('duplicate');
    this.readingsAccepted = this.readings.labels('accepted');
    this.readingsNonFinite = this.readings.labels('non_finite_dropped');
    this.readingsSkewDropped = this.readings.labels('skew_dropped');
    this.readingsSkewCorrected = this.readings.labels('skew_corrected');
  }

  /** Adds what the hot path counted since the last scrape to the counters. */
  #flushHot(): void {
    const hot = this.hot, done = this.#flushed;
    if (hot.messages > done.messages) { this.ingestMessages.inc(hot.messages - done.messages); done.messages = hot.messages; }
    if (hot.bytes > done.bytes) { this.ingestBytes.inc(hot.bytes - done.bytes); done.bytes = hot.bytes; }
    if (hot.batchesAccepted > done.batchesAccepted) { this.batchAccepted.inc(hot.batchesAccepted - done.batchesAccepted); done.batchesAccepted = hot.batchesAccepted; }
    if (hot.readingsAccepted > done.readingsAccepted) { this.readingsAccepted.inc(hot.readingsAccepted - done.readingsAccepted); done.readingsAccepted = hot.readingsAccepted; }
  }

  /** Spool depth and pressure, read when scraped. */
  observeStore(store: { pressure(): number; readonly bytes?: number }): void {
    new Gauge({ name: 'hub_spool_bytes', help: 'Spool bytes not yet committed by the sink (with no sink: bytes kept)', registers: [this.registry], collect() { this.set(store.bytes ?? 0); } });
    new Gauge({ name: 'hub_spool_pressure', help: 'Spool fill relative to HUB_SPOOL_MAX_BYTES (credit shrinks above 0.5)', registers: [this.registry], collect() { this.set(store.pressure()); } });
  }

  limit(name: LimitName): void {
    let c = this.#limit.get(name);
    if (!c) {
      c = this.limitViolations.labels(name);
      this.#limit.set(name, c);
    }
    c.inc();
  }

  refusal(status: number, reason: RefusalReason): void {
    this.upgradeRefusals.labels(String(status), reason).inc();
  }

  /** Current value of a counter/gauge with the given labels (tests, health). */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const m = this.registry.getSingleMetric(name);
    if (!m) return 0;
    const data = await m.get();
    let sum = 0;
    for (const v of data.values) {
      if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) sum += v.value;
    }
    return sum;
  }
}
