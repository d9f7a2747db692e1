// The dead-letter file is bounded: it rotates at its cap, keeps one older
// file, is owner-only, and its size is a metric.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HubMetrics } from '../src/core/metrics.ts';
import { DeadLetterFile } from '../src/sinks/influx/dead-letters.ts';
import { tempDir } from '../../test/support/fs.ts';

const record = (i: number) => ({ status: 400, reason: 'HTTP 400: unable to parse: invalid tag format', line: `m,device=d${i},unit=x value=${i} ${1_700_000_000_000 + i}` });

async function records(path: string) {
  return (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { status: number; reason: string; line: string; truncated?: boolean });
}

test('dead letters - rotate at the cap: at most two files of at most the cap, the newest record in the current one, the oldest ones gone', async (t) => {
  const dir = tempDir(t, 'dead-letters-');
  const metrics = new HubMetrics();
  const cap = 4096;
  const file = new DeadLetterFile({ path: join(dir, 'dead-letter.ndjson'), maxBytes: cap, metrics });
  // 1000 records (~150 B each, ~150 KB) in appends of 7, some concurrent.
  const appends: Promise<void>[] = [];
  for (let i = 0; i < 1000; i += 7) appends.push(file.append(Array.from({ length: Math.min(7, 1000 - i) }, (_, k) => record(i + k))));
  await Promise.all(appends);
  const current = await stat(join(dir, 'dead-letter.ndjson'));
  const rotated = await stat(join(dir, 'dead-letter.1.ndjson'));
  assert.ok(current.size <= cap && rotated.size <= cap, `${current.size} and ${rotated.size} bytes`);
  assert.ok(rotated.size > cap / 2, 'a rotated file is (nearly) full');
  assert.equal(current.mode & 0o777, 0o600);
  assert.equal(rotated.mode & 0o777, 0o600);
  const newest = await records(join(dir, 'dead-letter.ndjson'));
  const older = await records(join(dir, 'dead-letter.1.ndjson'));
  assert.equal(newest.at(-1)!.line, record(999).line);
  // In order, contiguous across the two files, nothing else kept.
  const kept = [...older, ...newest].map((r) => Number(/device=d(\d+)/.exec(r.line)![1]));
  assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => 1000 - kept.length + i));
  assert.ok(kept.length < 100);
  const rotations = await metrics.value('hub_sink_dead_letter_rotations_total');
  assert.ok(rotations >= 150_000 / cap - 5, `${rotations} rotations`);
  assert.equal(await metrics.value('hub_sink_dead_letter_bytes'), current.size + rotated.size);
  assert.equal(file.bytes, current.size + rotated.size);
});

test('dead letters - a record larger than the cap is truncated to fit, and says so', async (t) => {
  const dir = tempDir(t, 'dead-letters-');
  const file = new DeadLetterFile({ path: join(dir, 'dl.ndjson'), maxBytes: 4096, metrics: new HubMetrics() });
  await file.append([{ status: 400, reason: 'r'.repeat(10_000), line: 'ü'.repeat(50_000) }]);
  const size = (await stat(join(dir, 'dl.ndjson'))).size;
  assert.ok(size <= 4096, `${size} bytes`);
  const [r] = await records(join(dir, 'dl.ndjson'));
  assert.equal(r!.truncated, true);
  assert.ok(r!.line.length > 0 && r!.line.length < 4096);
});

test('dead letters - a file from an older version is made owner-only and counted; a hand-deleted file is started afresh', async (t) => {
  const dir = tempDir(t, 'dead-letters-');
  const path = join(dir, 'dead-letter.ndjson');
  await writeFile(path, JSON.stringify(record(0)) + '\n', { mode: 0o644 });
  const metrics = new HubMetrics();
  const file = new DeadLetterFile({ path, maxBytes: 1 << 20, metrics });
  await file.append([record(1)]);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await records(path)).length, 2);
  assert.equal(await metrics.value('hub_sink_dead_letter_bytes'), (await stat(path)).size);
  await rm(path);
  await file.append([record(2)]);
  assert.ok(existsSync(path));
  assert.equal((await records(path)).length, 1);
});
