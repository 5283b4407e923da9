import type { RouterConfig } from "../route/router.ts";

/**
 * polymur's own metrics as a rules file's `statistics` asks: its `submit
 * every N seconds` and `prefix with` override --metrics-flush and
 * --metrics-prefix, and without `reset counters after interval` counters are
 * totals since start, as carbon-c-relay reports them. Without a
 * `statistics` statement, the flags decide and counters are increases.
 */
export function statisticsSettings(
  config: RouterConfig,
  flushSec: number,
  prefix: string,
): { flushSec: number; prefix: string; cumulative: boolean } {
  const s = config.rules?.statistics ?? null;
  if (s === null) return { flushSec, prefix, cumulative: false };
  return {
    flushSec: s.intervalSec ?? flushSec,
    prefix: s.prefix ?? prefix,
    cumulative: !s.resetCounters,
  };
}
