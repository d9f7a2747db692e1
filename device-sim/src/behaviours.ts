// device-sim/: how a simulated device behaves, good or bad. One strategy
// object per behaviour, holding only the hooks where it departs from a
// well-behaved device; SimDevice asks its strategy at each point (open,
// sample, send, Welcome) instead of testing the behaviour's name.
// Imports: @telemetry/proto (types).
import type { Welcome } from '@telemetry/proto';

export type Behaviour = 'good' | 'ignore-window' | 'text-frames' | 'garbage' | 'oversize' | 'nan' | 'skewed-clock' | 'flood' | 'no-hello';
/** Every behaviour but 'good', in the order a fleet hands them out. */
export const BAD_BEHAVIOURS: readonly Behaviour[] = ['ignore-window', 'text-frames', 'garbage', 'oversize', 'nan', 'skewed-clock', 'flood', 'no-hello'];

/** What a behaviour may do to the device it drives, right after Welcome. */
export interface MisbehavingDevice {
  /** The device's random stream (seeded: a run is reproducible). */
  readonly random: () => number;
  /** Device clock, Unix ms. */
  now(): number;
  /** Sends a raw frame on the session: a string as text, bytes as binary. */
  send(frame: string | Uint8Array): void;
  /** Closes the open batch into the outbox (if it holds readings). */
  closeBatch(): void;
  /** Samples every sensor at device time t into the open batch. */
  sampleInstant(t: number): void;
}

/**
 * Hooks are plain functions of their arguments (no `this`): the device may
 * hold them apart from the strategy on its per-reading path.
 */
export interface BehaviourStrategy {
  readonly name: Behaviour;
  /** The device clock's default offset (a wrong RTC), ms. */
  readonly clockOffsetMs: number;
  /** Says Hello on open (§4); one that does not also has no Welcome to wait for. */
  readonly saysHello: boolean;
  /** Keeps to Welcome's readings-per-second limit when sending (§10). */
  readonly paced: boolean;
  /** Readings per second per metric it actually samples, for a configured rate. */
  sampleRate(rate: number): number;
  /** Most batches it keeps in flight, for the latest credit and the session's window (§7). */
  inFlightLimit(credit: number, window: number): number;
  /** On sample: replaces a reading's value. Absent: values go as sampled. */
  readonly onSample?: (value: number, random: () => number) => number;
  /** On Welcome, before the first batch goes: what it does to the session. */
  readonly onWelcome?: (device: MisbehavingDevice, welcome: Welcome) => void;
}

const good: BehaviourStrategy = {
  name: 'good',
  clockOffsetMs: 0,
  saysHello: true,
  paced: true,
  sampleRate: (rate) => rate,
  // protocol §7: never more in flight than the latest credit (which is <= window).
  inFlightLimit: (credit, window) => Math.min(credit, window),
};

const STRATEGIES: Readonly<Record<Behaviour, BehaviourStrategy>> = {
  good,
  'ignore-window': {
    ...good, name: 'ignore-window', paced: false,
    inFlightLimit: (_credit, window) => window * 4,
    onWelcome: (device, welcome) => {
      // Enough one-instant batches to go 4x past the window at once.
      device.closeBatch();
      const t = Math.round(device.now());
      for (let i = 0; i < (welcome.window ?? 0) * 4; i++) {
        device.sampleInstant(t);
        device.closeBatch();
      }
    },
  },
  'text-frames': {
    ...good, name: 'text-frames',
    onWelcome: (device) => device.send('{"hello":"I am JSON"}'),
  },
  garbage: {
    ...good, name: 'garbage',
    onWelcome: (device) => {
      const bytes = Buffer.alloc(64);
      for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(device.random() * 256);
      bytes[0] = (bytes[0]! & 0xf8) | 7; // wire type 7 does not exist: never a valid envelope by accident
      device.send(bytes);
    },
  },
  oversize: {
    ...good, name: 'oversize',
    onWelcome: (device, welcome) => device.send(Buffer.alloc((welcome.limits?.maxMessageBytes || 262_144) + 1)),
  },
  nan: {
    ...good, name: 'nan',
    onSample: (value, random) => {
      if (random() >= 0.1) return value;
      return random() < 0.5 ? Number.NaN : (random() < 0.5 ? Infinity : -Infinity);
    },
  },
  'skewed-clock': { ...good, name: 'skewed-clock', clockOffsetMs: 3_600_000 },
  // A flooder goes far past the hub's default 1000 readings/s per device, unpaced.
  flood: { ...good, name: 'flood', paced: false, sampleRate: (rate) => Math.max(rate * 10, 500) },
  // Opens and stays silent: the hub's handshake timeout (4001) ends it.
  'no-hello': { ...good, name: 'no-hello', saysHello: false },
};

/** The strategy for a behaviour; a name it does not know behaves well, as it always has. */
export function behaviourStrategy(behaviour: Behaviour): BehaviourStrategy {
  return STRATEGIES[behaviour] ?? good;
}
