// The sink depends on the SpoolReader interface, not the disk Spool: an
// in-memory log drives it here, against a stand-in /api/v2/write, and the
// reader's contract (commit only what was confirmed, in order) holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { createLogger } from '../src/core/log.ts';
import { HubMetrics } from '../src/core/metrics.ts';
import { InfluxSink } from '../src/sinks/influx/influx-sink.ts';
import { comparePos, type Position, type SpoolReader, type SpoolRecord } from '../src/spool/reader.ts';
import { tempDir } from '../../test/support/fs.ts';
import { batch } from './influx-batches.ts';

/** A log in memory: record i ends at {segment: 1, offset: i + 1}. */
class MemoryLog implements SpoolReader {
  readonly records: SpoolRecord[] = [];
  readonly commits: Position[] = [];
  checkpoint: Position = { segment: 1, offset: 0 };
  readonly #listeners = new Set<() => void>();

  get head(): Position { return { segment: 1, offset: this.records.length }; }

  append(...batches: ReturnType<typeof batch>[]): void {
    for (const b of batches) this.records.push({ batch: b, end: { segment: 1, offset: this.records.length + 1 } });
    for (const listener of this.#listeners) listener();
  }

  readFrom(from: Position): Promise<{ records: SpoolRecord[]; next: Position }> {
    const records = this.records.slice(from.offset, from.offset + 3);
    return Promise.resolve({ records, next: records.at(-1)?.end ?? from });
  }

  commit(upTo: Position): void {
    if (comparePos(upTo, this.checkpoint) <= 0) return;
    this.checkpoint = upTo;
    this.commits.push(upTo);
  }

  onDurable(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

test('influx sink - ships from any SpoolReader: commits only what InfluxDB confirmed, in log order', async (t) => {
  const received: string[] = [];
  let writes = 0;
  let commitsWhenFailing = -1;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    req.on('end', () => {
      if (!req.url?.startsWith('/api/v2/write')) { res.writeHead(204).end(); return; }
      // The first write fails: nothing may be committed for it.
      if (++writes === 1) { commitsWhenFailing = log.commits.length; res.writeHead(500, { 'content-type': 'application/json' }).end('{"message":"busy"}'); return; }
      received.push(...body.split('\n').filter(Boolean));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const dir = tempDir(t, 'sink-reader-');

  const log = new MemoryLog();
  const sink = new InfluxSink({
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, token: 't', org: 'o', bucket: 'b',
    spool: log, log: createLogger('silent'), metrics: new HubMetrics(), deadLetterFile: join(dir, 'dl.ndjson'),
    batchLines: 20, maxInFlight: 1, backoffBaseMs: 20, backoffCapMs: 20, probeIntervalMs: 10,
  });
  sink.start();
  t.after(() => sink.close(Date.now() + 1000));
  log.append(...Array.from({ length: 7 }, (_, i) => batch('dev-1', i + 1, { n: 4 })));

  const end = Date.now() + 10_000;
  while (comparePos(log.checkpoint, log.head) < 0) {
    assert.ok(Date.now() < end, `checkpoint ${JSON.stringify(log.checkpoint)} never reached the head`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(received.length, 28, 'every reading written once it succeeded');
  assert.ok(writes >= 2, 'the failed write was retried');
  assert.equal(commitsWhenFailing, 0);
  assert.equal(log.commits[0]?.offset, 3, 'the first commit covers the first chunk, confirmed by the retry');
  assert.equal(sink.status().linesWritten, 28);
  // Committed in order, each at a record end, the last at the head.
  for (let i = 1; i < log.commits.length; i++) assert.ok(comparePos(log.commits[i - 1]!, log.commits[i]!) < 0);
  assert.deepEqual(log.commits.at(-1), log.head);
  assert.ok(log.commits.every((p) => p.segment === 1 && Number.isInteger(p.offset) && p.offset >= 1 && p.offset <= 7));
});
