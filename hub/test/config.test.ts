// The config module: defaults, parsing, clamping, errors that name the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, parseOpenFileLimit, reservedFiles, withinOpenFiles, type ConfigWarning } from '../src/core/config.ts';
import { HubError } from '../src/core/errors.ts';

const configError = (re: RegExp) => (err: unknown) => err instanceof HubError && err.code === 'HUB_ERR_CONFIG' && re.test(err.message);

test('config - defaults', () => {
  const c = loadConfig({});
  assert.equal(c.port, 8080);
  assert.equal(c.window, 32);
  assert.equal(c.maxMessageBytes, 262_144);
  assert.equal(c.skewPolicy, 'correct');
  assert.equal(c.allowUwsFallback, false);
  assert.equal(c.tlsCert, undefined);
});

test('config - env values are parsed; zero or empty means the default; port 0 means any port', () => {
  const c = loadConfig({ HUB_PORT: '0', HUB_WINDOW: '0', HUB_MAX_BATCH_READINGS: '', HUB_ALLOW_UWS_FALLBACK: 'true', HUB_SKEW_POLICY: 'drop', HUB_MAX_READINGS_PER_SEC: ' 250 ' });
  assert.equal(c.port, 0);
  assert.equal(c.window, 32);
  assert.equal(c.maxBatchReadings, 10_000);
  assert.equal(c.allowUwsFallback, true);
  assert.equal(c.skewPolicy, 'drop');
  assert.equal(c.maxReadingsPerSecond, 250);
});

test('config - out-of-range values are clamped with a warning naming the variable and why', () => {
  const warnings: ConfigWarning[] = [];
  const c = loadConfig({ HUB_WINDOW: '100000', HUB_IDLE_TIMEOUT_S: '2' }, {}, warnings);
  assert.equal(c.window, 1024);
  assert.equal(c.idleTimeoutS, 8);
  assert.ok(warnings.some((w) => /HUB_WINDOW=100000 lowered to 1024 \(each in-flight batch/.test(w.message)));
  assert.ok(warnings.some((w) => /HUB_IDLE_TIMEOUT_S=2 raised to 8/.test(w.message)));
});

test('config - invalid values are rejected with the variable and the value', () => {
  assert.throws(() => loadConfig({ HUB_WINDOW: 'abc' }), configError(/HUB_WINDOW="abc" is invalid: expected an integer/));
  assert.throws(() => loadConfig({ HUB_WINDOW: '1.5' }), configError(/HUB_WINDOW/));
  assert.throws(() => loadConfig({ HUB_ALLOW_UWS_FALLBACK: 'maybe' }), configError(/HUB_ALLOW_UWS_FALLBACK="maybe"/));
  assert.throws(() => loadConfig({ HUB_SKEW_POLICY: 'ignore' }), configError(/HUB_SKEW_POLICY="ignore" is invalid: expected one of correct, drop/));
  assert.throws(() => loadConfig({ HUB_LOG_LEVEL: 'loud' }), configError(/HUB_LOG_LEVEL/));
  assert.throws(() => loadConfig({ HUB_PORT: '-1' }), configError(/HUB_PORT="-1" is invalid: expected an integer in 0..65535/));
  assert.throws(() => loadConfig({ HUB_PORT: '70000' }), configError(/HUB_PORT/));
});

test('config - HUB_MAX_CONNECTIONS is lowered, with a warning naming it and the open-file limit, to what the process may open', () => {
  const limits = 'Limit                     Soft Limit           Hard Limit           Units\nMax cpu time              unlimited            unlimited            seconds\nMax open files            20000                20000                files\n';
  assert.equal(parseOpenFileLimit(limits), 20_000);
  assert.equal(parseOpenFileLimit(limits.replace('20000                20000', 'unlimited            unlimited')), Infinity);
  assert.equal(parseOpenFileLimit('no such line'), Infinity);

  const cfg = loadConfig({});
  assert.equal(cfg.maxConnections, 100_000);
  const warnings: ConfigWarning[] = [];
  const lowered = withinOpenFiles(cfg, 20_000, warnings);
  assert.equal(lowered.maxConnections, 20_000 - reservedFiles(cfg));
  assert.ok(lowered.maxConnections > 19_000 && Object.isFrozen(lowered));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!.message, /HUB_MAX_CONNECTIONS=100000 lowered to \d+: this process may open 20000 files .*ulimit -n/);
  const small = loadConfig({ HUB_MAX_CONNECTIONS: '500' });
  assert.equal(withinOpenFiles(small, 20_000, warnings), small, 'within the limit: unchanged');
  assert.equal(withinOpenFiles(cfg, Infinity, warnings), cfg, 'no limit known: unchanged');
  assert.equal(warnings.length, 1);
});

test('config - the burst is raised so that a full batch fits', () => {
  const warnings: ConfigWarning[] = [];
  const c = loadConfig({ HUB_READINGS_BURST: '100', HUB_MAX_BATCH_READINGS: '500' }, {}, warnings);
  assert.equal(c.readingsBurst, 500);
  assert.ok(warnings.some((w) => w.key === 'readingsBurst'));
});

test('config - the result is frozen', () => {
  const c = loadConfig({});
  assert.ok(Object.isFrozen(c));
  assert.throws(() => { (c as { port: number }).port = 1; }, TypeError);
});
