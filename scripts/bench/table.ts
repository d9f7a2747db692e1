// scripts/bench/: how `npm run bench` prints: one table per comparison,
// columns aligned (numbers to the right), a title above and notes below.

export type Cell = string | number | null | undefined;

export interface Table {
  title: string;
  /** One line each, under the title: what is measured, how. */
  subtitle?: string[];
  columns: string[];
  rows: Cell[][];
  /** Preformatted lines printed as they are after the rows (another script's own output). */
  block?: string[];
  /** One line each, under the table. */
  notes?: string[];
}

/** A number with thousands separators and `d` decimals; '-' for a missing value. */
export function fmt(n: number | null | undefined, d = 0): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '-';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  return n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
}

/** A number with about three significant digits (0.0123, 1.23, 12.3, 1,234). */
export function sig(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '-';
  const a = Math.abs(n);
  if (a === 0) return '0';
  if (a >= 100) return fmt(n, 0);
  if (a >= 10) return fmt(n, 1);
  if (a >= 1) return fmt(n, 2);
  return n.toPrecision(3);
}

/** A ratio as `3.40x`. */
export function ratio(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  return `${n >= 10 ? n.toFixed(1) : n.toFixed(2)}x`;
}

const cellText = (c: Cell): string => (c === null || c === undefined ? '-' : typeof c === 'number' ? sig(c) : c);
const numeric = (s: string): boolean => /^[-+]?[\d,.]+(x| %| ms| KiB| MiB| s)?$|^-$|^inf$/.test(s);

export function renderTable(t: Table): string {
  const rows = t.rows.map((r) => r.map(cellText));
  const widths = t.columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[], header = false): string => cells
    .map((c, i) => (!header && numeric(c) && i > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
    .join('  ').trimEnd();
  const out = [`== ${t.title}`];
  for (const s of t.subtitle ?? []) out.push(`   ${s}`);
  if (rows.length) {
    out.push('', line(t.columns, true), widths.map((w) => '-'.repeat(w)).join('  '));
    for (const r of rows) out.push(line(r));
  }
  if (t.block?.length) out.push('', ...t.block.map((l) => `   ${l}`));
  if (t.notes?.length) out.push('', ...t.notes.map((n) => `   ${n}`));
  return out.join('\n');
}

/** The same table as GitHub markdown (for docs/BENCHMARKS.md). */
export function markdownTable(t: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const out: string[] = [];
  if (t.rows.length) {
    out.push(`| ${t.columns.map(esc).join(' | ')} |`, `| ${t.columns.map(() => '---').join(' | ')} |`);
    for (const r of t.rows) out.push(`| ${r.map((c) => esc(cellText(c))).join(' | ')} |`);
  }
  if (t.block?.length) out.push('```', ...t.block, '```');
  return out.join('\n');
}
