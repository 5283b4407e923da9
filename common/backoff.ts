/**
 * Reconnect delays shared by every reconnecting peer of the data plane
 * (destinations, the proxy's gateway link): the first delay and the cap. The
 * `--backoff-min`/`--backoff-max` flag defaults are built from these.
 */
export const BACKOFF_DEFAULTS = {
  /** First reconnect delay: 100 ms. */
  minMs: 100,
  /** Reconnect delay cap: 10 s. */
  maxMs: 10_000,
} as const;

/**
 * Capped exponential backoff with "equal jitter" (half fixed, half random),
 * so a fleet that lost the same peer does not reconnect in step. `attempt`
 * counts from 0.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number): number {
  const exp = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return exp / 2 + Math.random() * (exp / 2);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
