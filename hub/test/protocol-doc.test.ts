// proto/README.md is the authority on the device protocol. These tests read
// its tables and examples and check them against the code: close codes,
// notice codes, the reconnectable set, the limits (defaults and ranges) and
// the example encodings. A mismatch means the hub or the doc has a bug.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  CloseCode, DEVICE_PATH, DEVICE_SUBPROTOCOL, LIVE_PATH, LIVE_SUBPROTOCOL, LiveCloseCode, NoticeCode, PROTOCOL_VERSION,
  RECONNECTABLE_CLOSE_CODES, TOKEN_SUBPROTOCOL_PREFIX, encodeDeviceMessage, encodeHubMessage,
} from '@telemetry/proto';
import { CONFIG_KEYS } from '../src/core/config.ts';
import { markdownSection, tableRows } from '../../test/support/markdown.ts';

const doc = readFileSync(new URL('../../proto/README.md', import.meta.url), 'utf8');

/** The text of the README's section `title` (the test fails when there is none). */
function section(title: string): string {
  const text = markdownSection(doc, title);
  assert.ok(text !== null, `proto/README.md has a section "${title}"`);
  return text;
}

const rows = tableRows;

test('protocol doc - the close-code table is CloseCode, name for name', () => {
  const documented = new Map<number, string>();
  for (const [code, name] of rows(section('9. Closing'))) {
    const m = /^`([A-Z_]+)`$/.exec(name ?? '');
    if (/^\d{4}$/.test(code ?? '') && m) documented.set(Number(code), m[1]!);
  }
  const inCode = new Map(Object.entries(CloseCode).map(([name, code]) => [code as number, name]));
  assert.deepEqual([...documented].sort(), [...inCode].sort());
});

test('protocol doc - notice codes, the reconnectable set, the live close codes and the names on the wire', () => {
  const notices = new Map<number, string>();
  for (const [code, name] of rows(section('5.10 Notice'))) {
    const m = /^`([A-Z_]+)`$/.exec(name ?? '');
    if (/^\d{3}$/.test(code ?? '') && m) notices.set(Number(code), m[1]!);
  }
  assert.deepEqual([...notices].sort(), Object.entries(NoticeCode).map(([n, c]) => [c, n]).sort());

  const sentence = /the codes that call\s+for a reconnect are ([\d, and]+)\./.exec(section('9. Closing'));
  assert.ok(sentence, 'section 9 lists the reconnectable codes');
  assert.deepEqual(sentence[1]!.match(/\d{4}/g)!.map(Number).sort(), [...RECONNECTABLE_CLOSE_CODES].sort());

  const live = rows(section('Close codes')).map(([c]) => Number(c)).filter((c) => c >= 4000);
  assert.deepEqual(live.sort(), Object.values(LiveCloseCode).sort());

  for (const s of [DEVICE_PATH, DEVICE_SUBPROTOCOL, `${TOKEN_SUBPROTOCOL_PREFIX}<token>`, LIVE_PATH, LIVE_SUBPROTOCOL]) {
    assert.ok(doc.includes(`\`${s}\``), `proto/README.md names ${s}`);
  }
  assert.match(section('13. Versioning'), new RegExp(`\`PROTOCOL_VERSION\` is ${PROTOCOL_VERSION}`));
});

type Unit = 'ms' | 's' | 'bytes' | 'count';
const unitOf = (env: string): Unit => (env.endsWith('_MS') ? 'ms' : env.endsWith('_S') ? 's' : env.endsWith('_BYTES') ? 'bytes' : 'count');
const SCALE: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, ms: 1, s: 1000, min: 60_000, d: 86_400_000 };

/** Numbers written in the doc ("262 144 B", "16 MiB", "1 s", "366 d"), converted to the key's unit. */
function numbers(text: string, unit: Unit): number[] {
  const out: number[] = [];
  for (const m of text.matchAll(/(\d{1,3}(?: \d{3})+|\d+)(?:\s*(B|KiB|MiB|GiB|ms|s|min|d)\b)?/g)) {
    const n = Number(m[1]!.replace(/ /g, ''));
    const u = m[2];
    if (!u || unit === 'count') out.push(n);
    else if (unit === 'bytes') out.push(n * SCALE[u]!);
    else out.push((n * SCALE[u]!) / (unit === 's' ? 1000 : 1));
  }
  return out;
}

test('protocol doc - the limits table gives every key its configured default and range', () => {
  const keys = new Map(Object.values(CONFIG_KEYS).map((k) => [k.env as string, k as { env: string; default: unknown; min?: number; max?: number; values?: readonly string[] }]));
  let checked = 0;
  for (const [limit, dflt, envCell] of rows(section('10. Limits'))) {
    const envs = [...(envCell ?? '').matchAll(/`(HUB_[A-Z_]+)`/g)].map((m) => m[1]!);
    if (!envs.length) continue;
    const defaults = envs.length > 1 ? numbers(dflt!, unitOf(envs[0]!)) : [];
    envs.forEach((env, i) => {
      const key = keys.get(env);
      assert.ok(key, `${limit}: ${env} is a config key`);
      const unit = unitOf(env);
      if (key.values) {
        assert.ok(dflt!.includes(`\`${String(key.default)}\``), `${env}: default ${String(key.default)}`);
        for (const v of key.values) assert.ok(envCell!.includes(`\`${v}\``), `${env}: value ${v} listed`);
        return;
      }
      const want = envs.length > 1 ? defaults[i] : numbers(dflt!, unit)[0];
      assert.equal(want, key.default, `${limit}: the documented default of ${env}`);
      const range = new RegExp(`\`${env}\` \\(([^)]*\\.\\.[^)]*)\\)`).exec(envCell!);
      if (range) {
        const [lo, hi] = range[1]!.split('..').map((p) => numbers(p, unit)[0]);
        assert.deepEqual([lo, hi], [key.min, key.max], `${limit}: the documented range of ${env}`);
      }
      checked++;
    });
  }
  assert.ok(checked >= 15, `checked ${checked} limits`);
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').replace(/(..)(?!$)/g, '$1 ');

test('protocol doc - the example encodings are what the encoder produces', () => {
  const examples = section('5.12 Example encoding');
  const block = /```\n([0-9a-f \n]+)```/.exec(examples);
  assert.ok(block, 'section 5.12 shows the example batch');
  const batch = encodeDeviceMessage({ batch: {
    seq: 1, baseTimeMs: 1_700_000_000_000, metricDefs: [{ id: 1, name: 'temperature', unit: 'degC' }],
    metricIds: [1, 1], timeOffsetsMs: [0, 1000], values: [21.5, 21.625], sentTimeMs: 1_700_000_001_050,
  } });
  assert.equal(block[1]!.trim().replace(/\s+/g, ' '), hex(batch));
  assert.match(examples, new RegExp(`It is \\*\\*${batch.length} bytes\\*\\*`));

  const vectors: [string, Uint8Array][] = [
    ['Hello{', encodeDeviceMessage({ hello: { deviceId: 'greenhouse-7', protocolVersion: 1, firmware: 'th-2 4.1.0', deviceTimeMs: 1_700_000_000_000 } })],
    ['Ack{seq 1, credit 32}', encodeHubMessage({ ack: { seq: 1, credit: 32 } })],
    ['Ack{seq 7, credit 32, reports', encodeHubMessage({ ack: { seq: 7, credit: 32, reports: [{ seq: 6, skewCorrected: 3, clockOffsetMs: 3_600_000 }] } })],
    ['Notice{code 4004', encodeHubMessage({ notice: { code: 4004, reason: 'over 1000 readings/s', retryAfterMs: 1500 } })],
    ['Command{id 3', encodeHubMessage({ command: { id: 3, config: { sampleIntervalMs: 1000, batchIntervalMs: 5000 } } })],
    ['CommandResult{id 3', encodeDeviceMessage({ commandResult: { id: 3, ok: true, message: 'applied' } })],
  ];
  const table = rows(examples);
  for (const [label, bytes] of vectors) {
    const row = table.find(([m]) => m!.startsWith(label));
    assert.ok(row, `section 5.12 has a vector for ${label}`);
    assert.equal(row[1]!.replace(/`/g, ''), hex(bytes), label);
    const size = /\((\d+) B\)/.exec(row[0]!);
    if (size) assert.equal(Number(size[1]), bytes.length, `${label} size`);
  }
});
