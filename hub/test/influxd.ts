// Test support: a real InfluxDB (Debian's influxd 1.6.7) on free loopback
// ports in a temp dir, and TEST-ONLY-V2-WRITE-ADAPTER: a small proxy that
// maps /api/v2/write (what the hub speaks; InfluxDB 1.8+, 2.x, 3.x serve it)
// to 1.6.7's /write. Everything else is the real server.
// Missing influxd is an error, never a skip: CI installs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/support/net.ts';
import { exitCode } from '../../test/support/proc.ts';
import { sleep } from '../../test/support/wait.ts';

const INFLUXD = process.env.INFLUXD ?? '/usr/bin/influxd';

export class Influxd {
  proc: ChildProcess | null = null;
  readonly dir: string;
  port = 0;
  #rpcPort = 0;
  log = '';

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'influxd-test-'));
  }

  /** Starts influxd and creates `db`. */
  static async start(db: string): Promise<Influxd> {
    if (!existsSync(INFLUXD)) throw new Error(`${INFLUXD} not found: install Debian's influxdb package (.ci/run does)`);
    const i = new Influxd();
    i.port = await freePort();
    i.#rpcPort = await freePort();
    await i.run();
    await i.query(`CREATE DATABASE "${db}"`);
    return i;
  }

  get url(): string { return `http://127.0.0.1:${this.port}`; }

  /** (Re)starts the server on the same ports and data. */
  async run(): Promise<void> {
    const d = this.dir;
    writeFileSync(join(d, 'influxd.conf'), `
reporting-disabled = true
bind-address = "127.0.0.1:${this.#rpcPort}"
[meta]
  dir = "${d}/meta"
[data]
  dir = "${d}/data"
  wal-dir = "${d}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[http]
  bind-address = "127.0.0.1:${this.port}"
  log-enabled = false
[ifql]
  enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
`);
    const proc = spawn(INFLUXD, ['run', '-config', join(d, 'influxd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout.on('data', (c: Buffer) => { this.log += c.toString(); });
    proc.stderr.on('data', (c: Buffer) => { this.log += c.toString(); });
    const end = Date.now() + 30_000;
    for (;;) {
      try {
        if ((await fetch(`${this.url}/ping`)).status === 204) return;
      } catch { /* starting */ }
      if (proc.exitCode !== null || Date.now() > end) throw new Error(`influxd did not start: ${this.log.slice(-2000)}`);
      await sleep(50);
    }
  }

  /** Stops the server (data stays). */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    p.kill('SIGTERM');
    await exitCode(p);
    this.proc = null;
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** InfluxQL on /query; returns the first statement's series. */
  async query(q: string, db?: string): Promise<{ name: string; tags?: Record<string, string>; columns: string[]; values: unknown[][] }[]> {
    const params = new URLSearchParams({ q, epoch: 'ms' });
    if (db) params.set('db', db);
    const res = await fetch(`${this.url}/query`, { method: 'POST', body: params });
    const body = await res.json() as { results?: { series?: never[]; error?: string }[]; error?: string };
    if (!res.ok || body.error || body.results?.[0]?.error) throw new Error(`query failed: ${JSON.stringify(body)}`);
    return body.results?.[0]?.series ?? [];
  }
}

/**
 * TEST-ONLY-V2-WRITE-ADAPTER. Maps POST /api/v2/write?org=&bucket=&precision=
 * to POST /write?db=<bucket>&precision=<precision> on influxd 1.6.7 and the
 * 1.x error body {"error": ...} to 2.x's {"code","message"}. Passes the body
 * (gzip included) and status codes through; /ping goes to influxd as it is
 * (503 while it is down). Not part of the product.
 */
export async function startV2WriteAdapter(
  target: () => string,
  opts: { writeDelayMs?: number } = {},
): Promise<{ url: string; close: () => Promise<void>; requests: number; pings: number; writeMs: number }> {
  const state = { requests: 0, pings: 0, writeMs: 0 };
  const delay = opts.writeDelayMs ?? 0;
  // writeDelayMs: a slower database (e.g. over a network), for benchmarks; the body is read first.
  const server: Server = createServer((req, res) => {
    if (delay > 0 && req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => setTimeout(() => handle(req, res, Buffer.concat(chunks)), delay));
      return;
    }
    handle(req, res, null);
  });
  const handle = (req: IncomingMessage, res: ServerResponse, body: Buffer | null): void => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/ping') {
      state.pings++;
      // The real server's health check, so the sink sees influxd go down and come back.
      const t = new URL(target());
      const up = request({ host: t.hostname, port: t.port, method: req.method, path: '/ping' }, (upRes: IncomingMessage) => {
        upRes.resume();
        res.writeHead(upRes.statusCode ?? 502).end();
      });
      up.on('error', () => { if (!res.headersSent) res.writeHead(503).end(); });
      up.end();
      return;
    }
    if (req.method !== 'POST' || u.pathname !== '/api/v2/write') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'not found', message: 'test adapter serves only POST /api/v2/write and /ping' }));
      return;
    }
    state.requests++;
    const started = performance.now();
    const q = new URLSearchParams({ db: u.searchParams.get('bucket') ?? '', precision: u.searchParams.get('precision') ?? 'ns' });
    const t = new URL(target());
    const up = request({
      host: t.hostname, port: t.port, method: 'POST', path: `/write?${q.toString()}`,
      headers: { 'content-type': 'text/plain; charset=utf-8', ...(req.headers['content-encoding'] ? { 'content-encoding': req.headers['content-encoding'] } : {}) },
    }, (upRes: IncomingMessage) => {
      let body = '';
      upRes.on('data', (c: Buffer) => { body += c.toString(); });
      upRes.on('end', () => {
        state.writeMs += performance.now() - started;
        const status = upRes.statusCode ?? 502;
        if (status >= 400) {
          let message = body;
          try { message = (JSON.parse(body) as { error?: string }).error ?? body; } catch { /* plain text */ }
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (upRes.headers['retry-after']) headers['retry-after'] = String(upRes.headers['retry-after']);
          res.writeHead(status, headers).end(JSON.stringify({ code: status === 400 ? 'invalid' : 'internal error', message }));
        } else {
          res.writeHead(status).end();
        }
      });
    });
    // influxd down: a gateway error, which the hub must treat as retryable.
    up.on('error', (err) => { if (!res.headersSent) res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'unavailable', message: err.message })); });
    if (body) up.end(body);
    else req.pipe(up);
  };
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    /** Write requests so far. */
    get requests() { return state.requests; },
    get pings() { return state.pings; },
    /** Milliseconds write requests took, summed: from their arrival to influxd's answer (benchmarks: over `requests`, the mean). */
    get writeMs() { return state.writeMs; },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
