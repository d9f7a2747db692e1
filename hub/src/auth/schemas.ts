// auth/: the schemas of the files auth reads: the device registry, the
// operators file and the sessions file. Imports: core (names), zod.
//
// Files and request bodies are validated with zod (4): its issue paths and
// messages name the field and the problem without extra code
// (`devices.dev-1.tags.site: must not contain a backslash`), it is
// TypeScript-first (the types below are inferred from the schemas, so a rule
// and its type cannot drift apart), and these are small files and request
// bodies, where a compiled validator's speed (TypeBox) buys nothing. The
// same choice holds for the alarm rules (live/alarms.ts) and the sign-in
// body (http/bodies.ts). core/errors.ts turns the issues into one message.
import { z } from 'zod';
import { DEVICE_ID_RE, TAG_KEY_RE } from '../core/names.ts';

/** Prefix of every token hash in the registry (the hash is SHA-256; see registry.ts). */
export const HASH_PREFIX = 'sha256:';
// Tags become InfluxDB tag keys and values (and dashboard groups). Keys start
// with a letter: InfluxDB 2.x/3.x reserve a leading `_` (`_measurement`,
// `_field`), 1.x refuses the key `time`, and the hub writes `device`, `unit`,
// `value` and `device_time_ms` itself (a tag and a field of one name collide
// in 3.x).
export const RESERVED_TAG_KEYS: ReadonlySet<string> = new Set(['time', 'device', 'unit', 'value', 'device_time_ms']);
export const MAX_TAG_VALUE_BYTES = 256;
export const MAX_TAGS = 32;

export const OPERATOR_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/** What an operator may do: `admin` everything, `viewer` read only. An account without a role is an admin (accounts from before roles). */
export const ROLES = ['admin', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/**
 * z.record, plus what it does not check: a `__proto__` key (z.record skips
 * it without running the key schema, and JSON.parse makes it an ordinary
 * own key, so a file with one must be refused as before) and, before any
 * entry is looked at, the number of entries.
 */
function recordOf<K extends z.ZodString, V extends z.ZodType>(key: K, value: V, error: string, limit?: { max: number; error: string }) {
  return z.preprocess((input, ctx) => {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
    if (limit && Object.keys(input).length > limit.max) ctx.issues.push({ code: 'custom', message: limit.error, input });
    if (Object.hasOwn(input, '__proto__')) {
      const checked = key.safeParse('__proto__');
      if (!checked.success) ctx.issues.push({ code: 'custom', path: ['__proto__'], message: checked.error.issues[0]?.message ?? 'not allowed here', input });
    }
    return input;
  }, z.record(key, value, { error }));
}

// ---- the device registry (HUB_DEVICES_FILE) ----------------------------------

const TagKey = z.string()
  .regex(TAG_KEY_RE, 'tag names are 1-64 of [A-Za-z0-9_], starting with a letter')
  .refine((k) => !RESERVED_TAG_KEYS.has(k.toLowerCase()), `tag name is reserved (${[...RESERVED_TAG_KEYS].join(', ')})`);

// Line protocol escapes comma, equals sign and space but has no exact way to
// write a backslash (the line protocol docs read `\\` as one, influxd 1.6
// stores both; one before a comma or at the end breaks the line); control
// characters and lone surrogates (not UTF-8) cannot be written either.
const TagValue = z.string('must be a string')
  .refine((v) => Buffer.byteLength(v) <= MAX_TAG_VALUE_BYTES, `must be at most ${MAX_TAG_VALUE_BYTES} bytes of UTF-8`)
  .refine((v) => !v.includes('\\'), 'must not contain a backslash (InfluxDB cannot store one exactly)')
  .refine((v) => !/\p{Cc}/u.test(v), 'must not contain control characters (InfluxDB cannot store them exactly)')
  .refine((v) => !/\p{Cs}/u.test(v), 'must not contain a lone surrogate (not UTF-8)');

const TOKEN_HASH = `must be "${HASH_PREFIX}" and the token's hash (npm run device-token -- --add ID writes one)`;

const DeviceEntrySchema = z.object({
  tokenHash: z.string(TOKEN_HASH).startsWith(HASH_PREFIX, TOKEN_HASH),
  tags: recordOf(TagKey, TagValue, 'must be an object of tag names to strings', { max: MAX_TAGS, error: `at most ${MAX_TAGS} tags` }).optional(),
  // Anything but `true` has always meant enabled.
  disabled: z.unknown().optional(),
  // When it was registered (ISO 8601); informational, anything else is dropped.
  createdAt: z.string().max(64).optional().catch(undefined),
}, 'must be an object with a tokenHash');

export const RegistryFileSchema = z.object({
  version: z.literal(1, 'must be 1'),
  devices: recordOf(
    z.string().regex(DEVICE_ID_RE, 'device ids are 1-128 of [A-Za-z0-9_:.-], starting with a letter or digit'),
    DeviceEntrySchema,
    'must be an object of devices by id',
  ),
}, 'must be {"version": 1, "devices": {...}}');

// ---- operators (HUB_OPERATORS_FILE) and their sessions ------------------------

const OPERATOR_NAME = 'must be 1-64 of letters, digits, _.@-, starting with a letter or digit';
const PASSWORD_HASH = 'must be a scrypt password hash (npm run operator -- NAME sets one)';

// Loose: fields this version does not know survive a save made for another account.
const OperatorRecordSchema = z.looseObject({
  name: z.string(OPERATOR_NAME).regex(OPERATOR_NAME_RE, OPERATOR_NAME),
  password: z.string(PASSWORD_HASH).startsWith('scrypt$', PASSWORD_HASH),
  created: z.unknown().optional(),
  role: z.enum(ROLES, `must be one of ${ROLES.join(', ')}`).optional(),
}, 'must be {"name", "password"}');

export type OperatorRecord = z.infer<typeof OperatorRecordSchema>;

export const OperatorsFileSchema = z.object({
  operators: z.array(OperatorRecordSchema, 'must be a list [{"name", "password"}]'),
}, 'expected {"operators": [{"name", "password"}]}');

const SessionRecordSchema = z.object({ hash: z.string(), user: z.string(), expires: z.number() });

export type SessionRecord = z.infer<typeof SessionRecordSchema>;

/** A bad entry drops only itself (that operator signs in again); null marks it. */
export const SessionsFileSchema = z.object({
  sessions: z.array(SessionRecordSchema.nullable().catch(null)).default([]),
});
