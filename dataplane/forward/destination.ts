import { EventEmitter } from "node:events";
import { backoffDelay } from "../../common/backoff.ts";
import { ByteQueue } from "./byte-queue.ts";
import { DestinationCounters } from "./destination-counters.ts";
import {
  type DestinationLink,
  type DestinationName,
  type DestinationTransport,
  openLink,
  tcpTransport,
} from "./destination-link.ts";
import {
  DESTINATION_DEFAULTS,
  type DestinationOptions,
  type OverflowPolicy,
  resendWindowBytes,
} from "./destination-options.ts";
import type { DestinationSpec } from "./destination-spec.ts";
import type { DestinationState, DestinationStats } from "./destination-stats.ts";
import { DrainDeadline } from "./drain-deadline.ts";
import { kernelResendBytes } from "./kernel-buffers.ts";
import { CLOSED, type Link, type LinkState, linkOf, socketOf } from "./link-state.ts";
import { putBack, takeWrite } from "./queued-writes.ts";
import { ResendWindow, type Write } from "./resend-window.ts";

export {
  DESTINATION_DEFAULTS,
  type DestinationOptions,
  OVERFLOW_POLICIES,
  type OverflowPolicy,
  resendWindowBytes,
} from "./destination-options.ts";

/** What a Destination emits (listeners are typed by it). */
export interface DestinationEvents {
  /** The state changed; the argument is the new one. */
  state: [state: DestinationState];
  /** The queue went over its bound under the block policy: ingest should pause. */
  blocked: [];
  /** The queue fell to half its bound after "blocked" (or the policy changed). */
  unblocked: [];
}

/**
 * One downstream destination: a bounded queue, a connection state machine
 * (connect → connected → backoff → connect …, DNS re-resolved on every
 * connect), writes that wait for 'drain', and a resend window. TCP by
 * default; the link is the transport's (DestinationTransport: UDP in
 * udp-destination.ts, files in file-destination.ts), and the queue, its
 * policies and the accounting are the same whatever it is.
 *
 * Events (DestinationEvents): "state", "blocked" and "unblocked" (the block
 * policy's hold on ingest). "error" is never emitted: failures are counted
 * and retried.
 */
export class Destination extends EventEmitter<DestinationEvents> {
  readonly spec: DestinationName;
  readonly #transport: DestinationTransport;
  #queue = new ByteQueue();
  #queueBytes: number;
  #overflow: OverflowPolicy;
  readonly #resendWindow: ResendWindow;
  #backoffMin: number;
  #backoffMax: number;
  #connectTimeout: number;
  #writeBytes: number;
  #flushDelay: number;
  #pumpTimer: NodeJS.Timeout | null = null;

  #state: LinkState = { kind: "backoff", timer: null };
  #waitingDrain = false;
  #pumpScheduled = false;
  #attempt = 0;
  /** Failed connection attempts since the last successful connect. */
  #failStreak = 0;
  /** Handed to the socket, write callback pending. */
  #inflight: Write[] = [];
  /**
   * The block policy's hold on ingest: set when the queue goes over its bound,
   * cleared at half of it. A property of the queue, not of the connection, so
   * it is kept apart from #state; close() (which empties the queue) clears it.
   */
  #blocked = false;
  #drainWaiters: Array<() => void> = [];
  /** The drain under way (drain() was called): its result, and its deadline. */
  #drain: { left: Promise<number>; deadline: DrainDeadline } | null = null;

  readonly #count = new DestinationCounters();

  /**
   * The write pump and the reconnect, as functions made once per destination
   * and handed to setImmediate/setTimeout, so scheduling them allocates no
   * closure and exposes no method.
   */
  readonly #pump = (): void => this.#writeQueued();
  readonly #reconnect = (): void => this.#connect();

  /** TCP to `to`, or the destination `to` is the transport of. */
  constructor(to: DestinationSpec | DestinationTransport, options: DestinationOptions = {}) {
    super();
    const transport = "open" in to ? to : tcpTransport(to);
    this.#transport = transport;
    this.spec = transport.name;
    this.#queueBytes = options.queueBytes ?? DESTINATION_DEFAULTS.queueBytes;
    this.#overflow = options.overflow ?? DESTINATION_DEFAULTS.overflow;
    // Without resending, nothing is kept and nothing is counted unconfirmed.
    this.#resendWindow = transport.resends
      ? new ResendWindow(
          resendWindowBytes(options.resendBytes ?? DESTINATION_DEFAULTS.resendBytes),
          kernelResendBytes(),
        )
      : new ResendWindow(0, 0);
    this.#backoffMin = options.backoffMinMs ?? DESTINATION_DEFAULTS.backoffMinMs;
    this.#backoffMax = options.backoffMaxMs ?? DESTINATION_DEFAULTS.backoffMaxMs;
    this.#connectTimeout = options.connectTimeoutMs ?? DESTINATION_DEFAULTS.connectTimeoutMs;
    this.#writeBytes = options.writeBytes ?? DESTINATION_DEFAULTS.writeBytes;
    this.#flushDelay = options.flushDelayMs ?? DESTINATION_DEFAULTS.flushDelayMs;
  }

  /** Starts connecting. */
  start(): void {
    this.#connect();
  }

  get state(): DestinationState {
    return this.#state.kind;
  }

  /** True while the queue is over its bound under the block policy: ingest should pause. */
  get blocking(): boolean {
    return this.#blocked;
  }

  /**
   * Changes queue bound and policy in place (a reload that keeps this
   * destination), and tells the transport (a file is reopened).
   */
  reconfigure(options: DestinationOptions): void {
    if (options.queueBytes !== undefined) this.#queueBytes = options.queueBytes;
    if (options.overflow !== undefined) this.#overflow = options.overflow;
    if (options.resendBytes !== undefined && this.#transport.resends)
      this.#resendWindow.limitBytes = resendWindowBytes(options.resendBytes);
    if (options.backoffMinMs !== undefined) this.#backoffMin = options.backoffMinMs;
    if (options.backoffMaxMs !== undefined) this.#backoffMax = options.backoffMaxMs;
    if (options.writeBytes !== undefined) this.#writeBytes = options.writeBytes;
    if (options.flushDelayMs !== undefined) this.#flushDelay = options.flushDelayMs;
    this.#checkUnblocked();
    this.#enforceBound();
    this.#transport.reload?.();
  }

  stats(): DestinationStats {
    return this.#count.stats(this.spec, this.#state.kind, {
      lines: this.#waitingLines(),
      bytes: this.#queue.bytes,
    });
  }

  /**
   * Queues whole lines. `chunk` must not be modified afterwards (it may be
   * shared with other destinations).
   */
  enqueue(chunk: Buffer, lines: number): void {
    this.#count.routed += lines;
    if (this.#state.kind === "closed") {
      this.#count.drop("closed", lines);
      return;
    }
    if (this.#overflow === "drop-newest" && this.#queue.bytes + chunk.length > this.#queueBytes) {
      this.#count.drop("queue_full", lines);
      return;
    }
    this.#queue.push(chunk, lines);
    this.#enforceBound();
    this.#schedulePump();
  }

  #enforceBound(): void {
    if (this.#queue.bytes <= this.#queueBytes) return;
    if (this.#overflow === "block") {
      if (!this.#blocked) {
        this.#blocked = true;
        this.emit("blocked");
      }
      return;
    }
    if (this.#overflow === "drop-oldest") {
      // Lines owed as resends were forwarded once: the peer may have them.
      // They come first in flight, then in the queue; what is in flight does
      // not change while this loop runs.
      const inflight = this.#inflightLines();
      while (this.#queue.bytes > this.#queueBytes && this.#queue.length > 1) {
        const n = this.#queue.dropOldest();
        const owedQueued = Math.max(0, this.#resendWindow.pending - inflight);
        const owed = this.#resendWindow.dropped(Math.min(n, owedQueued));
        this.#count.unconfirmed += owed;
        this.#count.drop("queue_full", n - owed);
      }
    }
  }

  #checkUnblocked(): void {
    if (
      this.#blocked &&
      (this.#overflow !== "block" || this.#queue.bytes <= this.#queueBytes / 2)
    ) {
      this.#blocked = false;
      this.emit("unblocked");
    }
  }

  #schedulePump(): void {
    // Connected, or draining over a socket (connected or not: a connecting
    // socket buffers the write until it connects).
    const kind = this.#state.kind;
    if (kind !== "connected" && kind !== "draining") return;
    if (this.#waitingDrain || socketOf(this.#state) === null) return;
    // Deferred so that everything queued meanwhile goes out in one write. With
    // a quarter of writeBytes waiting, that is the end of this event-loop turn
    // (as ioredis autoPipelining does); with less, up to flushDelayMs later, so
    // that a trickle from many senders becomes a few writes rather than one per
    // read, at the cost of at most that much latency.
    const now =
      this.#queue.bytes >= this.#writeBytes / 4 || kind === "draining" || this.#flushDelay <= 0;
    if (this.#pumpTimer !== null) {
      if (!now) return;
      clearTimeout(this.#pumpTimer);
      this.#pumpTimer = null;
    } else if (this.#pumpScheduled) {
      return;
    }
    this.#pumpScheduled = true;
    if (now) setImmediate(this.#pump);
    else this.#pumpTimer = setTimeout(this.#pump, this.#flushDelay);
  }

  /** Hands queued data to the socket in writes of about writeBytes, until it pushes back. */
  #writeQueued(): void {
    this.#pumpScheduled = false;
    if (this.#pumpTimer !== null) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = null;
    const socket = socketOf(this.#state);
    if (socket === null || this.#waitingDrain) return;
    while (this.#queue.length > 0) {
      const write = takeWrite(this.#queue, this.#writeBytes);
      this.#inflight.push(write);
      const ok = socket.write(write.chunks[0]!, (err, unsent) => this.#written(write, err, unsent));
      if (!ok) {
        this.#waitingDrain = true;
        break;
      }
    }
    this.#checkUnblocked();
  }

  /** A write completed; `unsent` of its lines were given up on (dropped, send_failed). */
  #written(write: Write, err: Error | null | undefined, unsent = 0): void {
    if (err) return; // the socket's 'close' handler requeues everything in flight
    const i = this.#inflight.indexOf(write);
    if (i < 0) return;
    this.#inflight.splice(i, 1);
    const resent = this.#resendWindow.written(write);
    this.#count.resent += resent;
    this.#count.forwarded += write.count - resent - unsent;
    if (unsent > 0) this.#count.drop("send_failed", unsent);
    if (this.#inflight.length === 0 && this.#queue.length === 0) this.#notifyDrained();
  }

  /** From backoff (start() or the reconnect timer): opens a new socket. */
  #connect(): void {
    const s = this.#state;
    if (linkOf(s)?.kind !== "backoff") return;
    if (s.kind === "draining" && this.#queue.length === 0 && this.#inflight.length === 0) {
      this.#setState(CLOSED);
      return;
    }
    const socket = openLink(this.#transport, this.#connectTimeout, {
      connect: () => {
        // Closed (or replaced) while connecting: close() is ending this socket.
        if (socketOf(this.#state) !== socket) return;
        this.#attempt = 0;
        this.#failStreak = 0;
        this.#count.connects++;
        this.#count.lastError = undefined;
        this.#enter({ kind: "connected", socket });
        this.#schedulePump();
      },
      drain: () => {
        this.#waitingDrain = false;
        this.#schedulePump();
      },
      error: (err) => {
        this.#count.lastError = err.message;
      },
      close: () => this.#onClose(socket),
    });
    this.#enter({ kind: "connecting", socket });
  }

  #onClose(socket: DestinationLink): void {
    // Not the current link's socket: close() already let go of it.
    if (socketOf(this.#state) !== socket) return;
    this.#waitingDrain = false;
    this.#pumpScheduled = false;
    if (this.#pumpTimer !== null) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = null;
    this.#count.failures++;
    this.#failStreak++;
    // Resend: what was written recently (the peer may not have read it) and what
    // was still in flight, in the original order, ahead of the queue. The
    // window counts the lines it gives back as owed resends.
    const taken = this.#resendWindow.takeBack();
    this.#count.unconfirmed += taken.beyond;
    putBack(this.#queue, [...taken.writes, ...this.#inflight]);
    this.#inflight = [];
    const delay = this.#nextDelay();
    this.#enter({ kind: "backoff", timer: setTimeout(this.#reconnect, delay) });
  }

  /** Failed connection attempts since the last successful connect. */
  get failStreak(): number {
    return this.#failStreak;
  }

  /**
   * Removes and returns everything queued (including what a failed connection
   * gave back), oldest first, for re-routing elsewhere. Only while not
   * connected, so nothing taken is also being written.
   */
  takeQueued(): Array<{ chunk: Buffer; lines: number }> {
    if (this.#state.kind === "connected") return [];
    const chunks: Buffer[] = [];
    const lines: number[] = [];
    const taken = this.#queue.shiftInto(chunks, lines, Number.POSITIVE_INFINITY);
    // Owed resends were counted as forwarded here; the rest leaves this destination.
    this.#count.rerouted += taken - this.#resendWindow.pending;
    this.#resendWindow.clearPending();
    this.#checkUnblocked();
    return chunks.map((chunk, i) => ({ chunk, lines: lines[i]! }));
  }

  #nextDelay(): number {
    const delay = backoffDelay(this.#attempt, this.#backoffMin, this.#backoffMax);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    return delay;
  }

  #inflightLines(): number {
    let n = 0;
    for (const w of this.#inflight) n += w.count;
    return n;
  }

  /** Lines queued or in flight that were never forwarded (owed resends were). */
  #waitingLines(): number {
    return Math.max(0, this.#queue.lines + this.#inflightLines() - this.#resendWindow.pending);
  }

  /** Moves the link on; a draining destination stays draining, over the new link. */
  #enter(link: Link): void {
    const s = this.#state;
    if (s.kind === "closed") return;
    this.#setState(s.kind === "draining" ? { kind: "draining", link } : link);
  }

  #setState(next: LinkState): void {
    const was = this.#state.kind;
    this.#state = next;
    if (next.kind !== was) this.emit("state", next.kind);
  }

  #notifyDrained(): void {
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const f of w) f();
  }

  /**
   * Stops taking new data and delivers what is queued, for up to `deadlineMs`.
   * Resolves with the number of datapoints that could not be delivered (0 when
   * everything was written to the socket): counted as undelivered. Owed
   * resends left over were forwarded once: counted as unconfirmed instead.
   */
  drain(deadlineMs: number): Promise<number> {
    // A drain already running (a removed destination, then shutdown) is the
    // one drain: it ends by the earlier deadline, and its count is made once.
    if (this.#drain !== null) {
      this.#drain.deadline.cutAt(deadlineMs);
      return this.#drain.left;
    }
    const s = this.#state;
    if (s.kind !== "draining" && s.kind !== "closed") this.#setState({ kind: "draining", link: s });
    const done = new Promise<void>((resolve) => {
      if (this.#queue.length === 0 && this.#inflight.length === 0) resolve();
      else this.#drainWaiters.push(resolve);
    });
    const deadline = new DrainDeadline(deadlineMs);
    const left = (async (): Promise<number> => {
      await Promise.race([done, deadline.reached]);
      deadline.stop();
      // Counted and let go of in one step, before any event or await: what
      // is left is undelivered (never written) or unconfirmed (owed
      // resends), and a write completing while the socket closes is ignored.
      const n = this.#waitingLines();
      this.#count.undelivered += n;
      this.#count.unconfirmed += this.#resendWindow.pending;
      this.#discard();
      await this.close();
      return n;
    })();
    this.#drain = { left, deadline };
    return left;
  }

  /** Empties the queue, what is in flight and the resend window. */
  #discard(): void {
    this.#queue.clear();
    this.#inflight = [];
    this.#resendWindow.clear();
  }

  /** Closes at once; queued data is discarded (counted as dropped by the caller's choice). */
  async close(): Promise<void> {
    const link = linkOf(this.#state);
    if (link?.kind === "backoff" && link.timer !== null) clearTimeout(link.timer);
    const socket = socketOf(this.#state);
    this.#setState(CLOSED);
    if (socket !== null) {
      await new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        socket.once("close", () => resolve());
        // end() sends what the kernel still has after our last write; destroy
        // if the peer does not close in time.
        socket.end();
        setTimeout(() => socket.destroy(), 2_000).unref();
      });
    }
    this.#discard();
    // No queue, no hold on ingest. Cleared without "unblocked": a closed
    // destination is out of its owner's set, and ingest must not resume for it
    // (at shutdown, the senders are gone).
    this.#blocked = false;
    this.#notifyDrained();
  }
}
