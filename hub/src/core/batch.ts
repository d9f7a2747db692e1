// core/: the accepted-batch type every stage shares (ingest builds it,
// the spool stores it, sinks and the live path read it). Imports: nothing.

/** A validated batch, self-contained (no session state needed to read it). */
export interface AcceptedBatch {
  readonly deviceId: string;
  readonly seq: number;
  /** The device's registry tags (site, model...) when the batch was accepted. */
  readonly tags: Readonly<Record<string, string>>;
  /** Hub clock when the batch arrived, Unix ms. */
  readonly receivedAtMs: number;
  /** Estimated device clock minus hub clock, ms (0 when unknown). */
  readonly clockOffsetMs: number;
  /** Metric names used by this batch; metricIndex points into it. */
  readonly metricNames: readonly string[];
  readonly metricUnits: readonly string[];
  readonly metricIndex: Uint16Array;
  /** Event time the reading is stored with, Unix ms. */
  readonly timesMs: Float64Array;
  /** The device's own timestamps when any reading's time was corrected; else null. */
  readonly deviceTimesMs: Float64Array | null;
  readonly values: Float64Array;
}
