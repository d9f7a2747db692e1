// auth/: changing the device registry from the API (register, tags,
// disable/enable, rotate a token, delete, and the same in bulk). One change
// at a time, each made on what the registry holds at that moment (so an
// edit of the file by `npm run device-token` in between is kept), checked
// with the file's own rules, and committed durably before it is in force or
// answered: in the embedded mode the registry file is written (atomically),
// in cluster mode the shared KV bucket takes it (see cluster/shared-state.ts).
// A removed or disabled device, and one whose token was rotated, loses its
// live session at once (4008, through the registry's revocation). Tokens are
// returned once and never stored. Imports: core (errors, names), auth/registry.
import { RegistryError } from '../core/errors.ts';
import { DEVICE_ID_RE } from '../core/names.ts';
import { checkRegistry, generateToken, hashToken, type DeviceEntry, type DeviceRegistry, type RegistryFile } from './registry.ts';

/** Devices one bulk request may name. */
export const MAX_BULK_DEVICES = 1000;

/** Commits a new registry content: durable when it resolves. `changed`: the ids whose entry changed (added, changed or removed). */
export type RegistryCommit = (next: RegistryFile, changed: readonly string[]) => Promise<void>;

export type BulkAction = 'disable' | 'enable' | 'delete';

/** A change refused for a reason of the request (404 unknown device, 409 exists already, 400 invalid). */
export class DeviceChangeError extends RegistryError {
  constructor(message: string, readonly status: 400 | 404 | 409) { super(message); }
}

export interface DeviceAdminOptions {
  registry: DeviceRegistry;
  commit: RegistryCommit;
  now?: () => number;
}

export class DeviceAdmin {
  readonly #o: DeviceAdminOptions;
  readonly #now: () => number;
  /** Changes, one after another. */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(options: DeviceAdminOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
  }

  /** Registers a device; resolves with its token (shown once). 409 when the id is taken. */
  create(id: string, tags: Record<string, string>): Promise<{ token: string; entry: DeviceEntry }> {
    return this.#change((file) => {
      if (!DEVICE_ID_RE.test(id)) throw new DeviceChangeError(`invalid device id ${JSON.stringify(id.slice(0, 140))}: use 1-128 of [A-Za-z0-9_:.-], starting with a letter or digit`, 400);
      if (file.devices[id]) throw new DeviceChangeError(`device ${id} exists already (rotate its token instead)`, 409);
      const token = generateToken(id);
      const entry: DeviceEntry = { tokenHash: hashToken(token), tags, createdAt: new Date(this.#now()).toISOString() };
      file.devices[id] = entry;
      return { changed: [id], result: { token, entry } };
    });
  }

  /** Replaces tags and/or sets disabled; 404 for an unknown device. */
  update(id: string, change: { tags?: Record<string, string>; disabled?: boolean }): Promise<DeviceEntry> {
    return this.#change((file) => {
      const entry = known(file, id);
      if (change.tags !== undefined) entry.tags = change.tags;
      if (change.disabled !== undefined) {
        if (change.disabled) entry.disabled = true;
        else delete entry.disabled;
      }
      return { changed: [id], result: entry };
    });
  }

  /** A new token; the old one stops working and the live session, if any, is closed (4008). */
  rotate(id: string): Promise<{ token: string }> {
    return this.#change((file) => {
      const entry = known(file, id);
      const token = generateToken(id);
      entry.tokenHash = hashToken(token);
      return { changed: [id], result: { token } };
    });
  }

  remove(id: string): Promise<void> {
    return this.#change((file) => {
      known(file, id);
      delete file.devices[id];
      return { changed: [id], result: undefined };
    });
  }

  /** One action on many devices, committed as one change; unknown ids are reported, not an error. */
  bulk(action: BulkAction, ids: readonly string[]): Promise<{ done: string[]; unknown: string[] }> {
    return this.#change((file) => {
      if (ids.length > MAX_BULK_DEVICES) throw new DeviceChangeError(`at most ${MAX_BULK_DEVICES} devices per request`, 400);
      const done: string[] = [], unknown: string[] = [];
      for (const id of new Set(ids)) {
        const entry = file.devices[id];
        if (!entry) { unknown.push(id); continue; }
        if (action === 'delete') delete file.devices[id];
        else if (action === 'disable') entry.disabled = true;
        else delete entry.disabled;
        done.push(id);
      }
      return { changed: done, result: { done, unknown } };
    });
  }

  #change<T>(apply: (file: RegistryFile) => { changed: string[]; result: T }): Promise<T> {
    const run = this.#chain.then(async () => {
      const file = this.#o.registry.file();
      const { changed, result } = apply(file);
      if (changed.length === 0) return result;
      try {
        checkRegistry(file);
      } catch (err) {
        throw new DeviceChangeError((err as Error).message.replace(/^registry: /, ''), 400);
      }
      await this.#o.commit(file, changed);
      return result;
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }
}

function known(file: RegistryFile, id: string): DeviceEntry {
  const entry = Object.hasOwn(file.devices, id) ? file.devices[id] : undefined;
  if (!entry) throw new DeviceChangeError(`no device ${id.slice(0, 140)}`, 404);
  return entry;
}
