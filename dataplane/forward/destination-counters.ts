import type { DestinationName } from "./destination-link.ts";
import {
  type DestinationState,
  type DestinationStats,
  type DropReason,
  noDrops,
} from "./destination-stats.ts";

/**
 * A Destination's running counters: what DestinationStats reports, less
 * what its queue and its link tell at the time (see DestinationStats for
 * what each counts).
 */
export class DestinationCounters {
  routed = 0;
  /** Datapoints the disk queue held at start. */
  recovered = 0;
  forwarded = 0;
  resent = 0;
  readonly droppedBy = noDrops();
  undelivered = 0;
  unconfirmed = 0;
  rerouted = 0;
  connects = 0;
  failures = 0;
  lastError: string | undefined;

  /** Counts `lines` as dropped for `reason`. */
  drop(reason: DropReason, lines: number): void {
    this.droppedBy[reason] += lines;
  }

  /** The stats row of the destination `name`, now in `state` with `queued` waiting. */
  stats(
    name: DestinationName,
    state: DestinationState,
    queued: { lines: number; bytes: number },
  ): DestinationStats {
    const d = this.droppedBy;
    return {
      id: name.id,
      spec: name.spec,
      state,
      routed: this.routed,
      forwarded: this.forwarded,
      resent: this.resent,
      recovered: this.recovered,
      dropped:
        d.queue_full +
        d.closed +
        d.worker_died +
        d.send_failed +
        d.disk_corrupt +
        d.disk_unreadable,
      droppedBy: { ...d },
      undelivered: this.undelivered,
      unconfirmed: this.unconfirmed,
      rerouted: this.rerouted,
      queuedLines: queued.lines,
      queuedBytes: queued.bytes,
      connects: this.connects,
      failures: this.failures,
      lastError: this.lastError,
    };
  }
}
