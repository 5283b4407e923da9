/** Every WorkerScaling default, in one place. */
export const WORKER_SCALING_DEFAULTS = {
  /** How often the processes' loads are looked at (ms). */
  tickMs: 500,
  /** Start one more process when the running ones are, on average, this busy (event-loop utilization, 0-1)... */
  upLoad: 0.5,
  /** ...for this many ticks in a row (2 s: a burst of connections is no load). */
  upTicks: 4,
  /** Retire one when the others could carry all of the load at this utilization... */
  downLoad: 0.25,
  /** ...for this many ticks in a row (60 s; --workers-idle sets it). */
  downTicks: 120,
} as const;

export type WorkerScalingSettings = {
  -readonly [K in keyof typeof WORKER_SCALING_DEFAULTS]: number;
};

/**
 * When a relay runs one more, or one fewer, process: from the event-loop
 * utilization of each running process (the share of the time its loop was
 * busy, not waiting for the kernel), looked at every tick. At low rates one
 * process does the work, so the relay pays for one event loop and one set of
 * destination connections (a second process costs about as much CPU again
 * at 15,000 datapoints/s, and 70 MiB); when the running processes are busy
 * on average (upLoad) for upTicks ticks, one more starts, up to `max`; when
 * the load would keep one fewer under downLoad for downTicks ticks (a
 * minute), the newest is retired, down to `min`. The two thresholds are far
 * apart so that a load near one of them does not start and stop processes
 * in turn.
 */
export class WorkerScaling {
  readonly #min: number;
  readonly #max: number;
  readonly #s: WorkerScalingSettings;
  #busy = 0;
  #quiet = 0;

  constructor(min: number, max: number, settings: Partial<WorkerScalingSettings> = {}) {
    this.#max = Math.max(1, max);
    this.#min = Math.min(this.#max, Math.max(1, min));
    this.#s = { ...WORKER_SCALING_DEFAULTS, ...settings };
  }

  get min(): number {
    return this.#min;
  }

  get max(): number {
    return this.#max;
  }

  get tickMs(): number {
    return this.#s.tickMs;
  }

  /**
   * `loads`: the utilization of each running process over the last tick.
   * Returns 1 (start one more), -1 (retire one) or 0.
   */
  decide(loads: readonly number[]): -1 | 0 | 1 {
    const n = loads.length;
    const sum = loads.reduce((a, b) => a + b, 0);
    this.#busy = n < this.#max && sum / n >= this.#s.upLoad ? this.#busy + 1 : 0;
    this.#quiet = n > this.#min && sum <= this.#s.downLoad * (n - 1) ? this.#quiet + 1 : 0;
    if (this.#busy >= this.#s.upTicks) {
      this.#busy = 0;
      this.#quiet = 0;
      return 1;
    }
    if (this.#quiet >= this.#s.downTicks) {
      this.#quiet = 0;
      return -1;
    }
    return 0;
  }

  /** Forget the run so far (the set of processes changed). */
  reset(): void {
    this.#busy = 0;
    this.#quiet = 0;
  }
}
