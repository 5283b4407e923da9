/**
 * A coalescing "something changed" flag for server streams: any number of
 * `notify()` calls between two `wait()`s wake the waiter once, so a stream
 * sends the latest snapshot rather than one message per change (an
 * `events.on` iterator would queue every event without limit).
 */
export class ChangeSignal {
  #pending = false;
  #wake: (() => void) | undefined;

  notify(): void {
    this.#pending = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Resolves at once if notified since the last wait, else at the next notify; rejects on abort. */
  wait(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#wake = undefined;
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#wake = () => {
        signal.removeEventListener("abort", onAbort);
        this.#pending = false;
        resolve();
      };
    });
  }
}
