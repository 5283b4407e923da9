/**
 * The bytes on disk that the disk queues of one process may hold together
 * (its share of --queue-disk-total). Each DiskQueue reports the bytes of its
 * live segments as they change; an append that would take the total over
 * the limit is refused, and the destination falls back to its memory queue's
 * overflow policy.
 */
export class DiskBudget {
  #limit: number;
  #used = 0;

  constructor(limitBytes: number) {
    this.#limit = limitBytes;
  }

  get limit(): number {
    return this.#limit;
  }

  set limit(bytes: number) {
    this.#limit = bytes;
  }

  /** Bytes on disk now, over every disk queue of the process. */
  get used(): number {
    return this.#used;
  }

  /** Whether `bytes` more fit. */
  fits(bytes: number): boolean {
    return this.#used + bytes <= this.#limit;
  }

  /** A disk queue's bytes on disk changed by `delta` (negative: segments deleted). */
  change(delta: number): void {
    this.#used += delta;
  }
}
