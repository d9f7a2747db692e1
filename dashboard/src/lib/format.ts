// Formatting for display: times, durations, byte sizes, numbers, presence.
// Pure functions, no state.
import { Presence, type DeviceStateMsg } from '@telemetry/proto';

/** The dashboard's words for a presence: CSS classes, the data-presence test hook, what the tables show. */
export type PresenceName = 'unknown' | 'online' | 'stale' | 'offline' | 'flapping';

/** A presence as decoded (the generated enum; null or absent on the wire means PRESENCE_UNKNOWN). */
type PresenceValue = DeviceStateMsg['presence'];

// Keyed by every value of the generated enum: a presence added to live.proto
// fails the type check here until it has a name.
const PRESENCE_NAMES: Record<NonNullable<PresenceValue>, PresenceName> = {
  [Presence.PRESENCE_UNKNOWN]: 'unknown',
  [Presence.ONLINE]: 'online',
  [Presence.STALE]: 'stale',
  [Presence.OFFLINE]: 'offline',
  [Presence.FLAPPING]: 'flapping',
};

/** A value this build's schema does not know (from a newer hub) is 'unknown'. */
export function presenceName(p: PresenceValue): PresenceName {
  return PRESENCE_NAMES[p ?? Presence.PRESENCE_UNKNOWN] ?? 'unknown';
}

/** Sort rank: the states an operator looks for first come first. */
export const PRESENCE_RANK: Record<PresenceName, number> = { online: 0, flapping: 1, stale: 2, offline: 3, unknown: 4 };

const pad2 = (n: number) => (n < 10 ? '0' : '') + n;

/** Local wall-clock time HH:MM:SS of a Unix ms timestamp. */
export function hhmmss(ms: number): string {
  const d = new Date(ms);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** Local date and time, e.g. "2025-11-25 14:03:07". */
export function dateTime(ms: number): string {
  if (!ms) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${hhmmss(ms)}`;
}

/** A duration in words: "850 ms", "12 s", "4 min", "3 h", "2 d". */
export function duration(ms: number): string {
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(a)} ms`;
  if (a < 60_000) return `${Math.floor(a / 1000)} s`;
  if (a < 3_600_000) return `${Math.floor(a / 60_000)} min`;
  if (a < 86_400_000) return `${Math.floor(a / 3_600_000)} h`;
  return `${Math.floor(a / 86_400_000)} d`;
}

/** "3 s ago" relative to now; "never" for 0 (an unset proto timestamp). */
export function ago(ms: number, now: number): string {
  if (!ms) return 'never';
  const d = now - ms;
  if (d < 1000) return 'just now';
  return `${duration(d)} ago`;
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Human byte size with binary prefixes: "0 B", "12.3 MiB". */
export function bytes(n: number): string {
  let v = n;
  let i = 0;
  while (v >= 1024 && i < BYTE_UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${BYTE_UNITS[i]}`;
}

/** A measured value with about 4 significant digits, no grouping separators. */
export function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1000) return int(v);
  if (a >= 100) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

/** A rate or count shown as an integer (no grouping, so tests can parse it). */
const GROUPED = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A whole number with thousands separators (205,703). */
export function int(v: number): string {
  return GROUPED.format(Math.round(v));
}
