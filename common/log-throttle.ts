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
  #lastAt = Number.NEGATIVE_INFINITY;
  #count = 0;
  #total = 0;

  constructor(log: Logger, intervalMs: number, msg: string) {
    this.#log = log;
    this.#intervalMs = intervalMs;
    this.#msg = msg;
  }

  note(fields: Record<string, unknown>): void {
    this.#count++;
    this.#total++;
    const now = Date.now();
    if (now - this.#lastAt < this.#intervalMs) return;
    this.#lastAt = now;
    this.#log.warn({ ...fields, count: this.#count, total: this.#total }, this.#msg);
    this.#count = 0;
  }
}
