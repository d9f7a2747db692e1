// device-sim/: the live display while a load test runs. On a terminal, a
// block of four lines redrawn in place (cursor up over the last block, clear
// each line, write the new one) at most once per intervalMs; anywhere else (CI
// logs, a pipe, TERM=dumb) one plain key=value line per plainIntervalMs and no
// escape codes at all. The caller owns the numbers and passes a snapshot as
// often as it likes; this module only rate-limits, formats and writes. A stream
// that fails (EPIPE) silences the display, it never throws.
// Imports: node:perf_hooks.
import { performance } from 'node:perf_hooks';

/** What the display shows; the caller builds one per update(). */
export interface DisplaySnapshot {
  /** Since the run started. */
  elapsedMs: number;
  /**
   * The scenario phase running now, or null outside any. index is 0-based
   * (shown as index + 1 of count); durationMs 0 or not finite: no end known.
   */
  phase: { name: string; kind: string; index: number; count: number; elapsedMs: number; durationMs: number } | null;
  devices: { target: number; connected: number };
  batchesPerS: number;
  readingsPerS: number;
  inflight: number;
  reconnects: number;
  errors: number;
  /** Readings lost so far. */
  lost: number;
  /** NaN when not measured yet: shown as "-". */
  latency: { ackP50Ms: number; ackP99Ms: number; connectP99Ms: number };
}

export interface DisplayOptions {
  stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** NO_COLOR and TERM are read from it. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Terminal redraws at most this often, ms. Default 1000. */
  intervalMs?: number;
  /** Plain mode: one line this often, ms. Default 1000. */
  plainIntervalMs?: number;
  /** The clock the intervals are measured on, ms. Default performance.now(). */
  now?: () => number;
}

const ESC = '\x1b';
const CSI = `${ESC}[`;
const RESET = `${CSI}0m`;
const ALERT = `${CSI}1;31m`;
const CLEAR_LINE = `${CSI}2K`;
const BAR_CELLS = 10;
const MAX_NAME = 28;

const integers = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** A count or rate rounded, with en-US thousands separators ("77,248"); "-" when not finite. */
export function formatCount(n: number): string {
  return Number.isFinite(n) ? integers.format(Math.round(n) + 0) : '-';
}

/** Whole seconds: "45s", "60s" (seconds alone below 100 s), "2m05s", "1h02m05s"; "-" when not finite or negative. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  if (h > 0) return `${h}h${two(m)}m${two(s)}s`;
  if (total >= 100) return `${m}m${two(s)}s`;
  return `${total}s`;
}

/** "0.42 ms", "4.2 ms", "31 ms", "1.3 s"; sep goes between number and unit. "-" when not measured (NaN). */
export function formatLatency(ms: number, sep = ' '): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 0.995) return `${ms.toFixed(2)}${sep}ms`;
  if (ms < 9.95) return `${ms.toFixed(1)}${sep}ms`;
  if (ms < 999.5) return `${Math.round(ms)}${sep}ms`;
  const s = ms / 1000;
  if (s < 99.95) return `${s.toFixed(1)}${sep}s`;
  return `${formatCount(s)}${sep}s`;
}

/** Control characters (a newline would break the line count) become spaces; long names are cut. */
function cleanName(p: NonNullable<DisplaySnapshot['phase']>): string {
  const raw = p.name || p.kind || '?';
  const clean = Array.from(raw, (c) => (c < ' ' || c === '\x7f' ? ' ' : c)).join('');
  return clean.length > MAX_NAME ? `${clean.slice(0, MAX_NAME - 3)}...` : clean;
}

const phaseNumber = (p: NonNullable<DisplaySnapshot['phase']>) => `${formatCount(p.index + 1)}/${formatCount(p.count)}`;

function progressBar(elapsedMs: number, durationMs: number): string {
  const f = Math.min(1, Math.max(0, elapsedMs / durationMs));
  const full = Math.round(f * BAR_CELLS);
  return `[${'#'.repeat(full)}${'-'.repeat(BAR_CELLS - full)}]`;
}

function percent(part: number, whole: number): string {
  if (!(whole > 0) || !Number.isFinite(part)) return '-';
  // Floored, so 99.99 % connected never reads as 100.0 %.
  return `${(Math.floor((part / whole) * 1000) / 10).toFixed(1)}%`;
}

/** The line, cut to `columns` visible characters (SGR codes not counted; a cut styled line is reset). */
function truncate(line: string, columns: number): string {
  if (!(columns > 0) || !Number.isFinite(columns)) return line;
  let out = '';
  let width = 0;
  let styled = false;
  for (let i = 0; i < line.length;) {
    if (line[i] === ESC && line[i + 1] === '[') {
      let j = i + 2;
      while (j < line.length && '0123456789;'.includes(line[j] ?? 'x')) j++;
      if (line[j] === 'm') {
        out += line.slice(i, j + 1);
        styled = true;
        i = j + 1;
        continue;
      }
    }
    if (width === columns) return styled ? out + RESET : out;
    const ch = String.fromCodePoint(line.codePointAt(i) ?? 0);
    out += ch;
    i += ch.length;
    width++;
  }
  return out;
}

/**
 * The terminal block, four lines, each under 100 columns for realistic
 * numbers and cut to `columns` when it is above 0 (a wrapped line would break
 * the cursor-up redraw). color: lost readings in bold red.
 */
export function formatBlock(s: DisplaySnapshot, o: { color: boolean; columns: number }): string[] {
  const p = s.phase;
  let phase = 'phase -';
  if (p) {
    const timed = Number.isFinite(p.durationMs) && p.durationMs > 0;
    phase = `phase ${phaseNumber(p)} ${cleanName(p)} (${formatDuration(p.elapsedMs)}`
      + (timed ? ` of ${formatDuration(p.durationMs)}) ${progressBar(p.elapsedMs, p.durationMs)}` : ')');
  }
  const { target, connected } = s.devices;
  const lostText = `lost ${formatCount(s.lost)}`;
  const lost = o.color && s.lost > 0 ? `${ALERT}${lostText}${RESET}` : lostText;
  const l = s.latency;
  const lines = [
    `elapsed ${formatDuration(s.elapsedMs)}   ${phase}`,
    `devices ${formatCount(connected)}/${formatCount(target)} (${percent(connected, target)})`
      + `   batches/s ${formatCount(s.batchesPerS)}   readings/s ${formatCount(s.readingsPerS)}`,
    `in flight ${formatCount(s.inflight)}   reconnects ${formatCount(s.reconnects)}   errors ${formatCount(s.errors)}   ${lost}`,
    `ack p50 ${formatLatency(l.ackP50Ms)}   ack p99 ${formatLatency(l.ackP99Ms)}   connect p99 ${formatLatency(l.connectP99Ms)}`,
  ];
  return lines.map((line) => truncate(line, o.columns));
}

/** One plain log line, key=value, no escape codes and no newline. */
export function formatPlainLine(s: DisplaySnapshot): string {
  const p = s.phase;
  const phase = p ? `${phaseNumber(p)} ${cleanName(p).replace(/\s+/g, '_')}` : '-';
  const whole = (n: number) => (Number.isFinite(n) ? String(Math.round(n) + 0) : '-');
  const seconds = Number.isFinite(s.elapsedMs) ? String(Math.floor(Math.max(0, s.elapsedMs) / 1000)) : '-';
  const l = s.latency;
  return `[sim ${seconds.padStart(5)}s] phase=${phase}`
    + ` devices=${whole(s.devices.connected)}/${whole(s.devices.target)}`
    + ` batches/s=${formatCount(s.batchesPerS)} readings/s=${formatCount(s.readingsPerS)}`
    + ` inflight=${formatCount(s.inflight)} reconnects=${formatCount(s.reconnects)}`
    + ` errors=${formatCount(s.errors)} lost=${formatCount(s.lost)}`
    + ` ack_p50=${formatLatency(l.ackP50Ms, '')} ack_p99=${formatLatency(l.ackP99Ms, '')}`
    + ` connect_p99=${formatLatency(l.connectP99Ms, '')}`;
}

function interval(value: number | undefined, name: string): number {
  if (value === undefined) return 1000;
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
  return value;
}

/**
 * The live display. The stream gets an 'error' listener that silences the
 * display; it stays attached after finish() (an EPIPE reported after the last
 * write must not become an unhandled 'error'). Other output written to the
 * stream between two terminal redraws is overwritten by the next one.
 */
export class LiveDisplay {
  readonly mode: 'tty' | 'plain';
  readonly #stream: DisplayOptions['stream'];
  readonly #color: boolean;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #nextAt: number | undefined;
  #last: DisplaySnapshot | undefined;
  /** Lines of the block on screen, which the next redraw moves up over. */
  #drawnLines = 0;
  #finished = false;
  #failed = false;

  constructor(o: DisplayOptions) {
    const env = o.env ?? process.env;
    this.#stream = o.stream;
    this.mode = o.stream.isTTY === true && env.TERM !== 'dumb' ? 'tty' : 'plain';
    // no-color.org: present and not empty.
    this.#color = this.mode === 'tty' && !env.NO_COLOR;
    this.#intervalMs = this.mode === 'tty' ? interval(o.intervalMs, 'intervalMs') : interval(o.plainIntervalMs, 'plainIntervalMs');
    this.#now = o.now ?? (() => performance.now());
    o.stream.on('error', () => { this.#failed = true; });
  }

  /** Called as often as the caller likes; draws only when the interval has passed (rate-limited by now()). */
  update(s: DisplaySnapshot): void {
    if (this.#finished || this.#failed) return;
    this.#last = s;
    const t = this.#now();
    if (this.#nextAt !== undefined && t < this.#nextAt) return;
    // On a fixed grid (one draw per interval however the calls fall), except
    // after a stall, which does not earn a burst of catch-up draws.
    this.#nextAt = this.#nextAt === undefined || t >= this.#nextAt + this.#intervalMs ? t + this.#intervalMs : this.#nextAt + this.#intervalMs;
    this.#draw(s);
  }

  /** Draws the last snapshot once more (unconditionally) and stops; later update() calls are ignored. */
  finish(s?: DisplaySnapshot): void {
    if (this.#finished) return;
    this.#finished = true;
    const last = s ?? this.#last;
    if (last && !this.#failed) this.#draw(last);
  }

  #draw(s: DisplaySnapshot): void {
    if (this.mode === 'plain') {
      this.#write(`${formatPlainLine(s)}\n`);
      return;
    }
    const columns = this.#stream.columns;
    const lines = formatBlock(s, { color: this.#color, columns: typeof columns === 'number' ? columns : 0 });
    // A shorter block than the last one blanks the old lines below it.
    const count = Math.max(lines.length, this.#drawnLines);
    let out = this.#drawnLines > 0 ? `${CSI}${this.#drawnLines}A` : '';
    for (let i = 0; i < count; i++) out += `${CLEAR_LINE}${lines[i] ?? ''}\n`;
    if (this.#write(out)) this.#drawnLines = count;
  }

  #write(chunk: string): boolean {
    if (this.#failed || this.#stream.writable === false) {
      this.#failed = true;
      return false;
    }
    try {
      this.#stream.write(chunk);
      return true;
    } catch {
      this.#failed = true;
      return false;
    }
  }
}
