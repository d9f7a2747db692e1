// @telemetry/proto: the one schema every package imports.
// Owns: the generated message classes (gen/), the protocol constants every
// side must agree on (close codes, notice codes, version, subprotocols).
// Imports: protobufjs only.
import './configure.ts'; // first: before the generated code is evaluated
import { iot } from '../gen/telemetry.js';

export const v1 = iot.telemetry.v1;
export type { iot };
export * from './codes.ts';
export { decodeBatchMessage, encodeAckMessage, type ColumnBatch } from './fast-batch.ts';
export { ColumnSlab, columns } from './slab.ts';

export type DeviceMessage = iot.telemetry.v1.DeviceMessage;
export type HubMessage = iot.telemetry.v1.HubMessage;
export type Hello = iot.telemetry.v1.Hello.$Properties;
export type Welcome = iot.telemetry.v1.Welcome.$Properties;
export type Limits = iot.telemetry.v1.Limits.$Properties;
export type Batch = iot.telemetry.v1.Batch.$Properties;
export type MetricDef = iot.telemetry.v1.MetricDef.$Properties;
export type Ack = iot.telemetry.v1.Ack.$Properties;
export type BatchReport = iot.telemetry.v1.BatchReport.$Properties;
export type Notice = iot.telemetry.v1.Notice.$Properties;
export type Command = iot.telemetry.v1.Command.$Properties;
export type CommandResult = iot.telemetry.v1.CommandResult.$Properties;
export type Invoke = iot.telemetry.v1.Invoke.$Properties;
export type DesiredConfig = iot.telemetry.v1.DesiredConfig.$Properties;
export type ConfigReport = iot.telemetry.v1.ConfigReport.$Properties;

/** Encodes a device -> hub envelope. */
export function encodeDeviceMessage(m: iot.telemetry.v1.DeviceMessage.$Properties): Uint8Array {
  return v1.DeviceMessage.encode(m).finish();
}

/** Decodes a device -> hub envelope; throws on malformed input. */
export function decodeDeviceMessage(bytes: Uint8Array): DeviceMessage {
  return v1.DeviceMessage.decode(bytes);
}

/** Encodes a hub -> device envelope. */
export function encodeHubMessage(m: iot.telemetry.v1.HubMessage.$Properties): Uint8Array {
  return v1.HubMessage.encode(m).finish();
}

/** Decodes a hub -> device envelope; throws on malformed input. */
export function decodeHubMessage(bytes: Uint8Array): HubMessage {
  return v1.HubMessage.decode(bytes);
}

// ---- live endpoint (/v1/live) ----
export type LiveRequest = iot.telemetry.v1.LiveRequest;
export type LiveFrame = iot.telemetry.v1.LiveFrame;
export type LiveFrameProps = iot.telemetry.v1.LiveFrame.$Properties;
export type LiveHealth = iot.telemetry.v1.Health.$Properties;
export type LiveHubState = iot.telemetry.v1.HubState.$Properties;
export type WindowStats = iot.telemetry.v1.WindowStats.$Properties;
export type MetricStats = iot.telemetry.v1.MetricStats.$Properties;
export type ScopeStats = iot.telemetry.v1.ScopeStats.$Properties;
export type DeviceStateMsg = iot.telemetry.v1.DeviceState.$Properties;
export type LatestValue = iot.telemetry.v1.LatestValue.$Properties;
export type PresenceChange = iot.telemetry.v1.PresenceChange.$Properties;
export type DeviceDetail = iot.telemetry.v1.DeviceDetail.$Properties;
export type AlarmMsg = iot.telemetry.v1.Alarm.$Properties;
export const Presence = v1.Presence;

/** Encodes a dashboard -> hub live request. */
export function encodeLiveRequest(m: iot.telemetry.v1.LiveRequest.$Properties): Uint8Array {
  return v1.LiveRequest.encode(m).finish();
}

/** Decodes a dashboard -> hub live request; throws on malformed input. */
export function decodeLiveRequest(bytes: Uint8Array): LiveRequest {
  return v1.LiveRequest.decode(bytes);
}

/** Encodes a hub -> dashboard live frame. */
export function encodeLiveFrame(m: LiveFrameProps): Uint8Array {
  return v1.LiveFrame.encode(m).finish();
}

/** Decodes a hub -> dashboard live frame; throws on malformed input. */
export function decodeLiveFrame(bytes: Uint8Array): LiveFrame {
  return v1.LiveFrame.decode(bytes);
}
