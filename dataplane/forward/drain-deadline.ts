/**
 * When a drain must end: `reached` resolves at the deadline, which cutAt()
 * can bring earlier (never later: a drain asked for again with a shorter
 * deadline ends by the earlier one). stop() clears the timer once the drain
 * ended anyway.
 */
export class DrainDeadline {
  /** Resolves at the deadline (never, after stop()). */
  readonly reached: Promise<void>;
  #end: number;
  #timer: NodeJS.Timeout | undefined;
  #fire: () => void = () => {};

  /** Ends `ms` from now. */
  constructor(ms: number) {
    this.#end = Date.now() + ms;
    this.reached = new Promise<void>((resolve) => {
      this.#fire = resolve;
      this.#timer = setTimeout(resolve, ms);
    });
  }

  /** Ends `ms` from now instead, if that is earlier. */
  cutAt(ms: number): void {
    if (Date.now() + ms >= this.#end) return;
    this.#end = Date.now() + ms;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#fire, ms);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}
