import { PrometheusText } from "../../observe/prometheus-text.ts";
import type { LinkStats } from "./gateway-link.ts";
import { LOSS_REASONS, type LossReason } from "./loss-counts.ts";

/** A proxy's own counters: its batches, its buffer and its link to the gateway. */
export interface ProxyStats {
  link: LinkStats;
  batches: number;
  rawBytes: number;
  payloadBytes: number;
  pendingBatches: number;
  pendingLines: number;
  memoryBytes: number;
  spoolBytes: number;
  held: boolean;
  proxyId: string;
  /** Datapoints lost, by reason (LossReason; every reason present, 0 when none). */
  lost: Record<LossReason, number>;
  /** Losses whose datapoints could not be counted, by reason (a damaged record header, an unreadable segment). */
  lostUncounted: Record<LossReason, number>;
  /** Spool appends that failed (their batches held in memory only). */
  spoolAppendFailures: number;
  /** Pending datapoints held in memory only because their spool append failed. */
  unspooledLines: number;
}

/** The proxy's counters in Prometheus text, appended to its /metrics. */
export function proxyPrometheus(s: ProxyStats): string {
  const l = s.link;
  const one = (v: number): ReadonlyArray<readonly [Record<string, string>, number]> => [[{}, v]];
  return new PrometheusText()
    .metric("polymur_proxy_batches_total", "counter", "Batches made.", one(s.batches))
    .metric(
      "polymur_proxy_raw_bytes_total",
      "counter",
      "Bytes of lines batched, uncompressed.",
      one(s.rawBytes),
    )
    .metric(
      "polymur_proxy_payload_bytes_total",
      "counter",
      "Bytes of batches after compression.",
      one(s.payloadBytes),
    )
    .metric(
      "polymur_proxy_batches_sent_total",
      "counter",
      "Batches sent for the first time.",
      one(l.batchesSent),
    )
    .metric(
      "polymur_proxy_batches_resent_total",
      "counter",
      "Batches sent again on a new stream (not acknowledged on the old one).",
      one(l.batchesResent),
    )
    .metric(
      "polymur_proxy_batches_acked_total",
      "counter",
      "Batches the gateway acknowledged (queued).",
      one(l.batchesAcked),
    )
    .metric(
      "polymur_proxy_lines_acked_total",
      "counter",
      "Datapoints the gateway acknowledged.",
      one(l.linesAcked),
    )
    .metric(
      "polymur_proxy_batches_rejected_total",
      "counter",
      "Batches the gateway rejected (malformed, too large).",
      one(l.batchesRejected),
    )
    .metric(
      "polymur_proxy_lines_rejected_total",
      "counter",
      "Datapoints in batches the gateway rejected.",
      one(l.linesRejected),
    )
    .metric(
      "polymur_proxy_pending_batches",
      "gauge",
      "Batches not yet acknowledged.",
      one(s.pendingBatches),
    )
    .metric(
      "polymur_proxy_pending_datapoints",
      "gauge",
      "Datapoints not yet acknowledged.",
      one(s.pendingLines),
    )
    .metric(
      "polymur_proxy_lost_datapoints_total",
      "counter",
      "Datapoints lost, by reason: spool_corrupt, spool_unreadable (spool records that cannot be read back), exit_without_spool, exit_spool_append_failed (unacknowledged and in memory only at exit).",
      byReason(s.lost),
    )
    .metric(
      "polymur_proxy_lost_uncounted_total",
      "counter",
      "Losses whose datapoints could not be counted (a spool record with a damaged header, a spool segment that cannot be read), by reason.",
      byReason(s.lostUncounted),
    )
    .metric(
      "polymur_proxy_spool_append_failures_total",
      "counter",
      "Batches that could not be written to the spool (held in memory only).",
      one(s.spoolAppendFailures),
    )
    .metric(
      "polymur_proxy_unspooled_datapoints",
      "gauge",
      "Datapoints not yet acknowledged and in memory only (their spool append failed): lost if the proxy exits now.",
      one(s.unspooledLines),
    )
    .metric("polymur_proxy_buffer_bytes", "gauge", "Bytes of unacknowledged batches.", [
      [{ where: "memory" }, s.memoryBytes],
      [{ where: "spool" }, s.spoolBytes],
    ])
    .metric(
      "polymur_proxy_ingest_held",
      "gauge",
      "1 while the proxy does not read from senders (buffer full).",
      one(s.held ? 1 : 0),
    )
    .metric(
      "polymur_proxy_link_up",
      "gauge",
      "1 while a stream to a gateway is open.",
      one(l.state === "open" ? 1 : 0),
    )
    .metric(
      "polymur_proxy_link_connects_total",
      "counter",
      "Streams opened to gateways.",
      one(l.connects),
    )
    .metric(
      "polymur_proxy_link_failures_total",
      "counter",
      "Streams to gateways that failed.",
      one(l.failures),
    )
    .toString();
}

function byReason(m: Record<LossReason, number>): Array<readonly [Record<string, string>, number]> {
  return LOSS_REASONS.map((reason) => [{ reason }, m[reason]] as const);
}
