// device-sim/ tests: load-test scenarios: a JSON and a YAML file giving the
// same plan, inheritance of devices/rate/batchMs, start offsets, unique
// names, every built-in scenario, and bad input refused with the path of the
// problem (unknown kinds and keys, durations, limits, files too big, YAML
// syntax errors and alias bombs, empty files, non-object tops).
// Imports: node:test, the repository's test support, and this package's scenario.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../test/support/fs.ts';
import {
  BAD_ACTOR_BEHAVIOURS, DEFAULTS, LIMITS, PHASE_KINDS, SCENARIOS, ScenarioError, builtInPlan, describePlan, formatDuration,
  loadScenarioFile, parseDuration, planFromObject, type Phase, type Plan,
} from '../src/scenario.ts';

/** Runs fn, expects a ScenarioError at `path` whose message matches every pattern; returns it. */
function throwsAt(fn: () => unknown, path: string, ...patterns: RegExp[]): ScenarioError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ScenarioError, `a ScenarioError, got ${String(e)}`);
    assert.equal(e.name, 'ScenarioError');
    assert.equal(e.path, path, `path of: ${e.message}`);
    for (const re of patterns) assert.match(e.message, re);
    return e;
  }
  assert.fail(`no error (expected one at ${path})`);
}

const phase = (p: Record<string, unknown>) => ({ kind: 'steady', duration: '10s', ...p });
const plan1 = (p: Record<string, unknown>, top: Record<string, unknown> = {}) => planFromObject({ ...top, phases: [phase(p)] });
const kindOf = <K extends Phase['kind']>(p: Phase | undefined, kind: K): Extract<Phase, { kind: K }> => {
  assert.equal(p?.kind, kind);
  return p as Extract<Phase, { kind: K }>;
};

const EXAMPLE_YAML = `# the README's example
name: my-test            # optional
devices: 2000            # defaults for all phases
rate: 1                  # readings/s per metric
batchMs: 1000
phases:
  - { kind: ramp, duration: 2m, from: { devices: 0 }, to: { devices: 2000 } }
  - { kind: steady, duration: 5m }
  - { kind: reconnect-storm, duration: 1m }
  - kind: hub-restart
    duration: 2m
    signal: SIGKILL
    atMs: 30000
`;
const EXAMPLE = {
  name: 'my-test', devices: 2000, rate: 1, batchMs: 1000,
  phases: [
    { kind: 'ramp', duration: '2m', from: { devices: 0 }, to: { devices: 2000 } },
    { kind: 'steady', duration: 300 },
    { kind: 'reconnect-storm', duration: '60s' },
    { kind: 'hub-restart', duration: '120000ms', signal: 'SIGKILL', atMs: '30s' },
  ],
};

test('scenario - a JSON file and a YAML file (and one with no extension) give the same plan', (t) => {
  const dir = tempDir(t, 'scenario-');
  writeFileSync(join(dir, 'a.json'), JSON.stringify(EXAMPLE, null, 2));
  writeFileSync(join(dir, 'a.yaml'), EXAMPLE_YAML);
  writeFileSync(join(dir, 'a.yml'), EXAMPLE_YAML);
  writeFileSync(join(dir, 'a-json'), JSON.stringify(EXAMPLE));
  writeFileSync(join(dir, 'a-yaml'), EXAMPLE_YAML);
  const fromJson = loadScenarioFile(join(dir, 'a.json'));
  assert.deepEqual(loadScenarioFile(join(dir, 'a.yaml')), fromJson);
  assert.deepEqual(loadScenarioFile(join(dir, 'a.yml')), fromJson);
  assert.deepEqual(loadScenarioFile(join(dir, 'a-json')), fromJson);
  assert.deepEqual(loadScenarioFile(join(dir, 'a-yaml')), fromJson);
  assert.deepEqual(fromJson, {
    name: 'my-test', durationMs: 10 * 60_000, maxDevices: 2000,
    phases: [
      { kind: 'ramp', name: 'ramp', startMs: 0, durationMs: 120_000, devices: 2000, rate: 1, batchMs: 1000, from: { devices: 0, rate: 1 }, to: { devices: 2000, rate: 1 } },
      { kind: 'steady', name: 'steady', startMs: 120_000, durationMs: 300_000, devices: 2000, rate: 1, batchMs: 1000 },
      { kind: 'reconnect-storm', name: 'reconnect-storm', startMs: 420_000, durationMs: 60_000, devices: 2000, rate: 1, batchMs: 1000, how: 'drop', returnWithinMs: 0 },
      { kind: 'hub-restart', name: 'hub-restart', startMs: 480_000, durationMs: 120_000, devices: 2000, rate: 1, batchMs: 1000, signal: 'SIGKILL', atMs: 30_000 },
    ],
  } satisfies Plan);
  // No name: the file's base name.
  writeFileSync(join(dir, 'nightly.yaml'), 'phases: [{ kind: steady, duration: 1h }]\n');
  assert.equal(loadScenarioFile(join(dir, 'nightly.yaml')).name, 'nightly');
  assert.equal(planFromObject({ phases: [{ kind: 'steady', duration: 5 }] }).name, 'scenario');
});

test('scenario - devices, rate and batchMs come from the phase, else the previous phase, else the scenario, else the defaults', () => {
  const p = planFromObject({
    devices: 50, batchMs: 500,
    phases: [
      { kind: 'steady', duration: '10s' },
      { kind: 'steady', duration: '10s', devices: 80, rate: 4 },
      { kind: 'burst', duration: '10s', factor: 5 },
      { kind: 'ramp', duration: '10s', to: { devices: 10 }, batchMs: 100 },
      { kind: 'ramp', duration: '10s', from: { rate: 0 }, rate: 2 },
      { kind: 'steady', duration: '10s' },
    ],
  });
  const levels = p.phases.map((ph) => [ph.devices, ph.rate, ph.batchMs]);
  assert.deepEqual(levels, [[50, DEFAULTS.rate, 500], [80, 4, 500], [80, 4, 500], [10, 4, 100], [10, 2, 100], [10, 2, 100]]);
  assert.equal(kindOf(p.phases[2], 'burst').factor, 5, 'a burst keeps the base rate; the factor applies on top');
  assert.deepEqual(kindOf(p.phases[3], 'ramp').from, { devices: 80, rate: 4 }, 'a ramp starts where the previous phase ended');
  assert.deepEqual(kindOf(p.phases[4], 'ramp').from, { devices: 10, rate: 0 });
  assert.deepEqual(kindOf(p.phases[4], 'ramp').to, { devices: 10, rate: 2 }, "a ramp's own rate is where it ends");
  assert.equal(p.maxDevices, 80);
  // Nothing given: the simulator's defaults.
  const d = plan1({});
  assert.deepEqual([d.phases[0]?.devices, d.phases[0]?.rate, d.phases[0]?.batchMs], [DEFAULTS.devices, DEFAULTS.rate, DEFAULTS.batchMs]);
  // A ramp from a higher level down: maxDevices counts where it started.
  assert.equal(planFromObject({ devices: 10, phases: [{ kind: 'ramp', duration: 10, from: { devices: 900 } }] }).maxDevices, 900);
});

test('scenario - each phase starts where the previous one ended; the plan lasts their sum', () => {
  const p = planFromObject({ phases: [phase({ duration: '1500ms' }), phase({ duration: 2 }), phase({ duration: '1m30s' }), phase({ duration: '1h' }), phase({ duration: '1d' })] });
  assert.deepEqual(p.phases.map((ph) => ph.startMs), [0, 1500, 3500, 93_500, 3_693_500]);
  assert.deepEqual(p.phases.map((ph) => ph.durationMs), [1500, 2000, 90_000, 3_600_000, 86_400_000]);
  assert.equal(p.durationMs, 3_693_500 + 86_400_000);
});

test('scenario - names: as given, else the kind made unique with -2, -3...; two phases given the same name are refused', () => {
  const p = planFromObject({
    phases: [phase({}), phase({ name: 'steady-2' }), phase({}), { kind: 'burst', duration: 5, factor: 2 }, phase({}), { kind: 'burst', duration: 5, factor: 2, name: 'spike' }, { kind: 'burst', duration: 5, factor: 2 }],
  });
  assert.deepEqual(p.phases.map((ph) => ph.name), ['steady', 'steady-2', 'steady-3', 'burst', 'steady-4', 'spike', 'burst-2']);
  assert.equal(new Set(p.phases.map((ph) => ph.name)).size, p.phases.length);
  throwsAt(() => planFromObject({ phases: [phase({ name: 'a' }), phase({}), phase({ name: 'a' })] }), 'phases[2].name', /also phases\[0\]/);
  throwsAt(() => plan1({ name: '  ' }), 'phases[0].name', /empty/);
});

test('scenario - durations: numbers are seconds, strings take ms, s, m, h, d (and compounds); bad ones are refused naming the path', () => {
  assert.equal(parseDuration('30s', 'd'), 30_000);
  assert.equal(parseDuration('5m', 'd'), 300_000);
  assert.equal(parseDuration('1500ms', 'd'), 1500);
  assert.equal(parseDuration('1h', 'd'), 3_600_000);
  assert.equal(parseDuration('7d', 'd'), LIMITS.phaseMs.max);
  assert.equal(parseDuration('1m30s', 'd'), 90_000);
  assert.equal(parseDuration('2.5s', 'd'), 2500);
  assert.equal(parseDuration('90', 'd'), 90_000, 'a bare number string: seconds');
  assert.equal(parseDuration(1.5, 'd'), 1500);
  for (const ms of [1000, 1500, 90_000, 3_723_004, 8 * 86_400_000 + 1]) assert.equal(parseDuration(formatDuration(ms), 'd', { minMs: 0, maxMs: Infinity }), ms, formatDuration(ms));

  throwsAt(() => parseDuration('5 minutes', 'phases[3].duration'), 'phases[3].duration', /"5 minutes" is not a duration/);
  throwsAt(() => parseDuration(0.5, 'duration'), 'duration', /at least 1s/);
  throwsAt(() => parseDuration(Number.NaN, 'duration'), 'duration', /finite/);
  for (const [bad, why] of [['5 minutes', /not a duration/], ['-1s', /not a duration/], ['0s', /at least 1s/], ['1e9h', /not a duration/], ['1000000000h', /at most 7d/], ['8d', /at most 7d/], ['', /not a duration/], ['s', /not a duration/]] as const) {
    throwsAt(() => planFromObject({ phases: [phase({}), phase({ duration: bad })] }), 'phases[1].duration', why);
  }
  throwsAt(() => plan1({ duration: -1 }), 'phases[0].duration', /at least 1s/);
  throwsAt(() => plan1({ duration: true }), 'phases[0].duration', /must be a number of seconds or a duration/);
  throwsAt(() => plan1({ duration: undefined }), 'phases[0].duration', /required/);
});

test('scenario - every built-in scenario builds a valid plan whose phases add up to the duration', () => {
  const o = { devices: 300, rate: 2, batchMs: 500, durationMs: 10 * 60_000 + 7 };
  assert.deepEqual(Object.keys(SCENARIOS).sort(), ['bad-actors', 'burst', 'clock-skew', 'flaky-network', 'hub-restart', 'influx-outage', 'offline-burst', 'ramp', 'reconnect-storm', 'steady']);
  for (const [name, s] of Object.entries(SCENARIOS)) {
    assert.ok(s.description.length > 10, name);
    for (const durationMs of [o.durationMs, 60_000, 3 * 86_400_000]) {
      const p = builtInPlan(name, { ...o, durationMs });
      assert.deepEqual(s.build({ ...o, durationMs }), p);
      assert.equal(p.name, name);
      assert.equal(p.durationMs, durationMs, name);
      assert.equal(p.phases.reduce((a, ph) => a + ph.durationMs, 0), durationMs, name);
      let start = 0;
      for (const ph of p.phases) {
        assert.equal(ph.startMs, start, `${name} ${ph.name}`);
        assert.ok(ph.durationMs >= 1000, `${name} ${ph.name}`);
        assert.equal(ph.batchMs, 500);
        start += ph.durationMs;
      }
      assert.equal(p.maxDevices, 300);
      assert.equal(new Set(p.phases.map((ph) => ph.name)).size, p.phases.length);
      assert.equal(describePlan(p).split('\n').length, 2 + p.phases.length);
    }
  }
  assert.deepEqual(builtInPlan('steady', o).phases.map((ph) => ph.kind), ['steady']);
  const ramp = builtInPlan('ramp', { ...o, durationMs: 100_000 });
  assert.deepEqual(ramp.phases.map((ph) => [ph.kind, ph.durationMs]), [['ramp', 25_000], ['steady', 75_000]]);
  assert.deepEqual(kindOf(ramp.phases[0], 'ramp').from.devices, 0);
  const burst = builtInPlan('burst', { ...o, durationMs: 100_000 });
  assert.deepEqual(burst.phases.map((ph) => [ph.kind, ph.durationMs]), [['steady', 40_000], ['burst', 20_000], ['steady', 40_000]]);
  assert.equal(kindOf(burst.phases[1], 'burst').factor, 10);
  const storm = builtInPlan('reconnect-storm', { ...o, durationMs: 60_000 });
  assert.deepEqual(storm.phases.map((ph) => [ph.kind, ph.startMs]), [['steady', 0], ['reconnect-storm', 20_000], ['steady', 30_000]]);
  const restart = builtInPlan('hub-restart', o);
  assert.deepEqual(restart.phases.filter((ph) => ph.kind === 'hub-restart').map((ph) => kindOf(ph, 'hub-restart').signal), ['SIGTERM', 'SIGKILL']);
  assert.deepEqual(kindOf(builtInPlan('bad-actors', o).phases[1], 'bad-actors').behaviours, [...BAD_ACTOR_BEHAVIOURS]);

  throwsAt(() => builtInPlan('stedy', o), 'scenario', /unknown scenario "stedy"/, /steady, ramp, burst, reconnect-storm/, /bad-actors/);
  throwsAt(() => builtInPlan('toString', o), 'scenario', /unknown scenario/);
  throwsAt(() => builtInPlan('burst', { ...o, durationMs: 3000 }), 'duration', /burst scenario needs a duration of 5s\.\./);
  throwsAt(() => builtInPlan('steady', { ...o, durationMs: 8 * 86_400_000 }), 'duration', /7d/);
  throwsAt(() => builtInPlan('steady', { ...o, durationMs: Number.NaN }), 'duration', /NaN/);
  throwsAt(() => builtInPlan('steady', { ...o, devices: 2_000_000 }), 'devices', /at most 1000000/);
  throwsAt(() => builtInPlan('steady', { ...o, batchMs: 5 }), 'batchMs', /at least 10/);
});

test('scenario - an unknown kind is refused, the message listing the kinds; a missing kind too', () => {
  const e = throwsAt(() => planFromObject({ phases: [phase({}), phase({ kind: 'stedy' })] }), 'phases[1].kind', /unknown kind "stedy"/, /did you mean steady\?/);
  for (const k of PHASE_KINDS) assert.ok(e.message.includes(k.kind), k.kind);
  throwsAt(() => planFromObject({ phases: [{ duration: '5s' }] }), 'phases[0].kind', /required/, /steady, ramp/);
  throwsAt(() => planFromObject({ phases: [{ kind: 7, duration: '5s' }] }), 'phases[0].kind', /one of steady/);
  throwsAt(() => planFromObject({ phases: ['steady'] }), 'phases[0]', /must be a mapping/);
  assert.ok(PHASE_KINDS.every((k) => k.description.length > 10 && !k.description.includes('\n')));
});

test('scenario - an unknown key (a typo) is refused naming the key, before the missing key it stands for', () => {
  throwsAt(() => planFromObject({ phases: [{ kind: 'steady', durtion: '5m' }] }), 'phases[0].durtion',
    /unknown key "durtion" \(did you mean duration\? a steady phase takes kind, name, duration, devices, rate, batchMs\)/, /phases\[0\]\.duration: required/);
  throwsAt(() => planFromObject({ devics: 5, phases: [phase({})] }), 'devics', /did you mean devices\?/);
  throwsAt(() => plan1({ kind: 'ramp', to: { device: 5 } }), 'phases[0].to.device', /did you mean devices\?/);
  throwsAt(() => plan1({ kind: 'burst', factor: 2, rate: 1, sharee: 1 }), 'phases[0].sharee', /a burst phase takes/);
  // A key of another kind is unknown to this one.
  throwsAt(() => plan1({ factor: 3 }), 'phases[0].factor', /unknown key "factor"/);
});

test('scenario - a missing duration, a share of 1.5, devices over the limit, 101 phases and a plan over 30 days are refused naming the path', () => {
  throwsAt(() => planFromObject({ phases: [phase({}), { kind: 'steady' }] }), 'phases[1].duration', /phases\[1\]\.duration: required/);
  throwsAt(() => plan1({ kind: 'clock-skew', share: 1.5, driftPpm: 10 }), 'phases[0].share', /at most 1 \(got 1\.5\)/);
  throwsAt(() => plan1({ kind: 'flaky-network', disconnectsPerDevicePerMin: 1, halfOpenShare: -0.1 }), 'phases[0].halfOpenShare', /at least 0/);
  throwsAt(() => plan1({}, { devices: 1_000_001 }), 'devices', /at most 1000000/);
  throwsAt(() => plan1({ devices: 2_000_000 }), 'phases[0].devices', /at most 1000000/);
  throwsAt(() => plan1({ devices: 1.5 }), 'phases[0].devices', /an integer/);
  throwsAt(() => plan1({ rate: 10_001 }), 'phases[0].rate', /at most 10000/);
  throwsAt(() => plan1({ batchMs: 9 }), 'phases[0].batchMs', /at least 10/);
  throwsAt(() => plan1({ rate: '5' }), 'phases[0].rate', /a number \(got "5"\)/);
  assert.equal(planFromObject({ phases: Array.from({ length: 100 }, () => phase({})) }).phases.length, 100);
  throwsAt(() => planFromObject({ phases: Array.from({ length: 101 }, () => phase({})) }), 'phases', /at most 100 phases \(got 101\)/);
  throwsAt(() => planFromObject({ phases: [] }), 'phases', /at least 1 phase/);
  throwsAt(() => planFromObject({}), 'phases', /required/);
  throwsAt(() => planFromObject({ phases: Array.from({ length: 5 }, () => phase({ duration: '7d' })) }), 'phases', /35d, over the 30d/);
  // All problems, joined; the path is the first one's.
  const e = throwsAt(() => planFromObject({ rate: -1, phases: [phase({ devices: -1 }), { kind: 'bad-actors', duration: 5, share: 2 }] }), 'rate');
  assert.equal(e.message, 'rate: must be at least 0 (got -1); phases[0].devices: must be at least 0 (got -1); phases[1].share: must be at most 1 (got 2)');
});

test('scenario - the kinds: their options, defaults, and the checks across options', () => {
  const one = (p: Record<string, unknown>) => planFromObject({ phases: [phase({ duration: '1m', ...p })] }).phases[0];
  assert.deepEqual(kindOf(one({ kind: 'reconnect-storm' }), 'reconnect-storm').how, 'drop');
  assert.equal(kindOf(one({ kind: 'reconnect-storm', how: 'close', returnWithinMs: '10s' }), 'reconnect-storm').returnWithinMs, 10_000);
  throwsAt(() => one({ kind: 'reconnect-storm', how: 'slam' }), 'phases[0].how', /one of close, drop \(got "slam"\)/);
  throwsAt(() => one({ kind: 'reconnect-storm', returnWithinMs: '2m' }), 'phases[0].returnWithinMs', /at most the phase's duration/);
  const skew = kindOf(one({ kind: 'clock-skew', share: 0.3, offsetMs: '-5m' }), 'clock-skew');
  assert.deepEqual([skew.share, skew.driftPpm, skew.offsetMs], [0.3, 0, -300_000]);
  assert.equal(kindOf(one({ kind: 'clock-skew', share: 0.3, offsetMs: -1500, driftPpm: -20 }), 'clock-skew').offsetMs, -1500);
  throwsAt(() => one({ kind: 'clock-skew', share: 0.3 }), 'phases[0]', /driftPpm and\/or offsetMs/);
  throwsAt(() => one({ kind: 'clock-skew', share: 0.3, offsetMs: '-31d' }), 'phases[0].offsetMs', /30d/);
  assert.equal(kindOf(one({ kind: 'offline-burst', share: 0.5, offlineMs: 20_000 }), 'offline-burst').offlineMs, 20_000);
  throwsAt(() => one({ kind: 'offline-burst', share: 0.5, offlineMs: '1m' }), 'phases[0].offlineMs', /less than the phase's duration \(1m\)/);
  throwsAt(() => one({ kind: 'offline-burst', share: 0.5 }), 'phases[0].offlineMs', /required/);
  const restart = kindOf(one({ kind: 'hub-restart', command: 'docker compose up hub' }), 'hub-restart');
  assert.deepEqual([restart.signal, restart.atMs, restart.command], ['SIGTERM', 0, 'docker compose up hub']);
  throwsAt(() => one({ kind: 'hub-restart', signal: 'SIGHUP' }), 'phases[0].signal', /SIGTERM, SIGKILL/);
  throwsAt(() => one({ kind: 'hub-restart', atMs: 60_000 }), 'phases[0].atMs', /less than/);
  const outage = kindOf(one({ kind: 'influx-outage', atMs: '10s', downMs: '30s', stopCommand: 'docker stop influx', startCommand: 'docker start influx' }), 'influx-outage');
  assert.deepEqual([outage.atMs, outage.downMs, outage.stopCommand, outage.startCommand], [10_000, 30_000, 'docker stop influx', 'docker start influx']);
  throwsAt(() => one({ kind: 'influx-outage', atMs: '40s', downMs: '30s' }), 'phases[0].downMs', /atMs \+ downMs \(1m10s\)/);
  throwsAt(() => one({ kind: 'influx-outage', downMs: '30s', stopCommand: 'x' }), 'phases[0].startCommand', /both or neither/);
  throwsAt(() => one({ kind: 'influx-outage', downMs: 0 }), 'phases[0].downMs', /above 0/);
  assert.deepEqual(kindOf(one({ kind: 'bad-actors', share: 0.1 }), 'bad-actors').behaviours, ['slow-acker', 'window-abuser', 'garbage-frames', 'metric-explosion']);
  throwsAt(() => one({ kind: 'bad-actors', share: 0.1, behaviours: ['slow-acker', 'slow-acker'] }), 'phases[0].behaviours[1]', /twice/);
  throwsAt(() => one({ kind: 'bad-actors', share: 0.1, behaviours: ['nice'] }), 'phases[0].behaviours[0]', /slow-acker, window-abuser/);
  throwsAt(() => one({ kind: 'ramp', devices: 5, to: { devices: 6 } }), 'phases[0].devices', /not both/);
  throwsAt(() => one({ kind: 'burst' }), 'phases[0].factor', /required by burst \(the rate multiplied by `factor` for the phase\)/);
  throwsAt(() => one({ kind: 'burst', factor: 0 }), 'phases[0].factor', /above 0/);
});

test('scenario - files: syntax errors name the file and line; over 1 MiB, alias bombs, empty files and non-object tops are refused', (t) => {
  const dir = tempDir(t, 'scenario-bad-');
  const write = (name: string, text: string | Buffer) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };
  const yamlBad = write('bad.yaml', 'name: x\nphases:\n  - { kind: steady, duration: 5m\n  - { kind: burst }\n');
  throwsAt(() => loadScenarioFile(yamlBad), 'file', /bad\.yaml: line 4, column 3: not valid YAML: Flow map/);
  const dupKey = write('dup.yml', 'phases: []\nname: a\nname: b\n');
  throwsAt(() => loadScenarioFile(dupKey), 'file', /line 3, column 1: not valid YAML: Map keys must be unique/);
  const jsonBad = write('bad.json', '{\n  "phases": [\n    { "kind": "steady", "duration": "5m", }\n  ]\n}\n');
  throwsAt(() => loadScenarioFile(jsonBad), 'file', /bad\.json: line 3, column 43: not valid JSON: unexpected "}"/);
  throwsAt(() => loadScenarioFile(write('two.json', '{"phases": []}\n{}')), 'file', /line 2, column 1: not valid JSON: unexpected "\{"/);
  throwsAt(() => loadScenarioFile(write('key.json', '{"phases": [], name: "x"}')), 'file', /line 1, column 16: not valid JSON: unexpected "n"/);
  throwsAt(() => loadScenarioFile(write('cut.json', '{"phases": [')), 'file', /line 1, column 13: not valid JSON: the text ends too soon/);

  // Over 1 MiB: refused on its size, never parsed (it is not valid YAML either).
  const big = write('big.yaml', Buffer.alloc(LIMITS.fileBytes + 1, '['));
  throwsAt(() => loadScenarioFile(big), 'file', /over 1048576 bytes \(1 MiB\)/);
  const padded = `# ${'x'.repeat(LIMITS.fileBytes - 100)}\nphases: [{ kind: steady, duration: 5 }]\n`;
  assert.equal(loadScenarioFile(write('padded.yaml', padded)).phases.length, 1, 'just under 1 MiB is read');

  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]', 'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]', 'phases: [*e]', ''].join('\n');
  throwsAt(() => loadScenarioFile(write('bomb.yaml', bomb)), 'file', /aliases expand to too much/);
  // A few aliases are fine (and then the usual checks apply).
  throwsAt(() => loadScenarioFile(write('alias.yaml', 'x: &p { kind: steady, duration: 5 }\nphases: [*p, *p]\n')), 'x', /unknown key "x"/);

  throwsAt(() => loadScenarioFile(write('empty.yaml', '')), 'file', /is empty/);
  throwsAt(() => loadScenarioFile(write('blank.json', '  \n\n')), 'file', /is empty/);
  throwsAt(() => loadScenarioFile(write('comments.yaml', '# nothing yet\n')), 'file', /holds no scenario/);
  throwsAt(() => loadScenarioFile(join(dir, 'missing.yaml')), 'file', /cannot open/);
  throwsAt(() => loadScenarioFile(dir), 'file', /cannot read/);
  throwsAt(() => loadScenarioFile(write('latin1.yaml', Buffer.from([0x6e, 0x61, 0x6d, 0x65, 0x3a, 0x20, 0xe9, 0x0a]))), 'file', /not UTF-8/);

  throwsAt(() => loadScenarioFile(write('list.yaml', '- kind: steady\n  duration: 5m\n')), '', /list\.yaml: a scenario must be a mapping with phases \(got a list\)/);
  throwsAt(() => loadScenarioFile(write('string.json', '"steady"')), '', /got "steady"/);
  throwsAt(() => loadScenarioFile(write('number.yml', '42\n')), '', /got 42/);
  throwsAt(() => planFromObject(null), '', /got null/);
  throwsAt(() => planFromObject(undefined), '', /got nothing/);
  // Errors in a file's scenario carry its name and the path.
  throwsAt(() => loadScenarioFile(write('typo.yaml', 'phases:\n  - { kind: steady, durtion: 5m }\n')), 'phases[0].durtion', /^.*typo\.yaml: phases\[0\]\.durtion: unknown key/);
});

test('scenario - describePlan: a line for the plan, then each phase with its start, name, kind, duration, devices and rate', () => {
  const text = describePlan(planFromObject(EXAMPLE));
  const lines = text.split('\n');
  assert.equal(lines[0], 'my-test: 4 phases, 10m, up to 2000 devices');
  assert.equal(lines.length, 2 + 4);
  assert.match(lines[1] ?? '', /start\s+name\s+kind\s+duration\s+devices\s+rate/);
  assert.match(lines[2] ?? '', /^ {2}\+0s\s+ramp\s+ramp\s+2m\s+0->2000\s+1\/s$/);
  assert.match(lines[3] ?? '', /^ {2}\+2m\s+steady\s+steady\s+5m\s+2000\s+1\/s$/);
  assert.match(lines[4] ?? '', /^ {2}\+7m\s+reconnect-storm\s+reconnect-storm\s+1m\s+2000\s+1\/s\s+drop, back within 0s$/);
  assert.match(lines[5] ?? '', /^ {2}\+8m\s+hub-restart\s+hub-restart\s+2m\s+2000\s+1\/s\s+SIGKILL at \+30s$/);
  for (const name of Object.keys(SCENARIOS)) assert.match(describePlan(builtInPlan(name, { devices: 10, rate: 1, batchMs: 1000, durationMs: 60_000 })), new RegExp(`^${name}: \\d phases?, 1m, up to 10 devices`));
});
