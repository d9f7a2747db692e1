// live/: the slow-consumer ladder of /v1/live, as a pure function: given a
// dashboard socket's ladder state, how many bytes it still has unsent, the
// tick number and the limits, what happens to it this tick. No socket, clock
// or I/O, so every rung is unit-tested (hub/test/live-ladder.test.ts).
// Imports: nothing.
//
// The rungs (proto/README.md, "Slow clients"):
//   1. more than skipBytes unsent: skip the tick (latest wins);
//   2. SKIPS_BEFORE_COARSE skips in a row: coarse updates, a frame every
//      COARSE_EVERY ticks, sent even while behind (so a reader that stopped
//      reaches rung 3 and goes); CLEAN_BEFORE_RECOVERY coarse frames sent with
//      nothing unsent bring it back to every tick;
//   3. more than maxBackpressure unsent: close (4102).

/** Consecutive skipped ticks before a socket gets coarse updates. */
export const SKIPS_BEFORE_COARSE = 3;
/** A degraded socket gets a frame every this many ticks, with 10 s and 1 min windows only. */
export const COARSE_EVERY = 10;
/** Coarse frames sent with nothing left unsent before a socket is back to every tick. */
export const CLEAN_BEFORE_RECOVERY = 3;

export interface LadderState {
  /** Ticks skipped in a row on every-tick updates. */
  readonly skippedInARow: number;
  /** On coarse updates (the frame's `degraded`). */
  readonly degraded: boolean;
  /** Coarse frames sent in a row with nothing unsent. */
  readonly cleanCoarseFrames: number;
}

export interface LadderLimits {
  /** HUB_LIVE_SKIP_BYTES: more unsent than this skips the tick. */
  readonly skipBytes: number;
  /** HUB_LIVE_MAX_BACKPRESSURE: more unsent than this closes the socket. */
  readonly maxBackpressure: number;
}

/**
 * What the endpoint does with the socket this tick:
 * - `send`: a frame (coarse while `degraded`);
 * - `skip`: no frame, a skipped tick (hub_live_ticks_skipped_total);
 * - `degrade`: no frame, the skip that moved the socket to coarse updates
 *   (counted as a skip and in hub_live_degraded_total);
 * - `wait`: no frame, on coarse updates between two coarse ticks;
 * - `close`: close with 4102.
 */
export type LadderAction = 'send' | 'skip' | 'degrade' | 'wait' | 'close';

export interface LadderDecision {
  readonly action: LadderAction;
  /** The socket's state for the next tick (the same object when nothing changed). */
  readonly ladder: LadderState;
}

/** A socket that keeps up: where every socket starts and where recovery returns to. */
export const KEEPING_UP: LadderState = Object.freeze({ skippedInARow: 0, degraded: false, cleanCoarseFrames: 0 });
// The common case (a socket keeping up gets its frame) allocates nothing.
const SEND_KEEPING_UP: LadderDecision = Object.freeze({ action: 'send', ladder: KEEPING_UP });

export function ladderStep(ladder: LadderState, bufferedBytes: number, tick: number, limits: LadderLimits): LadderDecision {
  if (bufferedBytes > limits.maxBackpressure) return { action: 'close', ladder };
  if (ladder.degraded) {
    if (tick % COARSE_EVERY !== 0) return { action: 'wait', ladder };
    if (bufferedBytes > 0) {
      return { action: 'send', ladder: ladder.cleanCoarseFrames === 0 ? ladder : { ...ladder, cleanCoarseFrames: 0 } };
    }
    const clean = ladder.cleanCoarseFrames + 1;
    if (clean >= CLEAN_BEFORE_RECOVERY) return SEND_KEEPING_UP;
    return { action: 'send', ladder: { ...ladder, cleanCoarseFrames: clean } };
  }
  if (bufferedBytes > limits.skipBytes) {
    const skipped = ladder.skippedInARow + 1;
    if (skipped >= SKIPS_BEFORE_COARSE) return { action: 'degrade', ladder: { skippedInARow: skipped, degraded: true, cleanCoarseFrames: 0 } };
    return { action: 'skip', ladder: { ...ladder, skippedInARow: skipped } };
  }
  return SEND_KEEPING_UP;
}
