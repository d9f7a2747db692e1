// Polling an API while a component is shown: one request at a time (a
// tick while one is in flight is skipped), aborted when stopped. The
// error callback gets what failed, but not sign-out (Unauthorized: the
// app sends the operator to /login) nor the abort on stop.
import { Unauthorized } from './api.ts';

/** Calls `load` now and every `everyMs`; returns stop (call it on destroy). */
export function poll(everyMs: number, load: (signal: AbortSignal) => Promise<void>, onError: (message: string) => void): () => void {
  const controller = new AbortController();
  let inflight = false;
  const tick = async (): Promise<void> => {
    if (inflight) return;
    inflight = true;
    try {
      await load(controller.signal);
    } catch (err) {
      if (!(err instanceof Unauthorized) && !controller.signal.aborted) onError(err instanceof Error ? err.message : String(err));
    } finally {
      inflight = false;
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), everyMs);
  return () => {
    clearInterval(timer);
    controller.abort();
  };
}
