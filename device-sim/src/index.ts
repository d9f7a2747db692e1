// @telemetry/device-sim: simulated devices, fleets and the load-test tool.
export { SimDevice, BAD_BEHAVIOURS, hashId, type Behaviour, type SimDeviceOptions } from './device.ts';
export { Fleet, type FleetOptions } from './fleet.ts';
export { defaultSensors, prng, gaussian, Temperature, Humidity, Pressure, Battery, type SensorModel } from './sensors.ts';
export { Reservoir, emptyCounters, addCounters, type SimCounters } from './stats.ts';
export { loadTokens, expandAddresses } from './tokens.ts';
