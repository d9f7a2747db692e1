// @telemetry/proto: the one schema every package imports.
// Owns: the generated message classes (gen/), the protocol constants every
// side must agree on (close codes, notice codes, version, subprotocols).
// Imports: protobufjs only.
import './configure.ts'; // first: before the generated code is evaluated
import { iot } from '../gen/telemetry.js';

export const v1 = iot.telemetry.v1;
export type { iot };
export * from './codes.ts';

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
