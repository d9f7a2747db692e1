// Docs stay true: the README's config table is the one the code describes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { configTable } from '../src/tools/config-table.ts';

test('docs - README config table matches CONFIG_KEYS (regenerate: npx tsx hub/src/tools/config-table.ts)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(configTable()), 'README.md configuration table is stale');
});

test('docs - docs/ARCHITECTURE.md has the module map dependency-cruiser finds (regenerate: npm run module-map)', async () => {
  const { moduleMap } = await import('../../scripts/module-map.ts');
  const doc = readFileSync(new URL('../../docs/ARCHITECTURE.md', import.meta.url), 'utf8');
  const m = /<!-- module-map -->\n```\n([\s\S]*?)\n```\n<!-- \/module-map -->/.exec(doc);
  assert.ok(m, 'docs/ARCHITECTURE.md has a module-map block');
  assert.equal(m[1], moduleMap(), 'docs/ARCHITECTURE.md module map is stale');
});
