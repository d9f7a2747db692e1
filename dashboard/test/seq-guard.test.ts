// SeqGuard: the live protocol's no-gap rule for frame sequence numbers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeqGuard } from '../src/lib/seq-guard.ts';

test('SeqGuard flags gaps', () => {
  const g = new SeqGuard();
  assert.ok(g.accept(1));
  assert.ok(g.accept(2));
  assert.ok(!g.accept(4));
  assert.ok(g.accept(5));
  g.reset();
  assert.ok(g.accept(1));
});
