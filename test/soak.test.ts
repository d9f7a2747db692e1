// The soak as users run it (`npm run soak`), shortened to one minute and 50
// devices: through the compiled hub into a real InfluxDB, the hub stopped
// and killed and started again, InfluxDB stopped, a reconnect storm; the
// JSON verdict passes with every acked reading in InfluxDB exactly once and
// both restarts recorded. Counts only, no timings.
// Imports: node:test, node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';

const root = resolve(import.meta.dirname, '..');

test('soak - one minute with hub restarts, an InfluxDB outage and a reconnect storm: nothing lost, nothing doubled, the verdict passes', async () => {
  let stdout = '';
  try {
    ({ stdout } = await promisify(execFile)(process.execPath, ['--conditions=@telemetry/source', '--import', 'tsx', 'scripts/soak.ts', '--minutes', '1', '--devices', '50', '--json'], {
      cwd: root, timeout: 600_000, maxBuffer: 16 << 20,
    }));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    assert.fail(`the soak failed: ${e.stdout ?? ''}\n${(e.stderr ?? String(err)).slice(-4000)}`);
  }
  const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
    pass: boolean; restarts: { signal: string }[]; faults: { what: string }[];
    storage: { expected: number; stored: number; missing: number; doubled: number }; loss: { readings: number }; counters: { readingsAcked: number };
  };
  assert.equal(r.pass, true, JSON.stringify(r));
  assert.deepEqual(r.restarts.map((x) => x.signal), ['SIGTERM', 'SIGKILL']);
  assert.ok(r.faults.some((f) => f.what === 'InfluxDB stopped'));
  assert.ok(r.storage.expected > 0 && r.storage.expected === r.counters.readingsAcked);
  assert.deepEqual([r.storage.stored, r.storage.missing, r.storage.doubled, r.loss.readings], [r.storage.expected, 0, 0, 0]);
});
