// Device clock offset estimation (device clock minus hub clock).
//
// Each sample is deviceSendTime - hubReceiveTime = offset - oneWayDelay, so
// the largest recent sample is the best estimate (the least-delayed message,
// the NTP "minimum filter"). Older maxima expire so that a drifting or reset
// device clock is followed.

const EXPIRE_MS = 60_000;

export class ClockOffsetEstimator {
  #best = Number.NEGATIVE_INFINITY;
  #bestAt = 0;
  #samples = 0;

  /**
   * deviceTimeMs = 0 means the device has no clock; ignored. So is a time
   * past 2^53 ms (no clock reads that; as a double it is not exact), which
   * keeps the offset, and every time corrected by it, an exact integer.
   */
  sample(deviceTimeMs: number, hubTimeMs: number): void {
    if (!(deviceTimeMs > 0) || !Number.isSafeInteger(deviceTimeMs)) return;
    const s = deviceTimeMs - hubTimeMs;
    if (s > this.#best || hubTimeMs - this.#bestAt > EXPIRE_MS) {
      this.#best = s;
      this.#bestAt = hubTimeMs;
    }
    this.#samples++;
  }

  get known(): boolean { return this.#samples > 0; }

  /** Estimated offset in ms (device minus hub); 0 when unknown. */
  get offsetMs(): number { return this.#samples > 0 ? Math.round(this.#best) : 0; }
}
