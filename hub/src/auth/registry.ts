// auth/: who may connect. Owns the device registry (ids, token hashes, tags)
// and token verification; the file's rules are auth/schemas.ts. Imports:
// core (errors, names, atomic-file), auth/schemas; ingest imports this.
//
// Tokens are `<deviceId>.<secret>` with a 256-bit random secret. The registry
// keeps only SHA-256(token). A slow KDF (scrypt, argon2) protects guessable
// passwords; a 256-bit secret cannot be guessed, and a slow hash on the
// upgrade path would let a reconnect storm (10k devices x ~50 ms) starve the
// hub. Comparison is constant-time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, mkdirSync, watch, existsSync, type FSWatcher } from 'node:fs';
import { dirname, basename } from 'node:path';
import { describeIssues, RegistryError } from '../core/errors.ts';
import { writeJsonAtomicSync } from '../core/atomic-file.ts';
import { DEVICE_ID_RE } from '../core/names.ts';
import { HASH_PREFIX, RegistryFileSchema } from './schemas.ts';

const SECRET_RE = /^[A-Za-z0-9_-]{43}$/;

export interface DeviceEntry {
  tokenHash: string;
  tags: Record<string, string>;
  disabled?: boolean;
  createdAt?: string;
}

export interface RegistryFile {
  version: 1;
  devices: Record<string, DeviceEntry>;
}

export type AuthResult =
  | { ok: true; deviceId: string; tags: Readonly<Record<string, string>> }
  | { ok: false; status: 401 | 403; reason: string };

/** What ingest needs from a registry. */
export interface DeviceAuthenticator {
  authenticate(token: string): AuthResult;
  /** Called with device ids that were removed or disabled; returns an unsubscribe. */
  onRevoked(listener: (deviceIds: string[]) => void): () => void;
}

export function generateToken(deviceId: string): string {
  if (!DEVICE_ID_RE.test(deviceId)) throw new RegistryError(`invalid device id ${JSON.stringify(deviceId)}: use 1-128 of [A-Za-z0-9_:.-], starting with a letter or digit`);
  return `${deviceId}.${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return HASH_PREFIX + createHash('sha256').update(token).digest('base64url');
}

export class DeviceRegistry implements DeviceAuthenticator {
  #devices = new Map<string, KnownDevice>();
  #listeners = new Set<(ids: string[]) => void>();
  /** The ids in code-unit order, built on first use after each change (the API's list pages through it). */
  #sorted: readonly string[] | null = null;

  constructor(file?: RegistryFile) {
    if (file) this.replace(file);
  }

  get size(): number { return this.#devices.size; }

  /** Every registered device with its tags (the live path lists them before they connect). */
  *entries(): IterableIterator<[string, Readonly<Record<string, string>>]> {
    for (const [id, e] of this.#devices) yield [id, e.tags];
  }

  /** One device's entry (a copy), or undefined. */
  get(deviceId: string): DeviceEntry | undefined {
    const e = this.#devices.get(deviceId);
    return e ? entryOf(e) : undefined;
  }

  /** What the registry holds, as a registry file (copies): the base of a change made through the API. */
  file(): RegistryFile {
    const devices: Record<string, DeviceEntry> = {};
    for (const [id, e] of this.#devices) devices[id] = entryOf(e);
    return { version: 1, devices };
  }

  tagsOf(deviceId: string): Readonly<Record<string, string>> | undefined {
    return this.#devices.get(deviceId)?.tags;
  }

  /** One device's entry as kept (no copy: not to be changed), or undefined. */
  peek(deviceId: string): Readonly<DeviceEntry> | undefined {
    return this.#devices.get(deviceId);
  }

  /** Every id in code-unit order; sorted once per registry change, not per call. */
  sortedIds(): readonly string[] {
    this.#sorted ??= [...this.#devices.keys()].sort();
    return this.#sorted;
  }

  /** Swaps in a new registry content; notifies about removed/disabled devices. */
  replace(file: RegistryFile): void {
    const next = parseRegistry(file);
    const revoked: string[] = [];
    for (const [id, old] of this.#devices) {
      const now = next.get(id);
      if (!now || (now.disabled && !old.disabled) || now.tokenHash !== old.tokenHash) revoked.push(id);
    }
    this.#devices = next;
    this.#sorted = null;
    if (revoked.length) for (const l of this.#listeners) l(revoked);
  }

  authenticate(token: string): AuthResult {
    const dot = token.lastIndexOf('.');
    if (dot <= 0) return { ok: false, status: 401, reason: 'malformed token' };
    const deviceId = token.slice(0, dot);
    const secret = token.slice(dot + 1);
    if (!SECRET_RE.test(secret) || !DEVICE_ID_RE.test(deviceId)) return { ok: false, status: 401, reason: 'malformed token' };
    const entry = this.#devices.get(deviceId);
    // Hash even for unknown ids so both paths cost the same.
    const given = Buffer.from(hashToken(token));
    const want = Buffer.from(entry?.tokenHash ?? HASH_PREFIX + 'x'.repeat(43));
    const match = given.length === want.length && timingSafeEqual(given, want);
    if (!entry || !match) return { ok: false, status: 401, reason: 'unknown device or wrong token' };
    if (entry.disabled) return { ok: false, status: 403, reason: 'device disabled' };
    // The registry's id string, not the slice of the token: a session keeps no part of a token alive.
    return { ok: true, deviceId: entry.id, tags: entry.tags };
  }

  onRevoked(listener: (deviceIds: string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** A registered device as the registry holds it: its entry and its id (one string the hub's sessions share). */
interface KnownDevice extends DeviceEntry { readonly id: string }

function entryOf(e: KnownDevice): DeviceEntry {
  return { tokenHash: e.tokenHash, tags: { ...e.tags }, ...(e.disabled ? { disabled: true } : {}), ...(e.createdAt !== undefined ? { createdAt: e.createdAt } : {}) };
}

/** Checks a registry against the rules of auth/schemas.ts (throws RegistryError naming the field); the entries as the hub keeps them. */
export function checkRegistry(file: unknown): void {
  parseRegistry(file);
}

/** Checks a registry against the rules of auth/schemas.ts; the entries as the hub keeps them. */
function parseRegistry(file: unknown): Map<string, KnownDevice> {
  const parsed = RegistryFileSchema.safeParse(file);
  if (!parsed.success) throw new RegistryError(`registry: ${describeIssues(parsed.error.issues)}`, { cause: parsed.error });
  const out = new Map<string, KnownDevice>();
  for (const [id, e] of Object.entries(parsed.data.devices)) {
    out.set(id, { id, tokenHash: e.tokenHash, tags: Object.freeze(e.tags ?? {}), disabled: e.disabled === true, ...(e.createdAt !== undefined ? { createdAt: e.createdAt } : {}) });
  }
  return out;
}

/** Reads a registry file; a missing file is an empty registry. */
export function readRegistryFile(path: string): RegistryFile {
  if (!existsSync(path)) return { version: 1, devices: {} };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RegistryError(`cannot read device registry ${path}`, { cause: err });
  }
  try {
    const file = JSON.parse(text) as RegistryFile;
    parseRegistry(file);
    return file;
  } catch (err) {
    if (err instanceof RegistryError) throw new RegistryError(`${path}: ${err.message}`, { cause: err });
    throw new RegistryError(`device registry ${path} is not valid JSON`, { cause: err });
  }
}

/** Writes atomically (temp file + rename) so a running hub never reads half a file. */
export function writeRegistryFile(path: string, file: RegistryFile): void {
  writeJsonAtomicSync(path, file);
}

/** Adds (or re-keys) a device; returns the new token, which is not stored. */
export function addDevice(path: string, deviceId: string, tags: Record<string, string> = {}): string {
  const file = readRegistryFile(path);
  const token = generateToken(deviceId);
  file.devices[deviceId] = { tokenHash: hashToken(token), tags, createdAt: new Date().toISOString() };
  // The same rules as the hub's load: never write a file the hub would refuse.
  parseRegistry(file);
  writeRegistryFile(path, file);
  return token;
}

/**
 * Keeps `registry` in step with `path`: reloads when the file changes (the
 * directory is watched, so atomic renames are seen). A bad file is reported
 * and the previous content stays in force.
 */
export function watchRegistryFile(path: string, registry: DeviceRegistry, onError: (err: unknown) => void, onReload?: () => void): () => void {
  mkdirSync(dirname(path), { recursive: true });
  let timer: NodeJS.Timeout | undefined;
  const name = basename(path);
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(path), (_event, file) => {
      if (file !== null && file !== name) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        try {
          // A deleted file is far more likely a mistake (or the middle of a
          // non-atomic replace) than "revoke every device": keep the registry.
          if (!existsSync(path)) throw new RegistryError(`${path} was removed; keeping the registry in force (write an empty registry to revoke every device)`);
          registry.replace(readRegistryFile(path));
          onReload?.();
        } catch (err) {
          onError(err);
        }
      }, 50);
      timer.unref();
    });
    watcher.unref();
  } catch (err) {
    onError(err);
  }
  return () => { clearTimeout(timer); watcher?.close(); };
}
