import { EventEmitter } from "node:events";
import { backoffDelay } from "../../common/backoff.ts";
import { DestinationCounters } from "./destination-counters.ts";
import type { DestinationDisk } from "./destination-disk.ts";
import {
  type DestinationLink,
  type DestinationName,
  type DestinationTransport,
  openLink,
} from "./destination-link.ts";
import { DESTINATION_DEFAULTS, type DestinationOptions } from "./destination-options.ts";
import { DestinationQueue, type DestinationQueueHost } from "./destination-queue.ts";
import type { DestinationSpec } from "./destination-spec.ts";
import type { DestinationState, DestinationStats } from "./destination-stats.ts";
import type { DiskQueue } from "./disk-queue.ts";
import { DrainDeadline } from "./drain-deadline.ts";
import { CLOSED, type Link, type LinkState, linkOf, socketOf } from "./link-state.ts";
import type { LineRun } from "./memory-only-lines.ts";
import { specTransport } from "./pickle-destination.ts";
import { WritePump } from "./write-pump.ts";

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
 * This is the link side: the state machine, drain and close. What is
 * queued, in flight, kept for resending and on disk, and its accounting, is
 * its DestinationQueue's (its disk part: DestinationDisk); handing the queue
 * to the socket is its WritePump's.
 *
 * Events (DestinationEvents): "state", "blocked" and "unblocked" (the block
 * policy's hold on ingest). "error" is never emitted: failures are counted
 * and retried.
 */
export class Destination extends EventEmitter<DestinationEvents> {
  readonly spec: DestinationName;
  readonly #transport: DestinationTransport;
  readonly #queue: DestinationQueue;
  readonly #writer: WritePump;
  #backoffMin: number;
  #backoffMax: number;
  #connectTimeout: number;

  #state: LinkState = { kind: "backoff", timer: null };
  #attempt = 0;
  /** Failed connection attempts since the last successful connect. */
  #failStreak = 0;
  #drainWaiters: Array<() => void> = [];
  /** The drain under way (drain() was called): its result, and its deadline. */
  #drain: { left: Promise<number>; deadline: DrainDeadline } | null = null;

  readonly #count = new DestinationCounters();

  /**
   * The write pump and the reconnect, as functions made once per destination
   * and handed to setImmediate/setTimeout, so scheduling them allocates no
   * closure and exposes no method.
   */
  readonly #pump = (): void => this.#writer.write(this.#state);
  readonly #reconnect = (): void => this.#connect();

  /**
   * To the destination spec `to` (TCP or TLS with `options.tls`, plaintext or
   * pickle), or the destination `to` is the transport of.
   */
  constructor(to: DestinationSpec | DestinationTransport, options: DestinationOptions = {}) {
    super();
    const transport = "open" in to ? to : specTransport(to, options.tls ?? null);
    this.#transport = transport;
    this.spec = transport.name;
    const host: DestinationQueueHost = {
      hold: (on) => {
        this.emit(on ? "blocked" : "unblocked");
      },
      sending: () => socketOf(this.#state) !== null && linkOf(this.#state)?.kind !== "connecting",
      closed: () => this.#state.kind === "closed",
      filled: () => this.#writer.schedule(this.#state),
      emptied: () => {
        if (this.#queue.drained()) this.#notifyDrained();
      },
    };
    this.#queue = new DestinationQueue(this.#count, options, transport.resends, host);
    this.#writer = new WritePump(this.#queue, options, this.#pump, () => this.#notifyDrained());
    this.#backoffMin = options.backoffMinMs ?? DESTINATION_DEFAULTS.backoffMinMs;
    this.#backoffMax = options.backoffMaxMs ?? DESTINATION_DEFAULTS.backoffMaxMs;
    this.#connectTimeout = options.connectTimeoutMs ?? DESTINATION_DEFAULTS.connectTimeoutMs;
    if (options.disk !== undefined && transport.resends) this.#queue.openDisk(options.disk);
  }

  /** Lines a drain's end appended to the disk part (what memory held and the disk did not). */
  get keptOnDisk(): number {
    return this.#queue.keptOnDisk;
  }

  /** The disk part of the queue, or null. */
  get disk(): DiskQueue | null {
    return this.#queue.disk?.queue ?? null;
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
    return this.#queue.blocking;
  }

  /**
   * Changes queue bound and policy in place (a reload that keeps this
   * destination), and tells the transport (a file is reopened).
   */
  /** How full its memory queue is: queued bytes over the bound (above 1 after the bound shrank). */
  get fill(): number {
    return this.#queue.bytes / this.#queue.queueBytes;
  }

  reconfigure(options: DestinationOptions): void {
    if (options.backoffMinMs !== undefined) this.#backoffMin = options.backoffMinMs;
    if (options.backoffMaxMs !== undefined) this.#backoffMax = options.backoffMaxMs;
    this.#writer.reconfigure(options);
    this.#queue.reconfigure(options);
    this.#transport.reload?.();
  }

  stats(): DestinationStats {
    const s = this.#count.stats(this.spec, this.#state.kind, this.#queue.waiting());
    const disk = this.#queue.disk;
    if (disk !== null) s.disk = disk.stats();
    return s;
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
    const queue = this.#queue;
    const disk = queue.disk;
    if (disk !== null && this.#spills(disk, chunk.length) && disk.append(chunk, lines)) {
      disk.replay();
      return;
    }
    if (queue.push(chunk, lines)) this.#writer.schedule(this.#state);
  }

  /**
   * Whether a chunk goes to `disk`: behind what is there already, when memory
   * cannot take it, or while the destination is down (so that what a crash
   * of this process can take stays small while nothing is delivered).
   */
  #spills(disk: DestinationDisk, bytes: number): boolean {
    if (disk.spills(bytes)) return true;
    // The link's state: a draining destination can be down too.
    const kind = linkOf(this.#state)?.kind;
    return (kind === "backoff" || kind === "connecting") && this.#failStreak > 0;
  }

  /** From backoff (start() or the reconnect timer): opens a new socket. */
  #connect(): void {
    const s = this.#state;
    if (linkOf(s)?.kind !== "backoff") return;
    if (s.kind === "draining" && this.#queue.empty) {
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
        this.#writer.schedule(this.#state);
        this.#queue.replay();
      },
      drain: () => this.#writer.resume(this.#state),
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
    this.#writer.stop();
    this.#count.failures++;
    this.#failStreak++;
    // Resend what was written recently and what was still in flight.
    this.#queue.takeBack();
    const delay = this.#nextDelay();
    this.#enter({ kind: "backoff", timer: setTimeout(this.#reconnect, delay) });
    // A shutdown with a disk queue does not wait for a destination that is down.
    if (this.#queue.drainToDisk) this.#notifyDrained();
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
    return this.#queue.takeQueued();
  }

  /**
   * Removes and returns the next records of the disk part, about `maxBytes`,
   * for re-routing elsewhere (counted as rerouted; their records are
   * released). Only while not connected, and not while a read is under way;
   * empty when there is nothing (more) to take.
   */
  takeDisk(maxBytes: number): Promise<LineRun[]> {
    const disk = this.#queue.disk;
    const kind = this.#state.kind;
    if (disk === null || kind === "connected" || kind === "closed") return Promise.resolve([]);
    return disk.take(maxBytes);
  }

  #nextDelay(): number {
    const delay = backoffDelay(this.#attempt, this.#backoffMin, this.#backoffMax);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    return delay;
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
   *
   * With a disk queue, what is left goes to disk instead, and the drain ends
   * as soon as memory is empty, or the destination is down (nothing would be
   * delivered before the deadline): the disk keeps it for the next process.
   * `untilDiskEmpty`: the drain ends only when the disk is empty too (an
   * adopted disk queue, delivered to a destination that is no longer routed
   * to), or at the deadline.
   */
  drain(deadlineMs: number, untilDiskEmpty = false): Promise<number> {
    const queue = this.#queue;
    // A drain already running (a removed destination, then shutdown) is the
    // one drain: it ends by the earlier deadline, and its count is made once.
    if (this.#drain !== null) {
      this.#drain.deadline.cutAt(deadlineMs);
      if (!untilDiskEmpty && queue.disk !== null && !queue.drainToDisk) {
        // A shutdown ends an adopted queue's drain: what is left stays on disk.
        queue.drainToDisk = true;
        if (queue.drained() || linkOf(this.#state)?.kind === "backoff") this.#notifyDrained();
      }
      return this.#drain.left;
    }
    const s = this.#state;
    if (s.kind !== "draining" && s.kind !== "closed") this.#setState({ kind: "draining", link: s });
    queue.drainToDisk = !untilDiskEmpty;
    const done = new Promise<void>((resolve) => {
      const down = queue.drainToDisk && linkOf(this.#state)?.kind === "backoff";
      if (down || queue.drained()) resolve();
      else this.#drainWaiters.push(resolve);
    });
    queue.replay();
    const deadline = new DrainDeadline(deadlineMs);
    const left = (async (): Promise<number> => {
      await Promise.race([done, deadline.reached]);
      deadline.stop();
      // Counted and let go of in one step, before any event or await: what
      // is left goes to disk, if there is one; the rest is undelivered
      // (never written) or unconfirmed (owed resends), and a write completing
      // while the socket closes is ignored.
      const n = queue.letGo();
      await this.close();
      return n;
    })();
    this.#drain = { left, deadline };
    return left;
  }

  /**
   * Lets go of the disk queue at once, for another Destination of the same
   * destination in this process to open (a removed destination added again
   * while it drained, an adopted queue whose destination is configured
   * again): what memory holds is appended to it first. Everything the disk
   * then holds leaves this destination's counts as rerouted (the next owner
   * counts it as recovered); what memory held and the disk refused is
   * undelivered. The drain under way, if any, ends.
   */
  releaseDisk(): void {
    if (this.#queue.releaseDisk()) this.#notifyDrained();
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
    // What is on disk stays there, for the next process to open it; the
    // hold on ingest ends without "unblocked" (DestinationQueue.close).
    this.#queue.close();
    this.#notifyDrained();
  }
}
