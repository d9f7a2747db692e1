// Device tags as an operator types them: one key=value per line (the
// register dialog, the device page), or key=value words (the tag filter).

/** The shape only; the hub checks the names (reserved ones, length) and says what is wrong. */
const TAG_KEY_RE = /^[^\s=]+$/;

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** "site=north\nzone=a" -> {site: 'north', zone: 'a'}; blank lines are skipped. */
export function parseTagLines(text: string): Parsed<Record<string, string>> {
  const tags: Record<string, string> = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq).trim();
    if (eq < 0 || !TAG_KEY_RE.test(key)) return { ok: false, error: `line ${i + 1}: write key=value (“${line.slice(0, 40)}”)` };
    if (Object.hasOwn(tags, key)) return { ok: false, error: `line ${i + 1}: tag ${key} given twice` };
    tags[key] = line.slice(eq + 1).trim();
  }
  return { ok: true, value: tags };
}

/** The inverse of parseTagLines. */
export function tagLines(tags: Readonly<Record<string, string>>): string {
  return Object.entries(tags).map(([k, v]) => `${k}=${v}`).join('\n');
}

/** "site=north zone=a" (spaces or commas between) -> [['site','north'], ['zone','a']]. */
export function parseTagFilter(text: string, max: number): Parsed<[string, string][]> {
  const out: [string, string][] = [];
  for (const word of text.split(/[\s,]+/)) {
    if (!word) continue;
    const eq = word.indexOf('=');
    if (eq <= 0) return { ok: false, error: `tag filter: key=value (“${word.slice(0, 40)}”)` };
    out.push([word.slice(0, eq), word.slice(eq + 1)]);
  }
  if (out.length > max) return { ok: false, error: `tag filter: at most ${max} tags` };
  return { ok: true, value: out };
}
