// @telemetry/device-sim: simulated devices, fleets and the load-test tool.
// The package's only public entry (package.json `exports`); cli.ts is the
// command line on top of it. Imports only @telemetry/proto and ws, never the hub.
export {
  SimDevice, BAD_BEHAVIOURS, FATAL_CLOSE_CODES, FATAL_HTTP_STATUSES, FIRMWARE, hashId, retryAfterHeaderMs,
  type Behaviour, type SimDeviceOptions, type SimDeviceStats, type SimDeviceEvents,
} from './device.ts';
export { Fleet, behaviourFor, type FleetOptions, type FleetStats } from './fleet.ts';
export { Outbox, type KeptBatch } from './outbox.ts';
export {
  DEFAULT_METRICS, defaultSensors, mulberry32, prng, gaussian, Temperature, Humidity, Pressure, Battery,
  type SensorModel, type SensorSetOptions, type TemperatureOptions, type BatteryOptions,
} from './sensors.ts';
export { Reservoir, emptyCounters, addCounters, errorCount, type SimCounters, type Percentiles } from './stats.ts';
export {
  loadTokens, loadTokenFile, envToken, tokenDeviceId, deviceId, fleetCredentials, expandAddresses,
  type DeviceCredentials, type TokenSource,
} from './tokens.ts';
