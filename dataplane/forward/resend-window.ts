/** One socket write: queued chunks (joined into one buffer), kept until written, then for resending. */
export interface Write {
  chunks: Buffer[];
  /** Lines in each of `chunks`. */
  lines: number[];
  /** Bytes in all of `chunks`. */
  bytes: number;
  /** Lines in all of `chunks`. */
  count: number;
}

/**
 * A destination's resend window: the most recently written data, kept after
 * the write because a TCP peer that dies loses what sat in the two socket
 * buffers, and given back, in order, when the connection fails. Bounded by
 * `limitBytes`, but the last write is always kept.
 *
 * It also counts the lines owed as resends: those given back, which the
 * destination puts at the front of what it writes next. Writing them again
 * counts them as resent, not as forwarded a second time.
 */
export class ResendWindow {
  #limitBytes: number;
  /** Written, kept for resending, oldest first. */
  #writes: Write[] = [];
  #bytes = 0;
  /** Lines at the front of what is in flight, then queued, that are resends. */
  #pending = 0;

  /** `limitBytes`: see the `limitBytes` accessor. */
  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
  }

  /**
   * Bytes kept at most (the last write is kept even when larger); 0 keeps
   * nothing. A new bound applies from the next write kept.
   */
  get limitBytes(): number {
    return this.#limitBytes;
  }

  set limitBytes(bytes: number) {
    this.#limitBytes = bytes;
  }

  /** Bytes kept. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Lines owed as resends (given back and not written again or dropped yet). */
  get pending(): number {
    return this.#pending;
  }

  /**
   * A write the socket completed: returns how many of its lines were resends
   * (the rest were written for the first time), and keeps it, letting go of
   * the oldest writes kept beyond `limitBytes`.
   */
  written(write: Write): number {
    const resent = Math.min(this.#pending, write.count);
    this.#pending -= resent;
    if (this.#limitBytes > 0) {
      this.#writes.push(write);
      this.#bytes += write.bytes;
      while (this.#bytes > this.#limitBytes && this.#writes.length > 1) {
        this.#bytes -= this.#writes.shift()!.bytes;
      }
    }
    return resent;
  }

  /** `lines` were dropped from the front of the queue: those owed as resends no longer are. */
  dropped(lines: number): void {
    if (this.#pending > 0) this.#pending -= Math.min(lines, this.#pending);
  }

  /**
   * The connection failed: empties the window and returns its writes, oldest
   * first, for the caller to put back at the front of the queue, ahead of
   * what was in flight. Their lines are now owed as resends too (counted
   * once as forwarded already); those owed before were at the front of what
   * was in flight and queued, which now follows them.
   */
  takeBack(): Write[] {
    const writes = this.#writes;
    this.#writes = [];
    this.#bytes = 0;
    for (const w of writes) this.#pending += w.count;
    return writes;
  }

  /** The queue was taken away (to go elsewhere): no line is owed as a resend. */
  clearPending(): void {
    this.#pending = 0;
  }

  /** Forgets everything: the writes kept and the lines owed. */
  clear(): void {
    this.#writes = [];
    this.#bytes = 0;
    this.#pending = 0;
  }
}
