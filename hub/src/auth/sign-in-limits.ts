// auth/: limits on failed operator sign-ins, per remote address (an IPv6 /64
// counts as one address) and per operator name, from any address. Both are
// token buckets: HUB_LOGIN_FAILURES_PER_* failures, then one attempt per
// HUB_LOGIN_RETRY_S. An attempt takes its tokens before the password is
// checked (a burst cannot slip past a limit while checks are in flight); a
// correct password gives them back. Imports: nothing of ours.
//
// Memory is bounded by HUB_LOGIN_MAX_TRACKED keys per kind. A bucket that
// has refilled completely says nothing a fresh one would not, so those are
// forgotten first; only when every tracked key is still limited is one
// forgotten, the one closest to recovering. A flood of cheap failures from
// new addresses or names therefore never unlocks a key that is locked out.

/**
 * The key an address is limited by: IPv4 as dotted quad; IPv4-mapped IPv6
 * (::ffff:a.b.c.d, or the full hex form uWS prints) as the IPv4 address;
 * other IPv6 as its /64 prefix (one subscriber usually holds a whole /64).
 * Text that is not an IP address is used as it is.
 */
export function addressKey(text: string): string {
  const s = text.trim().replace(/^\[|\]$/g, '').replace(/%.*$/, '').toLowerCase();
  if (!s.includes(':')) return parseIpv4(s) ? s : text;
  const groups = parseIpv6(s);
  if (!groups) return text;
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    const hi = groups[6]!, lo = groups[7]!;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

function parseIpv4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

/** The eight 16-bit groups of an IPv6 address (RFC 4291 §2.2 text forms), or null. */
function parseIpv6(text: string): number[] | null {
  let s = text;
  // RFC 4291 §2.2 form 3: the low 32 bits as a dotted quad.
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    const v4 = parseIpv4(s.slice(lastColon + 1));
    if (!v4) return null;
    s = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const split = (h: string): string[] => (h === '' ? [] : h.split(':'));
  const head = split(halves[0]!);
  const tail = halves.length === 2 ? split(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const out: number[] = [];
  for (const g of [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
    out.push(parseInt(g, 16));
  }
  return out;
}

interface Bucket { tokens: number; last: number; fullAt: number }
interface HeapEntry { fullAt: number; key: string; bucket: Bucket }

export interface FailureBucketsOptions {
  /** Failures allowed before the key is limited (the bucket size). */
  burst: number;
  /** One token comes back per this many ms. */
  refillMs: number;
  /** Keys remembered at most (HUB_LOGIN_MAX_TRACKED). */
  maxTracked: number;
}

/** Token buckets by key, bounded in number; see the file header for what is forgotten first. */
export class FailureBuckets {
  readonly #options: FailureBucketsOptions;
  readonly #buckets = new Map<string, Bucket>();
  /** Min-heap by fullAt; entries go stale when their bucket changes (dropped lazily). */
  #heap: HeapEntry[] = [];

  constructor(options: FailureBucketsOptions) {
    this.#options = options;
  }

  /** Keys tracked now (never more than maxTracked). */
  get size(): number { return this.#buckets.size; }

  /** Milliseconds until the key may make another attempt (0: now). */
  waitMs(key: string, now: number): number {
    const bucket = this.#refilled(key, now);
    if (!bucket || bucket.tokens >= 1) return 0;
    return Math.ceil((1 - bucket.tokens) * this.#options.refillMs);
  }

  /** Takes one attempt's token (the caller checked waitMs first). */
  take(key: string, now: number): void {
    let bucket = this.#refilled(key, now);
    if (!bucket) {
      if (this.#buckets.size >= this.#options.maxTracked) this.#evictOne();
      bucket = { tokens: this.#options.burst, last: now, fullAt: now };
      this.#buckets.set(key, bucket);
    }
    bucket.tokens = Math.max(0, bucket.tokens - 1);
    this.#changed(key, bucket);
  }

  /** Gives back a token taken for an attempt that turned out to be good. */
  refund(key: string, now: number): void {
    const bucket = this.#refilled(key, now);
    if (!bucket) return;
    bucket.tokens = Math.min(this.#options.burst, bucket.tokens + 1);
    if (bucket.tokens >= this.#options.burst) this.#buckets.delete(key);
    else this.#changed(key, bucket);
  }

  #refilled(key: string, now: number): Bucket | undefined {
    const bucket = this.#buckets.get(key);
    if (!bucket) return undefined;
    if (now > bucket.last) {
      bucket.tokens = Math.min(this.#options.burst, bucket.tokens + (now - bucket.last) / this.#options.refillMs);
      bucket.last = now;
    }
    if (bucket.tokens >= this.#options.burst) {
      // Fully recovered: the same as never seen.
      this.#buckets.delete(key);
      return undefined;
    }
    return bucket;
  }

  #changed(key: string, bucket: Bucket): void {
    bucket.fullAt = bucket.last + (this.#options.burst - bucket.tokens) * this.#options.refillMs;
    this.#push({ fullAt: bucket.fullAt, key, bucket });
    // Stale entries are bounded: rebuild once they outnumber the live ones.
    if (this.#heap.length > 2 * this.#buckets.size + 64) {
      this.#heap = [];
      for (const [other, otherBucket] of this.#buckets) this.#push({ fullAt: otherBucket.fullAt, key: other, bucket: otherBucket });
    }
  }

  /**
   * Forgets the key with the earliest full recovery: one that has recovered
   * if there is any, else the one closest to recovering.
   */
  #evictOne(): void {
    for (;;) {
      const top = this.#heap[0];
      if (!top) {
        // Not reached while the heap mirrors the map; keeps the bound regardless.
        const first = this.#buckets.keys().next();
        if (!first.done) this.#buckets.delete(first.value);
        return;
      }
      this.#pop();
      const live = this.#buckets.get(top.key) === top.bucket && top.bucket.fullAt === top.fullAt;
      if (!live) continue;
      this.#buckets.delete(top.key);
      return;
    }
  }

  #push(entry: HeapEntry): void {
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.fullAt <= heap[i]!.fullAt) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  #pop(): void {
    const heap = this.#heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1, right = left + 1;
      let smallest = i;
      if (left < heap.length && heap[left]!.fullAt < heap[smallest]!.fullAt) smallest = left;
      if (right < heap.length && heap[right]!.fullAt < heap[smallest]!.fullAt) smallest = right;
      if (smallest === i) return;
      [heap[smallest], heap[i]] = [heap[i]!, heap[smallest]!];
      i = smallest;
    }
  }
}

export interface SignInLimitsOptions {
  /** HUB_LOGIN_FAILURES_PER_ADDRESS */
  failuresPerAddress: number;
  /** HUB_LOGIN_FAILURES_PER_ACCOUNT */
  failuresPerAccount: number;
  /** HUB_LOGIN_RETRY_S */
  retryS: number;
  /** HUB_LOGIN_MAX_TRACKED (per kind: addresses, accounts) */
  maxTracked: number;
}

export interface AttemptKeys { address: string; account: string }

/** Failed sign-in limits by address and by account, reserved before a password check. */
export class SignInLimits {
  readonly #addresses: FailureBuckets;
  readonly #accounts: FailureBuckets;

  constructor(options: SignInLimitsOptions) {
    const refillMs = options.retryS * 1000;
    this.#addresses = new FailureBuckets({ burst: options.failuresPerAddress, refillMs, maxTracked: options.maxTracked });
    this.#accounts = new FailureBuckets({ burst: options.failuresPerAccount, refillMs, maxTracked: options.maxTracked });
  }

  /** Tracked keys now, by kind. */
  get tracked(): { addresses: number; accounts: number } {
    return { addresses: this.#addresses.size, accounts: this.#accounts.size };
  }

  /** Which limit refuses this attempt, and for how long; null: it may go ahead. */
  refusal(keys: AttemptKeys, now: number): { by: 'address' | 'account'; retryAfterMs: number } | null {
    const address = this.#addresses.waitMs(keys.address, now);
    const account = this.#accounts.waitMs(keys.account, now);
    if (address === 0 && account === 0) return null;
    return { by: address >= account ? 'address' : 'account', retryAfterMs: Math.max(address, account) };
  }

  /** Counts the attempt as a failure until refund() says otherwise. */
  reserve(keys: AttemptKeys, now: number): void {
    this.#addresses.take(keys.address, now);
    this.#accounts.take(keys.account, now);
  }

  refund(keys: AttemptKeys, now: number): void {
    this.#addresses.refund(keys.address, now);
    this.#accounts.refund(keys.account, now);
  }
}
