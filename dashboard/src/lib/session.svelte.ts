// Who is signed in and what they may do, from GET /api/v1/me at startup.
// Until the answer is in, the role is null and everything an admin only
// may do stays hidden (the hub refuses a viewer's writes either way).
import { fetchMe, type Role } from './api.ts';

class Session {
  user = $state<string | null>(null);
  role = $state<Role | null>(null);
  #loading: Promise<void> | null = null;

  /** An admin: registers, changes and deletes devices, edits rules, reads the audit trail. */
  get admin(): boolean {
    return this.role === 'admin';
  }

  /** Asks the hub once at a time; failures leave the role unknown (ask again later). */
  load(): Promise<void> {
    this.#loading ??= fetchMe()
      .then(
        (me) => {
          this.user = me.user;
          this.role = me.role;
        },
        () => {},
      )
      .finally(() => (this.#loading = null));
    return this.#loading;
  }
}

export const session = new Session();
