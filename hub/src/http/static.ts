// http/: the built dashboard (dashboard/dist), served from memory. Hashed
// assets are immutable; index.html is never cached. Imports: nothing of ours.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { extname, join, relative, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.map': 'application/json',
  '.woff2': 'font/woff2', '.txt': 'text/plain; charset=utf-8',
};

/**
 * Sent with every HTML file of the dashboard. The built dashboard loads only
 * its own scripts and styles, talks to the hub's origin (fetch and the
 * /v1/live WebSocket: CSP3 'self' covers same-origin ws:/wss:), and needs
 * 'unsafe-inline' styles only because Svelte and Chart.js set style
 * attributes; Chart.js draws data: images. 'wasm-unsafe-eval' lets
 * long.js (bundled with protobufjs) compile its small WebAssembly helper; it
 * allows no JavaScript eval.
 */
export const DASHBOARD_CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export interface StaticFile { body: Buffer; type: string; etag: string; immutable: boolean }

export class StaticFiles {
  readonly files = new Map<string, StaticFile>();
  constructor(readonly dir: string | null) {
    if (!dir || !existsSync(join(dir, 'index.html'))) return;
    const walk = (d: string): void => {
      for (const name of readdirSync(d)) {
        const p = join(d, name);
        if (statSync(p).isDirectory()) { walk(p); continue; }
        const body = readFileSync(p);
        const url = '/' + relative(dir, p).split(sep).join('/');
        this.files.set(url, {
          body, type: TYPES[extname(p)] ?? 'application/octet-stream',
          etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`,
          immutable: url.startsWith('/assets/'),
        });
      }
    };
    walk(dir);
  }

  get built(): boolean { return this.files.has('/index.html'); }

  get(url: string): StaticFile | undefined {
    return this.files.get(url === '/' ? '/index.html' : url);
  }
}
