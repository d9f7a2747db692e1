// Prints the README's configuration table from CONFIG_KEYS, so the docs
// cannot drift from the code (a test compares the two).
import { CONFIG_KEYS } from '../core/config.ts';

export function configTable(): string {
  const rows = ['| Variable | Default | Range | Meaning |', '| --- | --- | --- | --- |'];
  for (const def of Object.values(CONFIG_KEYS) as { env: string; default: unknown; min?: number; max?: number; values?: readonly string[]; doc: string }[]) {
    const dflt = def.default === undefined ? '(unset)' : `\`${typeof def.default === 'string' ? def.default : JSON.stringify(def.default)}\``;
    const range = def.values ? def.values.join(' \\| ') : def.min !== undefined ? `${def.min}..${def.max}` : '';
    rows.push(`| \`${def.env}\` | ${dflt} | ${range} | ${def.doc.replace(/\|/g, '\\|')} |`);
  }
  return rows.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(configTable());
