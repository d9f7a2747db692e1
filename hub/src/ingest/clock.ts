// ingest/: the device clock offset estimate (device clock minus hub clock),
// one per session (proto/README.md §8). Imports: nothing.
//
// Each sample is deviceSendTime - hubReceiveTime = offset - oneWayDelay, so
// the largest recent sample is the best estimate (the least-delayed message,
// the NTP "minimum filter"). Older maxima expire so that a drifting or reset
// device clock is followed.

/** protocol: the current maximum is replaced by the next sample once it is more than 60 s old (§8). */
const EXPIRE_MS = 60_000;

export class ClockOffsetEstimator {
  // 0, not -Infinity, before the first sample (#sampleCount says there is
  // none): a small integer keeps the field unboxed in every session.
  #bestSample = 0;
  #bestSampleAtMs = 0;
  #sampleCount = 0;

  /**
   * deviceTimeMs = 0 means the device has no clock; ignored. So is a time
   * past 2^53 ms (no clock reads that; as a double it is not exact), which
   * keeps the offset, and every time corrected by it, an exact integer.
   */
  sample(deviceTimeMs: number, hubTimeMs: number): void {
    if (!(deviceTimeMs > 0) || !Number.isSafeInteger(deviceTimeMs)) return;
    const sample = deviceTimeMs - hubTimeMs;
    if (this.#sampleCount === 0 || sample > this.#bestSample || hubTimeMs - this.#bestSampleAtMs > EXPIRE_MS) {
      this.#bestSample = sample;
      this.#bestSampleAtMs = hubTimeMs;
    }
    this.#sampleCount++;
  }

  get known(): boolean { return this.#sampleCount > 0; }

  /** Estimated offset in ms (device minus hub); 0 when unknown. */
  get offsetMs(): number { return this.#sampleCount > 0 ? Math.round(this.#bestSample) : 0; }
}
