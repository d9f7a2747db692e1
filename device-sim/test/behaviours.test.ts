// device-sim/ tests: each behaviour strategy on its own, its hooks called
// directly with a recording stand-in for the device (no device, no socket).
// Imports: node:test, @telemetry/proto, and this package's behaviours and sensors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeDeviceMessage, type Welcome } from '@telemetry/proto';
import { BAD_BEHAVIOURS, behaviourStrategy, type Behaviour, type MisbehavingDevice } from '../src/behaviours.ts';
import { mulberry32 } from '../src/sensors.ts';

const WELCOME: Welcome = { window: 4, credit: 1, limits: { maxMessageBytes: 4096 } };

/** A MisbehavingDevice that records what the strategy did to it. */
function recordingDevice(random = mulberry32(1)) {
  const log: string[] = [];
  const frames: (string | Uint8Array)[] = [];
  const device: MisbehavingDevice = {
    random, now: () => 1_000.4,
    send: (frame) => { frames.push(frame); log.push('send'); },
    closeBatch: () => log.push('close'),
    sampleInstant: (t) => log.push(`sample ${t}`),
  };
  return { device, log, frames };
}

test('behaviours - good: Hello, paced, credit-bound, values and rate as they are, nothing on Welcome', () => {
  const good = behaviourStrategy('good');
  assert.deepEqual([good.name, good.clockOffsetMs, good.saysHello, good.paced], ['good', 0, true, true]);
  assert.equal(good.sampleRate(2.5), 2.5);
  assert.deepEqual([good.inFlightLimit(3, 32), good.inFlightLimit(40, 32), good.inFlightLimit(0, 32)], [3, 32, 0]);
  assert.equal(good.onSample, undefined);
  assert.equal(good.onWelcome, undefined);
});

test('behaviours - every bad behaviour has its strategy, and only where it departs from good', () => {
  const departures: Record<Behaviour, string[]> = {
    good: [],
    'ignore-window': ['paced', 'inFlightLimit', 'onWelcome'],
    'text-frames': ['onWelcome'],
    garbage: ['onWelcome'],
    oversize: ['onWelcome'],
    nan: ['onSample'],
    'skewed-clock': ['clockOffsetMs'],
    flood: ['paced', 'sampleRate'],
    'no-hello': ['saysHello'],
  };
  const good = behaviourStrategy('good') as unknown as Record<string, unknown>;
  for (const name of BAD_BEHAVIOURS) {
    const s = behaviourStrategy(name) as unknown as Record<string, unknown>;
    assert.equal(s.name, name);
    const differs = [...new Set([...Object.keys(good), ...Object.keys(s)])].filter((k) => k !== 'name' && s[k] !== good[k]);
    assert.deepEqual(differs.sort(), departures[name].sort(), name);
  }
  assert.equal(behaviourStrategy('typo' as Behaviour).name, 'good', 'an unknown name behaves well, as it always has');
});

test('behaviours - ignore-window queues 4x the window in one-instant batches and ignores credit', () => {
  const s = behaviourStrategy('ignore-window');
  assert.equal(s.inFlightLimit(1, 4), 16);
  assert.equal(s.inFlightLimit(0, 4), 16);
  const { device, log } = recordingDevice();
  s.onWelcome!(device, WELCOME);
  // The open batch closes first, then 16 times: one instant (at the rounded device time), closed.
  assert.deepEqual(log, ['close', ...Array.from({ length: 16 }, () => ['sample 1000', 'close']).flat()]);
});

test('behaviours - text-frames, garbage and oversize send one frame on Welcome', () => {
  const text = recordingDevice();
  behaviourStrategy('text-frames').onWelcome!(text.device, WELCOME);
  assert.deepEqual(text.frames, ['{"hello":"I am JSON"}']);

  for (let seed = 0; seed < 200; seed++) {
    const g = recordingDevice(mulberry32(seed));
    behaviourStrategy('garbage').onWelcome!(g.device, WELCOME);
    const bytes = g.frames[0] as Uint8Array;
    assert.equal(bytes.length, 64);
    assert.equal(bytes[0]! & 7, 7, 'wire type 7: never a valid envelope');
    assert.throws(() => decodeDeviceMessage(bytes));
  }
  const a = recordingDevice(mulberry32(5));
  const b = recordingDevice(mulberry32(5));
  behaviourStrategy('garbage').onWelcome!(a.device, WELCOME);
  behaviourStrategy('garbage').onWelcome!(b.device, WELCOME);
  assert.deepEqual(a.frames, b.frames, "drawn from the device's seeded stream: reproducible");

  const big = recordingDevice();
  behaviourStrategy('oversize').onWelcome!(big.device, WELCOME);
  assert.equal((big.frames[0] as Uint8Array).length, 4097);
  const noLimits = recordingDevice();
  behaviourStrategy('oversize').onWelcome!(noLimits.device, {});
  assert.equal((noLimits.frames[0] as Uint8Array).length, 262_145, 'the default max_message_bytes + 1');
});

test('behaviours - nan replaces about 10 % of values with NaN or +-Infinity, drawing 1 to 3 randoms each', () => {
  const nan = behaviourStrategy('nan');
  const random = mulberry32(9);
  let bad = 0;
  const kinds = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const v = nan.onSample!(21.5, random);
    if (v !== 21.5) { bad++; kinds.add(String(v)); }
  }
  assert.ok(bad > 900 && bad < 1100, `${bad} of 10,000`);
  assert.deepEqual([...kinds].sort(), ['-Infinity', 'Infinity', 'NaN']);
  // The draws, in order: keep (>= 0.1); replace (< 0.1) then NaN (< 0.5); replace, not NaN, Infinity (< 0.5).
  const seq = (...xs: number[]) => { let i = 0; return () => xs[i++]!; };
  assert.equal(nan.onSample!(1, seq(0.1)), 1);
  assert.ok(Number.isNaN(nan.onSample!(1, seq(0.05, 0.4))));
  assert.equal(nan.onSample!(1, seq(0.05, 0.6, 0.4)), Infinity);
  assert.equal(nan.onSample!(1, seq(0.05, 0.6, 0.6)), -Infinity);
});

test('behaviours - skewed-clock, flood and no-hello', () => {
  assert.equal(behaviourStrategy('skewed-clock').clockOffsetMs, 3_600_000);
  const flood = behaviourStrategy('flood');
  assert.deepEqual([flood.sampleRate(1), flood.sampleRate(100), flood.sampleRate(0)], [500, 1000, 500]);
  assert.equal(flood.paced, false);
  assert.equal(flood.inFlightLimit(3, 32), 3, 'a flooder still follows credit');
  assert.equal(behaviourStrategy('no-hello').saysHello, false);
});
