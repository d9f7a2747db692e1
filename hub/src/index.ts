// @telemetry/hub public entry: build a hub in-process (tests, embedding).
export { buildApp, type Hub, type HubDeps } from './app.ts';
export { loadConfig, CONFIG_KEYS, type HubConfig, type ConfigWarning } from './core/config.ts';
export { HubError, RegistryError, StoreError, type HubErrorCode } from './core/errors.ts';
export { DeviceRegistry, addDevice, generateToken, hashToken, readRegistryFile, writeRegistryFile, watchRegistryFile, type DeviceAuthenticator, type RegistryFile } from './auth/registry.ts';
export { MemoryBatchStore, type AcceptedBatch, type BatchStore } from './spool/store.ts';
export { Spool, type SpoolOptions, type Position, type SpoolRecord } from './spool/spool.ts';
export { HubMetrics } from './core/metrics.ts';
export { createLogger } from './core/log.ts';
export { loadUws, type UwsBinding } from './core/uws.ts';
