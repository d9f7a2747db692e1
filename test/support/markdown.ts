// Test support (not a test file): reading a markdown document's sections
// and tables, for the tests that hold the docs to the code. Imports
// nothing (.dependency-cruiser.cjs: test-support-imports-only-node-builtins).

/** The text under the first heading (levels 2-4) that starts with `title`, up to the next heading of the same or a higher level; null when there is none. */
export function markdownSection(doc: string, title: string): string | null {
  const lines = doc.split('\n');
  const start = lines.findIndex((l) => /^#{2,4} /.test(l) && l.replace(/^#+ /, '').startsWith(title));
  if (start < 0) return null;
  const level = /^#+/.exec(lines[start] ?? '')?.[0].length ?? 0;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    const m = /^(#+) /.exec(lines[i] ?? '');
    if (m && (m[1]?.length ?? 0) <= level) { end = i; break; }
  }
  return lines.slice(start + 1, end).join('\n');
}

/** Rows of the markdown tables in `text`, as cells (header separator rows dropped; `\|` stays inside a cell). */
export function tableRows(text: string): string[][] {
  return text.split('\n')
    .filter((l) => l.startsWith('|') && !/^\|\s*-/.test(l))
    .map((l) => l.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
}
