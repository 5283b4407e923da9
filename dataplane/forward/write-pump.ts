import { DESTINATION_DEFAULTS, type DestinationOptions } from "./destination-options.ts";
import type { DestinationQueue } from "./destination-queue.ts";
import { type LinkState, socketOf } from "./link-state.ts";
import type { Write } from "./resend-window.ts";

/**
 * A destination's write pump: hands its queue to the socket of its link in
 * writes of about `writeBytes`, deferred so that what is queued meanwhile
 * goes out together, until the socket pushes back (then it waits for
 * 'drain'). What a write completing means for the queue is the
 * DestinationQueue's to count.
 *
 * The destination's state is passed in, never kept here: the link stays the
 * destination's alone.
 */
export class WritePump {
  #writeBytes: number;
  #flushDelay: number;
  #timer: NodeJS.Timeout | null = null;
  #scheduled = false;
  #waitingDrain = false;
  readonly #queue: DestinationQueue;
  readonly #run: () => void;
  readonly #drained: () => void;

  /**
   * Writes `queue`, sized and deferred as `options` say. `run` calls write()
   * with the destination's state: made once per destination and handed to
   * setImmediate/setTimeout, so scheduling allocates no closure. `drained`:
   * a write completed and the queue holds nothing more to deliver.
   */
  constructor(
    queue: DestinationQueue,
    options: DestinationOptions,
    run: () => void,
    drained: () => void,
  ) {
    this.#queue = queue;
    this.#run = run;
    this.#drained = drained;
    this.#writeBytes = options.writeBytes ?? DESTINATION_DEFAULTS.writeBytes;
    this.#flushDelay = options.flushDelayMs ?? DESTINATION_DEFAULTS.flushDelayMs;
  }

  /** Changes write size and flush delay in place (a reload). */
  reconfigure(options: DestinationOptions): void {
    if (options.writeBytes !== undefined) this.#writeBytes = options.writeBytes;
    if (options.flushDelayMs !== undefined) this.#flushDelay = options.flushDelayMs;
  }

  /** Schedules a write, if the destination in `state` writes now and none is scheduled. */
  schedule(state: LinkState): void {
    // Connected, or draining over a socket (connected or not: a connecting
    // socket buffers the write until it connects).
    const kind = state.kind;
    if (kind !== "connected" && kind !== "draining") return;
    if (this.#waitingDrain || socketOf(state) === null) return;
    // Deferred so that everything queued meanwhile goes out in one write. With
    // a quarter of writeBytes waiting, that is the end of this event-loop turn
    // (as ioredis autoPipelining does); with less, up to flushDelayMs later, so
    // that a trickle from many senders becomes a few writes rather than one per
    // read, at the cost of at most that much latency.
    const now =
      this.#queue.bytes >= this.#writeBytes / 4 || kind === "draining" || this.#flushDelay <= 0;
    if (this.#timer !== null) {
      if (!now) return;
      clearTimeout(this.#timer);
      this.#timer = null;
    } else if (this.#scheduled) {
      return;
    }
    this.#scheduled = true;
    if (now) setImmediate(this.#run);
    else this.#timer = setTimeout(this.#run, this.#flushDelay);
  }

  /** Hands queued data to the socket of `state` in writes of about writeBytes, until it pushes back. */
  write(state: LinkState): void {
    this.#scheduled = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const socket = socketOf(state);
    if (socket === null || this.#waitingDrain) return;
    const queue = this.#queue;
    while (queue.length > 0) {
      const write = queue.nextWrite(this.#writeBytes);
      const ok = socket.write(write.chunks[0]!, (err, unsent) => this.#written(write, err, unsent));
      if (!ok) {
        this.#waitingDrain = true;
        break;
      }
    }
    queue.checkUnblocked();
  }

  /** A write completed; `unsent` of its lines were given up on (dropped, send_failed). */
  #written(write: Write, err: Error | null | undefined, unsent = 0): void {
    if (err) return; // the socket's 'close' handler requeues everything in flight
    if (!this.#queue.written(write, unsent)) return;
    if (this.#queue.drained()) this.#drained();
  }

  /** The socket emptied its buffer ('drain'): writing goes on, for the destination in `state`. */
  resume(state: LinkState): void {
    this.#waitingDrain = false;
    this.schedule(state);
  }

  /**
   * The socket closed: nothing waits for its 'drain', and the write scheduled
   * is forgotten (one already handed to setImmediate still runs).
   */
  stop(): void {
    this.#waitingDrain = false;
    this.#scheduled = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
