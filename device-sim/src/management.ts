// device-sim/: device management beyond the core protocol (proto/README.md
// §5.14, §12, §15), the parts a SimDevice keeps apart from the session: the
// features it lists in Hello, its applied configuration (version, custom
// settings, how the last DesiredConfig went; kept across reconnects like
// flash), how a DesiredConfig is checked (every present field, applied all
// or nothing) and the named commands (Invoke) it answers. Pure: the device
// applies the result and sends the messages.
// Imports: @telemetry/proto.
import {
  FEATURE_CONFIG, FEATURE_INVOKE, MAX_CONFIG_ERROR_CHARS, MAX_CONFIG_JSON_BYTES,
  type DesiredConfig, type Invoke,
} from '@telemetry/proto';

/** What a simulated device lists in Hello.features by default; [] is a plain v1 device. */
export const DEFAULT_FEATURES: readonly string[] = [FEATURE_CONFIG, FEATURE_INVOKE];

/** The sample and batch intervals the simulator accepts from a DesiredConfig, ms. */
export const INTERVAL_RANGE_MS = { min: 100, max: 3_600_000 } as const;

/** The device's configuration state besides its intervals (which its batch builder holds). */
export interface ManagedState {
  /** The DesiredConfig.version handled last; 0 = none (factory settings). */
  version: number;
  /** The custom settings, a JSON object's text; "" = none. */
  customJson: string;
  /** How the last DesiredConfig went (true at version 0). */
  ok: boolean;
  error: string;
}

export function factoryState(): ManagedState {
  return { version: 0, customJson: '', ok: true, error: '' };
}

/** What a DesiredConfig asks to change, once every present field has been checked. */
export interface ConfigDelta {
  sampleIntervalMs?: number;
  batchIntervalMs?: number;
  customJson?: string;
}

export type DesiredCheck = { ok: true; delta: ConfigDelta } | { ok: false; error: string };

const UTF8 = new TextEncoder();

/** The problem with a custom_json text, or undefined: it must be a JSON object of at most MAX_CONFIG_JSON_BYTES bytes. */
function customJsonProblem(text: string): string | undefined {
  const bytes = UTF8.encode(text).length;
  if (bytes > MAX_CONFIG_JSON_BYTES) return `custom_json: ${bytes} bytes, at most ${MAX_CONFIG_JSON_BYTES}`;
  let v: unknown;
  try { v = JSON.parse(text); } catch { return 'custom_json: not JSON'; }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'custom_json: must be a JSON object';
  return undefined;
}

function intervalProblem(field: string, v: number): string | undefined {
  const { min, max } = INTERVAL_RANGE_MS;
  return Number.isInteger(v) && v >= min && v <= max ? undefined : `${field} ${v}: must be ${min}..${max}`;
}

/** At most MAX_CONFIG_ERROR_CHARS code points (§5.16). */
export function cutError(text: string): string {
  const cps = Array.from(text);
  return cps.length <= MAX_CONFIG_ERROR_CHARS ? text : `${cps.slice(0, MAX_CONFIG_ERROR_CHARS - 3).join('')}...`;
}

/** A proto3 optional field that was on the wire (absent decodes as null). */
const present = <T>(v: T | null | undefined): v is T => v !== null && v !== undefined;

/**
 * Checks every present field of a DesiredConfig (§15.2): the delta to apply
 * as a whole, or the problems, each naming its field ("sample_interval_ms 0:
 * must be 100..3600000"), joined by "; ". An absent field is null/undefined.
 */
export function checkDesired(d: DesiredConfig): DesiredCheck {
  const problems: string[] = [];
  const delta: ConfigDelta = {};
  if (present(d.sampleIntervalMs)) {
    const p = intervalProblem('sample_interval_ms', d.sampleIntervalMs);
    if (p) problems.push(p); else delta.sampleIntervalMs = d.sampleIntervalMs;
  }
  if (present(d.batchIntervalMs)) {
    const p = intervalProblem('batch_interval_ms', d.batchIntervalMs);
    if (p) problems.push(p); else delta.batchIntervalMs = d.batchIntervalMs;
  }
  if (present(d.customJson)) {
    const p = customJsonProblem(d.customJson);
    if (p) problems.push(p); else delta.customJson = d.customJson;
  }
  return problems.length ? { ok: false, error: cutError(problems.join('; ')) } : { ok: true, delta };
}

/** The answer to an Invoke (§12): what goes into CommandResult, and whether the device reboots after sending it. */
export interface InvokeAnswer {
  ok: boolean;
  message: string;
  resultJson: string;
  reboot: boolean;
}

/** Answers the named commands the simulator implements: ping and reboot; anything else is unknown. */
export function answerInvoke(invoke: Invoke, uptimeMs: number): InvokeAnswer {
  const name = invoke.name ?? '';
  if (name !== 'ping' && name !== 'reboot') return { ok: false, message: `unknown command ${name.slice(0, 64)}`, resultJson: '', reboot: false };
  // Arguments it does not know are ignored; arguments it cannot read are not (§12).
  const args = invoke.argsJson ?? '';
  if (args !== '' && customJsonProblem(args) !== undefined) {
    return { ok: false, message: `${name}: args_json must be a JSON object of at most ${MAX_CONFIG_JSON_BYTES} bytes`, resultJson: '', reboot: false };
  }
  if (name === 'ping') return { ok: true, message: 'pong', resultJson: JSON.stringify({ uptime_ms: Math.max(0, Math.floor(uptimeMs)) }), reboot: false };
  return { ok: true, message: 'rebooting', resultJson: JSON.stringify({ rebooting: true }), reboot: true };
}
