// core/: which browser origins may use the hub's cookie-authenticated
// endpoints (sign-in, API writes, /v1/live). Imports: nothing of ours.

/** True when a browser Origin may use the hub (the allowlist, or the hub's own origin). */
export function originAllowed(origin: string, host: string, allowlist: string | undefined): boolean {
  if (!origin) return true; // not a browser: cross-site requests always carry Origin
  if (allowlist) return allowlist.split(',').map((o) => o.trim()).includes(origin);
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
