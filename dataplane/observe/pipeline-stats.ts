import {
  type DestinationStats,
  DROP_REASONS,
  type DropReason,
  mergeDestinations,
  noDrops,
} from "../forward/destination-stats.ts";
import type { IngestStats } from "../ingest/ingest-counters.ts";
import { REJECT_REASONS, type RejectReason } from "../ingest/line-validator.ts";
import { type ListenerStats, mergeListeners } from "../ingest/listener-counters.ts";
import type { AggregationStats } from "../route/aggregation.ts";
import type { RouterStats } from "../route/router.ts";

/**
 * Why valid lines went to no destination: none was configured (or none is in
 * the ring), ingest was paused when a datagram came (it cannot wait), or a
 * rules file sent them nowhere (no rule matched, only the blackhole, or a
 * validate clause stopped them).
 */
export type UnroutedReason =
  | "no_destination"
  | "ingest_paused"
  | "no_match"
  | "blackhole"
  | "validate";
export const UNROUTED_REASONS: readonly UnroutedReason[] = [
  "no_destination",
  "ingest_paused",
  "no_match",
  "blackhole",
  "validate",
];

/**
 * Every counter of a pipeline (ingest → route → forward), of one process or
 * summed over a process group: what /stats, /metrics, self-metrics and the
 * control plane's node status report. Every line received is in exactly one
 * of rejected, unrouted, routed (see `datapointTotals`).
 */
export interface PipelineStats {
  /** Every line read (valid or not), and polymur's own lines (`generated`). */
  received: number;
  /** Of received: lines polymur made itself (self-metrics). */
  generated: number;
  /** Rejected lines, per reason. */
  rejected: Record<RejectReason, number>;
  /** Valid lines that went to no destination, per reason. */
  unrouted: Record<UnroutedReason, number>;
  /** Valid lines given to at least one destination. */
  routed: number;
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  /** Sender connections closed for sending nothing for --idle-timeout. */
  connectionsIdleClosed: number;
  bytesIn: number;
  /** Each listener's own counts: plaintext, pickle, unix, udp (a gateway has none). */
  listeners: ListenerStats[];
  /** Every destination, current and removed (see RouterStats). */
  destinations: DestinationStats[];
  /** True while ingest is paused (a full queue under the block policy, or a full proxy buffer). */
  paused: boolean;
  /** A rules file's aggregate rules: what they took and wrote; null without any. */
  aggregation: AggregationStats | null;
}

/**
 * The `datapoints` object of /stats: the terms of a node's accounting.
 *
 *   received = rejected + unrouted + routed
 *   per destination: routed + recovered = forwarded + queued + dropped + undelivered + rerouted
 *
 * recovered, forwarded, queued, dropped, undelivered (and unconfirmed,
 * resent, rerouted) are summed over destinations. With one destination, or
 * in hash routing with one replica and nothing re-routed, routed + recovered
 * is their sum: received + recovered = rejected + unrouted + forwarded +
 * queued + dropped + undelivered.
 */
export interface DatapointTotals {
  received: number;
  rejected: number;
  unrouted: number;
  routed: number;
  /** What the destinations' disk queues (--queue-dir) held when their process started. */
  recovered: number;
  forwarded: number;
  /** Waiting in the destinations' queues, in memory or on disk. */
  queued: number;
  dropped: number;
  undelivered: number;
  /** Of forwarded: may not have reached the peer (a connection failed; see DestinationStats). */
  unconfirmed: number;
  /** Written again after a failed connection (not counted again as forwarded). */
  resent: number;
  /** Taken from an ejected destination's queue and routed over the rest of the ring. */
  rerouted: number;
  /** Of received: polymur's own lines (self-metrics). */
  generated: number;
  rejectedBy: Record<RejectReason, number>;
  unroutedBy: Record<UnroutedReason, number>;
  droppedBy: Record<DropReason, number>;
}

/** One process's pipeline counters; a proxy has no router (it forwards to a gateway). */
export function pipelineStats(ingest: IngestStats, router: RouterStats | null): PipelineStats {
  return {
    received: ingest.received,
    generated: ingest.generated,
    rejected: ingest.rejected,
    unrouted: {
      no_destination: router?.noDestination ?? 0,
      ingest_paused: ingest.droppedPaused,
      no_match: router?.noMatch ?? 0,
      blackhole: router?.blackhole ?? 0,
      validate: router?.validate ?? 0,
    },
    routed: router?.routed ?? 0,
    connections: ingest.connections,
    connectionsTotal: ingest.connectionsTotal,
    connectionsRefused: ingest.connectionsRefused,
    connectionsIdleClosed: ingest.connectionsIdleClosed,
    bytesIn: ingest.bytesIn,
    listeners: ingest.listeners,
    destinations: router?.destinations ?? [],
    paused: ingest.paused,
    aggregation: router?.aggregation ?? null,
  };
}

/** A pipeline's `datapoints` terms: the node's own, and its destinations' summed (removed ones included). */
export function datapointTotals(s: PipelineStats): DatapointTotals {
  const t: DatapointTotals = {
    received: s.received,
    rejected: sum(s.rejected),
    unrouted: sum(s.unrouted),
    routed: s.routed,
    recovered: 0,
    forwarded: 0,
    queued: 0,
    dropped: 0,
    undelivered: 0,
    unconfirmed: 0,
    resent: 0,
    rerouted: 0,
    generated: s.generated,
    rejectedBy: { ...s.rejected },
    unroutedBy: { ...s.unrouted },
    droppedBy: noDrops(),
  };
  for (const d of s.destinations) {
    t.recovered += d.recovered;
    t.forwarded += d.forwarded;
    t.queued += d.queuedLines;
    t.dropped += d.dropped;
    t.undelivered += d.undelivered;
    t.unconfirmed += d.unconfirmed;
    t.resent += d.resent;
    t.rerouted += d.rerouted;
    for (const r of DROP_REASONS) t.droppedBy[r] += d.droppedBy[r];
  }
  return t;
}

function sum(r: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(r)) n += v;
  return n;
}

/** Sums the pipelines of a process group into one view. */
export function mergeStats(all: readonly PipelineStats[]): PipelineStats {
  const first = all[0];
  if (first === undefined) throw new Error("mergeStats needs at least one pipeline");
  const rejected = { ...first.rejected };
  const unrouted = { ...first.unrouted };
  const out: PipelineStats = { ...first, rejected, unrouted };
  for (const s of all.slice(1)) {
    out.received += s.received;
    out.generated += s.generated;
    out.routed += s.routed;
    out.connections += s.connections;
    out.connectionsTotal += s.connectionsTotal;
    out.connectionsRefused += s.connectionsRefused;
    out.connectionsIdleClosed += s.connectionsIdleClosed;
    out.bytesIn += s.bytesIn;
    out.paused ||= s.paused;
    for (const r of REJECT_REASONS) rejected[r] += s.rejected[r];
    for (const r of UNROUTED_REASONS) unrouted[r] += s.unrouted[r];
    out.aggregation = addAggregation(out.aggregation, s.aggregation);
  }
  out.destinations = mergeDestinations(all.flatMap((s) => s.destinations));
  out.listeners = mergeListeners(all.flatMap((s) => s.listeners ?? []));
  return out;
}

/** The sum of two processes' aggregation counters (only the primary aggregates; null when neither does). */
function addAggregation(
  a: AggregationStats | null,
  b: AggregationStats | null,
): AggregationStats | null {
  if (a === null || b === null) return a ?? b;
  const droppedBy = { ...a.droppedBy };
  for (const [r, n] of Object.entries(b.droppedBy)) droppedBy[r as keyof typeof droppedBy] += n;
  return {
    points: a.points + b.points,
    droppedBy,
    produced: a.produced + b.produced,
    openSeries: a.openSeries + b.openSeries,
  };
}
