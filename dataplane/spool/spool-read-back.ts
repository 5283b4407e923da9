import type { Logger } from "../../common/logger.ts";
import { type SegmentSpool, SpoolReadError } from "./segment-spool.ts";
import type { SpoolLocation } from "./spool-record.ts";

/** How a batch is read back (BatchBufferOptions.readAttempts and readRetryMs, resolved). */
export interface SpoolReadBackOptions {
  /** Reads in all, when they fail with I/O errors. */
  attempts: number;
  /** Wait before the second read, doubling after each. */
  retryMs: number;
  log: Logger;
}

/** The batch being read back, as spoolReadBack sees it: `done` is looked at again after every wait. */
export interface ReadBackBatch {
  readonly seq: number;
  readonly size: number;
  readonly done: boolean;
}

/**
 * Reads a batch's payload back from the spool, where its record is at `loc`.
 * An I/O error may pass (a bad sector remapped, a flaky disk): it is retried,
 * `attempts` reads in all, waiting `retryMs`, then twice that, and so on; a
 * damaged record is not retried (reading it again gives the same bytes).
 *
 * Resolves to the payload; to null when the batch no longer needs it (done
 * meanwhile: acknowledged while it was read; or the spool closed under the
 * read: the proxy is closing), and then nothing is lost; or to the
 * SpoolReadError that gave it up: its datapoints are lost, and the caller
 * counts them under the error's reason.
 */
export async function spoolReadBack(
  spool: SegmentSpool,
  loc: SpoolLocation,
  b: ReadBackBatch,
  options: SpoolReadBackOptions,
): Promise<Buffer | SpoolReadError | null> {
  let delay = options.retryMs;
  for (let attempt = 1; ; attempt++) {
    try {
      const payload = await spool.read(loc, b.seq, b.size);
      return b.done ? null : payload;
    } catch (err) {
      // Acknowledged meanwhile (its segment deleted), or the proxy is
      // closing (the spool closed under the read): nothing is lost.
      if (b.done || spool.closed) return null;
      const e =
        err instanceof SpoolReadError
          ? err
          : new SpoolReadError("spool_unreadable", spool.dir, loc.offset, String(err), true);
      if (e.transient && attempt < options.attempts) {
        options.log.warn(
          { seq: b.seq, file: e.file, offset: e.offset, attempt, err: e.message },
          "spool: reading a batch back failed; trying again",
        );
        await sleep(delay);
        delay *= 2;
        if (b.done || spool.closed) return null;
        continue;
      }
      return e;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
