// ingest/: one Batch from an open session, in the order of proto/README.md
// §6 (the first failing step decides): window, seq range, clock sample,
// metric definitions, resend (dedupe by seq), validation, readings rate,
// report; then the append to the store, whose durability is what an Ack
// confirms. Counts the appends still pending, so shutdown can wait for them.
// Imports: proto, spool (the BatchStore seam, types), core (batch, config,
// errors, log, metrics types), ingest/session, lifecycle, acks, live-feed,
// limits, send, validate.
import { CloseCode, NoticeCode, encodeHubMessage } from '@telemetry/proto';
import type { AcceptedBatch } from '../core/batch.ts';
import type { HubConfig } from '../core/config.ts';
import type { HubErrorCode } from '../core/errors.ts';
import type { LogLimiter } from '../core/log.ts';
import type { HubMetrics, LimitName } from '../core/metrics.ts';
import type { BatchStore } from '../spool/store.ts';
import type { AckFlusher } from './acks.ts';
import type { SessionLifecycle } from './lifecycle.ts';
import { jitteredRetryMs } from './limits.ts';
import type { GuardedLiveFeed } from './live-feed.ts';
import { sendToDevice } from './send.ts';
import type { DeviceSocket, Session, SessionTable } from './session.ts';
import { MetricNames, defineMetrics, validateBatch, type BatchInput, type ValidationLimits } from './validate.ts';

/** The store's refusal when it is at its cap: 1013 and "come back later", not 1011. */
const STORE_FULL: HubErrorCode = 'HUB_ERR_STORE_FULL';
/** The store's refusal while it cannot reach its storage (cluster mode: NATS): 1013 as well. */
const STORE_UNAVAILABLE: HubErrorCode = 'HUB_ERR_STORE_UNAVAILABLE';

export interface BatchDeps {
  readonly config: HubConfig;
  readonly store: BatchStore;
  readonly metrics: HubMetrics;
  readonly now: () => number;
  readonly table: SessionTable;
  readonly lifecycle: SessionLifecycle;
  readonly acks: AckFlusher;
  readonly live: GuardedLiveFeed;
  readonly deviceLog: LogLimiter;
  /** Called once per batch when it is durable (not for duplicates). */
  readonly onDurable: ((batch: AcceptedBatch) => void) | undefined;
}

export class BatchIntake {
  readonly #deps: BatchDeps;
  readonly #config: HubConfig;
  readonly #metrics: HubMetrics;
  readonly #store: BatchStore;
  readonly #lifecycle: SessionLifecycle;
  readonly #acks: AckFlusher;
  readonly #limits: ValidationLimits;
  /** Every metric name in use fleet-wide (HUB_MAX_METRIC_NAMES), shared by all devices. */
  readonly #metricNames: MetricNames;
  #pendingAppends = 0;
  #appendsSettled: (() => void)[] = [];

  constructor(deps: BatchDeps) {
    this.#deps = deps;
    const config = deps.config;
    this.#config = config;
    this.#metrics = deps.metrics;
    this.#store = deps.store;
    this.#lifecycle = deps.lifecycle;
    this.#acks = deps.acks;
    this.#limits = {
      maxBatchReadings: config.maxBatchReadings, maxMetricsPerSession: config.maxMetricsPerSession,
      maxMetricNameBytes: config.maxMetricNameBytes, maxMetricsPerDevice: config.maxMetricsPerDevice,
      maxFutureSkewMs: config.maxFutureSkewMs, maxPastSkewMs: config.maxPastSkewMs, skewPolicy: config.skewPolicy,
    };
    const metrics = deps.metrics;
    this.#metricNames = new MetricNames(config.maxMetricNames, (size) => metrics.metricNames.set(size));
  }

  /** Appends accepted and not yet durable or failed. */
  get pendingAppends(): number {
    return this.#pendingAppends;
  }

  /** Resolves once no append is pending (at once when none is). */
  whenSettled(): Promise<void> {
    if (this.#pendingAppends === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#appendsSettled.push(resolve));
  }

  /** A Batch that arrived on `ws`, the session's socket. */
  handle(session: Session, ws: DeviceSocket, batch: BatchInput): void {
    const lifecycle = this.#lifecycle;
    if (session.state !== 'open') return lifecycle.close(session, CloseCode.PROTOCOL_ERROR, 'Batch before Hello', undefined, 'protocol');
    const config = this.#config;
    const metrics = this.#metrics;
    // protocol: at most `window` unacked batches in flight.
    if (session.inflightCount >= config.window) {
      return lifecycle.close(session, CloseCode.WINDOW_EXCEEDED, `more than ${config.window} unacked batches in flight`, undefined, 'window');
    }
    const seq = batch.seq ?? 0;
    // protocol: 1 <= seq <= 2^53 - 1; the hub holds 64-bit integers as doubles.
    if (!(seq >= 1) || !Number.isSafeInteger(seq)) return lifecycle.close(session, CloseCode.PROTOCOL_ERROR, `Batch.seq must be 1..2^53-1 (9007199254740991); got ${seq}`, undefined, 'protocol');
    const now = this.#deps.now();
    // protocol: every sent_time_ms is a clock-offset sample, resends too (§8).
    session.sample(batch.sentTimeMs ?? 0, now);

    const device = session.device;
    const defs = batch.metricDefs;
    const defError = defs && defs.length > 0 ? defineMetrics(session.metrics(), defs, this.#limits, device.metricNames ??= new Set(), this.#metricNames) : null;
    if (defError) return lifecycle.close(session, defError.code, defError.reason, undefined, defError.limit as LimitName);

    const store = this.#store;
    if (seq <= store.acceptedSeq(session.deviceId)) {
      // protocol: a resend of a batch the hub holds is acked, not stored twice.
      metrics.batchDuplicate.inc();
      session.addInflight(seq, now);
      if (seq <= store.durableSeq(session.deviceId)) this.#acks.markDirty(session);
      return;
    }

    const outcome = validateBatch(session.deviceId, session.tags, batch, session.metrics(), this.#limits, now, session);
    if (!outcome.ok) return lifecycle.close(session, outcome.code, outcome.reason, undefined, outcome.limit as LimitName);

    const readings = batch.metricIds?.length ?? 0;
    if (!device.take(readings, now)) {
      const waitMs = Math.max(1000, device.waitMs(readings, now));
      return lifecycle.close(session, CloseCode.RATE_LIMITED, `over ${config.maxReadingsPerSecond} readings/s`, waitMs, 'readings_rate');
    }

    const report = outcome.report;
    if ((report.skewDropped || report.skewCorrected) && !session.toldSkew) {
      session.toldSkew = true;
      sendToDevice(ws, encodeHubMessage({ notice: { code: NoticeCode.CLOCK_SKEW,
        reason: `readings out of the skew bounds (${report.skewCorrected} corrected, ${report.skewDropped} dropped in batch ${seq}); estimated device clock offset ${session.offsetMs} ms; see Ack reports` } }), metrics);
    }
    if (report.nonFiniteDropped || report.skewDropped || report.skewCorrected) {
      (session.reports ??= []).push({ seq, nonFiniteDropped: report.nonFiniteDropped, skewDropped: report.skewDropped, skewCorrected: report.skewCorrected, clockOffsetMs: session.offsetMs });
      if (report.nonFiniteDropped) { metrics.readingsNonFinite.inc(report.nonFiniteDropped); metrics.limit('non_finite'); }
      if (report.skewDropped) { metrics.readingsSkewDropped.inc(report.skewDropped); metrics.limit('skew'); }
      if (report.skewCorrected) metrics.readingsSkewCorrected.inc(report.skewCorrected);
    }
    metrics.hot.batchesAccepted++;
    metrics.hot.readingsAccepted += outcome.batch.values.length;
    session.addInflight(seq, now);
    this.#append(outcome.batch, session.deviceId, seq);
  }

  #append(accepted: AcceptedBatch, deviceId: string, seq: number): void {
    this.#pendingAppends++;
    this.#store.append(accepted).then(
      () => {
        this.#deps.onDurable?.(accepted);
        this.#deps.live.durable(accepted);
        // Ack on whichever session the device has now (it may have reconnected).
        const current = this.#deps.table.current(deviceId);
        if (current) this.#acks.markDirty(current);
        this.#appendSettled();
      },
      (err: unknown) => {
        this.#metrics.storeErrors.inc();
        const code = (err as { code?: string }).code;
        const full = code === STORE_FULL;
        const unavailable = code === STORE_UNAVAILABLE;
        const deviceLog = this.#deps.deviceLog;
        if (full) deviceLog.warn('spool_full', { device: deviceId, seq }, 'spool full; device told to come back later');
        else if (unavailable) deviceLog.warn('store_unavailable', { device: deviceId, seq }, 'storage unreachable; device told to come back later');
        else deviceLog.error('store_append_failed', { err, device: deviceId, seq }, 'store append failed; the device will resend');
        // protocol: never ack what is not durable; the device resends after reconnecting.
        const current = this.#deps.table.current(deviceId);
        if (current) {
          this.#lifecycle.close(current, full || unavailable ? CloseCode.TRY_AGAIN_LATER : CloseCode.INTERNAL_ERROR, full ? 'storage full' : unavailable ? 'storage unavailable' : 'storage error',
            jitteredRetryMs(this.#config.retryAfterMs), null);
        }
        this.#appendSettled();
      },
    );
  }

  #appendSettled(): void {
    if (--this.#pendingAppends === 0) for (const resolve of this.#appendsSettled.splice(0)) resolve();
  }
}
