// http/: the sign-in page. The only page served without a session; it
// shows no data. Self-contained (inline CSS), so it works before the
// dashboard is built. Imports: nothing of ours.

/** The sign-in page needs nothing but its inline style and its form. */
export const LOGIN_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export function loginPage(opts: { error?: string; user?: string } = {}): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Telemetry hub</title>
<style>
  body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: #f4f5f7; color: #1d2433;
    font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  form { background: #fff; border: 1px solid #dfe3ea; border-radius: 10px; padding: 28px 32px; width: 300px; box-shadow: 0 1px 3px #0001; }
  h1 { font-size: 18px; margin: 0 0 18px; }
  label { display: block; font-size: 13px; color: #4a5568; margin: 12px 0 4px; }
  input { width: 100%; box-sizing: border-box; padding: 8px 10px; border: 1px solid #c9ced8; border-radius: 6px; font: inherit; }
  button { margin-top: 20px; width: 100%; padding: 9px; border: 0; border-radius: 6px; background: #2f6fed; color: #fff; font: inherit; font-weight: 600; cursor: pointer; }
  .err { background: #fdecec; color: #9b1c1c; border-radius: 6px; padding: 8px 10px; font-size: 13px; margin-bottom: 8px; }
  .hint { font-size: 12px; color: #6b7280; margin-top: 16px; }
</style></head>
<body>
<form method="post" action="/login" data-testid="login-form">
  <h1>Telemetry hub</h1>
  ${opts.error ? `<div class="err" role="alert" data-testid="login-error">${esc(opts.error)}</div>` : ''}
  <label for="user">Operator</label>
  <input id="user" name="user" autocomplete="username" required value="${esc(opts.user ?? 'admin')}">
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Sign in</button>
  <p class="hint">The first start prints the admin password. Set one with <code>npm run operator -- admin</code>.</p>
</form>
</body></html>
`;
}
