import { EventEmitter } from "node:events";
import type { Logger } from "../../../common/logger.ts";
import type { BatchSpool, SpooledBatch, SpoolLocation } from "./batch-spool.ts";

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
  spool: BatchSpool | null;
  /** With a spool: bound of its live bytes on disk. */
  spoolBytes: number;
  /** First seq to hand out. Default 1. */
  nextSeq?: number;
  /** Batches recovered from the spool, oldest first. */
  recovered?: readonly SpooledBatch[];
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
  readonly #spool: BatchSpool | null;
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
  #spoolErrors = 0;
  /** Highest seq known done with nothing pending below it. */
  #doneThrough: number;

  constructor(options: BatchBufferOptions) {
    super();
    this.#spool = options.spool;
    this.#memoryLimit = options.memoryBytes;
    this.#spoolLimit = options.spoolBytes;
    this.#log = options.log;
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
    let loc: SpoolLocation | null = null;
    if (this.#spool !== null) {
      try {
        loc = this.#spool.append(seq, compression, lines, rawBytes, payload);
      } catch (err) {
        // Disk full or gone: keep the batch in memory rather than lose it.
        if (this.#spoolErrors++ === 0) {
          this.#log.error(
            { err: (err as Error).message, spool: this.#spool.dir },
            "spool: append failed; keeping batches in memory only",
          );
        }
      }
    }
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

  /** The batch's payload, from memory or from the spool. */
  async payload(b: BufferedBatch): Promise<Buffer> {
    if (b.payload !== null) return b.payload;
    if (b.loc === null || this.#spool === null) throw new Error(`batch ${b.seq} has no payload`);
    return this.#spool.read(b.loc, b.size);
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
        this.#finish(b);
        while (this.#head < q.length && q[this.#head]!.done) this.#head++;
        const next = q[this.#head];
        this.#advance(next === undefined ? this.#nextSeq - 1 : next.seq - 1);
        return b;
      }
    }
    return undefined;
  }

  #finish(b: BufferedBatch): void {
    b.done = true;
    this.#lines -= b.lines;
    if (b.payload !== null) this.#memoryBytes -= b.size;
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

  #updateFull(): void {
    const over =
      this.#spool === null || this.#spoolErrors > 0
        ? this.#memoryBytes >= this.#memoryLimit
        : this.#spool.bytes >= this.#spoolLimit;
    const under =
      this.#spool === null || this.#spoolErrors > 0
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
      spoolErrors: this.#spoolErrors,
    };
  }
}
