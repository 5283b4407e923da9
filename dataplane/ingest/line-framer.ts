import { FAST_OK, RejectReason, validateFast, validateSlow } from "./line-validator.ts";

const NL = 0x0a;
/** How much of a rejected line the handler is shown (the reject sample). */
const SAMPLE_BYTES = 256;

/** What a framer reports: runs of valid lines, and each rejected line. */
export interface FrameHandler {
  /**
   * Whole, valid, newline-terminated lines in buf[start, end). `buf` is never
   * modified afterwards, so the sink may keep views of it (zero copy).
   */
  segment(buf: Buffer, start: number, end: number, lines: number): void;
  /** One rejected line; `line` is a view of at most the first bytes of it, valid only during the call. */
  reject(reason: RejectReason, detail: string, line: Uint8Array): void;
}

/**
 * Longest accepted line in bytes, newline excluded: carbon's limit (Twisted's
 * LineOnlyReceiver.MAX_LENGTH). The `--max-line-length` default is built from it.
 */
export const DEFAULT_MAX_LINE_LENGTH = 16384;

export interface FramerOptions {
  /** Longest accepted line in bytes, newline excluded. Default DEFAULT_MAX_LINE_LENGTH (16384). */
  maxLineLength?: number;
}

/**
 * Splits a TCP byte stream into Graphite lines and validates each one.
 *
 * The hot path is per chunk: valid lines are passed on as runs (views into the
 * chunk Node gave us, which is never reused), so a chunk of valid lines costs
 * one validation loop and one `segment` call. A bad line splits the run, is
 * rejected and counted, and never affects the lines around it or the
 * connection. A partial line at the end of a chunk is copied (not viewed, so
 * it does not pin the chunk) and completed by the next one.
 */
export class LineFramer {
  readonly #sink: FrameHandler;
  readonly #maxLineLength: number;
  #carry: Buffer | null = null;
  /** Inside an over-long line: drop bytes up to the next newline. */
  #discarding = false;

  constructor(sink: FrameHandler, options: FramerOptions = {}) {
    this.#sink = sink;
    this.#maxLineLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
  }

  /** Bytes of an incomplete line held back, waiting for its newline. */
  get pendingBytes(): number {
    return this.#carry === null ? 0 : this.#carry.length;
  }

  /**
   * What this framer holds, as bytes that recreate its state when pushed
   * into a new framer (null: nothing held), or false when its state cannot
   * move (inside an over-long line being dropped). For a connection moved to
   * another process (connection-handoff.ts).
   */
  carryOver(): Buffer | null | false {
    if (this.#discarding) return false;
    return this.#carry;
  }

  push(chunk: Buffer): void {
    let start = 0;
    const len = chunk.length;
    if (this.#discarding || this.#carry !== null) {
      const nl = chunk.indexOf(NL);
      if (nl < 0) {
        this.#hold(chunk, 0);
        return;
      }
      if (this.#discarding) {
        this.#discarding = false;
      } else {
        const carry = this.#carry!;
        this.#carry = null;
        if (carry.length + nl > this.#maxLineLength) {
          this.#tooLong(carry, chunk.subarray(0, nl));
        } else {
          const line = Buffer.allocUnsafe(carry.length + nl + 1);
          carry.copy(line, 0);
          chunk.copy(line, carry.length, 0, nl + 1);
          this.#lines(line, 0, line.length);
        }
      }
      start = nl + 1;
    }
    const last = chunk.lastIndexOf(NL);
    if (last >= start) {
      this.#lines(chunk, start, last + 1);
      start = last + 1;
    }
    if (start < len) this.#hold(chunk, start);
  }

  /**
   * End of stream: a final line without a newline is still a line (carbon's
   * LineOnlyReceiver drops it; senders using `nc -q0` expect it delivered).
   */
  end(): void {
    const carry = this.#carry;
    this.#carry = null;
    this.#discarding = false;
    if (carry === null || carry.length === 0) return;
    const line = Buffer.allocUnsafe(carry.length + 1);
    carry.copy(line, 0);
    line[carry.length] = NL;
    this.#lines(line, 0, line.length);
  }

  #hold(chunk: Buffer, from: number): void {
    if (this.#discarding) return;
    const prev = this.#carry;
    const add = chunk.length - from;
    const total = (prev === null ? 0 : prev.length) + add;
    if (total > this.#maxLineLength) {
      if (prev === null) this.#tooLong(chunk.subarray(from));
      else this.#tooLong(prev, chunk.subarray(from));
      this.#carry = null;
      this.#discarding = true;
      return;
    }
    const next = Buffer.allocUnsafe(total);
    let at = 0;
    if (prev !== null) at = prev.copy(next, 0);
    chunk.copy(next, at, from);
    this.#carry = next;
  }

  /**
   * Rejects an over-long line whose bytes start in `head` and, when it was cut
   * across chunks, go on in `rest`: the sample is the line's first bytes
   * whatever the cut (a carry can be a few bytes long). Copying here is fine:
   * this path is rare.
   */
  #tooLong(head: Uint8Array, rest?: Uint8Array): void {
    let sample = head.subarray(0, SAMPLE_BYTES);
    if (rest !== undefined && sample.length < SAMPLE_BYTES) {
      sample = Buffer.concat([sample, rest.subarray(0, SAMPLE_BYTES - sample.length)]);
    }
    this.#sink.reject(
      RejectReason.TooLong,
      `line longer than ${this.#maxLineLength} bytes`,
      sample,
    );
  }

  /** Validates the complete lines in buf[start, end), where buf[end - 1] is a newline. */
  #lines(buf: Buffer, start: number, end: number): void {
    const sink = this.#sink;
    const max = this.#maxLineLength;
    let runStart = start;
    let runLines = 0;
    let ls = start;
    while (ls < end) {
      const nl = buf.indexOf(NL, ls);
      if (nl - ls <= max && validateFast(buf, ls, nl) === FAST_OK) {
        runLines++;
        ls = nl + 1;
        continue;
      }
      // Not a plain valid line: close the run, then decide this line alone.
      if (runLines > 0) sink.segment(buf, runStart, ls, runLines);
      runLines = 0;
      if (nl - ls > max) {
        this.#tooLong(buf.subarray(ls, nl));
      } else {
        const r = validateSlow(buf.subarray(ls, nl), Math.floor(Date.now() / 1000));
        if (!r.ok) {
          sink.reject(r.reason, r.detail, buf.subarray(ls, Math.min(nl, ls + SAMPLE_BYTES)));
        } else if (!r.rewritten) {
          sink.segment(buf, ls, nl + 1, 1);
        } else {
          const out = Buffer.from(r.line + "\n");
          if (out.length - 1 > max) {
            // A "now" timestamp (-1) made it longer than the limit, which the
            // receivers enforce too (carbon-cache drops the connection).
            this.#sink.reject(
              RejectReason.TooLong,
              `line longer than ${max} bytes once its -1 timestamp is replaced by the current time`,
              buf.subarray(ls, Math.min(nl, ls + SAMPLE_BYTES)),
            );
          } else {
            sink.segment(out, 0, out.length, 1);
          }
        }
      }
      ls = nl + 1;
      runStart = ls;
    }
    if (runLines > 0) sink.segment(buf, runStart, end, runLines);
  }
}

/** Lines in a buffer, as the framer counts them: a final line without a newline counts too. */
export function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(NL); i >= 0; i = buf.indexOf(NL, i + 1)) n++;
  if (buf.length > 0 && buf[buf.length - 1] !== NL) n++;
  return n;
}
