// The slow-consumer ladder of /v1/live without sockets: every rung, the
// boundaries of both limits, recovery, and a reader that stops for good.
import assert from 'node:assert/strict';
import test from 'node:test';
import {
  CLEAN_BEFORE_RECOVERY, COARSE_EVERY, KEEPING_UP, SKIPS_BEFORE_COARSE, ladderStep,
  type LadderAction, type LadderLimits, type LadderState,
} from '../src/live/ladder.ts';

const limits: LadderLimits = { skipBytes: 1000, maxBackpressure: 5000 };
const behind = limits.skipBytes + 1;

/** Steps one socket through (buffered, tick) pairs; returns the actions and the last state. */
function run(steps: [number, number][], from: LadderState = KEEPING_UP): { actions: LadderAction[]; ladder: LadderState } {
  let ladder = from;
  const actions: LadderAction[] = [];
  for (const [buffered, tick] of steps) {
    const d = ladderStep(ladder, buffered, tick, limits);
    actions.push(d.action);
    ladder = d.ladder;
  }
  return { actions, ladder };
}

/** A socket that has just gone coarse (three skips in a row from tick 1). */
function degraded(): LadderState {
  const r = run([[behind, 1], [behind, 2], [behind, 3]]);
  assert.deepEqual(r.actions, ['skip', 'skip', 'degrade']);
  return r.ladder;
}

test('live ladder - a socket keeping up gets every tick, and the step allocates nothing', () => {
  for (let tick = 1; tick <= 20; tick++) {
    const d = ladderStep(KEEPING_UP, tick % 2 ? 0 : limits.skipBytes, tick, limits);
    assert.equal(d.action, 'send');
    assert.equal(d.ladder, KEEPING_UP, 'the same state object');
    assert.equal(ladderStep(KEEPING_UP, 0, tick, limits), d, 'the same decision object');
  }
});

test('live ladder - rung 1: more than skipBytes unsent skips the tick; exactly skipBytes does not', () => {
  assert.equal(ladderStep(KEEPING_UP, limits.skipBytes, 1, limits).action, 'send');
  const d = ladderStep(KEEPING_UP, behind, 1, limits);
  assert.equal(d.action, 'skip');
  assert.deepEqual(d.ladder, { skippedInARow: 1, degraded: false, cleanCoarseFrames: 0 });
  assert.deepEqual(KEEPING_UP, { skippedInARow: 0, degraded: false, cleanCoarseFrames: 0 }, 'the input is not changed');
});

test('live ladder - skips must be in a row: a frame in between starts the count again', () => {
  const r = run([[behind, 1], [behind, 2], [0, 3], [behind, 4], [behind, 5], [0, 6]]);
  assert.deepEqual(r.actions, ['skip', 'skip', 'send', 'skip', 'skip', 'send']);
  assert.equal(r.ladder, KEEPING_UP);
});

test('live ladder - rung 2: the third skip in a row degrades the socket to coarse updates', () => {
  assert.equal(SKIPS_BEFORE_COARSE, 3);
  const ladder = degraded();
  assert.deepEqual(ladder, { skippedInARow: 3, degraded: true, cleanCoarseFrames: 0 });
});

test('live ladder - coarse: a frame only every 10th tick, and that one is sent even while behind', () => {
  assert.equal(COARSE_EVERY, 10);
  const r = run([[0, 4], [behind, 5], [limits.maxBackpressure, 9], [behind, 10], [0, 11], [behind, 19], [limits.maxBackpressure, 20]], degraded());
  assert.deepEqual(r.actions, ['wait', 'wait', 'wait', 'send', 'wait', 'wait', 'send']);
  assert.equal(r.ladder.degraded, true);
  assert.equal(r.ladder.cleanCoarseFrames, 0, 'frames sent while behind are not clean');
});

test('live ladder - recovery: three coarse frames sent with nothing unsent bring back every tick', () => {
  assert.equal(CLEAN_BEFORE_RECOVERY, 3);
  const r = run([[0, 10], [0, 20]], degraded());
  assert.deepEqual(r.actions, ['send', 'send']);
  assert.deepEqual(r.ladder, { skippedInARow: 3, degraded: true, cleanCoarseFrames: 2 });
  const third = ladderStep(r.ladder, 0, 30, limits);
  assert.equal(third.action, 'send');
  assert.equal(third.ladder, KEEPING_UP, 'the third clean frame itself is a full one');
  assert.equal(ladderStep(third.ladder, 0, 31, limits).action, 'send', 'every tick again');
});

test('live ladder - recovery needs clean frames in a row: one sent while anything is unsent starts over', () => {
  // Any unsent byte, even below skipBytes, makes a coarse frame not clean.
  const r = run([[0, 10], [0, 20], [1, 30], [0, 40], [0, 50]], degraded());
  assert.deepEqual(r.actions, ['send', 'send', 'send', 'send', 'send']);
  assert.equal(r.ladder.degraded, true);
  assert.equal(r.ladder.cleanCoarseFrames, 2);
  assert.equal(ladderStep(r.ladder, 0, 60, limits).ladder, KEEPING_UP);
});

test('live ladder - after recovering, a socket needs three new skips in a row to degrade again', () => {
  const recovered = run([[0, 10], [0, 20], [0, 30]], degraded());
  assert.equal(recovered.ladder, KEEPING_UP);
  const r = run([[behind, 31], [behind, 32], [behind, 33]], recovered.ladder);
  assert.deepEqual(r.actions, ['skip', 'skip', 'degrade']);
});

test('live ladder - rung 3: more than maxBackpressure unsent closes, on every rung and any tick; exactly maxBackpressure does not', () => {
  for (const [name, ladder] of [['keeping up', KEEPING_UP], ['skipping', run([[behind, 1]]).ladder], ['coarse', degraded()]] as const) {
    for (const tick of [7, 10]) {
      const d = ladderStep(ladder, limits.maxBackpressure + 1, tick, limits);
      assert.equal(d.action, 'close', `${name}, tick ${tick}`);
      assert.equal(d.ladder, ladder, 'state unchanged');
      assert.notEqual(ladderStep(ladder, limits.maxBackpressure, tick, limits).action, 'close', `${name}, tick ${tick}: at the limit`);
    }
  }
});

test('live ladder - a reader that stops for good: skips, coarse frames while its backlog grows, then the close', () => {
  // Each frame sent adds 800 bytes that are never read.
  let ladder = KEEPING_UP, buffered = 2000;
  const seen: string[] = [];
  for (let tick = 1; tick <= 100; tick++) {
    const d = ladderStep(ladder, buffered, tick, limits);
    ladder = d.ladder;
    if (d.action === 'send') buffered += 800;
    if (seen.at(-1) !== d.action) seen.push(d.action);
    if (d.action === 'close') {
      assert.equal(tick, 41, 'the limit is checked every tick: 2000 + 4 coarse frames of 800 = 5200 after tick 40');
      break;
    }
  }
  assert.deepEqual(seen, ['skip', 'degrade', 'wait', 'send', 'wait', 'send', 'wait', 'send', 'wait', 'send', 'close']);
});
