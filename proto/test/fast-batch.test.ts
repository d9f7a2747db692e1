// decodeBatchMessage against the generated decoder: on every input it either
// gives up (null) or gives exactly what decodeDeviceMessage gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ColumnSlab, decodeBatchMessage, decodeDeviceMessage, decodeHubMessage, encodeAckMessage, encodeDeviceMessage, encodeHubMessage, type Batch, type ColumnBatch } from '../src/index.ts';
import { seededRandom } from '../../test/support/random.ts';


interface Plain { seq: number; baseTimeMs: number; sentTimeMs: number; defs: { id: number; name: string; unit: string }[]; ids: number[]; offsets: number[]; values: number[] }

function plainOfFull(bytes: Uint8Array): Plain | Error {
  let m;
  try { m = decodeDeviceMessage(bytes); } catch (err) { return err as Error; }
  if (m.msg !== 'batch' || !m.batch) return new Error(`not a batch: ${m.msg}`);
  const b = m.batch;
  return {
    seq: Number(b.seq ?? 0), baseTimeMs: Number(b.baseTimeMs ?? 0), sentTimeMs: Number(b.sentTimeMs ?? 0),
    defs: (b.metricDefs ?? []).map((d) => ({ id: d.id ?? 0, name: d.name ?? '', unit: d.unit ?? '' })),
    ids: [...(b.metricIds ?? [])], offsets: (b.timeOffsetsMs ?? []).map(Number), values: [...(b.values ?? [])],
  };
}

function plainOfFast(b: ColumnBatch): Plain {
  return {
    seq: b.seq, baseTimeMs: b.baseTimeMs, sentTimeMs: b.sentTimeMs,
    defs: b.metricDefs.map((d) => ({ id: d.id ?? 0, name: d.name ?? '', unit: d.unit ?? '' })),
    ids: [...b.metricIds], offsets: [...b.timeOffsetsMs], values: [...b.values],
  };
}

/** Same numbers, with -0 told from 0 and NaN equal to NaN. */
function assertSame(fast: Plain, full: Plain, what: string): void {
  const { values: fv, ...fr } = fast;
  const { values: gv, ...gr } = full;
  assert.deepEqual(fr, gr, what);
  assert.equal(fv.length, gv.length, what);
  for (let i = 0; i < fv.length; i++) assert.ok(Object.is(fv[i], gv[i]), `${what}: value ${i}: ${fv[i]} vs ${gv[i]}`);
}

function randomBatch(r: () => number): Batch {
  const n = Math.floor(r() * 40);
  const metrics = 1 + Math.floor(r() * 6);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const big = (): number => pick([0, 1, 127, 128, 16_383, 16_384, 1_700_000_000_000 + Math.floor(r() * 1e9), 2 ** 32, 2 ** 53 - 1]);
  return {
    seq: big(),
    baseTimeMs: big(),
    sentTimeMs: pick([0, big()]),
    metricDefs: r() < 0.5 ? Array.from({ length: metrics }, (_, i) => ({ id: i + Math.floor(r() * 3), name: pick(['temperature', 'humidity', 'pressure', 'b', 'x.y:z-1', 'é']), unit: pick(['', 'degC', '%', 'hPa']) })) : [],
    metricIds: Array.from({ length: n }, () => pick([0, 1, 2, 3, 127, 128, 300, 2 ** 31, 2 ** 32 - 1])),
    timeOffsetsMs: Array.from({ length: n }, () => pick([0, 1, -1, 63, -64, 64, 1000, -1000, 86_400_000, -(2 ** 40), 2 ** 51])),
    values: Array.from({ length: n }, () => pick([0, -0, 1.5, -273.15, Number.MAX_VALUE, Number.MIN_VALUE, 5e-324, NaN, Infinity, -Infinity, r() * 1000])),
  };
}

test('fast batch - encoder output decodes to what the generated decoder gives, with typed arrays', () => {
  const r = seededRandom(1);
  for (let k = 0; k < 3000; k++) {
    const batch = randomBatch(r);
    const bytes = encodeDeviceMessage({ batch });
    const fast = decodeBatchMessage(bytes);
    assert.ok(fast, `case ${k}: the common encoding takes the fast path`);
    assert.ok(fast.metricIds instanceof Uint32Array && fast.timeOffsetsMs instanceof Float64Array && fast.values instanceof Float64Array);
    const full = plainOfFull(bytes);
    assert.ok(!(full instanceof Error), full instanceof Error ? full.message : '');
    assertSame(plainOfFast(fast), full, `case ${k}`);
  }
});

test('fast batch - mutated, truncated and extended messages: null, or exactly the generated decoder\'s result', () => {
  const r = seededRandom(2);
  let fastTaken = 0;
  let rejectedByBoth = 0;
  for (let k = 0; k < 20_000; k++) {
    const bytes = Uint8Array.from(encodeDeviceMessage({ batch: randomBatch(r) }));
    let m: Uint8Array;
    const kind = Math.floor(r() * 4);
    if (kind === 0) { m = bytes.slice(); for (let f = 0; f <= Math.floor(r() * 3); f++) m[Math.floor(r() * m.length)] = Math.floor(r() * 256); }
    else if (kind === 1) m = bytes.subarray(0, Math.floor(r() * bytes.length));
    else if (kind === 2) { m = new Uint8Array(bytes.length + 3); m.set(bytes); m.set([Math.floor(r() * 256), Math.floor(r() * 256), Math.floor(r() * 256)], bytes.length); }
    else { m = bytes.slice(); const at = Math.floor(r() * m.length); m[at] = m[at]! ^ 0x80; }
    const fast = decodeBatchMessage(m);
    const full = plainOfFull(m);
    if (fast === null) { if (full instanceof Error) rejectedByBoth++; continue; }
    fastTaken++;
    assert.ok(!(full instanceof Error), `case ${k}: the fast path took bytes the generated decoder rejects (${full instanceof Error ? full.message : ''}): ${Buffer.from(m).toString('hex')}`);
    assertSame(plainOfFast(fast), full, `case ${k}: ${Buffer.from(m).toString('hex')}`);
  }
  assert.ok(fastTaken > 1000 && rejectedByBoth > 1000, `both outcomes exercised (${fastTaken} fast, ${rejectedByBoth} rejected by both)`);
});

test('fast batch - what it leaves to the generated decoder: other members, unpacked or repeated columns, unknown fields, negative or huge 64-bit numbers', () => {
  const valid = encodeDeviceMessage({ batch: { seq: 5, baseTimeMs: 1_700_000_000_000, metricIds: [1, 2], timeOffsetsMs: [0, 10], values: [1, 2] } });
  assert.ok(decodeBatchMessage(valid));
  const wrap = (inner: number[]): Uint8Array => Uint8Array.from([0x12, inner.length, ...inner]);
  const cases: [string, Uint8Array][] = [
    ['a Hello', encodeDeviceMessage({ hello: { protocolVersion: 1, firmware: 'x' } })],
    ['a CommandResult', encodeDeviceMessage({ commandResult: { id: 7, ok: true } })],
    ['metric ids unpacked', wrap([0x08, 0x05, 0x20, 0x01, 0x20, 0x02])],
    ['values unpacked', wrap([0x31, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])],
    ['metric ids twice', wrap([0x22, 0x01, 0x01, 0x22, 0x01, 0x02])],
    ['an unknown field', wrap([0x08, 0x05, 0x40, 0x01])],
    ['a negative base time', encodeDeviceMessage({ batch: { seq: 1, baseTimeMs: -5 } })],
    ['a seq of 2^60', encodeDeviceMessage({ batch: { seq: 2 ** 60 } })],
    ['a metric id of 2^32 (truncated by uint32)', wrap([0x22, 0x05, 0x80, 0x80, 0x80, 0x80, 0x10])],
    ['a batch twice (merged)', new Uint8Array([...valid, ...valid])],
    ['values not a multiple of 8 bytes', wrap([0x32, 0x03, 1, 2, 3])],
  ];
  for (const [what, bytes] of cases) {
    assert.equal(decodeBatchMessage(bytes), null, what);
    const full = plainOfFull(bytes);
    // Whatever the generated decoder makes of it is what the hub then uses.
    assert.ok(full instanceof Error || typeof full.seq === 'number', what);
  }
  // Merged duplicates: the generated decoder concatenates, so the hub sees what the device sent.
  const merged = plainOfFull(new Uint8Array([...valid, ...valid]));
  assert.ok(!(merged instanceof Error));
  assert.deepEqual(merged.ids, [1, 2, 1, 2]);
});

test('fast batch - the columns do not share memory with the input, which uWS neuters after the handler returns', () => {
  const bytes = Uint8Array.from(encodeDeviceMessage({ batch: { seq: 1, metricIds: [1], timeOffsetsMs: [3], values: [42.5] } }));
  const fast = decodeBatchMessage(bytes);
  assert.ok(fast);
  bytes.fill(0);
  assert.equal(fast.values[0], 42.5);
  assert.notEqual(fast.values.buffer, bytes.buffer);
  assert.notEqual(fast.timeOffsetsMs.buffer, bytes.buffer);
});

test('column slab - arrays are zero-filled, never overlap, and large ones get a buffer of their own', () => {
  const slab = new ColumnSlab();
  const arrays = [];
  for (let i = 0; i < 5000; i++) {
    const a = i % 3 === 0 ? slab.float64(1 + (i % 50)) : i % 3 === 1 ? slab.uint32(i % 40) : slab.uint16(1 + (i % 30));
    assert.ok(a.every((x) => x === 0), 'zero-filled');
    a.fill(i % 250 + 1);
    assert.equal(a.byteOffset % 8, 0, 'aligned');
    arrays.push({ a, mark: i % 250 + 1 });
  }
  // Writing every array left every other array as it was: no two share bytes.
  for (const { a, mark } of arrays) assert.ok(a.every((x) => x === mark));
  const big = slab.float64(10_000);
  assert.equal(big.byteOffset, 0);
  assert.equal(big.buffer.byteLength, 80_000, 'a buffer of its own');
});

test('fast ack - the same bytes as the generated encoder for an Ack without reports', () => {
  const r = seededRandom(3);
  const seqs = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 32, 2 ** 53 - 1];
  for (let k = 0; k < 5000; k++) {
    const seq = k < seqs.length ? seqs[k]! : Math.floor(r() * 2 ** (1 + Math.floor(r() * 52)));
    const credit = Math.floor(r() * 3) === 0 ? 0 : Math.floor(r() * 1025);
    const fast = Buffer.from(encodeAckMessage(seq, credit)).toString('hex');
    assert.equal(fast, Buffer.from(encodeHubMessage({ ack: { seq, credit, reports: [] } })).toString('hex'), `seq ${seq} credit ${credit}`);
    const back = decodeHubMessage(encodeAckMessage(seq, credit));
    assert.equal(Number(back.ack?.seq ?? 0), seq);
  }
});
