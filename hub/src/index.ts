// hub/src/: the @telemetry/hub public entry (package.json `exports`): build a hub
// in-process (tests, embedding) and the pieces the root scripts and tests
// use (registry files, paths, config keys, the spool). Anything not
// exported here is internal. Imports: anything in hub/src except main.ts.
export { buildApp, type Hub, type HubAuthenticator, type HubDeps } from './app.ts';
export { loadConfig, CONFIG_KEYS, type HubConfig, type ConfigWarning } from './core/config.ts';
export { HubError, RegistryError, StoreError, type HubErrorCode } from './core/errors.ts';
export { fromInvocation, hubPaths, invocationDir, type HubPaths } from './core/paths.ts';
export { DeviceRegistry, addDevice, generateToken, hashToken, readRegistryFile, writeRegistryFile, watchRegistryFile, type DeviceAuthenticator, type RegistryFile } from './auth/registry.ts';
export { MemoryBatchStore, type AcceptedBatch, type BatchStore } from './spool/store.ts';
export { Spool, type SpoolOptions } from './spool/spool.ts';
export { comparePos, type Position, type SpoolReader, type SpoolRecord } from './spool/reader.ts';
export { HubMetrics } from './core/metrics.ts';
export { createLogger } from './core/log.ts';
export { loadUws, type UwsBinding } from './core/uws.ts';
