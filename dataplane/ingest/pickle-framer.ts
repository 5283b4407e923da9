import { type FrameHandler, type FramerOptions, LineFramer } from "./line-framer.ts";
import { RejectReason } from "./line-validator.ts";
import { decodePickle } from "./pickle-decoder.ts";

/**
 * The largest pickle message accepted: carbon's PICKLE_RECEIVER_MAX_LENGTH
 * (1 MiB). The `--pickle-max-message` default is built from it.
 */
export const DEFAULT_PICKLE_MAX_MESSAGE = 1024 * 1024;

export interface PickleFramerOptions extends FramerOptions {
  /** Largest message (its declared length) in bytes. Default DEFAULT_PICKLE_MAX_MESSAGE. */
  maxMessageBytes?: number;
}

const HEADER = 4;
/** How much of a refused message the reject sample shows. */
const SAMPLE_BYTES = 64;

/**
 * Frames carbon's pickle protocol on one connection: a 4-byte big-endian
 * length, then a pickled list of `(name, (timestamp, value))`
 * (pickle-decoder.ts decodes it without executing anything). Every datapoint
 * of a message becomes the plaintext line `name value timestamp` and goes
 * through the same framing and validation as a line read from a plaintext
 * connection, so it is accepted or rejected, and counted, exactly as that
 * line would be.
 *
 * Bounded, and never fatal to the connection: a message declared larger than
 * `maxMessageBytes` is skipped as it streams by (never buffered) and
 * rejected once (`pickle_too_large`); a message that does not decode is
 * rejected once (`bad_pickle`), with what is wrong; either way the next
 * message is read as usual. A refused message counts as one rejected
 * datapoint: how many it held cannot be known. Items of another shape in a
 * message that decodes are each rejected as `bad_pickle` (carbon skips them
 * silently).
 */
export class PickleFramer {
  readonly #handler: FrameHandler;
  readonly #lines: LineFramer;
  readonly #max: number;
  readonly #header = Buffer.alloc(HEADER);
  #headerHave = 0;
  /** The message being read: its declared length, and the parts read so far. */
  #length = -1;
  #parts: Buffer[] = [];
  #have = 0;
  /** Bytes of an oversized message still to skip. */
  #skip = 0;

  constructor(handler: FrameHandler, options: PickleFramerOptions = {}) {
    this.#handler = handler;
    this.#lines = new LineFramer(handler, options);
    this.#max = options.maxMessageBytes ?? DEFAULT_PICKLE_MAX_MESSAGE;
  }

  /** Bytes held back, waiting for the rest of a message. */
  get pendingBytes(): number {
    return this.#headerHave + this.#have;
  }

  /**
   * What this framer holds, as bytes that recreate its state when pushed
   * into a new framer (null: nothing held), or false when its state cannot
   * move (skipping an oversized message). For a connection moved to another
   * process (connection-handoff.ts).
   */
  carryOver(): Buffer | null | false {
    if (this.#skip > 0) return false;
    if (this.#length < 0) {
      return this.#headerHave === 0
        ? null
        : Buffer.from(this.#header.subarray(0, this.#headerHave));
    }
    return Buffer.concat([this.#header, ...this.#parts]);
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - at);
        this.#skip -= n;
        at += n;
        continue;
      }
      if (this.#length < 0) {
        const n = Math.min(HEADER - this.#headerHave, chunk.length - at);
        chunk.copy(this.#header, this.#headerHave, at, at + n);
        this.#headerHave += n;
        at += n;
        if (this.#headerHave < HEADER) return;
        this.#headerHave = 0;
        const length = this.#header.readUInt32BE(0);
        if (length > this.#max) {
          this.#handler.reject(
            RejectReason.PickleTooLarge,
            `pickle message of ${length} bytes declared, more than the ${this.#max} accepted; skipped`,
            this.#header,
          );
          this.#skip = length;
          continue;
        }
        this.#length = length;
        if (length === 0) {
          this.#message(Buffer.alloc(0));
          continue;
        }
      }
      const n = Math.min(this.#length - this.#have, chunk.length - at);
      // A view: Node never reuses a chunk it handed over.
      this.#parts.push(chunk.subarray(at, at + n));
      this.#have += n;
      at += n;
      if (this.#have === this.#length) {
        const payload =
          this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#have);
        this.#parts = [];
        this.#have = 0;
        this.#length = -1;
        this.#message(payload);
      }
    }
  }

  /** The sender is done: a message cut short is rejected. */
  end(): void {
    if (this.#length >= 0 || this.#headerHave > 0) {
      const detail =
        this.#length >= 0
          ? `connection ended ${this.#length - this.#have} bytes short of a ${this.#length}-byte pickle message`
          : "connection ended in the middle of a pickle message's length";
      this.#handler.reject(RejectReason.BadPickle, detail, sample(this.#parts[0]));
    }
    this.#parts = [];
    this.#have = 0;
    this.#length = -1;
    this.#headerHave = 0;
    this.#skip = 0;
  }

  #message(payload: Buffer): void {
    const r = decodePickle(payload);
    if (!r.ok) {
      this.#handler.reject(RejectReason.BadPickle, r.error, sample(payload));
      return;
    }
    for (let i = 0; i < r.skipped; i++) {
      this.#handler.reject(
        RejectReason.BadPickle,
        "pickle item is not (name, (timestamp, value))",
        sample(payload),
      );
    }
    if (r.points.length === 0) return;
    let text = "";
    for (const p of r.points) {
      if (/[\n\r]/.test(p.name)) {
        this.#handler.reject(
          RejectReason.BadName,
          "line break in metric name",
          Buffer.from(p.name.slice(0, SAMPLE_BYTES)),
        );
        continue;
      }
      text += `${p.name} ${p.value} ${p.timestamp}\n`;
    }
    if (text !== "") this.#lines.push(Buffer.from(text));
  }
}

function sample(b: Buffer | undefined): Uint8Array {
  return b === undefined ? new Uint8Array(0) : b.subarray(0, SAMPLE_BYTES);
}
