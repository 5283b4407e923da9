/**
 * A FIFO of byte chunks, each holding whole lines, bounded by the caller in
 * bytes. Chunks are views that may be shared with other queues (broadcast
 * enqueues one view into every destination), so they are never modified.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #lines: number[] = [];
  /** When each chunk was pushed (ms). */
  #times: number[] = [];
  #head = 0;
  #bytes = 0;
  #lineCount = 0;

  get bytes(): number {
    return this.#bytes;
  }

  /** Datapoints (lines) queued. */
  get lines(): number {
    return this.#lineCount;
  }

  get length(): number {
    return this.#chunks.length - this.#head;
  }

  /** When the oldest chunk was queued (ms; a chunk put back counts from then), or null when empty. */
  get oldestAt(): number | null {
    return this.#head < this.#chunks.length ? this.#times[this.#head]! : null;
  }

  push(chunk: Buffer, lines: number): void {
    this.#chunks.push(chunk);
    this.#lines.push(lines);
    this.#times.push(Date.now());
    this.#bytes += chunk.length;
    this.#lineCount += lines;
  }

  /** Puts chunks back at the front, in order (used to resend after a failed connection). */
  unshiftAll(chunks: readonly Buffer[], lines: readonly number[]): void {
    this.#compact();
    this.#chunks.unshift(...chunks);
    this.#lines.unshift(...lines);
    const now = Date.now();
    this.#times.unshift(...chunks.map(() => now));
    for (let i = 0; i < chunks.length; i++) {
      this.#bytes += chunks[i]!.length;
      this.#lineCount += lines[i]!;
    }
  }

  /** Removes the oldest chunk; returns its line count, or -1 when empty. */
  dropOldest(): number {
    if (this.#head >= this.#chunks.length) return -1;
    const chunk = this.#chunks[this.#head]!;
    const lines = this.#lines[this.#head]!;
    this.#advance(chunk.length, lines);
    return lines;
  }

  /**
   * Moves chunks from the front into `out`/`outLines` until about `maxBytes`
   * (at least one chunk). Returns the number of lines moved.
   */
  shiftInto(out: Buffer[], outLines: number[], maxBytes: number): number {
    let bytes = 0;
    let lines = 0;
    while (this.#head < this.#chunks.length && (bytes === 0 || bytes < maxBytes)) {
      const chunk = this.#chunks[this.#head]!;
      const n = this.#lines[this.#head]!;
      out.push(chunk);
      outLines.push(n);
      bytes += chunk.length;
      lines += n;
      this.#advance(chunk.length, n);
    }
    return lines;
  }

  /** Calls `f` with each chunk and its line count, oldest first. */
  forEach(f: (chunk: Buffer, lines: number) => void): void {
    for (let i = this.#head; i < this.#chunks.length; i++) f(this.#chunks[i]!, this.#lines[i]!);
  }

  /** Removes everything; returns the lines that were queued. */
  clear(): number {
    const lines = this.#lineCount;
    this.#chunks = [];
    this.#lines = [];
    this.#times = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#lineCount = 0;
    return lines;
  }

  #advance(bytes: number, lines: number): void {
    // Release the reference so the chunk can be collected.
    (this.#chunks as (Buffer | undefined)[])[this.#head] = undefined;
    this.#head++;
    this.#bytes -= bytes;
    this.#lineCount -= lines;
    if (this.#head === this.#chunks.length) {
      this.#chunks = [];
      this.#lines = [];
      this.#times = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#chunks.length) {
      this.#compact();
    }
  }

  #compact(): void {
    if (this.#head === 0) return;
    this.#chunks = this.#chunks.slice(this.#head);
    this.#lines = this.#lines.slice(this.#head);
    this.#times = this.#times.slice(this.#head);
    this.#head = 0;
  }
}
