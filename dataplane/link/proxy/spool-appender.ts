import type { Logger } from "../../../common/logger.ts";
import type { SegmentSpool } from "../../spool/segment-spool.ts";
import type { SpoolLocation } from "../../spool/spool-record.ts";

/**
 * Appends the buffer's batches to the spool, and turns a failed append (disk
 * full or gone, EACCES...) into a batch held in memory only rather than one
 * lost now: it is lost only if the proxy exits before the gateway
 * acknowledges it. A streak of failures is logged once when it starts and
 * once when appending works again, not once per batch.
 */
export class SpoolAppender {
  readonly #spool: SegmentSpool;
  readonly #log: Logger;
  #failures = 0;
  /** Consecutive appends that failed (the current failure streak). */
  #streak = 0;

  constructor(spool: SegmentSpool, log: Logger) {
    this.#spool = spool;
    this.#log = log;
  }

  /** Appends that failed, in all. */
  get failures(): number {
    return this.#failures;
  }

  /** Where the batch's record is; null when the append failed (the batch is then in memory only). */
  append(
    seq: number,
    compression: number,
    lines: number,
    rawBytes: number,
    payload: Buffer,
  ): SpoolLocation | null {
    try {
      const loc = this.#spool.append(seq, compression, lines, rawBytes, payload);
      if (this.#streak > 0) {
        this.#log.warn(
          { spool: this.#spool.dir, failedAppends: this.#streak, seq },
          `spool: appending works again after ${this.#streak} failed appends; the batches they failed for are still in memory only`,
        );
        this.#streak = 0;
      }
      return loc;
    } catch (err) {
      this.#failures++;
      if (this.#streak++ === 0) {
        this.#log.error(
          { err: (err as Error).message, spool: this.#spool.dir, seq },
          "spool: append failed; keeping batches in memory only until appending works again (lost if the proxy exits before the gateway acknowledges them)",
        );
      }
      return null;
    }
  }
}
