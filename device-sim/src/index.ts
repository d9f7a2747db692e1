// device-sim/: @telemetry/device-sim, simulated devices, fleets and the
// load-test tool. The package's only public entry (package.json `exports`);
// cli.ts is the command line on top of it (lean-cli.ts its `lean` mode).
// Batch building, pacing, the watchdog and the behaviour strategies stay internal.
// Imports: this package's modules (which import only @telemetry/proto, ws,
// hdr-histogram-js and node, never the hub).
export { SimDevice, FIRMWARE } from './device.ts';
export { SYSTEM_CLOCK, type DeviceClock, type SimDeviceOptions, type SimDeviceStats, type SimDeviceEvents } from './device-options.ts';
export { BAD_BEHAVIOURS, type Behaviour } from './behaviours.ts';
export { FATAL_CLOSE_CODES, FATAL_HTTP_STATUSES, retryAfterHeaderMs } from './reconnect.ts';
export {
  SocketState, wsConnector, type DeviceSocket, type SocketConnector, type SocketListener, type SocketRequest,
} from './socket.ts';
export { Fleet, behaviourFor, type FleetOptions, type FleetStats } from './fleet.ts';
export { Outbox, type KeptBatch } from './outbox.ts';
export {
  DEFAULT_METRICS, defaultSensors, hashId, mulberry32, prng, gaussian, Temperature, Humidity, Pressure, Battery,
  type SensorModel, type SensorSetOptions, type TemperatureOptions, type BatteryOptions,
} from './sensors.ts';
export {
  LeanFleet, LeanDevice, emptyLeanCounters, addLeanCounters, leanErrors, leanViolations, type LeanFleetOptions, type LeanCounters,
} from './lean-fleet.ts';
export { LeanBatchFrame, leanFrames, leanColumns, leanMetricDefs, readPlainAck, type LeanBatchShape, type LeanFrames, type AckFields } from './lean-batch.ts';
export { SeqLedger, type AckViolations } from './lean-ledger.ts';
export { FrameWriter, leanWsConnector, readClientFrames, type FrameSink, type LeanSocket, type LeanConnector } from './lean-socket.ts';
export { LatencyHistogram, emptyCounters, addCounters, errorCount, type SimCounters, type Percentiles } from './stats.ts';
export {
  loadTokens, loadTokenFile, envToken, tokenDeviceId, deviceId, fleetCredentials, expandAddresses,
  type DeviceCredentials, type TokenSource,
} from './tokens.ts';
export { InfluxVerifyError, compareStored, countStored, prefixRegex, verifyStored, type InfluxTarget, type StoredReport, type VerifyResult } from './verify-influx.ts';
