// http/: writing answers and reading request bodies, the uWS way: every
// write is corked, and a request body is read with a size bound.
// Imports: core (uws types), http/login (the sign-in page's CSP).
import type { UwsTypes } from '../core/uws.ts';
import { LOGIN_CSP } from './login.ts';

export type Res = UwsTypes.HttpResponse;
export type Req = UwsTypes.HttpRequest;
export type Header = [name: string, value: string];

/** Request bodies (sign-in, API) are at most this many bytes; larger ones are 413. */
export const MAX_BODY_BYTES = 16 * 1024;

export function json(res: Res, status: string, body: unknown, headers: Header[] = []): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'application/json').writeHeader('Cache-Control', 'no-store');
    for (const [name, value] of headers) res.writeHeader(name, value);
    res.end(JSON.stringify(body));
  });
}

export function text(res: Res, status: string, body: string): void {
  res.cork(() => res.writeStatus(status).writeHeader('Content-Type', 'text/plain; charset=utf-8').end(body + '\n'));
}

/** An HTML page of the hub's own (the sign-in page), never cached or framed. */
export function html(res: Res, status: string, body: string, headers: Header[] = []): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('Content-Type', 'text/html; charset=utf-8').writeHeader('Cache-Control', 'no-store')
      .writeHeader('X-Frame-Options', 'DENY').writeHeader('X-Content-Type-Options', 'nosniff').writeHeader('Content-Security-Policy', LOGIN_CSP);
    for (const [name, value] of headers) res.writeHeader(name, value);
    res.end(body);
  });
}

/** Retry-After in whole seconds (RFC 9110 §10.2.3), at least 1. */
export function retryAfter(ms: number): Header {
  return ['Retry-After', String(Math.max(1, Math.ceil(ms / 1000)))];
}

/** Set once the client has gone: a late answer must not touch `res` then. */
export interface AbortState { aborted: boolean }

/** uWS rule: register onAborted before any async work (and only once per request). */
export function watchAborted(res: Res): AbortState {
  const state: AbortState = { aborted: false };
  res.onAborted(() => { state.aborted = true; });
  return state;
}

/** Reads a request body up to `limit` bytes; null when it is larger (or the request was aborted). */
export function readBody(res: Res, limit: number, state: AbortState): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    res.onData((chunk, last) => {
      if (done) return;
      received += chunk.byteLength;
      if (received > limit) { done = true; return resolve(null); }
      // uWS reuses the chunk's memory after this callback: copy it out.
      chunks.push(Buffer.from(chunk.slice(0)));
      if (last) { done = true; resolve(state.aborted ? null : Buffer.concat(chunks)); }
    });
  });
}
