import type { SpoolLossReason } from "../../spool/spool-record.ts";

/**
 * Why a proxy lost datapoints (the `reason` of its `lost` counters):
 * - spool_corrupt: a spool record is damaged (crc mismatch, cut short);
 * - spool_unreadable: a spool segment, or part of one, cannot be read (I/O error);
 * - exit_without_spool: not acknowledged when the proxy exited, and no --spool-dir;
 * - exit_spool_append_failed: not acknowledged when the proxy exited, and held in
 *   memory only because writing it to the spool had failed (disk full, EACCES...);
 * - worker_died: held in memory only (no spool, or its append failed) by one
 *   of the proxy's processes when it died (see proxy-pool.ts).
 */
export type LossReason =
  | SpoolLossReason
  | "exit_without_spool"
  | "exit_spool_append_failed"
  | "worker_died";

export const LOSS_REASONS: readonly LossReason[] = [
  "spool_corrupt",
  "spool_unreadable",
  "exit_without_spool",
  "exit_spool_append_failed",
  "worker_died",
];

/**
 * A proxy's lost datapoints, by reason. A loss whose datapoints cannot be
 * counted (a spool record whose header is damaged, a segment that cannot be
 * read at all) is counted apart, as one loss, so that it is seen rather than
 * added as 0 datapoints.
 */
export class LossCounts {
  readonly #lost = zeroes();
  readonly #uncounted = zeroes();

  /** One loss: `lines` datapoints, or null when they cannot be counted. */
  add(reason: LossReason, lines: number | null): void {
    if (lines === null) this.#uncounted[reason]++;
    else this.#lost[reason] += lines;
  }

  /** Datapoints lost, by reason (every reason present, 0 when none). */
  lost(): Record<LossReason, number> {
    return { ...this.#lost };
  }

  /** Losses whose datapoints could not be counted, by reason. */
  lostUncounted(): Record<LossReason, number> {
    return { ...this.#uncounted };
  }
}

function zeroes(): Record<LossReason, number> {
  return Object.fromEntries(LOSS_REASONS.map((r) => [r, 0])) as Record<LossReason, number>;
}
