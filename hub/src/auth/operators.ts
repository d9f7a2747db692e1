// auth/: who may use the hub. This file: operator accounts (the people who
// sign in to the dashboard) and their sessions.
// Imports: errors, ingest/limits (token bucket for failed sign-ins).
//
// Accounts live in HUB_OPERATORS_FILE as scrypt hashes (Node's crypto.scrypt,
// N=2^15, r=8, p=1: ~50 ms and 32 MiB per check, in libuv's thread pool so
// the event loop never waits). On first run, with no account and no
// HUB_ADMIN_PASSWORD, an `admin` account is created with a generated password
// that the hub prints once. Sessions are 256-bit random tokens in an HttpOnly,
// SameSite=Strict cookie; the hub stores only their SHA-256 in
// <data>/sessions.json, so a restart keeps operators signed in and a stolen
// file signs nobody in.
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { HubError } from '../errors.ts';
import { writeJsonAtomicSync } from '../atomic-file.ts';
import { TokenBucket } from '../ingest/limits.ts';

export const SESSION_COOKIE = 'hub_session';
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
export const OPERATOR_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;
const MAX_PASSWORD = 1024;

function scrypt(password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, 32, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** `scrypt$N$r$p$salt$hash` (base64url). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64url');
  const want = Buffer.from(parts[5]!, 'base64url');
  if (!(N >= 2 && r >= 1 && p >= 1) || want.length !== 32) return false;
  const got = await scrypt(password, salt, { N, r, p, maxmem: SCRYPT.maxmem });
  return timingSafeEqual(got, want);
}

/** A readable generated password: 20 characters of base64url (120 bits). */
export function generatePassword(): string {
  return randomBytes(15).toString('base64url');
}

interface OperatorRecord { name: string; password: string; created?: string }
interface SessionRecord { hash: string; user: string; expires: number }

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export interface OperatorsOptions {
  /** HUB_OPERATORS_FILE; null keeps accounts in memory only (tests). */
  file: string | null;
  /** HUB_SESSIONS_FILE-equivalent (<data>/sessions.json); null: memory only. */
  sessionsFile: string | null;
  sessionTtlMs: number;
  now?: () => number;
}

export type SignInResult =
  | { ok: true; token: string; user: string; maxAgeS: number }
  | { ok: false; status: 401 | 429; reason: string; retryAfterMs?: number };

export class Operators {
  readonly #o: OperatorsOptions;
  readonly #now: () => number;
  #accounts = new Map<string, OperatorRecord>();
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #failures = new Map<string, TokenBucket>();
  readonly #ended = new Set<(hash: string) => void>();

  constructor(o: OperatorsOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    if (o.file && existsSync(o.file)) this.#accounts = readOperatorsFile(o.file);
    if (o.sessionsFile && existsSync(o.sessionsFile)) {
      try {
        const raw = JSON.parse(readFileSync(o.sessionsFile, 'utf8')) as { sessions?: SessionRecord[] };
        const now = this.#now();
        for (const s of raw.sessions ?? []) {
          if (typeof s.hash === 'string' && typeof s.user === 'string' && s.expires > now) this.#sessions.set(s.hash, s);
        }
      } catch {
        // A damaged sessions file only signs everyone out.
      }
    }
  }

  get size(): number { return this.#accounts.size; }
  names(): string[] { return [...this.#accounts.keys()]; }

  /**
   * Adds or replaces an account and saves the file. Used on first run, by
   * HUB_ADMIN_PASSWORD, and by `npm run operator`.
   */
  async setPassword(name: string, password: string): Promise<void> {
    if (!OPERATOR_NAME_RE.test(name)) throw new HubError('HUB_ERR_CONFIG', `operator name ${JSON.stringify(name)}: letters, digits, _.@- (max 64)`);
    if (password.length < 8 || password.length > MAX_PASSWORD) throw new HubError('HUB_ERR_CONFIG', 'operator passwords are 8 to 1024 characters');
    const prev = this.#accounts.get(name);
    const next = new Map(this.#accounts).set(name, { name, password: await hashPassword(password), created: prev?.created ?? new Date(this.#now()).toISOString() });
    // Saved first, then in force: a password that could not be stored does not apply either.
    if (this.#o.file) writeJsonAtomicSync(this.#o.file, { operators: [...next.values()] });
    this.#accounts = next;
    // A new password ends the account's existing sessions.
    if (prev) this.#endSessions((s) => s.user === name);
  }

  /** Sets the password unless it already is this one (HUB_ADMIN_PASSWORD at every start keeps sessions). */
  async ensurePassword(name: string, password: string): Promise<void> {
    const acct = this.#accounts.get(name);
    if (acct && (await verifyPassword(password, acct.password))) return;
    await this.setPassword(name, password);
  }

  /** Checks a password; failed attempts are limited per remote address (5, then 1 per 10 s). */
  async signIn(name: string, password: string, addr: string): Promise<SignInResult> {
    const now = this.#now();
    let bucket = this.#failures.get(addr);
    if (bucket && bucket.waitMs(1, now) > 0) {
      return { ok: false, status: 429, reason: 'too many failed sign-ins from this address', retryAfterMs: bucket.waitMs(1, now) };
    }
    const acct = this.#accounts.get(name);
    // Verify against a dummy hash for unknown names so timing does not tell which names exist.
    const ok = password.length <= MAX_PASSWORD && (await verifyPassword(password, acct?.password ?? DUMMY_HASH)) && acct !== undefined;
    if (!ok) {
      if (!bucket) {
        if (this.#failures.size > 10_000) this.#failures.clear();
        bucket = new TokenBucket(0.1, 5, now);
        this.#failures.set(addr, bucket);
      }
      bucket.take(1, this.#now());
      return { ok: false, status: 401, reason: 'wrong name or password' };
    }
    const token = randomBytes(32).toString('base64url');
    const expires = this.#now() + this.#o.sessionTtlMs;
    this.#sessions.set(sha256(token), { hash: sha256(token), user: name, expires });
    this.#saveSessions();
    return { ok: true, token, user: name, maxAgeS: Math.floor(this.#o.sessionTtlMs / 1000) };
  }

  /** The operator a session token belongs to, or null (unknown, expired, account gone). */
  check(token: string | null): { user: string; hash: string } | null {
    if (!token || token.length > 100) return null;
    const hash = sha256(token);
    const s = this.#sessions.get(hash);
    if (!s) return null;
    if (s.expires <= this.#now() || !this.#accounts.has(s.user)) {
      this.#sessions.delete(hash);
      return null;
    }
    return { user: s.user, hash };
  }

  signOut(token: string | null): void {
    if (!token) return;
    const hash = sha256(token);
    this.#endSessions((s) => s.hash === hash);
  }

  /** Called with a session's hash when it ends (live sockets on it are closed). */
  onSessionEnded(f: (hash: string) => void): () => void {
    this.#ended.add(f);
    return () => this.#ended.delete(f);
  }

  /** Drops expired sessions and tells listeners; main calls it periodically. */
  sweep(): void {
    const now = this.#now();
    this.#endSessions((s) => s.expires <= now || !this.#accounts.has(s.user));
  }

  #endSessions(match: (s: SessionRecord) => boolean): void {
    const gone: string[] = [];
    for (const s of this.#sessions.values()) if (match(s)) gone.push(s.hash);
    if (!gone.length) return;
    for (const h of gone) this.#sessions.delete(h);
    this.#saveSessions();
    for (const h of gone) for (const f of this.#ended) f(h);
  }

  #saveSessions(): void {
    if (this.#o.sessionsFile) writeJsonAtomicSync(this.#o.sessionsFile, { sessions: [...this.#sessions.values()] });
  }
}

// A valid hash of a random password: unknown names cost as much as known ones.
const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${randomBytes(16).toString('base64url')}$${randomBytes(32).toString('base64url')}`;

export function readOperatorsFile(file: string): Map<string, OperatorRecord> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HubError('HUB_ERR_CONFIG', `HUB_OPERATORS_FILE=${file}: not readable JSON`, { cause: err });
  }
  const list = (raw as { operators?: unknown }).operators;
  if (!Array.isArray(list)) throw new HubError('HUB_ERR_CONFIG', `HUB_OPERATORS_FILE=${file}: expected {"operators": [{"name", "password"}]}`);
  const out = new Map<string, OperatorRecord>();
  for (const o of list as OperatorRecord[]) {
    if (typeof o?.name !== 'string' || !OPERATOR_NAME_RE.test(o.name) || typeof o.password !== 'string' || !o.password.startsWith('scrypt$')) {
      throw new HubError('HUB_ERR_CONFIG', `HUB_OPERATORS_FILE=${file}: each operator needs a name and a scrypt password hash (npm run operator -- NAME)`);
    }
    out.set(o.name, o);
  }
  return out;
}

/** Reads a cookie value from a Cookie header. */
export function cookieValue(header: string, name: string): string | null {
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return null;
}

export function sessionCookie(token: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}
