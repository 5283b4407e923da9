/** Every WorkerScaling default, in one place. */
export const WORKER_SCALING_DEFAULTS = {
  /** How often the processes' loads are looked at (ms). */
  tickMs: 500,
  /** One more process takes connections when those that do use, on average, this share of a core (CpuLoad)... */
  upLoad: 0.5,
  /** ...for this many ticks in a row (1 s). */
  upTicks: 2,
  /** One retires when the others could carry all of the load at this share of a core each... */
  downLoad: 0.25,
  /** ...for this many ticks in a row (60 s; --workers-idle sets it). */
  downTicks: 120,
} as const;

export type WorkerScalingSettings = {
  -readonly [K in keyof typeof WORKER_SCALING_DEFAULTS]: number;
};

/**
 * When one more of a relay's processes takes connections, or one fewer:
 * from the CPU each process that takes them uses (CpuLoad: the share of a
 * core), looked at every tick. At low rates one process does the work, so
 * the relay pays for one busy event loop and one set of busy destination
 * connections (a second process dealt half the senders cost about as much
 * CPU again at 15,000 datapoints/s). When those processes are busy on
 * average (upLoad) for upTicks ticks, one more takes connections, up to
 * `max`; when the load would keep one fewer under downLoad for downTicks
 * ticks (a minute), the newest retires, down to `min`. The two
 * thresholds are far apart so that a load near one of them does not move
 * connections back and forth.
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
   * `loads`: the share of a core each running process used over the last tick.
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

/**
 * The CPU a process uses, as a share of one core, between calls (its own
 * threads included: V8's collector, libuv's pool). Not the event loop's
 * utilization: a loop that wakes for many small reads counts as busy most
 * of the time while it uses a tenth of a core (measured: 0.55-0.66 against
 * 0.13 cores with 2,000 slow senders).
 */
export class CpuLoad {
  #cpu = process.cpuUsage();
  #at = performance.now();

  /** The share of a core used since the last call (or since this was made). */
  sample(): number {
    const cpu = process.cpuUsage();
    const at = performance.now();
    const usedMs = (cpu.user - this.#cpu.user + cpu.system - this.#cpu.system) / 1000;
    this.#cpu = cpu;
    const load = usedMs / Math.max(1, at - this.#at);
    this.#at = at;
    return load;
  }
}
