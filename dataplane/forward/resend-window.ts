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
 *
 * When `limitBytes` is less than what the kernels may hold (`capacityBytes`),
 * writes let go of within that much of the newest are remembered by their
 * line count only: on a failure they are what may have been lost for want
 * of a larger window (`takeBack`'s `beyond`).
 */
export class ResendWindow {
  #limitBytes: number;
  /** Written, kept for resending, oldest first. */
  #writes: Write[] = [];
  #bytes = 0;
  /** Lines at the front of what is in flight, then queued, that are resends. */
  #pending = 0;
  readonly #capacityBytes: number;
  /** Writes let go of that were within `capacityBytes` of the newest: [bytes, lines], oldest first. */
  #beyond: Array<[number, number]> = [];
  #beyondBytes = 0;
  #beyondLines = 0;

  /** `limitBytes`: see its accessor; `capacityBytes`: what the kernels may hold (default: limitBytes). */
  constructor(limitBytes: number, capacityBytes = limitBytes) {
    this.#limitBytes = limitBytes;
    this.#capacityBytes = capacityBytes;
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
    this.#writes.push(write);
    this.#bytes += write.bytes;
    while (this.#bytes > this.#limitBytes && this.#writes.length > (this.#limitBytes > 0 ? 1 : 0)) {
      const old = this.#writes.shift()!;
      this.#bytes -= old.bytes;
      this.#letGo(old);
    }
    return resent;
  }

  /** Remembers the size of a write let go of while it is within `capacityBytes` of the newest. */
  #letGo(w: Write): void {
    const room = this.#capacityBytes - this.#bytes;
    if (room <= 0) return;
    this.#beyond.push([w.bytes, w.count]);
    this.#beyondBytes += w.bytes;
    this.#beyondLines += w.count;
    while (this.#beyondBytes > room && this.#beyond.length > 0) {
      const [b, l] = this.#beyond.shift()!;
      this.#beyondBytes -= b;
      this.#beyondLines -= l;
    }
  }

  /**
   * `lines` owed as resends (already forwarded once) were dropped from the
   * queue: they no longer are owed. Returns how many were (at most `pending`).
   */
  dropped(lines: number): number {
    const owed = Math.min(lines, this.#pending);
    this.#pending -= owed;
    return owed;
  }

  /**
   * The connection failed: empties the window and returns its writes, oldest
   * first, for the caller to put back at the front of the queue, ahead of
   * what was in flight. Their lines are now owed as resends too (counted
   * once as forwarded already); those owed before were at the front of what
   * was in flight and queued, which now follows them. `beyond`: lines
   * written within `capacityBytes` of the newest that the window no longer
   * held, which the peer may not have read.
   */
  takeBack(): { writes: Write[]; beyond: number } {
    const writes = this.#writes;
    const beyond = this.#beyondLines;
    this.#writes = [];
    this.#bytes = 0;
    this.#forgetBeyond();
    for (const w of writes) this.#pending += w.count;
    return { writes, beyond };
  }

  #forgetBeyond(): void {
    this.#beyond = [];
    this.#beyondBytes = 0;
    this.#beyondLines = 0;
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
    this.#forgetBeyond();
  }
}
