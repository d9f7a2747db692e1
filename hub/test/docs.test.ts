// Docs stay true: the README's config table is the one the code describes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { configTable } from '../src/tools/config-table.ts';

test('docs - README config table matches CONFIG_KEYS (regenerate: npx tsx hub/src/tools/config-table.ts)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(configTable()), 'README.md configuration table is stale');
});
