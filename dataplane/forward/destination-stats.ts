/** The state names shown in /stats and logs. */
export type DestinationState = "connecting" | "connected" | "backoff" | "draining" | "closed";

/**
 * Why a destination dropped datapoints: its queue was full (drop-oldest or
 * drop-newest), it was already closed when they were routed to it, the
 * worker process holding its queue died (set when the counters of a dead
 * worker are kept, see WorkerPool), the kernel refused to send them (a
 * UDP datagram whose send failed, udp-destination.ts), or the disk queue
 * holding them was damaged (disk_corrupt: a record that does not check out,
 * a torn tail) or could not be read (disk_unreadable: an I/O error).
 */
export type DropReason =
  | "queue_full"
  | "closed"
  | "worker_died"
  | "send_failed"
  | "disk_corrupt"
  | "disk_unreadable";
export const DROP_REASONS: readonly DropReason[] = [
  "queue_full",
  "closed",
  "worker_died",
  "send_failed",
  "disk_corrupt",
  "disk_unreadable",
];

/** A destination's disk queue (--queue-dir), as /stats shows it. */
export interface DiskQueueStats {
  /** Datapoints on disk, not yet delivered. */
  lines: number;
  /** Bytes of its segments on disk (delivered records stay until their segment is deleted). */
  bytes: number;
  /** Datapoints appended to disk, in all (this process's life). */
  spilled: number;
  /** Datapoints read back from disk, in all. */
  replayed: number;
  /** Appends the disk refused (full, read-only, I/O error): those lines stayed in memory. */
  failures: number;
  /** Age of the oldest datapoint waiting (on disk, else in memory), in ms; 0 when none waits. */
  oldestAgeMs: number;
}

/**
 * One destination's counters. Every datapoint routing gave it (`routed`),
 * or that its disk queue held when the process started (`recovered`), is in
 * exactly one of: forwarded, queued, dropped, undelivered, rerouted:
 *
 *   routed + recovered = forwarded + queued + dropped + undelivered + rerouted
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
  /** Datapoints its disk queue held at start (found again, or lost to damage: see droppedBy). */
  recovered: number;
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
  /** Datapoints waiting (queued in memory or on disk, or in flight) that were never forwarded. */
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
  /** Its disk queue, when it has one (--queue-dir). */
  disk?: DiskQueueStats;
}

/** A drop-reason record with every reason at zero. */
export function noDrops(): Record<DropReason, number> {
  return {
    queue_full: 0,
    closed: 0,
    worker_died: 0,
    send_failed: 0,
    disk_corrupt: 0,
    disk_unreadable: 0,
  };
}

/** Adds the counters of `b` into `a` (same destination, another process or an earlier life). */
export function addDestinationStats(a: DestinationStats, b: DestinationStats): void {
  a.routed += b.routed;
  a.recovered += b.recovered;
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
  if (b.disk !== undefined) {
    if (a.disk === undefined) a.disk = { ...b.disk };
    else {
      a.disk.lines += b.disk.lines;
      a.disk.bytes += b.disk.bytes;
      a.disk.spilled += b.disk.spilled;
      a.disk.replayed += b.disk.replayed;
      a.disk.failures += b.disk.failures;
      a.disk.oldestAgeMs = Math.max(a.disk.oldestAgeMs, b.disk.oldestAgeMs);
    }
  }
}

/** A deep copy, safe to add into. */
export function copyDestinationStats(s: DestinationStats): DestinationStats {
  return {
    ...s,
    droppedBy: { ...s.droppedBy },
    ...(s.disk === undefined ? {} : { disk: { ...s.disk } }),
  };
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
