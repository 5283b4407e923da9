/** The state names shown in /stats and logs. */
export type DestinationState = "connecting" | "connected" | "backoff" | "draining" | "closed";

/**
 * Why a destination dropped datapoints: its queue was full (drop-oldest or
 * drop-newest), it was already closed when they were routed to it, the
 * worker process holding its queue died (set when the counters of a dead
 * worker are kept, see WorkerPool), or the kernel refused to send them (a
 * UDP datagram whose send failed, udp-destination.ts).
 */
export type DropReason = "queue_full" | "closed" | "worker_died" | "send_failed";
export const DROP_REASONS: readonly DropReason[] = [
  "queue_full",
  "closed",
  "worker_died",
  "send_failed",
];

/**
 * One destination's counters. Every datapoint routing gave it (`routed`) is
 * in exactly one of: forwarded, queued, dropped, undelivered, rerouted:
 *
 *   routed = forwarded + queued + dropped + undelivered + rerouted
 *
 * `resent` and `unconfirmed` are not terms of that sum: they describe
 * datapoints already counted as forwarded (see docs/queues.md).
 */
export interface DestinationStats {
  id: string;
  spec: string;
  state: DestinationState;
  /** Datapoints routing handed to this destination (re-routed ones included). */
  routed: number;
  /** Datapoints written to the socket (the first time; a resend is not counted again). */
  forwarded: number;
  /** Datapoints written again after a failed connection (already counted as forwarded). */
  resent: number;
  /** Datapoints dropped, all reasons. */
  dropped: number;
  droppedBy: Record<DropReason, number>;
  /** Datapoints that could not be delivered by the drain deadline (shutdown or removal). */
  undelivered: number;
  /**
   * Forwarded datapoints the peer may not have: written before a connection
   * failed, and then either not written again (shutdown, removal or a full
   * queue came first) or no longer held (beyond the resend window).
   */
  unconfirmed: number;
  /** Datapoints taken from the queue to be routed over the rest of the ring (--eject-after). */
  rerouted: number;
  /** Datapoints waiting (queued or in flight) that were never forwarded. */
  queuedLines: number;
  /** Bytes waiting in the queue (resends included). */
  queuedBytes: number;
  connects: number;
  failures: number;
  lastError: string | undefined;
  /** Taken out of the hash ring (--eject-after); set by the router. */
  ejected?: boolean;
  /** Removed from the configuration: its last counters, kept so that totals never go backwards. */
  removed?: boolean;
}

/** A drop-reason record with every reason at zero. */
export function noDrops(): Record<DropReason, number> {
  return { queue_full: 0, closed: 0, worker_died: 0, send_failed: 0 };
}

/** Adds the counters of `b` into `a` (same destination, another process or an earlier life). */
export function addDestinationStats(a: DestinationStats, b: DestinationStats): void {
  a.routed += b.routed;
  a.forwarded += b.forwarded;
  a.resent += b.resent;
  a.dropped += b.dropped;
  for (const r of DROP_REASONS) a.droppedBy[r] += b.droppedBy[r];
  a.undelivered += b.undelivered;
  a.unconfirmed += b.unconfirmed;
  a.rerouted += b.rerouted;
  a.queuedLines += b.queuedLines;
  a.queuedBytes += b.queuedBytes;
  a.connects += b.connects;
  a.failures += b.failures;
  a.lastError ??= b.lastError;
}

/** A deep copy, safe to add into. */
export function copyDestinationStats(s: DestinationStats): DestinationStats {
  return { ...s, droppedBy: { ...s.droppedBy } };
}

// Least healthy first: a destination merged from several processes shows its worst state.
const STATE_ORDER: readonly DestinationState[] = [
  "closed",
  "backoff",
  "connecting",
  "draining",
  "connected",
];

/**
 * Rows of the same destinations (from several processes, or a destination's
 * earlier lives) summed into one row per id, in first-seen order. The state
 * shown is the live rows' (the least healthy of them); a removed row's state
 * is only its last. Ejected if any row is.
 */
export function mergeDestinations(rows: Iterable<DestinationStats>): DestinationStats[] {
  const byId = new Map<string, DestinationStats>();
  for (const d of rows) {
    const m = byId.get(d.id);
    if (m === undefined) {
      byId.set(d.id, copyDestinationStats(d));
      continue;
    }
    addDestinationStats(m, d);
    if (!d.removed && (m.removed || STATE_ORDER.indexOf(d.state) < STATE_ORDER.indexOf(m.state)))
      m.state = d.state;
    if (!d.removed) m.removed = false;
    if (d.ejected) m.ejected = true;
  }
  return [...byId.values()];
}
