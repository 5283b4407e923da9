import {
  type DestinationStats,
  type DiskQueueStats,
  DROP_REASONS,
} from "../forward/destination-stats.ts";
import { type ListenerStats, TLS_REJECT_REASONS } from "../ingest/listener-counters.ts";
import { noAggregation } from "../route/aggregation.ts";
import { datapointTotals, type PipelineStats } from "./pipeline-stats.ts";
import { PrometheusText } from "./prometheus-text.ts";

type Rows = Array<readonly [Record<string, string>, number]>;

/**
 * A pipeline's counters in Prometheus text format: the same terms as the
 * `datapoints` object of /stats (node totals), then each destination's. The
 * disk-queue families (polymur_destination_disk_*, oldest_queued_seconds)
 * have a sample only for the destinations that have a disk queue (--queue-dir).
 */
export function pipelinePrometheus(s: PipelineStats): string {
  const t = datapointTotals(s);
  const by = (label: string, r: Record<string, number>): Rows =>
    Object.entries(r).map(([k, n]) => [{ [label]: k }, n] as const);
  const one = (n: number): Rows => [[{}, n]];
  const dest = (f: (x: DestinationStats) => number): Rows =>
    s.destinations.map((x) => [{ destination: x.spec }, f(x)] as const);
  const disk = (f: (x: DiskQueueStats) => number): Rows =>
    s.destinations.flatMap((x) =>
      x.disk === undefined ? [] : [[{ destination: x.spec }, f(x.disk)] as const],
    );
  const listeners = s.listeners ?? [];
  const lis = (f: (x: ListenerStats) => number): Rows =>
    listeners.map(
      (x) => [{ listener: x.name, protocol: x.protocol, transport: x.transport }, f(x)] as const,
    );
  const tlsRejects: Rows = listeners.flatMap((x) =>
    x.tlsRejectedBy === null
      ? []
      : TLS_REJECT_REASONS.map(
          (r) => [{ listener: x.name, reason: r }, x.tlsRejectedBy![r]] as const,
        ),
  );
  const destDrops: Rows = s.destinations.flatMap((x) =>
    DROP_REASONS.map((r) => [{ destination: x.spec, reason: r }, x.droppedBy[r]] as const),
  );
  return new PrometheusText()
    .metric(
      "polymur_received_total",
      "counter",
      "Lines received: every line read, valid or not, and polymur's own.",
      one(t.received),
    )
    .metric(
      "polymur_generated_total",
      "counter",
      "Of received: polymur's own lines (self-metrics).",
      one(t.generated),
    )
    .metric(
      "polymur_rejected_total",
      "counter",
      "Lines rejected, by reason.",
      by("reason", t.rejectedBy),
    )
    .metric(
      "polymur_unrouted_total",
      "counter",
      "Valid lines that went to no destination, by reason.",
      by("reason", t.unroutedBy),
    )
    .metric(
      "polymur_routed_total",
      "counter",
      "Valid lines given to at least one destination.",
      one(t.routed),
    )
    .metric(
      "polymur_recovered_total",
      "counter",
      "Datapoints the destinations' disk queues held when their process started, summed over destinations.",
      one(t.recovered),
    )
    .metric(
      "polymur_forwarded_total",
      "counter",
      "Datapoints written to destinations, summed over destinations.",
      one(t.forwarded),
    )
    .metric(
      "polymur_queued_datapoints",
      "gauge",
      "Datapoints waiting in destination queues (in memory or on disk).",
      one(t.queued),
    )
    .metric(
      "polymur_dropped_total",
      "counter",
      "Datapoints dropped by destinations, by reason.",
      by("reason", t.droppedBy),
    )
    .metric(
      "polymur_undelivered_total",
      "counter",
      "Datapoints left undelivered at shutdown or destination removal.",
      one(t.undelivered),
    )
    .metric(
      "polymur_unconfirmed_total",
      "counter",
      "Of forwarded: datapoints a failed connection may have lost.",
      one(t.unconfirmed),
    )
    .metric(
      "polymur_resent_total",
      "counter",
      "Of forwarded: datapoints written again after a connection failure.",
      one(t.resent),
    )
    .metric(
      "polymur_rerouted_total",
      "counter",
      "Datapoints moved from an ejected destination to the rest of the ring.",
      one(t.rerouted),
    )
    .metric(
      "polymur_aggregate_points_total",
      "counter",
      "Points given to aggregate rules (one per rule and compute that took a line).",
      one(s.aggregation?.points ?? 0),
    )
    .metric(
      "polymur_aggregate_dropped_total",
      "counter",
      "Points aggregate rules did not aggregate, by reason.",
      by("reason", s.aggregation?.droppedBy ?? noAggregation().droppedBy),
    )
    .metric(
      "polymur_aggregate_produced_total",
      "counter",
      "Datapoints aggregate rules wrote (counted as received and generated too).",
      one(s.aggregation?.produced ?? 0),
    )
    .metric(
      "polymur_aggregate_open_series",
      "gauge",
      "Series with an open aggregation bucket.",
      one(s.aggregation?.openSeries ?? 0),
    )
    .metric("polymur_received_bytes_total", "counter", "Bytes read from senders.", one(s.bytesIn))
    .metric("polymur_connections", "gauge", "Open sender connections.", one(s.connections))
    .metric(
      "polymur_connections_total",
      "counter",
      "Sender connections accepted.",
      one(s.connectionsTotal),
    )
    .metric(
      "polymur_connections_refused_total",
      "counter",
      "Sender connections refused at the limit.",
      one(s.connectionsRefused),
    )
    .metric(
      "polymur_connections_idle_closed_total",
      "counter",
      "Sender connections closed for sending nothing for --idle-timeout.",
      one(s.connectionsIdleClosed),
    )
    .metric(
      "polymur_listener_accepted_total",
      "counter",
      "Valid datapoints a listener took.",
      lis((x) => x.accepted),
    )
    .metric(
      "polymur_listener_rejected_total",
      "counter",
      "Datapoints a listener rejected (their reasons: polymur_rejected_total).",
      lis((x) => x.rejected),
    )
    .metric(
      "polymur_listener_received_bytes_total",
      "counter",
      "Bytes a listener read from senders (after TLS).",
      lis((x) => x.bytesIn),
    )
    .metric(
      "polymur_listener_reads_total",
      "counter",
      "Reads from a listener's connections (datagrams for UDP); bytes per read show what --read-wait gathers.",
      lis((x) => x.reads),
    )
    .metric(
      "polymur_listener_connections",
      "gauge",
      "A listener's open sender connections (TLS: handshake done).",
      lis((x) => x.connections),
    )
    .metric(
      "polymur_listener_connections_total",
      "counter",
      "Sender connections a listener took (TLS: handshake done).",
      lis((x) => x.connectionsTotal),
    )
    .metric(
      "polymur_listener_tls_rejected_total",
      "counter",
      "Connections a TLS listener closed before their data, by reason.",
      tlsRejects,
    )
    .metric(
      "polymur_ingest_paused",
      "gauge",
      "1 while ingest is paused by a full queue (block policy).",
      one(s.paused ? 1 : 0),
    )
    .metric(
      "polymur_destination_routed_total",
      "counter",
      "Datapoints routing gave the destination.",
      dest((x) => x.routed),
    )
    .metric(
      "polymur_destination_recovered_total",
      "counter",
      "Datapoints the disk queue held when the process started.",
      dest((x) => x.recovered),
    )
    .metric(
      "polymur_destination_forwarded_total",
      "counter",
      "Datapoints written to the destination.",
      dest((x) => x.forwarded),
    )
    .metric(
      "polymur_destination_resent_total",
      "counter",
      "Datapoints written again after a connection failure.",
      dest((x) => x.resent),
    )
    .metric(
      "polymur_destination_dropped_total",
      "counter",
      "Datapoints dropped, by reason.",
      destDrops,
    )
    .metric(
      "polymur_destination_undelivered_total",
      "counter",
      "Datapoints left undelivered at shutdown or removal.",
      dest((x) => x.undelivered),
    )
    .metric(
      "polymur_destination_unconfirmed_total",
      "counter",
      "Forwarded datapoints a failed connection may have lost.",
      dest((x) => x.unconfirmed),
    )
    .metric(
      "polymur_destination_rerouted_total",
      "counter",
      "Datapoints moved to the rest of the ring after ejection.",
      dest((x) => x.rerouted),
    )
    .metric(
      "polymur_destination_queued_datapoints",
      "gauge",
      "Datapoints waiting in the queue (in memory or on disk).",
      dest((x) => x.queuedLines),
    )
    .metric(
      "polymur_destination_queued_bytes",
      "gauge",
      "Bytes waiting in the queue in memory.",
      dest((x) => x.queuedBytes),
    )
    .metric(
      "polymur_destination_disk_datapoints",
      "gauge",
      "Datapoints waiting in the disk queue (of queued).",
      disk((d) => d.lines),
    )
    .metric(
      "polymur_destination_disk_bytes",
      "gauge",
      "Bytes of the disk queue's segments on disk.",
      disk((d) => d.bytes),
    )
    .metric(
      "polymur_destination_disk_spilled_total",
      "counter",
      "Datapoints appended to the disk queue.",
      disk((d) => d.spilled),
    )
    .metric(
      "polymur_destination_disk_replayed_total",
      "counter",
      "Datapoints read back from the disk queue.",
      disk((d) => d.replayed),
    )
    .metric(
      "polymur_destination_disk_failures_total",
      "counter",
      "Appends the disk refused (full, read-only, I/O error): their datapoints stayed in memory.",
      disk((d) => d.failures),
    )
    .metric(
      "polymur_destination_oldest_queued_seconds",
      "gauge",
      "Age of the oldest datapoint waiting (on disk, else in memory); 0 when none waits.",
      disk((d) => d.oldestAgeMs / 1000),
    )
    .metric(
      "polymur_destination_up",
      "gauge",
      "1 when connected.",
      dest((x) => (x.state === "connected" ? 1 : 0)),
    )
    .metric(
      "polymur_destination_connection_failures_total",
      "counter",
      "Connections lost or refused.",
      dest((x) => x.failures),
    )
    .toString();
}
