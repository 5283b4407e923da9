import type { DestinationState, DestinationStats } from "./destination.ts";
import type { RejectReason } from "./line-validator.ts";
import type { EngineStats } from "./relay-engine.ts";

// Least healthy first: an aggregated destination shows its worst worker's state.
const STATE_ORDER: readonly DestinationState[] = [
  "closed",
  "backoff",
  "connecting",
  "draining",
  "connected",
];

/** Sums the engines of a process group into one view. */
export function mergeStats(all: readonly EngineStats[]): EngineStats {
  const first = all[0];
  if (first === undefined) throw new Error("mergeStats needs at least one engine");
  const rejected = { ...first.rejected };
  const dests = new Map<string, DestinationStats>();
  const out: EngineStats = { ...first, rejected, destinations: [] };
  for (const d of first.destinations) dests.set(d.id, { ...d });
  for (const s of all.slice(1)) {
    out.received += s.received;
    out.connections += s.connections;
    out.connectionsTotal += s.connectionsTotal;
    out.connectionsRefused += s.connectionsRefused;
    out.bytesIn += s.bytesIn;
    out.undelivered += s.undelivered;
    out.paused ||= s.paused;
    for (const [k, v] of Object.entries(s.rejected)) rejected[k as RejectReason] += v;
    for (const d of s.destinations) {
      const m = dests.get(d.id);
      if (m === undefined) {
        dests.set(d.id, { ...d });
        continue;
      }
      m.forwarded += d.forwarded;
      m.resent += d.resent;
      m.dropped += d.dropped;
      m.queuedLines += d.queuedLines;
      m.queuedBytes += d.queuedBytes;
      m.connects += d.connects;
      m.failures += d.failures;
      if (STATE_ORDER.indexOf(d.state) < STATE_ORDER.indexOf(m.state)) m.state = d.state;
      m.lastError ??= d.lastError;
    }
  }
  out.destinations = [...dests.values()];
  return out;
}
