import type { LineSink } from "../../ingest/line-sink.ts";
import { countNewlines } from "../batch-codec.ts";

const NL = 0x0a;

/**
 * Every LineBatcherOptions default, in one place: the batcher falls back to
 * these, and the proxy's `--batch-size` and `--batch-delay` defaults are built
 * from them.
 */
export const LINE_BATCHER_DEFAULTS = {
  // 1 MiB: the link's costs per batch (a compression context, a protobuf
  // message, an acknowledgement, the gateway's decompression context and its
  // write to each destination) spread over ~15,000 lines instead of ~3,800:
  // in bench/gateway.bench.ts the gateway spent 0.74 instead of 0.93 CPU
  // s per million datapoints of one stream, and zstd's window finds more
  // repeats (4.46× instead of 4.08×). A batch cut by --batch-delay is
  // smaller, and copied out (flush).
  maxBytes: 1024 * 1024,
  maxDelayMs: 200,
} as const satisfies Required<LineBatcherOptions>;

export interface LineBatcherOptions {
  /** Largest batch in uncompressed bytes. Default 1 MiB. */
  maxBytes?: number;
  /** Longest a line waits for its batch to fill up, in ms. Default 200. */
  maxDelayMs?: number;
}

/**
 * Cuts a stream of whole Graphite lines into batches by size and by time:
 * a batch is emitted when the next run of lines would not fit, or
 * `maxDelayMs` after its first line arrived, whichever comes first. A batch
 * always ends at a line boundary and never exceeds `maxBytes` (a line longer
 * than that is impossible: the framer caps lines far below it).
 *
 * Lines are copied into the batch: the runs it is given are views of socket
 * buffers that must not be pinned.
 */
export class LineBatcher implements LineSink {
  readonly #emit: (raw: Buffer, lines: number) => void;
  readonly #max: number;
  readonly #delay: number;
  #buf: Buffer;
  #used = 0;
  #timer: NodeJS.Timeout | null = null;

  constructor(emit: (raw: Buffer, lines: number) => void, options: LineBatcherOptions = {}) {
    this.#emit = emit;
    this.#max = options.maxBytes ?? LINE_BATCHER_DEFAULTS.maxBytes;
    this.#delay = options.maxDelayMs ?? LINE_BATCHER_DEFAULTS.maxDelayMs;
    this.#buf = Buffer.allocUnsafe(this.#max);
  }

  /** Bytes waiting in the batch being filled. */
  get pendingBytes(): number {
    return this.#used;
  }

  /** The proxy's listener writes here: whole, valid lines in buf[start, end). */
  write(buf: Buffer, start: number, end: number): void {
    this.push(buf.subarray(start, end));
  }

  /** Appends whole, newline-terminated lines. */
  push(run: Buffer): void {
    let start = 0;
    while (start < run.length) {
      const room = this.#max - this.#used;
      const left = run.length - start;
      if (left <= room) {
        this.#append(run, start, run.length);
        break;
      }
      // Take the lines that fit, then cut.
      const cut = room > 0 ? run.lastIndexOf(NL, start + room - 1) : -1;
      if (cut >= start) {
        this.#append(run, start, cut + 1);
        start = cut + 1;
      } else if (this.#used === 0) {
        // A single line larger than a whole batch: cannot happen with the
        // framer's line limit, but never loop forever if it does.
        const nl = run.indexOf(NL, start);
        const end = nl < 0 ? run.length : nl + 1;
        this.#emit(Buffer.from(run.subarray(start, end)), 1);
        start = end;
        continue;
      }
      this.flush();
    }
  }

  #append(run: Buffer, start: number, end: number): void {
    if (start === end) return;
    run.copy(this.#buf, this.#used, start, end);
    this.#used += end - start;
    if (this.#used >= this.#max) {
      this.flush();
    } else if (this.#timer === null) {
      this.#timer = setTimeout(onTimer, this.#delay, this);
    }
  }

  /** Emits the batch being filled now, if it holds anything. */
  flush(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#used === 0) return;
    let raw: Buffer;
    if (this.#used < this.#max / 2) {
      // A small batch (cut by time) is copied out, so that it does not pin a
      // whole batch-sized buffer while it waits for its acknowledgement; the
      // big buffer is reused.
      // allocUnsafeSlow: its own memory, not a slice of Node's shared pool.
      raw = Buffer.allocUnsafeSlow(this.#used);
      this.#buf.copy(raw, 0, 0, this.#used);
    } else {
      raw = this.#buf.subarray(0, this.#used);
      this.#buf = Buffer.allocUnsafe(this.#max);
    }
    this.#used = 0;
    this.#emit(raw, countNewlines(raw));
  }

  /**
   * Emits what is waiting, then stops the timer: closing never drops lines
   * (a proxy refused by its gateway closes without a graceful shutdown, and
   * its last lines must still reach the buffer and spool).
   */
  close(): void {
    this.flush();
  }
}

function onTimer(b: LineBatcher): void {
  b.flush();
}
