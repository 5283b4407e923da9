import { EventEmitter } from "node:events";
import type { Logger } from "../../../common/logger.ts";
import type { SegmentSpool, SpoolReadError } from "../../spool/segment-spool.ts";
import { spoolReadBack } from "../../spool/spool-read-back.ts";
import type { SpooledBatch, SpoolLocation, SpoolLoss } from "../../spool/spool-record.ts";
import { LossCounts, type LossReason } from "./loss-counts.ts";
import { SpoolAppender } from "./spool-appender.ts";

// The loss reasons were first defined here; proxy-stats.ts still takes them from here.

/**
 * Every BatchBufferOptions default, in one place. A batch the spool fails to
 * read back with an I/O error is read again this many times in all, waiting
 * readRetryMs, then twice that, and so on, before it is given up as lost.
 */
export const BATCH_BUFFER_DEFAULTS = {
  readAttempts: 5,
  readRetryMs: 100,
} as const satisfies Partial<BatchBufferOptions>;

/** A batch the proxy keeps until the gateway acknowledges (or rejects) it. */
export interface BufferedBatch {
  readonly seq: number;
  readonly compression: number;
  readonly lines: number;
  readonly rawBytes: number;
  /** Compressed payload size. */
  readonly size: number;
  /** The payload, or null when it is only in the spool. */
  payload: Buffer | null;
  readonly loc: SpoolLocation | null;
  /** Times sent on a stream (more than once: resent after a reconnect). */
  sends: number;
  done: boolean;
}

export interface BatchBufferOptions {
  /** Payload bytes held in memory. Without a spool this bounds the buffer. */
  memoryBytes: number;
  /** On-disk spool (optional); with one, every batch is written to it first. */
  spool: SegmentSpool | null;
  /** With a spool: bound of its live bytes on disk. */
  spoolBytes: number;
  /** First seq to hand out. Default 1. */
  nextSeq?: number;
  /** Batches recovered from the spool, oldest first. */
  recovered?: readonly SpooledBatch[];
  /** What spool recovery found lost (already logged by the spool): counted here. */
  spoolLosses?: readonly SpoolLoss[];
  /** Reads of a batch from the spool, in all, when they fail with I/O errors. Default 5. */
  readAttempts?: number;
  /** Wait before the second read, doubling after each. Default 100 ms. */
  readRetryMs?: number;
  log: Logger;
}

export interface BatchBufferStats {
  batches: number;
  lines: number;
  memoryBytes: number;
  spoolBytes: number;
  full: boolean;
  /** Appends that could not be written to the spool (kept in memory only). */
  spoolErrors: number;
  /** Pending batches held in memory only because their spool append failed. */
  unspooledBatches: number;
  /** Their datapoints: lost if the proxy exits before the gateway acknowledges them. */
  unspooledLines: number;
  /** Datapoints lost, by reason (those that could be counted). */
  lost: Record<LossReason, number>;
  /**
   * Losses whose datapoints could not be counted, by reason: a spool record
   * whose header is damaged, a spool segment that cannot be read at all.
   */
  lostUncounted: Record<LossReason, number>;
}

/** What became of the pending batches when the proxy exits (see abandon()). */
export interface ExitReport {
  /** Kept in the spool for the next start. */
  kept: { batches: number; lines: number };
  /** Held in memory only: lost, and counted under `reason`. */
  lost: { batches: number; lines: number; reason: LossReason };
}

/** What a BatchBuffer emits (listeners are typed by it). */
export interface BatchBufferEvents {
  /** The bound was reached: the proxy stops reading from its senders. */
  full: [];
  /** Back below half the bound after "full". */
  space: [];
  /** A batch was added. */
  batch: [];
}

/**
 * Every batch from creation until the gateway acknowledged or rejected it,
 * in seq order. Bounded: by `memoryBytes` of payload without a spool, by
 * `spoolBytes` on disk with one (then memory is only a cache of payloads,
 * and batches beyond it are read back from disk when their turn comes).
 *
 * Events (BatchBufferEvents): "full" when the bound is reached (the proxy then
 * stops reading from its senders), "space" when it fell below half again,
 * "batch" when one was added.
 */
export class BatchBuffer extends EventEmitter<BatchBufferEvents> {
  readonly #spool: SegmentSpool | null;
  readonly #memoryLimit: number;
  readonly #spoolLimit: number;
  readonly #log: Logger;
  /** Pending batches; entries before #head are gone. */
  #q: BufferedBatch[] = [];
  #head = 0;
  #nextSeq: number;
  #memoryBytes = 0;
  #lines = 0;
  #full = false;
  readonly #appender: SpoolAppender | null;
  #unspooledBatches = 0;
  #unspooledLines = 0;
  readonly #losses = new LossCounts();
  readonly #readAttempts: number;
  readonly #readRetryMs: number;
  /** Highest seq known done with nothing pending below it. */
  #doneThrough: number;

  constructor(options: BatchBufferOptions) {
    super();
    this.#spool = options.spool;
    this.#appender = options.spool === null ? null : new SpoolAppender(options.spool, options.log);
    this.#memoryLimit = options.memoryBytes;
    this.#spoolLimit = options.spoolBytes;
    this.#log = options.log;
    this.#readAttempts = options.readAttempts ?? BATCH_BUFFER_DEFAULTS.readAttempts;
    this.#readRetryMs = options.readRetryMs ?? BATCH_BUFFER_DEFAULTS.readRetryMs;
    for (const l of options.spoolLosses ?? []) this.#losses.add(l.reason, l.lines);
    this.#nextSeq = options.nextSeq ?? 1;
    this.#doneThrough = this.#nextSeq - 1;
    for (const r of options.recovered ?? []) {
      this.#q.push({
        seq: r.seq,
        compression: r.compression,
        lines: r.lines,
        rawBytes: r.rawBytes,
        size: r.size,
        payload: null,
        loc: r.loc,
        sends: 0,
        done: false,
      });
      this.#lines += r.lines;
    }
    const first = this.#q[0];
    if (first !== undefined) this.#doneThrough = first.seq - 1;
    this.#updateFull();
  }

  get full(): boolean {
    return this.#full;
  }

  /** Batches not yet done. */
  get size(): number {
    let n = 0;
    for (let i = this.#head; i < this.#q.length; i++) if (!this.#q[i]!.done) n++;
    return n;
  }

  /** The seq the next batch will get. */
  get nextSeq(): number {
    return this.#nextSeq;
  }

  get pendingLines(): number {
    return this.#lines;
  }

  /** Stores a new batch (spool first, if any) and gives it the next seq. */
  add(compression: number, payload: Buffer, lines: number, rawBytes: number): BufferedBatch {
    const seq = this.#nextSeq++;
    // A failed append keeps the batch in memory only (loc null) rather than lose it now.
    const loc = this.#appender?.append(seq, compression, lines, rawBytes, payload) ?? null;
    // With a spool, memory is a cache: a batch beyond it is read back later.
    const keep = loc === null || this.#memoryBytes + payload.length <= this.#memoryLimit;
    const b: BufferedBatch = {
      seq,
      compression,
      lines,
      rawBytes,
      size: payload.length,
      payload: keep ? payload : null,
      loc,
      sends: 0,
      done: false,
    };
    if (keep) this.#memoryBytes += payload.length;
    if (loc === null && this.#spool !== null) {
      this.#unspooledBatches++;
      this.#unspooledLines += lines;
    }
    this.#q.push(b);
    this.#lines += lines;
    this.#updateFull();
    this.emit("batch");
    return b;
  }

  /** The first pending batch with seq > `seq`. */
  after(seq: number): BufferedBatch | undefined {
    const q = this.#q;
    let lo = this.#head;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (q[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < q.length; i++) if (!q[i]!.done) return q[i];
    return undefined;
  }

  /**
   * The batch's payload, from memory or from the spool; null when the batch
   * is done meanwhile (acknowledged while it was read) or cannot be read
   * back. A batch that cannot be read back is lost: it is counted under its
   * reason, logged with where its record is, and done, so that a later
   * cumulative acknowledgement does not count it as delivered. I/O errors are
   * retried first (readAttempts, readRetryMs); a damaged record is not.
   */
  async payload(b: BufferedBatch): Promise<Buffer | null> {
    if (b.payload !== null) return b.payload;
    if (b.done) return null;
    const spool = this.#spool;
    if (b.loc === null || spool === null) throw new Error(`batch ${b.seq} has no payload`);
    const read = await spoolReadBack(spool, b.loc, b, {
      attempts: this.#readAttempts,
      retryMs: this.#readRetryMs,
      log: this.#log,
    });
    if (read === null || Buffer.isBuffer(read)) return read;
    this.#lose(b, read);
    return null;
  }

  #lose(b: BufferedBatch, e: SpoolReadError): void {
    this.#losses.add(e.reason, b.lines);
    this.#log.error(
      {
        reason: e.reason,
        seq: b.seq,
        lines: b.lines,
        file: e.file,
        offset: e.offset,
        err: e.message,
      },
      `spool: batch ${b.seq} cannot be read back from ${e.file} at offset ${e.offset}; its ${b.lines} datapoints are lost (${e.reason})`,
    );
    this.#settle(b);
  }

  /**
   * The proxy is exiting: every pending batch held in memory only (no spool,
   * or its append failed) is lost now, and counted; the others stay in the
   * spool for the next start.
   */
  abandon(): ExitReport {
    const reason: LossReason =
      this.#spool === null ? "exit_without_spool" : "exit_spool_append_failed";
    const report: ExitReport = {
      kept: { batches: 0, lines: 0 },
      lost: { batches: 0, lines: 0, reason },
    };
    for (let i = this.#head; i < this.#q.length; i++) {
      const b = this.#q[i]!;
      if (b.done) continue;
      if (b.loc !== null) {
        report.kept.batches++;
        report.kept.lines += b.lines;
        continue;
      }
      report.lost.batches++;
      report.lost.lines += b.lines;
      this.#losses.add(reason, b.lines);
      this.#finish(b);
    }
    return report;
  }

  /** Every batch with seq <= `seq` is done. Returns what that finished. */
  ack(seq: number): { batches: number; lines: number } {
    let batches = 0;
    let lines = 0;
    const q = this.#q;
    while (this.#head < q.length && q[this.#head]!.seq <= seq) {
      const b = q[this.#head++]!;
      if (!b.done) {
        batches++;
        lines += b.lines;
        this.#finish(b);
      }
    }
    this.#advance(seq);
    return { batches, lines };
  }

  /** One batch is done without being queued (the gateway rejected it). */
  reject(seq: number): BufferedBatch | undefined {
    const q = this.#q;
    for (let i = this.#head; i < q.length; i++) {
      const b = q[i]!;
      if (b.seq > seq) break;
      if (b.seq === seq && !b.done) {
        this.#settle(b);
        return b;
      }
    }
    return undefined;
  }

  /** One batch is done out of order (rejected or lost): frees it and what it held back. */
  #settle(b: BufferedBatch): void {
    const q = this.#q;
    this.#finish(b);
    while (this.#head < q.length && q[this.#head]!.done) this.#head++;
    const next = q[this.#head];
    this.#advance(next === undefined ? this.#nextSeq - 1 : next.seq - 1);
  }

  #finish(b: BufferedBatch): void {
    b.done = true;
    this.#lines -= b.lines;
    if (b.payload !== null) this.#memoryBytes -= b.size;
    if (b.loc === null && this.#spool !== null) {
      this.#unspooledBatches--;
      this.#unspooledLines -= b.lines;
    }
    b.payload = null;
  }

  #advance(seq: number): void {
    if (this.#head > 1024 && this.#head * 2 > this.#q.length) {
      this.#q = this.#q.slice(this.#head);
      this.#head = 0;
    }
    const next = this.#q[this.#head];
    const through = Math.min(seq, next === undefined ? seq : next.seq - 1);
    if (through > this.#doneThrough) {
      this.#doneThrough = through;
      this.#spool?.release(through);
    }
    this.#updateFull();
  }

  get #appendFailures(): number {
    return this.#appender?.failures ?? 0;
  }

  #updateFull(): void {
    const over =
      this.#spool === null || this.#appendFailures > 0
        ? this.#memoryBytes >= this.#memoryLimit
        : this.#spool.bytes >= this.#spoolLimit;
    const under =
      this.#spool === null || this.#appendFailures > 0
        ? this.#memoryBytes < this.#memoryLimit / 2
        : this.#spool.bytes < this.#spoolLimit / 2;
    if (!this.#full && over) {
      this.#full = true;
      this.emit("full");
    } else if (this.#full && under) {
      this.#full = false;
      this.emit("space");
    }
  }

  stats(): BatchBufferStats {
    return {
      batches: this.size,
      lines: this.#lines,
      memoryBytes: this.#memoryBytes,
      spoolBytes: this.#spool?.bytes ?? 0,
      full: this.#full,
      spoolErrors: this.#appendFailures,
      unspooledBatches: this.#unspooledBatches,
      unspooledLines: this.#unspooledLines,
      lost: this.#losses.lost(),
      lostUncounted: this.#losses.lostUncounted(),
    };
  }
}
