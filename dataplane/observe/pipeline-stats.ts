import type { DestinationState, DestinationStats } from "../forward/destination.ts";
import type { IngestStats } from "../ingest/ingest-counters.ts";
import type { RejectReason } from "../ingest/line-validator.ts";
import type { RouterStats } from "../route/router.ts";

/**
 * Every counter of a pipeline (ingest → route → forward), of one process or
 * summed over a process group: what /stats, /metrics, self-metrics and the
 * control plane's node status report.
 */
export interface PipelineStats {
  /** Valid datapoints received. */
  received: number;
  /** Rejected lines, per reason. */
  rejected: Record<RejectReason, number>;
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  bytesIn: number;
  /**
   * Datapoints given up: at shutdown or on removal of a destination that
   * could not drain, and datagrams that arrived while ingest was paused.
   */
  undelivered: number;
  destinations: DestinationStats[];
  /** True while ingest is paused (a full queue under the block policy, or a full proxy buffer). */
  paused: boolean;
}

/** One process's pipeline counters; a proxy has no router (it forwards to a gateway). */
export function pipelineStats(ingest: IngestStats, router: RouterStats | null): PipelineStats {
  return {
    received: ingest.received,
    rejected: ingest.rejected,
    connections: ingest.connections,
    connectionsTotal: ingest.connectionsTotal,
    connectionsRefused: ingest.connectionsRefused,
    bytesIn: ingest.bytesIn,
    undelivered: ingest.droppedPaused + (router?.undelivered ?? 0),
    destinations: router?.destinations ?? [],
    paused: ingest.paused,
  };
}

// Least healthy first: an aggregated destination shows its worst worker's state.
const STATE_ORDER: readonly DestinationState[] = [
  "closed",
  "backoff",
  "connecting",
  "draining",
  "connected",
];

/** Sums the pipelines of a process group into one view. */
export function mergeStats(all: readonly PipelineStats[]): PipelineStats {
  const first = all[0];
  if (first === undefined) throw new Error("mergeStats needs at least one pipeline");
  const rejected = { ...first.rejected };
  const dests = new Map<string, DestinationStats>();
  const out: PipelineStats = { ...first, rejected, destinations: [] };
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
