// Calls back when files change content. The files' directories are watched,
// not the files: renewals (certbot, cert-manager) replace a file by rename,
// which a watch on the old file would never report. Events are debounced,
// since a renewal replaces a certificate and its key one after the other,
// and the callback runs only when the bytes differ from the last time.
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

export interface WatchContentOptions {
  debounceMs: number;
  /** A directory that cannot be watched (the caller says what to do instead). */
  onError: (err: unknown) => void;
}

/** Watches `files`; returns a function that stops watching. */
export function watchContent(files: readonly string[], onChange: () => void, opts: WatchContentOptions): () => void {
  const digest = (): string => {
    const h = createHash('sha256');
    for (const f of files) {
      // A missing file is a state too: its reappearance is a change.
      try { h.update(readFileSync(f)); } catch (err) { h.update(`unreadable:${(err as NodeJS.ErrnoException).code ?? ''}`); }
      h.update('\0');
    }
    return h.digest('hex');
  };
  let last = digest();
  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const now = digest();
      if (now === last) return;
      last = now;
      onChange();
    }, opts.debounceMs);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const dir of new Set(files.map((f) => dirname(f)))) {
    try {
      const w = watch(dir, changed);
      w.on('error', opts.onError);
      w.unref();
      watchers.push(w);
    } catch (err) {
      opts.onError(err);
    }
  }
  return () => {
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
