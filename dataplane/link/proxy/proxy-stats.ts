import { PrometheusText } from "../../observe/prometheus-text.ts";
import type { LinkState, LinkStats } from "./gateway-link.ts";
import { LOSS_REASONS, type LossReason } from "./loss-counts.ts";

/**
 * A proxy's own counters: its batches, its buffer and its link to the
 * gateway. A proxy of several processes shows their sum (mergeProxyStats),
 * and each process's part in `processes`.
 */
export interface ProxyStats {
  /**
   * The link's counters (summed over the processes, and over the links that
   * drain spools taken over from processes that are no more); `state` and
   * `gateway` are those of the first process whose link is not open, or of
   * process 0 when every one is.
   */
  link: LinkStats;
  /** Links open to a gateway (one per process, when all are up). */
  linksOpen: number;
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
  /** Each process's part, by process number (0: the primary). */
  processes: ProxyProcessRow[];
}

/** One process of a proxy, as the proxy's /stats shows it. */
export interface ProxyProcessRow {
  /** Its number: 0 for the primary, 1… for the worker processes. */
  index: number;
  /** Its process id. */
  pid: number;
  /** The proxy id it streams with (process k > 0: derived from process 0's). */
  proxyId: string;
  /** Its link's state. */
  link: LinkState;
  pendingBatches: number;
  pendingLines: number;
  batches: number;
  linesAcked: number;
  held: boolean;
  /** The proxy ids of the spools it drains, taken over from process numbers beyond today's count. */
  draining: string[];
  /** False once it died (its last counters stay in the sums; a new process takes its number). */
  alive: boolean;
}

/**
 * The counters of a proxy's processes summed: counters and gauges added,
 * `held` when any process holds its senders, `proxyId` the first process's
 * (process 0's), every process's row kept. At least one is needed.
 */
export function mergeProxyStats(all: readonly ProxyStats[]): ProxyStats {
  const first = all[0];
  if (first === undefined) throw new Error("mergeProxyStats needs at least one process");
  const lost = { ...first.lost };
  const lostUncounted = { ...first.lostUncounted };
  const link: LinkStats = { ...first.link };
  const out: ProxyStats = { ...first, link, lost, lostUncounted, processes: [...first.processes] };
  for (const s of all.slice(1)) {
    link.connects += s.link.connects;
    link.failures += s.link.failures;
    link.batchesSent += s.link.batchesSent;
    link.batchesResent += s.link.batchesResent;
    link.batchesAcked += s.link.batchesAcked;
    link.linesAcked += s.link.linesAcked;
    link.batchesRejected += s.link.batchesRejected;
    link.linesRejected += s.link.linesRejected;
    link.lastError ??= s.link.lastError;
    if (link.state === "open" && s.link.state !== "open" && s.processes.some((p) => p.alive)) {
      link.state = s.link.state;
      link.gateway = s.link.gateway;
    }
    out.linksOpen += s.linksOpen;
    out.batches += s.batches;
    out.rawBytes += s.rawBytes;
    out.payloadBytes += s.payloadBytes;
    out.pendingBatches += s.pendingBatches;
    out.pendingLines += s.pendingLines;
    out.memoryBytes += s.memoryBytes;
    out.spoolBytes += s.spoolBytes;
    out.held ||= s.held;
    out.spoolAppendFailures += s.spoolAppendFailures;
    out.unspooledLines += s.unspooledLines;
    for (const r of LOSS_REASONS) {
      lost[r] += s.lost[r];
      lostUncounted[r] += s.lostUncounted[r];
    }
    out.processes.push(...s.processes);
  }
  out.processes.sort((a, b) => a.index - b.index || Number(b.alive) - Number(a.alive));
  return out;
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
      "Datapoints lost, by reason: spool_corrupt, spool_unreadable (spool records that cannot be read back), exit_without_spool, exit_spool_append_failed (unacknowledged and in memory only at exit), worker_died (in memory only in a process that died).",
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
      "1 while every process of the proxy has a stream to a gateway open.",
      one(l.state === "open" ? 1 : 0),
    )
    .metric(
      "polymur_proxy_links_open",
      "gauge",
      "Streams open to gateways (one per process when all are up).",
      one(s.linksOpen),
    )
    .metric(
      "polymur_proxy_processes",
      "gauge",
      "Processes of the proxy that are running (--workers).",
      one(s.processes.filter((p) => p.alive).length),
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
