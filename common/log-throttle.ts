import type { Logger } from "./logger.ts";

/**
 * A warning logged at most once per interval, however often it happens:
 * each line carries how many times it happened since the last line
 * (`count`) and in all (`total`), so the log stays bounded and nothing is
 * hidden.
 */
export class ThrottledWarning {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #msg: string;
  readonly #now: () => number;
  #lastAt = Number.NEGATIVE_INFINITY;
  #count = 0;
  #total = 0;

  /** `now`: the clock (milliseconds), for tests. Default Date.now. */
  constructor(log: Logger, intervalMs: number, msg: string, now: () => number = Date.now) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#msg = msg;
    this.#now = now;
  }

  /**
   * Starts an interval now, as if a line had just been logged: for a caller
   * that has just said the first occurrence in its own words.
   */
  hold(): void {
    this.#lastAt = this.#now();
  }

  note(fields: Record<string, unknown>): void {
    this.#count++;
    this.#total++;
    const now = this.#now();
    if (now - this.#lastAt < this.#intervalMs) return;
    this.#lastAt = now;
    this.#log.warn({ ...fields, count: this.#count, total: this.#total }, this.#msg);
    this.#count = 0;
  }
}
