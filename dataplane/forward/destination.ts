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
import type { DiskQueue } from "./disk-queue.ts";
import { DiskTier } from "./disk-tier.ts";
import { DrainDeadline } from "./drain-deadline.ts";
import { kernelResendBytes } from "./kernel-buffers.ts";
import { CLOSED, type Link, type LinkState, linkOf, socketOf } from "./link-state.ts";
import type { LineRun } from "./memory-only-lines.ts";
import { putBack, takeWrite } from "./queued-writes.ts";
import { ResendWindow, type Write } from "./resend-window.ts";

export {
  DESTINATION_DEFAULTS,
  type DestinationOptions,
  OVERFLOW_POLICIES,
  type OverflowPolicy,
  resendWindowBytes,
} from "./destination-options.ts";

/** Bytes read back from disk at once. */
const REPLAY_BYTES = 4 * 1024 * 1024;
/** Memory below which the disk part is read back (or half the memory bound, if less). */
const REPLAY_LOW_WATER = 8 * 1024 * 1024;

/** Milliseconds since `at` (0 when null). */
function ageMs(at: number | null): number {
  return at === null ? 0 : Math.max(0, Math.round(Date.now() - at));
}

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
  /**
   * The disk part of the queue (--queue-dir), or null. While it holds
   * anything, new lines go to it, behind what it holds; what it holds is
   * read back into memory as memory empties.
   */
  #disk: DiskTier | null = null;
  /** Lines a drain's end appended to the disk part (keptOnDisk). */
  #kept = 0;
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
    if (options.disk !== undefined && transport.resends) {
      const { queue, lost } = options.disk((chunks, lines) => this.#refused(chunks, lines));
      this.#disk = new DiskTier(queue);
      this.#count.recovered = queue.lines + lost.disk_corrupt + lost.disk_unreadable;
      for (const r of ["disk_corrupt", "disk_unreadable"] as const) this.#count.drop(r, lost[r]);
    }
  }

  /** Lines a drain's end appended to the disk part (what memory held and the disk did not). */
  get keptOnDisk(): number {
    return this.#kept;
  }

  /** The disk part of the queue, or null. */
  get disk(): DiskQueue | null {
    return this.#disk?.queue ?? null;
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
    const tier = this.#disk;
    const waiting = this.#waitingLines();
    const s = this.#count.stats(this.spec, this.#state.kind, {
      lines: tier === null ? waiting : waiting + tier.queue.lines + tier.parked - tier.keptOwed,
      bytes: this.#queue.bytes,
    });
    if (tier !== null) {
      const disk = tier.queue;
      s.disk = {
        // Read back into memory and not yet delivered is still on disk too.
        lines: tier.diskLines(waiting),
        bytes: disk.bytes,
        spilled: disk.spilled,
        replayed: disk.replayed,
        failures: disk.failures,
        oldestAgeMs: ageMs(disk.oldestAt ?? this.#queue.oldestAt),
      };
    }
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
    if (
      this.#disk !== null &&
      this.#spills(chunk.length) &&
      this.#disk.queue.append(chunk, lines)
    ) {
      this.#replay();
      return;
    }
    this.#toMemory(chunk, lines);
  }

  /** Onto the memory queue, under the overflow policy. */
  #toMemory(chunk: Buffer, lines: number): void {
    if (this.#overflow === "drop-newest" && this.#queue.bytes + chunk.length > this.#queueBytes) {
      this.#count.drop("queue_full", lines);
      return;
    }
    this.#queue.push(chunk, lines);
    if (this.#disk !== null) this.#disk.memIn += lines;
    this.#enforceBound();
    this.#schedulePump();
  }

  /**
   * Whether a chunk goes to disk: behind what is there already, when memory
   * cannot take it, or while the destination is down (so that what a crash
   * of this process can take stays small while nothing is delivered).
   */
  #spills(bytes: number): boolean {
    const disk = this.#disk!;
    if (!disk.empty || this.#queue.bytes + bytes > this.#queueBytes) return true;
    // The link's state: a draining destination can be down too.
    const kind = linkOf(this.#state)?.kind;
    return (kind === "backoff" || kind === "connecting") && this.#failStreak > 0;
  }

  /** The lines of a record the disk failed to write: kept in memory instead. */
  #refused(chunks: Buffer[], lines: number[]): void {
    if (this.#disk?.keeping) return; // memory's own lines: they never left it
    for (let i = 0; i < chunks.length; i++) {
      if (this.#state.kind === "closed") this.#count.drop("closed", lines[i]!);
      else this.#toMemory(chunks[i]!, lines[i]!);
    }
  }

  /**
   * Reads records back from disk while the destination can send and memory
   * is low, in order, behind what memory holds.
   */
  #replay(): void {
    const tier = this.#disk;
    if (tier === null || tier.replaying || tier.empty || tier.drainToDisk) return;
    if (socketOf(this.#state) === null || linkOf(this.#state)?.kind === "connecting") return;
    if (this.#queue.bytes >= this.#replayLowWater()) return;
    tier.replaying = true;
    // No more than memory has room for (a record at least).
    const room = Math.max(1, Math.min(REPLAY_BYTES, this.#queueBytes - this.#queue.bytes));
    void tier.queue
      .read(room)
      .then((got) => {
        tier.replaying = false;
        if (this.#state.kind === "closed") return; // let go of: still on disk
        tier.took(
          got,
          (chunk, lines) => this.#queue.push(chunk, lines),
          (reason, lines) => this.#count.drop(reason, lines),
        );
        this.#releaseDelivered();
        this.#schedulePump();
        this.#replay();
        // Records that were all lost leave nothing to write: no write
        // completes to say that the disk is empty now.
        if (this.#drained()) this.#notifyDrained();
      })
      .catch(() => {
        tier.replaying = false;
      });
  }

  #replayLowWater(): number {
    return Math.min(this.#queueBytes / 2, REPLAY_LOW_WATER);
  }

  /**
   * Releases the records read back from disk whose every line has left
   * memory (written to the socket, dropped or re-routed): the disk may
   * delete them.
   */
  #releaseDelivered(): void {
    this.#disk?.release(this.#waitingLines());
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
      this.#releaseDelivered();
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
    if (this.#disk !== null) {
      this.#releaseDelivered();
      this.#replay();
    }
    if (this.#drained()) this.#notifyDrained();
  }

  /** From backoff (start() or the reconnect timer): opens a new socket. */
  #connect(): void {
    const s = this.#state;
    if (linkOf(s)?.kind !== "backoff") return;
    if (
      s.kind === "draining" &&
      this.#queue.length === 0 &&
      this.#inflight.length === 0 &&
      this.#diskEmpty()
    ) {
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
        this.#replay();
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
    // A shutdown with a disk queue does not wait for a destination that is down.
    if (this.#disk?.drainToDisk) this.#notifyDrained();
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
    this.#releaseDelivered();
    this.#checkUnblocked();
    return chunks.map((chunk, i) => ({ chunk, lines: lines[i]! }));
  }

  /**
   * Removes and returns the next records of the disk part, about `maxBytes`,
   * for re-routing elsewhere (counted as rerouted; their records are
   * released). Only while not connected, and not while a read is under way;
   * empty when there is nothing (more) to take.
   */
  async takeDisk(maxBytes: number): Promise<LineRun[]> {
    const tier = this.#disk;
    if (tier === null || tier.empty || tier.replaying) return [];
    const kind = this.#state.kind;
    if (kind === "connected" || kind === "closed") return [];
    tier.replaying = true;
    try {
      const got = await tier.queue.read(maxBytes);
      const out: LineRun[] = [];
      let seq = -1;
      for (const r of got) {
        if (r.chunk === null) this.#count.drop(r.lost ?? "disk_unreadable", r.lines);
        else {
          out.push({ chunk: r.chunk, lines: r.lines });
          this.#count.rerouted += r.lines;
        }
        seq = Math.max(seq, r.seq);
      }
      tier.tookAway(seq);
      this.#releaseDelivered();
      if (this.#drained()) this.#notifyDrained();
      return out;
    } finally {
      tier.replaying = false;
      // Connected meanwhile: what is left on disk is read back now, not at
      // the next write.
      this.#replay();
    }
  }

  /** Nothing left to deliver: memory is empty, and the disk too unless a drain keeps it (drainToDisk). */
  #drained(): boolean {
    return (
      this.#inflight.length === 0 &&
      this.#queue.length === 0 &&
      (this.#disk === null || this.#disk.drainToDisk || this.#disk.empty)
    );
  }

  /** Nothing left on disk to read back. */
  #diskEmpty(): boolean {
    return this.#disk === null || this.#disk.empty;
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
   *
   * With a disk queue, what is left goes to disk instead, and the drain ends
   * as soon as memory is empty, or the destination is down (nothing would be
   * delivered before the deadline): the disk keeps it for the next process.
   * `untilDiskEmpty`: the drain ends only when the disk is empty too (an
   * adopted disk queue, delivered to a destination that is no longer routed
   * to), or at the deadline.
   */
  drain(deadlineMs: number, untilDiskEmpty = false): Promise<number> {
    // A drain already running (a removed destination, then shutdown) is the
    // one drain: it ends by the earlier deadline, and its count is made once.
    if (this.#drain !== null) {
      this.#drain.deadline.cutAt(deadlineMs);
      if (!untilDiskEmpty && this.#disk !== null && !this.#disk.drainToDisk) {
        // A shutdown ends an adopted queue's drain: what is left stays on disk.
        this.#disk.drainToDisk = true;
        if (this.#drained() || linkOf(this.#state)?.kind === "backoff") this.#notifyDrained();
      }
      return this.#drain.left;
    }
    const s = this.#state;
    if (s.kind !== "draining" && s.kind !== "closed") this.#setState({ kind: "draining", link: s });
    if (this.#disk !== null) this.#disk.drainToDisk = !untilDiskEmpty;
    const done = new Promise<void>((resolve) => {
      const down = this.#disk?.drainToDisk === true && linkOf(this.#state)?.kind === "backoff";
      if (down || this.#drained()) resolve();
      else this.#drainWaiters.push(resolve);
    });
    this.#replay();
    const deadline = new DrainDeadline(deadlineMs);
    const left = (async (): Promise<number> => {
      await Promise.race([done, deadline.reached]);
      deadline.stop();
      // Counted and let go of in one step, before any event or await: what
      // is left goes to disk, if there is one; the rest is undelivered
      // (never written) or unconfirmed (owed resends), and a write completing
      // while the socket closes is ignored.
      const kept = this.#keepOnDisk();
      const n = this.#waitingLines() - kept;
      this.#count.undelivered += n;
      this.#count.unconfirmed += this.#resendWindow.pending - (this.#disk?.keptOwed ?? 0);
      this.#discard();
      this.#disk?.queue.close();
      await this.close();
      return n;
    })();
    this.#drain = { left, deadline };
    return left;
  }

  /**
   * At a drain's end: appends what waits in memory and is not on disk yet to
   * the disk part (DiskTier.keep), so that the next process to open it
   * delivers it. Returns the waiting lines that are (now) on disk.
   */
  #keepOnDisk(): number {
    const tier = this.#disk;
    if (tier === null) return 0;
    const runs: LineRun[] = [];
    for (const w of this.#inflight)
      for (let i = 0; i < w.chunks.length; i++)
        runs.push({ chunk: w.chunks[i]!, lines: w.lines[i]! });
    this.#queue.forEach((chunk, lines) => {
      runs.push({ chunk, lines });
    });
    const onDisk = tier.keep(runs, this.#waitingLines(), this.#resendWindow.pending);
    this.#kept = tier.kept;
    return onDisk;
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
    const tier = this.#disk;
    if (tier === null) return;
    const kept = this.#keepOnDisk();
    const refused = this.#waitingLines() - kept;
    this.#count.undelivered += refused;
    this.#count.unconfirmed += this.#resendWindow.pending - tier.keptOwed;
    this.#discard();
    tier.queue.close();
    // Owed resends kept on disk were counted as forwarded already.
    this.#count.rerouted += tier.queue.lines + tier.parked - tier.keptOwed;
    this.#disk = null;
    this.#notifyDrained();
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
    // What is on disk stays there, for the next process to open it.
    this.#disk?.queue.close();
    // No queue, no hold on ingest. Cleared without "unblocked": a closed
    // destination is out of its owner's set, and ingest must not resume for it
    // (at shutdown, the senders are gone).
    this.#blocked = false;
    this.#notifyDrained();
  }
}
