// Log lines a device can cause are bounded: CommandResults are logged only
// for ids the session was sent (once, message cut short), everything goes
// through the log limiter (HUB_LOG_LINES_PER_MIN per kind), and what is not
// written is counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { StoreError } from '../src/core/errors.ts';
import { MAX_LOGGED_MESSAGE_CHARS, MAX_OUTSTANDING_COMMANDS } from '../src/ingest/commands.ts';
import { createLogger } from '../src/core/log.ts';
import { MemoryBatchStore } from '../src/spool/store.ts';
import { batchOf, connectDevice, metric, startHub, until, within } from './helpers.ts';

/** A log destination that counts bytes and keeps each line's message and a few fields. */
class CountingLog extends Writable {
  bytes = 0;
  readonly lines: { msg: string; kind?: string; message?: string; messageChars?: number }[] = [];
  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: () => void): void {
    const text = chunk.toString();
    this.bytes += Buffer.byteLength(text);
    for (const line of text.split('\n')) if (line) this.lines.push(JSON.parse(line) as CountingLog['lines'][number]);
    done();
  }
  count(msg: string): number { return this.lines.filter((l) => l.msg === msg).length; }
}

const MIB = 1 << 20;

test('command results - 400 results for ids the hub never sent, with 1 MiB messages, are counted as unknown and not logged', async (t) => {
  const out = new CountingLog();
  const th = await startHub(t, { config: { maxMessageBytes: 2 * MIB }, deps: { log: createLogger('info', out) } });
  const { d } = await connectDevice(th, 'dev-1');
  const message = 'x'.repeat(MIB);
  for (let i = 0; i < 400; i++) d.send({ commandResult: { id: 1000 + i, ok: true, message } });
  await until(async () => (await metric(th, 'hub_command_results_total', { result: 'unknown' })) === 400, 20_000, '400 unknown results');
  assert.equal(await metric(th, 'hub_command_results_total', { result: 'ok' }), 0);
  assert.equal(out.count('command result'), 0);
  assert.ok(out.bytes < 4096, `${out.bytes} bytes of log`);
  d.close();
});

test('command results - a result for a command the session was sent is counted and logged once, cut to 200 characters; a repeat is unknown', async (t) => {
  const out = new CountingLog();
  const th = await startHub(t, { config: { maxMessageBytes: 2 * MIB }, deps: { log: createLogger('info', out) } });
  const { d } = await connectDevice(th, 'dev-1');
  const id = th.hub.devices.sendCommand('dev-1', { config: { sampleIntervalMs: 5000 } })!;
  assert.equal((await d.next('command')).id, id);
  for (let i = 0; i < 2; i++) d.send({ commandResult: { id, ok: false, message: 'e'.repeat(MIB) } });
  await until(async () => (await metric(th, 'hub_command_results_total', { result: 'unknown' })) === 1, 5000, 'the repeat counted');
  assert.equal(await metric(th, 'hub_command_results_total', { result: 'failed' }), 1);
  assert.equal(out.count('command result'), 1);
  const line = out.lines.find((l) => l.msg === 'command result')!;
  assert.equal(line.message, `${'e'.repeat(MAX_LOGGED_MESSAGE_CHARS)}…`);
  assert.equal(line.messageChars, MIB);
  assert.ok(out.bytes < 4096, `${out.bytes} bytes of log`);
  d.close();
});

test('command results - a session remembers its last 16 command ids; a result for an older one is unknown', async (t) => {
  const th = await startHub(t);
  const { d } = await connectDevice(th, 'dev-1');
  const ids: number[] = [];
  for (let i = 0; i <= MAX_OUTSTANDING_COMMANDS; i++) ids.push(th.hub.devices.sendCommand('dev-1', { config: { batchIntervalMs: 1000 + i } })!);
  for (const id of ids) d.send({ commandResult: { id, ok: true, message: 'applied' } });
  await until(async () => (await metric(th, 'hub_command_results_total')) === ids.length, 5000, 'all results counted');
  assert.equal(await metric(th, 'hub_command_results_total', { result: 'unknown' }), 1, 'the oldest was forgotten');
  assert.equal(await metric(th, 'hub_command_results_total', { result: 'ok' }), MAX_OUTSTANDING_COMMANDS);
  // Ids belong to the session that was sent them.
  d.close();
  await within(d.closed, 3000, 'closed');
  const again = await connectDevice(th, 'dev-1');
  again.d.send({ commandResult: { id: ids.at(-1)!, ok: true } });
  await until(async () => (await metric(th, 'hub_command_results_total', { result: 'unknown' })) === 2, 3000, 'an old session\'s id');
  again.d.close();
});

test('device logs - command results beyond HUB_LOG_LINES_PER_MIN are not written, but counted', async (t) => {
  const out = new CountingLog();
  const th = await startHub(t, { config: { logLinesPerMinute: 5 }, deps: { log: createLogger('info', out) } });
  const { d } = await connectDevice(th, 'dev-1');
  for (let i = 0; i < 8; i++) {
    const id = th.hub.devices.sendCommand('dev-1', { config: { sampleIntervalMs: 1000 } })!;
    d.send({ commandResult: { id, ok: true, message: 'applied' } });
  }
  await until(async () => (await metric(th, 'hub_command_results_total', { result: 'ok' })) === 8, 5000, 'results counted');
  assert.equal(out.count('command result'), 5);
  assert.equal(await metric(th, 'hub_log_lines_suppressed_total', { kind: 'command_result' }), 3);
  d.close();
});

test('device logs - store failures and session closes devices cause are rate-limited per kind', async (t) => {
  class FailingStore extends MemoryBatchStore {
    override append(): Promise<void> { return Promise.reject(new StoreError('HUB_ERR_STORE', 'disk full')); }
  }
  const out = new CountingLog();
  const th = await startHub(t, { config: { logLinesPerMinute: 3 }, deps: { store: new FailingStore(), log: createLogger('debug', out) } });
  for (let i = 0; i < 6; i++) {
    const { d } = await connectDevice(th, 'dev-1');
    d.batch(batchOf(1));
    await within(d.closed, 3000, 'closed with 1011');
  }
  await until(async () => (await metric(th, 'hub_store_errors_total')) === 6, 3000, 'six failures');
  assert.equal(out.count('store append failed; the device will resend'), 3);
  assert.equal(await metric(th, 'hub_log_lines_suppressed_total', { kind: 'store_append_failed' }), 3);
  for (const msg of ['device session open', 'closing device session', 'device session closed']) assert.ok(out.count(msg) <= 3, msg);
  assert.ok(await metric(th, 'hub_log_lines_suppressed_total', { kind: 'device_session_closing' }) >= 3);
});
