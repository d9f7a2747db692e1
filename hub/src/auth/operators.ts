// auth/: who may use the hub. This file: operator accounts (the people who
// sign in to the dashboard), their sessions, and the session cookie.
// Imports: core (errors, config defaults and types, atomic-file),
// auth/password-hasher, auth/sign-in-limits, auth/schemas (the files' rules).
//
// Accounts live in HUB_OPERATORS_FILE as scrypt hashes, computed in the
// hub's one hashing thread (password-hasher.ts) so no password check runs on
// the event loop or on libuv's thread pool. At most HUB_LOGIN_MAX_CONCURRENT
// checks run or wait at once; failed sign-ins are limited per address and
// per account (sign-in-limits.ts). On first run, with no account and no
// HUB_ADMIN_PASSWORD, an `admin` account is created with a generated
// password that the hub prints once. Sessions are 256-bit random tokens in
// an HttpOnly, SameSite=Strict cookie; the hub stores only their SHA-256 in
// <data>/sessions.json, so a restart keeps operators signed in and a stolen
// file signs nobody in. Every file is written asynchronously, and saved
// before the change it records is in force.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { describeIssues, HubError, OperatorError } from '../core/errors.ts';
import { writeJsonAtomic } from '../core/atomic-file.ts';
import { CONFIG_KEYS, type HubConfig } from '../core/config.ts';
import { DUMMY_HASH, hashPassword, sharedPasswordHasher, verifyPassword, type PasswordHasher } from './password-hasher.ts';
import { OPERATOR_NAME_RE, OperatorsFileSchema, SessionsFileSchema, type OperatorRecord, type Role, type SessionRecord } from './schemas.ts';

export type { OperatorRecord, Role, SessionRecord };
import { addressKey, SignInLimits, type AttemptKeys } from './sign-in-limits.ts';
const MAX_PASSWORD = 1024;
/** Retry hint when every password check slot is taken: a check takes ~50 ms. */
const BUSY_RETRY_MS = 1000;
/** The account key for names no account can have (one bucket for all of them). */
const MALFORMED_NAME = '\0malformed';

/** A readable generated password: 20 characters of base64url (120 bits). */
export function generatePassword(): string {
  return randomBytes(15).toString('base64url');
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** The HUB_LOGIN_* keys Operators reads (a HubConfig will do). */
export type SignInLimitConfig = Pick<HubConfig, 'loginFailuresPerAddress' | 'loginFailuresPerAccount' | 'loginRetryS' | 'loginMaxConcurrent' | 'loginMaxTracked'>;

const DEFAULT_LIMITS: SignInLimitConfig = {
  loginFailuresPerAddress: CONFIG_KEYS.loginFailuresPerAddress.default,
  loginFailuresPerAccount: CONFIG_KEYS.loginFailuresPerAccount.default,
  loginRetryS: CONFIG_KEYS.loginRetryS.default,
  loginMaxConcurrent: CONFIG_KEYS.loginMaxConcurrent.default,
  loginMaxTracked: CONFIG_KEYS.loginMaxTracked.default,
};

export interface OperatorsOptions {
  /** HUB_OPERATORS_FILE; null keeps accounts in memory only (tests). */
  file: string | null;
  /** HUB_SESSIONS_FILE-equivalent (<data>/sessions.json); null: memory only. */
  sessionsFile: string | null;
  sessionTtlMs: number;
  now?: () => number;
  /** HUB_LOGIN_* limits (default: the config defaults). */
  limits?: SignInLimitConfig;
  /** Key derivation (default: the process's hashing thread). Tests count calls with it. */
  hasher?: PasswordHasher;
}

/**
 * Cluster mode: where accounts and sessions are shared with the other hubs
 * (a KV bucket each). A sign-in resolves only once its session is shared, so
 * the next request may reach any hub; what other hubs change comes back
 * through adoptSession/dropSessions/adoptAccount.
 */
export interface SharedOperators {
  putSession(session: SessionRecord): Promise<void>;
  deleteSessions(hashes: readonly string[]): Promise<void>;
  /** firstOnly: the cluster's first account, refused (rejects) when the name exists there already. */
  putAccount(account: OperatorRecord, firstOnly: boolean): Promise<void>;
}

export type SignInResult =
  | { ok: true; token: string; user: string; maxAgeS: number }
  | { ok: false; status: 401; result: 'failed'; reason: string }
  | { ok: false; status: 429; result: 'limited'; reason: string; retryAfterMs: number }
  | { ok: false; status: 503; result: 'busy' | 'error'; reason: string; retryAfterMs: number };

/**
 * Runs saves of one file one after another; save() resolves once a write
 * that began after the call has finished, so the file never goes back to
 * an older state when saves overlap.
 */
class SerialSaver {
  readonly #write: () => Promise<void>;
  #running: Promise<void> | null = null;
  #queued: Promise<void> | null = null;
  constructor(write: () => Promise<void>) {
    this.#write = write;
  }

  save(): Promise<void> {
    if (this.#queued) return this.#queued;
    if (!this.#running) return this.#start();
    const settled = this.#running.then(() => undefined, () => undefined);
    this.#queued = settled.then(() => {
      this.#queued = null;
      return this.#start();
    });
    return this.#queued;
  }

  #start(): Promise<void> {
    const write: Promise<void> = this.#write().finally(() => { if (this.#running === write) this.#running = null; });
    this.#running = write;
    return write;
  }
}

export class Operators {
  readonly #options: OperatorsOptions;
  readonly #now: () => number;
  readonly #hasher: PasswordHasher;
  readonly #limits: SignInLimits;
  readonly #maxChecks: number;
  #checksInFlight = 0;
  #accounts = new Map<string, OperatorRecord>();
  /** Account changes, one at a time (each saves the whole file). */
  #accountChanges: Promise<unknown> = Promise.resolve();
  readonly #sessions = new Map<string, SessionRecord>();
  readonly #sessionsSaver: SerialSaver;
  readonly #sessionEndedListeners = new Set<(hash: string) => void>();
  #shared: SharedOperators | null = null;

  constructor(options: OperatorsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#hasher = options.hasher ?? sharedPasswordHasher();
    const limits = options.limits ?? DEFAULT_LIMITS;
    this.#limits = new SignInLimits({
      failuresPerAddress: limits.loginFailuresPerAddress, failuresPerAccount: limits.loginFailuresPerAccount,
      retryS: limits.loginRetryS, maxTracked: limits.loginMaxTracked,
    });
    this.#maxChecks = limits.loginMaxConcurrent;
    const sessionsFile = options.sessionsFile;
    this.#sessionsSaver = new SerialSaver(async () => {
      if (sessionsFile) await writeJsonAtomic(sessionsFile, { sessions: [...this.#sessions.values()] });
    });
    if (options.file && existsSync(options.file)) this.#accounts = readOperatorsFile(options.file);
    if (sessionsFile && existsSync(sessionsFile)) for (const session of readSessionsFile(sessionsFile, this.#now())) this.#sessions.set(session.hash, session);
  }

  get size(): number { return this.#accounts.size; }

  /** Cluster mode: share accounts and sessions from now on (see SharedOperators). */
  share(shared: SharedOperators): void { this.#shared = shared; }

  /** Every account and session in force (cluster mode publishes what the others lack). */
  snapshot(): { accounts: OperatorRecord[]; sessions: SessionRecord[] } {
    return { accounts: [...this.#accounts.values()], sessions: [...this.#sessions.values()] };
  }

  /** A session another hub created (cluster mode). */
  adoptSession(session: SessionRecord): void {
    if (session.expires <= this.#now() || this.#sessions.get(session.hash)?.expires === session.expires) return;
    this.#sessions.set(session.hash, session);
    this.#sessionsSaver.save().catch(() => undefined);
  }

  /** Sessions another hub ended (cluster mode): out of force here too, their live sockets closed. */
  dropSessions(hashes: readonly string[]): void {
    const gone = hashes.filter((h) => this.#sessions.delete(h));
    if (!gone.length) return;
    for (const hash of gone) for (const listener of this.#sessionEndedListeners) listener(hash);
    this.#sessionsSaver.save().catch(() => undefined);
  }

  /** An account another hub added or changed (cluster mode); saved to this hub's file too. */
  adoptAccount(account: OperatorRecord): Promise<void> {
    const change = this.#accountChanges.then(async () => {
      const prev = this.#accounts.get(account.name);
      if (prev && prev.password === account.password && prev.role === account.role) return;
      const next = new Map(this.#accounts).set(account.name, account);
      if (this.#options.file) await writeJsonAtomic(this.#options.file, { operators: [...next.values()] });
      this.#accounts = next;
    });
    this.#accountChanges = change.catch(() => undefined);
    return change;
  }
  names(): string[] { return [...this.#accounts.keys()]; }

  /** Sign-in password checks running or waiting for the hashing thread (at most HUB_LOGIN_MAX_CONCURRENT). */
  get checksInFlight(): number { return this.#checksInFlight; }

  /** Addresses and accounts with failed sign-ins remembered (at most HUB_LOGIN_MAX_TRACKED each). */
  get trackedFailures(): { addresses: number; accounts: number } { return this.#limits.tracked; }

  /**
   * Adds or replaces an account and saves the file. Used on first run, by
   * HUB_ADMIN_PASSWORD, and by `npm run operator`.
   */
  async setPassword(name: string, password: string, opts: { firstOnly?: boolean; role?: Role } = {}): Promise<boolean> {
    if (!OPERATOR_NAME_RE.test(name)) throw new OperatorError(`operator name ${JSON.stringify(name)}: letters, digits, _.@- (max 64)`);
    if (password.length < 8 || password.length > MAX_PASSWORD) throw new OperatorError(`operator passwords are 8 to ${MAX_PASSWORD} characters`);
    const hash = await hashPassword(this.#hasher, password);
    const change = this.#accountChanges.then(async () => {
      const prev = this.#accounts.get(name);
      // First run: only while there is no account at all (here or, in cluster mode, in the cluster).
      if (opts.firstOnly && this.#accounts.size > 0) return false;
      // The role given, else the account's own, else admin (a new account, the first run's).
      const record: OperatorRecord = { name, password: hash, created: prev?.created ?? new Date(this.#now()).toISOString(), role: opts.role ?? prev?.role ?? 'admin' };
      const next = new Map(this.#accounts).set(name, record);
      if (this.#shared) {
        try {
          await this.#shared.putAccount(record, opts.firstOnly === true);
        } catch (err) {
          if (opts.firstOnly) return false; // another hub created the first account
          throw err;
        }
      }
      // Saved first, then in force: a password that could not be stored does not apply either.
      if (this.#options.file) await writeJsonAtomic(this.#options.file, { operators: [...next.values()] });
      this.#accounts = next;
      // A new password ends the account's existing sessions.
      if (prev) await this.#endSessions((s) => s.user === name);
      return true;
    });
    this.#accountChanges = change.catch(() => undefined);
    return change;
  }

  /** Sets the password unless it already is this one (HUB_ADMIN_PASSWORD at every start keeps sessions). */
  async ensurePassword(name: string, password: string): Promise<void> {
    const acct = this.#accounts.get(name);
    if (acct && (await verifyPassword(this.#hasher, password, acct.password))) return;
    await this.setPassword(name, password);
  }

  /**
   * Checks a password. The attempt takes a token from its address's and its
   * account's failure buckets before the check (a correct password gives
   * them back), so concurrent guesses cannot overrun either limit; a check
   * that cannot start at once because HUB_LOGIN_MAX_CONCURRENT are in
   * flight is refused (503) without taking anything.
   */
  async signIn(name: string, password: string, remoteAddress: string): Promise<SignInResult> {
    const now = this.#now();
    // Names no account can have share one bucket, so they cannot fill the table either.
    const wellFormed = OPERATOR_NAME_RE.test(name);
    const keys: AttemptKeys = { address: addressKey(remoteAddress), account: wellFormed ? name : MALFORMED_NAME };
    const refused = this.#limits.refusal(keys, now);
    if (refused) {
      return { ok: false, status: 429, result: 'limited', retryAfterMs: refused.retryAfterMs, reason: `too many failed sign-ins ${refused.by === 'address' ? 'from this address' : 'for this operator'}` };
    }
    // Nothing to hash: the format alone says no (and says nothing about which names exist).
    if (!wellFormed || password.length > MAX_PASSWORD) {
      this.#limits.reserve(keys, now);
      return { ok: false, status: 401, result: 'failed', reason: 'wrong name or password' };
    }
    if (this.#checksInFlight >= this.#maxChecks) {
      return { ok: false, status: 503, result: 'busy', retryAfterMs: BUSY_RETRY_MS, reason: 'too many sign-ins at once; try again shortly' };
    }
    this.#limits.reserve(keys, now);
    const acct = this.#accounts.get(name);
    let matches: boolean;
    this.#checksInFlight++;
    try {
      // Unknown names are checked against a dummy hash, so timing does not tell which names exist.
      matches = await verifyPassword(this.#hasher, password, acct?.password ?? DUMMY_HASH);
    } catch {
      // Not the client's fault: the attempt does not count.
      this.#limits.refund(keys, this.#now());
      return { ok: false, status: 503, result: 'error', retryAfterMs: BUSY_RETRY_MS, reason: 'sign-in is unavailable; try again shortly' };
    } finally {
      this.#checksInFlight--;
    }
    // The account may have been replaced while the check ran: it must still be the one checked.
    if (!matches || !acct || this.#accounts.get(name) !== acct) return { ok: false, status: 401, result: 'failed', reason: 'wrong name or password' };
    this.#limits.refund(keys, this.#now());
    const token = randomBytes(32).toString('base64url');
    const hash = sha256(token);
    const session = { hash, user: name, expires: this.#now() + this.#options.sessionTtlMs };
    this.#sessions.set(hash, session);
    try {
      // Saved before the response says signed in: a restart keeps the session,
      // and in cluster mode the next request may reach any hub.
      await this.#sessionsSaver.save();
      await this.#shared?.putSession(session);
    } catch {
      this.#sessions.delete(hash);
      return { ok: false, status: 503, result: 'error', retryAfterMs: BUSY_RETRY_MS, reason: 'the session could not be saved; try again shortly' };
    }
    return { ok: true, token, user: name, maxAgeS: Math.floor(this.#options.sessionTtlMs / 1000) };
  }

  /** An account's role (absent from older files: admin); undefined when there is no such account. */
  roleOf(name: string): Role | undefined {
    const acct = this.#accounts.get(name);
    return acct ? acct.role ?? 'admin' : undefined;
  }

  /** The operator a session token belongs to and the account's role now, or null (unknown, expired, account gone). */
  check(token: string | null): { user: string; hash: string; role: Role } | null {
    if (!token || token.length > 100) return null;
    const hash = sha256(token);
    const session = this.#sessions.get(hash);
    if (!session) return null;
    const acct = this.#accounts.get(session.user);
    if (session.expires <= this.#now() || !acct) {
      this.#sessions.delete(hash);
      return null;
    }
    return { user: session.user, hash, role: acct.role ?? 'admin' };
  }

  /** Ends a session; resolves once the sessions file no longer holds it. */
  async signOut(token: string | null): Promise<void> {
    if (!token) return;
    const hash = sha256(token);
    await this.#endSessions((s) => s.hash === hash);
  }

  /** Called with a session's hash when it ends (live sockets on it are closed). */
  onSessionEnded(listener: (hash: string) => void): () => void {
    this.#sessionEndedListeners.add(listener);
    return () => this.#sessionEndedListeners.delete(listener);
  }

  /** Drops expired sessions and tells listeners; main calls it periodically. */
  sweep(): void {
    const now = this.#now();
    // Expired sessions are refused whether or not the file still lists them; the next save drops them.
    this.#endSessions((s) => s.expires <= now || !this.#accounts.has(s.user)).catch(() => undefined);
  }

  async #endSessions(match: (s: SessionRecord) => boolean): Promise<void> {
    const gone: string[] = [];
    for (const session of this.#sessions.values()) if (match(session)) gone.push(session.hash);
    if (!gone.length) return;
    // Out of force at once (memory), then out of the file.
    for (const hash of gone) this.#sessions.delete(hash);
    for (const hash of gone) for (const listener of this.#sessionEndedListeners) listener(hash);
    this.#shared?.deleteSessions(gone).catch(() => undefined);
    await this.#sessionsSaver.save();
  }
}

/** The accounts in HUB_OPERATORS_FILE; a file that breaks a rule of auth/schemas.ts stops the start (HUB_ERR_CONFIG). */
export function readOperatorsFile(file: string): Map<string, OperatorRecord> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new HubError('HUB_ERR_CONFIG', `HUB_OPERATORS_FILE=${file}: not readable JSON`, { cause: err });
  }
  const parsed = OperatorsFileSchema.safeParse(raw);
  if (!parsed.success) throw new HubError('HUB_ERR_CONFIG', `HUB_OPERATORS_FILE=${file}: ${describeIssues(parsed.error.issues)}`, { cause: parsed.error });
  // A name listed twice: the later entry wins, as it always has.
  return new Map(parsed.data.operators.map((account) => [account.name, account]));
}

/**
 * The sessions still in force. A damaged file only signs everyone out, and
 * a damaged entry only its operator: neither is worth refusing to start.
 */
function readSessionsFile(file: string, now: number): SessionRecord[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return [];
  }
  const parsed = SessionsFileSchema.safeParse(raw);
  if (!parsed.success) return [];
  return parsed.data.sessions.filter((s): s is SessionRecord => s !== null && s.expires > now);
}

/** The session cookie's name: `__Host-` (Secure, Path=/, no Domain) whenever browsers reach the hub over https. */
export function sessionCookieName(https: boolean): string {
  return https ? '__Host-hub_session' : 'hub_session';
}

/** Browsers reach the hub over https: it terminates TLS itself, or HUB_TLS_PROXY says a proxy in front does. */
export function servedOverHttps(config: Pick<HubConfig, 'tlsCert' | 'tlsProxy'>): boolean {
  return config.tlsCert !== undefined || config.tlsProxy;
}

/**
 * The session token in a Cookie header, read the same way by every route
 * and the live endpoint. Over https only the `__Host-` cookie counts (a
 * sibling subdomain cannot set that one). Our cookie more than once in one
 * header is no session: which one the browser lists first is up to the
 * path and age of cookies an attacker may have planted (cookie tossing).
 */
export function sessionToken(cookieHeader: string, https: boolean): string | null {
  const name = sessionCookieName(https);
  let token: string | null = null;
  for (const part of cookieHeader.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0 || part.slice(0, i).trim() !== name) continue;
    if (token !== null) return null;
    token = part.slice(i + 1).trim();
  }
  return token;
}

export function sessionCookie(token: string, maxAgeS: number, https: boolean): string {
  return `${sessionCookieName(https)}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${https ? '; Secure' : ''}`;
}

export function clearedSessionCookie(https: boolean): string {
  return `${sessionCookieName(https)}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${https ? '; Secure' : ''}`;
}
