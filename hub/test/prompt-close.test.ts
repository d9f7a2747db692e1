// Closes the hub starts end the TCP connection promptly after the close
// handshake, wherever they start: in a message handler, from a timer, from
// outside (registry, shutdown). Measured on a raw TCP client that answers
// the close frame but leaves closing TCP to the server (RFC 6455 §7.1.1),
// as a device stack may; the `ws` client would close TCP itself and hide it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, PROTOCOL_VERSION, decodeHubMessage } from '@telemetry/proto';
import { generateToken, hashToken } from '../src/auth/registry.ts';
import { startHub, within, type TestHub } from './helpers.ts';
import { RawWsClient } from './raw-ws.ts';

/** uWS would otherwise hold the connection for its end timeout: 16 s at the default 60 s idle timeout. */
const PROMPT_MS = 5000;

async function open(th: TestHub, deviceId: string, hello: boolean): Promise<RawWsClient> {
  const c = new RawWsClient(th.port, th.tokens.get(deviceId)!);
  await within(c.upgraded, 3000, `${deviceId} upgrade`);
  if (hello) {
    c.send({ hello: { deviceId, protocolVersion: PROTOCOL_VERSION, firmware: 'raw/1' } });
    await within(new Promise<void>((resolve) => {
      const check = (): void => { if (c.frames.some((f) => f.opcode === 2)) resolve(); else setImmediate(check); };
      check();
    }), 3000, 'welcome');
  }
  return c;
}

/** The hub's Notice, then its close frame with `code`, then TCP ends within PROMPT_MS of the close frame. */
async function closesPromptly(c: RawWsClient, code: number, what: string): Promise<void> {
  const frame = await within(c.closeFrame, 15_000, `${what}: close frame`);
  assert.equal(frame.code, code, `${what}: ${frame.reason}`);
  const notice = c.frames.filter((f) => f.opcode === 2).map((f) => decodeHubMessage(f.payload)).find((m) => m.msg === 'notice');
  assert.equal(notice?.notice?.code, code, `${what}: Notice before the close frame`);
  await within(c.tcpEnded, PROMPT_MS, `${what}: the hub ending TCP after its close frame`);
  c.destroy();
}

test('close - a close from a message handler (text frame, 1003) ends TCP promptly', async (t) => {
  const th = await startHub(t);
  const c = await open(th, 'dev-1', true);
  c.sendText('{"hello":1}');
  await closesPromptly(c, CloseCode.UNSUPPORTED_DATA, '1003');
});

test('close - a close from a timer (no Hello: 4001) ends TCP promptly', async (t) => {
  const th = await startHub(t, { config: { handshakeTimeoutMs: 200 } });
  const c = await open(th, 'dev-1', false);
  await closesPromptly(c, CloseCode.HANDSHAKE_TIMEOUT, '4001');
});

test('close - a close from outside the socket (revocation: 4008) ends TCP promptly', async (t) => {
  const th = await startHub(t);
  const c = await open(th, 'dev-1', true);
  th.registry.replace({ version: 1, devices: { 'dev-1': { tokenHash: hashToken(generateToken('dev-1')), tags: {} } } });
  await closesPromptly(c, CloseCode.DEVICE_REVOKED, '4008');
});

test('close - a replaced session (4002) and a hub shutdown (1001) end TCP promptly', async (t) => {
  const th = await startHub(t);
  const old = await open(th, 'dev-1', true);
  const newer = await open(th, 'dev-1', false);
  await closesPromptly(old, CloseCode.SESSION_REPLACED, '4002');
  const closing = th.hub.close({ deadlineMs: 2000 });
  await closesPromptly(newer, CloseCode.GOING_AWAY, '1001');
  await closing;
});
