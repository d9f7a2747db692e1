// The device-management additions to v1 (proto/README.md §5.14-5.17, §12,
// §13, §15): features, DesiredConfig, ConfigReport, Command.invoke and
// CommandResult.result_json. The schema only grows, so besides round trips
// these tests hold the new schema to the one released before it (an old
// reader and an old writer, both parsed from the v1 text below) and the
// README's vectors and sizes to the encoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { markdownSection, tableRows } from '../../test/support/markdown.ts';
import {
  COMMAND_NAME_RE, FEATURE_CONFIG, FEATURE_INVOKE, MAX_COMMAND_NAME_CHARS, MAX_CONFIG_ERROR_CHARS, MAX_CONFIG_JSON_BYTES,
  MAX_FEATURES, MAX_FEATURE_BYTES, decodeDeviceMessage, decodeHubMessage, encodeDeviceMessage, encodeHubMessage,
  type ConfigReport, type DesiredConfig, type Invoke,
} from '../src/index.ts';

const doc = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const currentSchema = readFileSync(new URL('../iot/telemetry/v1/device.proto', import.meta.url), 'utf8');

// The messages these additions touched, exactly as v1 had them before
// (field numbers and types), plus what they refer to. Unchanged messages
// are left empty: an old reader of them is not under test here.
const V1_BEFORE = `
syntax = "proto3";
package iot.telemetry.v1;
message DeviceMessage { oneof msg { Hello hello = 1; Batch batch = 2; CommandResult command_result = 3; } }
message HubMessage { oneof msg { Welcome welcome = 1; Ack ack = 2; Notice notice = 3; Command command = 4; } }
message Hello { string device_id = 1; uint32 protocol_version = 2; string firmware = 3; uint64 device_time_ms = 4; }
message Welcome {
  string session_id = 1; uint32 protocol_version = 2; uint64 server_time_ms = 3; uint64 echo_device_time_ms = 4;
  uint32 window = 5; uint32 credit = 6; uint64 last_seq = 7; Limits limits = 8;
}
message Limits {}
message Batch {}
message Ack {}
message Notice {}
message Command { uint64 id = 1; oneof cmd { ConfigUpdate config = 2; } }
message ConfigUpdate { uint32 sample_interval_ms = 1; uint32 batch_interval_ms = 2; }
message CommandResult { uint64 id = 1; bool ok = 2; string message = 3; }
`;
const before = protobuf.parse(V1_BEFORE, { keepCase: false }).root;
const current = protobuf.parse(currentSchema, { keepCase: false }).root;
const old = (name: string) => before.lookupType(`iot.telemetry.v1.${name}`);
/** A message decoded by the old schema, as a plain object (64-bit numbers as numbers). */
const oldDecode = (name: string, bytes: Uint8Array) =>
  old(name).toObject(old(name).decode(bytes), { longs: Number, oneofs: true }) as Record<string, unknown>;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').replace(/(..)(?!$)/g, '$1 ');
const fromHex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const plain = (m: unknown): unknown => JSON.parse(JSON.stringify(m));

/** The text of the README's section `title` (the test fails when there is none). */
function section(title: string): string {
  const text = markdownSection(doc, title);
  assert.ok(text !== null, `proto/README.md has a section "${title}"`);
  return text;
}

const rows = tableRows;

test('config protocol - the new messages and fields round-trip', () => {
  const device = [
    { hello: { deviceId: 'greenhouse-7', protocolVersion: 1, firmware: 'th-2 4.2.0', deviceTimeMs: 1_700_000_000_000, features: [FEATURE_CONFIG, FEATURE_INVOKE] } },
    { reported: { version: 2 ** 53 - 1, sampleIntervalMs: 2000, batchIntervalMs: 5000, customJson: '{"led":false}', ok: true } },
    { reported: { version: 6, sampleIntervalMs: 2000, batchIntervalMs: 5000, error: 'sample_interval_ms 0: must be 100..3600000' } },
    { commandResult: { id: 4, ok: true, message: 'done', resultJson: '{"uptime_ms":86400000}' } },
  ];
  for (const m of device) assert.deepEqual(plain(decodeDeviceMessage(encodeDeviceMessage(m))), m);
  const hub = [
    { welcome: { sessionId: 's', protocolVersion: 1, window: 32, credit: 32, features: [FEATURE_CONFIG, FEATURE_INVOKE] } },
    { desired: { version: 5, sampleIntervalMs: 2000, customJson: '{"led":false}' } },
    { desired: { version: 7, batchIntervalMs: 10_000 } },
    { command: { id: 9, invoke: { name: 'reboot' } } },
    { command: { id: 10, invoke: { name: 'acme.calibrate', argsJson: '{"ref":21.5}' } } },
  ];
  for (const m of hub) assert.deepEqual(plain(decodeHubMessage(encodeHubMessage(m))), m);

  assert.equal(decodeDeviceMessage(encodeDeviceMessage({ reported: { version: 3 } })).msg, 'reported');
  assert.equal(decodeHubMessage(encodeHubMessage({ desired: { version: 3 } })).msg, 'desired');
  assert.equal(decodeHubMessage(encodeHubMessage({ command: { id: 1, invoke: { name: 'ping' } } })).command!.cmd, 'invoke');
  // 64-bit versions decode as numbers, like every other 64-bit field.
  const empty = decodeDeviceMessage(encodeDeviceMessage({ reported: {} })).reported!;
  assert.equal(typeof empty.version, 'number');
  assert.equal(empty.ok, false);
  assert.equal(empty.customJson, '');
});

test('config protocol - DesiredConfig settings are proto3 optional: a present 0 is not absent', () => {
  const zero: DesiredConfig = { version: 4, sampleIntervalMs: 0 };
  const absent: DesiredConfig = { version: 4 };
  const zeroBytes = encodeHubMessage({ desired: zero });
  const absentBytes = encodeHubMessage({ desired: absent });
  // The README's primer shows both encodings.
  assert.equal(hex(zeroBytes), '2a 04 08 04 10 00');
  assert.equal(hex(absentBytes), '2a 02 08 04');
  const primer = section('5.1 Encoding primer');
  assert.ok(primer.includes('`2a 04 08 04 10 00`') && primer.includes('`2a 02 08 04`'), 'the primer shows both encodings');

  const z = decodeHubMessage(zeroBytes).desired!;
  const a = decodeHubMessage(absentBytes).desired!;
  assert.equal(Object.hasOwn(z, 'sampleIntervalMs'), true);
  assert.equal(z.sampleIntervalMs, 0);
  assert.equal(Object.hasOwn(a, 'sampleIntervalMs'), false);
  assert.equal(a.sampleIntervalMs, null);
  // protobufjs's virtual oneof for a proto3 optional field.
  assert.equal((z as unknown as Record<string, unknown>)._sampleIntervalMs, 'sampleIntervalMs');
  assert.equal((a as unknown as Record<string, unknown>)._sampleIntervalMs, undefined);
  for (const f of ['batchIntervalMs', 'customJson']) assert.equal(Object.hasOwn(a, f), false, f);

  // An empty custom_json that is set is on the wire too ("" is not "unchanged").
  const emptyJson = decodeHubMessage(encodeHubMessage({ desired: { version: 4, customJson: '' } })).desired!;
  assert.equal(Object.hasOwn(emptyJson, 'customJson'), true);
  // null and undefined mean absent when encoding.
  assert.deepEqual(encodeHubMessage({ desired: { version: 4, sampleIntervalMs: null, batchIntervalMs: undefined } }), absentBytes);

  // ConfigReport is the full state, not a delta: plain fields, no presence.
  const report: ConfigReport = { version: 4, sampleIntervalMs: 0, ok: true };
  assert.equal(hex(encodeDeviceMessage({ reported: report })), '22 04 08 04 28 01');
});

test('config protocol - a Hello or Welcome from before the additions decodes with no features', () => {
  // Bytes from the v1 schema as it was (proto/README.md §5.12 and an old Welcome).
  const oldHello = fromHex('0a 23 0a 0c 67 72 65 65 6e 68 6f 75 73 65 2d 37 10 01 1a 0a 74 68 2d 32 20 34 2e 31 2e 30 20 80 d0 95 ff bc 31');
  assert.deepEqual(hex(oldHello), hex(old('DeviceMessage').encode({
    hello: { deviceId: 'greenhouse-7', protocolVersion: 1, firmware: 'th-2 4.1.0', deviceTimeMs: 1_700_000_000_000 },
  }).finish()));
  const hello = decodeDeviceMessage(oldHello).hello!;
  assert.deepEqual(hello.features, []);
  assert.equal(hello.deviceId, 'greenhouse-7');
  assert.equal(hello.deviceTimeMs, 1_700_000_000_000);
  // A device without features is byte-for-byte what it was.
  assert.equal(hex(encodeDeviceMessage({ hello: { ...hello, features: [] } })), hex(oldHello));

  const oldWelcome = old('HubMessage').encode({ welcome: { sessionId: 'k3x9qa-1f', protocolVersion: 1, window: 32, credit: 32, lastSeq: 41 } }).finish();
  const welcome = decodeHubMessage(oldWelcome).welcome!;
  assert.deepEqual(welcome.features, []);
  assert.equal(welcome.lastSeq, 41);
  // An old CommandResult has no result_json.
  const result = decodeDeviceMessage(old('DeviceMessage').encode({ commandResult: { id: 3, ok: true, message: 'applied' } }).finish()).commandResult!;
  assert.equal(result.resultJson, '');
});

test('config protocol - a reader with the old schema skips the new fields and members', () => {
  // An old hub reads a Hello with features: every old field intact, field 5 skipped.
  const hello = { deviceId: 'greenhouse-7', protocolVersion: 1, firmware: 'th-2 4.2.0', deviceTimeMs: 1_700_000_000_000 };
  const newHello = encodeDeviceMessage({ hello: { ...hello, features: [FEATURE_CONFIG, FEATURE_INVOKE] } });
  const seen = oldDecode('DeviceMessage', newHello);
  assert.equal(seen.msg, 'hello');
  assert.deepEqual(seen.hello, hello);
  // The old reader skipped field 5 (one tag per entry) and kept nothing of it:
  // what it read re-encodes as the Hello without features.
  assert.equal(hex(newHello).endsWith('2a 06 63 6f 6e 66 69 67 2a 06 69 6e 76 6f 6b 65'), true);
  assert.equal(hex(old('DeviceMessage').encode(old('DeviceMessage').decode(newHello)).finish()), hex(encodeDeviceMessage({ hello })));

  // An old device reads a Welcome with features: its fields intact.
  const welcome = { sessionId: 'k3x9qa-1f', protocolVersion: 1, serverTimeMs: 1_700_000_000_123, window: 32, credit: 16, lastSeq: 99 };
  const w = oldDecode('HubMessage', encodeHubMessage({ welcome: { ...welcome, features: [FEATURE_CONFIG] } }));
  assert.equal(w.msg, 'welcome');
  assert.deepEqual(w.welcome, welcome);

  // An old device gets no known member from a DesiredConfig (it ignores the
  // message, §13) and a Command with no known cmd from an Invoke (it answers
  // ok = false, §12).
  const desired = oldDecode('HubMessage', encodeHubMessage({ desired: { version: 5, sampleIntervalMs: 2000 } }));
  assert.equal(desired.msg, undefined);
  const cmd = oldDecode('HubMessage', encodeHubMessage({ command: { id: 4, invoke: { name: 'ping' } } }));
  assert.deepEqual(cmd, { msg: 'command', command: { id: 4 } });
  // An old hub sees no known member in a ConfigReport: it closes with 4000,
  // which is why a device sends one only when Welcome lists "config".
  assert.equal(oldDecode('DeviceMessage', encodeDeviceMessage({ reported: { version: 5, ok: true } })).msg, undefined);
  // ...and reads a CommandResult with result_json as before.
  assert.deepEqual(oldDecode('DeviceMessage', encodeDeviceMessage({ commandResult: { id: 4, ok: true, message: 'pong', resultJson: '{"uptime_ms":5}' } })),
    { msg: 'commandResult', commandResult: { id: 4, ok: true, message: 'pong' } });
});

test('config protocol - the schema only grew: every field from before keeps its number, type and rule', () => {
  const types = (before.lookup('iot.telemetry.v1') as protobuf.Namespace).nestedArray.filter((t) => t instanceof protobuf.Type);
  assert.equal(types.length, 11);
  for (const { name: type } of types) {
    const was = old(type);
    const now = current.lookupType(`iot.telemetry.v1.${type}`);
    for (const f of was.fieldsArray) {
      const g = now.fields[f.name];
      assert.ok(g, `${type}.${f.name} still exists`);
      assert.deepEqual([g.id, g.type, g.repeated, g.partOf?.name ?? null], [f.id, f.type, f.repeated, f.partOf?.name ?? null], `${type}.${f.name}`);
    }
  }
  // The additions, with the numbers the README gives them.
  const field = (t: string, f: string) => {
    const g = current.lookupType(`iot.telemetry.v1.${t}`).fields[f];
    assert.ok(g, `${t}.${f}`);
    // protobufjs puts a proto3 optional field in a synthetic oneof named "_<field>".
    return [g.id, g.type, g.repeated, g.partOf ? (g.partOf.name.startsWith('_') ? 'optional' : `oneof ${g.partOf.name}`) : 'plain'];
  };
  assert.deepEqual(field('Hello', 'features'), [5, 'string', true, 'plain']);
  assert.deepEqual(field('Welcome', 'features'), [9, 'string', true, 'plain']);
  assert.deepEqual(field('HubMessage', 'desired'), [5, 'DesiredConfig', false, 'oneof msg']);
  assert.deepEqual(field('DeviceMessage', 'reported'), [4, 'ConfigReport', false, 'oneof msg']);
  assert.deepEqual(field('Command', 'invoke'), [3, 'Invoke', false, 'oneof cmd']);
  assert.deepEqual(field('Invoke', 'name'), [1, 'string', false, 'plain']);
  assert.deepEqual(field('Invoke', 'argsJson'), [2, 'string', false, 'plain']);
  assert.deepEqual(field('DesiredConfig', 'version'), [1, 'uint64', false, 'plain']);
  assert.deepEqual(field('DesiredConfig', 'batchIntervalMs'), [3, 'uint32', false, 'optional']);
  assert.deepEqual(field('ConfigReport', 'version'), [1, 'uint64', false, 'plain']);
  assert.deepEqual(field('ConfigReport', 'customJson'), [4, 'string', false, 'plain']);
  assert.deepEqual(field('ConfigReport', 'ok'), [5, 'bool', false, 'plain']);
  assert.deepEqual(field('CommandResult', 'resultJson'), [4, 'string', false, 'plain']);
  assert.deepEqual(field('DesiredConfig', 'sampleIntervalMs'), [2, 'uint32', false, 'optional']);
  assert.deepEqual(field('DesiredConfig', 'customJson'), [4, 'string', false, 'optional']);
  assert.deepEqual(field('ConfigReport', 'error'), [6, 'string', false, 'plain']);
});

test('config protocol - the README vectors of §5.17 are what the encoder produces', () => {
  const vectors: [string, Uint8Array][] = [
    ['Hello{', encodeDeviceMessage({ hello: { deviceId: 'greenhouse-7', protocolVersion: 1, firmware: 'th-2 4.2.0', deviceTimeMs: 1_700_000_000_000, features: ['config', 'invoke'] } })],
    ['Welcome{', encodeHubMessage({ welcome: { sessionId: 'k3x9qa-1f', protocolVersion: 1, window: 32, credit: 32, features: ['config', 'invoke'] } })],
    ['DesiredConfig{version 5,', encodeHubMessage({ desired: { version: 5, sampleIntervalMs: 2000, customJson: '{"led":false}' } })],
    ['DesiredConfig{version 6}', encodeHubMessage({ desired: { version: 6 } })],
    ['ConfigReport{version 5,', encodeDeviceMessage({ reported: { version: 5, sampleIntervalMs: 2000, batchIntervalMs: 5000, customJson: '{"led":false}', ok: true } })],
    ['ConfigReport{version 0,', encodeDeviceMessage({ reported: { version: 0, sampleIntervalMs: 1000, batchIntervalMs: 5000, ok: true } })],
    ['Command{id 4, invoke', encodeHubMessage({ command: { id: 4, invoke: { name: 'ping' } satisfies Invoke } })],
    ['CommandResult{id 4,', encodeDeviceMessage({ commandResult: { id: 4, ok: true, resultJson: '{"uptime_ms":86400000}' } })],
  ];
  const table = rows(section('5.17 Example encodings')).filter(([m]) => m !== 'Message');
  assert.equal(table.length, vectors.length, 'every row of §5.17 is checked here');
  for (const [label, bytes] of vectors) {
    const matching = table.filter(([m]) => m!.startsWith(label));
    assert.equal(matching.length, 1, `section 5.17 has one vector for ${label}`);
    const [message, cell] = matching[0]!;
    assert.equal(cell!.replace(/`/g, ''), hex(bytes), label);
    assert.equal(Number(/\((\d+) B\)$/.exec(message!)?.[1]), bytes.length, `${label} size`);
  }
});

test('config protocol - the largest messages are the sizes §5.13 gives', () => {
  const max64 = 2 ** 53 - 1;
  const maxU32 = 2 ** 32 - 1;
  const json = `{"k":"${'x'.repeat(MAX_CONFIG_JSON_BYTES - 8)}"}`;
  assert.equal(Buffer.byteLength(json), MAX_CONFIG_JSON_BYTES);
  const desired = encodeHubMessage({ desired: { version: max64, sampleIntervalMs: maxU32, batchIntervalMs: maxU32, customJson: json } }).length;
  const invoke = encodeHubMessage({ command: { id: max64, invoke: { name: 'x'.repeat(MAX_COMMAND_NAME_CHARS), argsJson: json } } }).length;
  const report = encodeDeviceMessage({ reported: {
    version: max64, sampleIntervalMs: maxU32, batchIntervalMs: maxU32, customJson: json, ok: true, error: '\u{1F600}'.repeat(MAX_CONFIG_ERROR_CHARS),
  } }).length;
  const n = (x: number) => String(x).replace(/(\d)(?=\d{3}$)/, '$1 ');
  const sizes = section('5.13 Size on the wire').replace(/\s+/g, ' ');
  assert.ok(sizes.includes(`DesiredConfig of up to ${n(desired)} bytes`), `DesiredConfig at most ${desired} B`);
  assert.ok(sizes.includes(`Invoke of up to ${n(invoke)} bytes`), `Invoke at most ${invoke} B`);
  assert.ok(sizes.includes(`at least ${n(Math.max(desired, invoke))} bytes`), 'receive buffer');
  assert.ok(sizes.includes(`ConfigReport is at most ${n(report)} bytes`), `ConfigReport at most ${report} B`);
});

test('config protocol - the constants are the ones the README states', () => {
  assert.equal(FEATURE_CONFIG, 'config');
  assert.equal(FEATURE_INVOKE, 'invoke');
  const features = rows(section('5.14 Features')).map(([v]) => v);
  for (const f of [FEATURE_CONFIG, FEATURE_INVOKE]) assert.ok(features.includes(`\`${f}\``), `§5.14 defines ${f}`);
  assert.match(section('5.3 Hello'), new RegExp(`At most ${MAX_FEATURES} entries, each 1\\.\\.${MAX_FEATURE_BYTES} bytes`));
  assert.match(section('5.16 ConfigReport'), new RegExp(`\`MAX_CONFIG_JSON_BYTES\` \\(${MAX_CONFIG_JSON_BYTES}\\) and \`MAX_CONFIG_ERROR_CHARS\`\\s+\\(${MAX_CONFIG_ERROR_CHARS}\\)`));
  assert.match(section('5.11 Command'), new RegExp(`1\\.\\.${MAX_COMMAND_NAME_CHARS} characters of \`\\[A-Za-z0-9_.-\\]\` \\(\`${COMMAND_NAME_RE.source.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}\`\\)`));

  for (const ok of ['ping', 'reboot', 'acme.calibrate', 'a_b-c.D9', 'x'.repeat(MAX_COMMAND_NAME_CHARS)]) assert.match(ok, COMMAND_NAME_RE, ok);
  for (const bad of ['', 'x'.repeat(MAX_COMMAND_NAME_CHARS + 1), 'with space', 'caf\u00e9', 'a/b', 'ping\n']) assert.doesNotMatch(bad, COMMAND_NAME_RE, JSON.stringify(bad));
});

