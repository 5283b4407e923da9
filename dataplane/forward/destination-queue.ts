import { ByteQueue } from "./byte-queue.ts";
import type { DestinationCounters } from "./destination-counters.ts";
import {
  DestinationDisk,
  type DestinationDiskHost,
  type DestinationDiskOwner,
} from "./destination-disk.ts";
import {
  DESTINATION_DEFAULTS,
  type DestinationOptions,
  type DiskQueueOpener,
  type OverflowPolicy,
  resendWindowBytes,
} from "./destination-options.ts";
import { kernelResendBytes } from "./kernel-buffers.ts";
import type { LineRun } from "./memory-only-lines.ts";
import { putBack, takeWrite } from "./queued-writes.ts";
import { ResendWindow, type Write } from "./resend-window.ts";

/**
 * What a DestinationQueue asks of the destination it belongs to (the link's
 * state), and tells it. Made once per destination.
 */
export interface DestinationQueueHost extends DestinationDiskHost {
  /** The block policy's hold on ingest begins (true: "blocked") or ends (false: "unblocked"). */
  hold(on: boolean): void;
}

/**
 * What a destination holds for its peer, and its accounting: the memory
 * queue with its bound and overflow policy (and the block policy's hold on
 * ingest), the writes in flight, the resend window's share of what waits,
 * and the disk part (DestinationDisk, --queue-dir), whose records read back
 * are released as their lines leave memory.
 *
 * It decides nothing about the link: the Destination says when to write,
 * when the connection failed and when to let go; the link's state reaches
 * it through its DestinationQueueHost.
 */
export class DestinationQueue implements DestinationDiskOwner {
  readonly #memory = new ByteQueue();
  #queueBytes: number;
  #overflow: OverflowPolicy;
  readonly #resends: boolean;
  readonly #resendWindow: ResendWindow;
  /** Handed to the socket, write callback pending. */
  #inflight: Write[] = [];
  /**
   * The block policy's hold on ingest: set when the queue goes over its bound,
   * cleared at half of it. A property of the queue, not of the connection;
   * close() (which empties the queue) clears it.
   */
  #blocked = false;
  /**
   * The disk part of the queue (--queue-dir), or null. While it holds
   * anything, new lines go to it, behind what it holds; what it holds is
   * read back into memory as memory empties.
   */
  #disk: DestinationDisk | null = null;
  /** Lines a drain's end appended to the disk part (keptOnDisk). */
  #kept = 0;
  readonly #count: DestinationCounters;
  readonly #host: DestinationQueueHost;

  /**
   * Bounded as `options` say; `resends`: the transport resends (without,
   * nothing is kept and nothing is counted unconfirmed). Counts into `count`.
   */
  constructor(
    count: DestinationCounters,
    options: DestinationOptions,
    resends: boolean,
    host: DestinationQueueHost,
  ) {
    this.#count = count;
    this.#host = host;
    this.#resends = resends;
    this.#queueBytes = options.queueBytes ?? DESTINATION_DEFAULTS.queueBytes;
    this.#overflow = options.overflow ?? DESTINATION_DEFAULTS.overflow;
    this.#resendWindow = resends
      ? new ResendWindow(
          resendWindowBytes(options.resendBytes ?? DESTINATION_DEFAULTS.resendBytes),
          kernelResendBytes(),
        )
      : new ResendWindow(0, 0);
  }

  /**
   * Opens the disk part with `open`. A record the disk fails to write is
   * kept in memory instead (dropped as "closed" once the destination closed).
   */
  openDisk(open: DiskQueueOpener): void {
    const opened = open((chunks, lines) => this.#refused(chunks, lines));
    this.#disk = new DestinationDisk(opened, this.#memory, this, this.#count, this.#host);
  }

  /** The lines of a record the disk failed to write: kept in memory instead. */
  #refused(chunks: Buffer[], lines: number[]): void {
    if (this.#disk?.tier.keeping) return; // memory's own lines: they never left it
    for (let i = 0; i < chunks.length; i++) {
      if (this.#host.closed()) this.#count.drop("closed", lines[i]!);
      else if (this.push(chunks[i]!, lines[i]!)) this.#host.filled();
    }
  }

  /** Changes bound, policy and resend window in place (a reload), and applies them. */
  reconfigure(options: DestinationOptions): void {
    if (options.queueBytes !== undefined) this.#queueBytes = options.queueBytes;
    if (options.overflow !== undefined) this.#overflow = options.overflow;
    if (options.resendBytes !== undefined && this.#resends)
      this.#resendWindow.limitBytes = resendWindowBytes(options.resendBytes);
    this.checkUnblocked();
    this.#enforceBound();
  }

  /** Memory's bound, in bytes. */
  get queueBytes(): number {
    return this.#queueBytes;
  }

  /** Bytes waiting in memory. */
  get bytes(): number {
    return this.#memory.bytes;
  }

  /** Chunks waiting in memory. */
  get length(): number {
    return this.#memory.length;
  }

  /** True while memory is over its bound under the block policy: ingest should pause. */
  get blocking(): boolean {
    return this.#blocked;
  }

  /** The disk part, or null. */
  get disk(): DestinationDisk | null {
    return this.#disk;
  }

  /** Lines a drain's end appended to the disk part (what memory held and the disk did not). */
  get keptOnDisk(): number {
    return this.#kept;
  }

  /**
   * The drain under way ends with memory empty and leaves the disk as it is
   * (a shutdown: DiskTier.drainToDisk). Always false, and not set, without a
   * disk part.
   */
  get drainToDisk(): boolean {
    return this.#disk?.tier.drainToDisk === true;
  }

  set drainToDisk(v: boolean) {
    if (this.#disk !== null) this.#disk.tier.drainToDisk = v;
  }

  /**
   * Onto the memory queue, under the overflow policy. Returns false when the
   * policy dropped it (nothing new to write).
   */
  push(chunk: Buffer, lines: number): boolean {
    if (this.#overflow === "drop-newest" && this.#memory.bytes + chunk.length > this.#queueBytes) {
      this.#count.drop("queue_full", lines);
      return false;
    }
    this.#memory.push(chunk, lines);
    if (this.#disk !== null) this.#disk.tier.memIn += lines;
    this.#enforceBound();
    return true;
  }

  #enforceBound(): void {
    if (this.#memory.bytes <= this.#queueBytes) return;
    if (this.#overflow === "block") {
      if (!this.#blocked) {
        this.#blocked = true;
        this.#host.hold(true);
      }
      return;
    }
    if (this.#overflow === "drop-oldest") {
      // Lines owed as resends were forwarded once: the peer may have them.
      // They come first in flight, then in the queue; what is in flight does
      // not change while this loop runs.
      const inflight = this.#inflightLines();
      while (this.#memory.bytes > this.#queueBytes && this.#memory.length > 1) {
        const n = this.#memory.dropOldest();
        const owedQueued = Math.max(0, this.#resendWindow.pending - inflight);
        const owed = this.#resendWindow.dropped(Math.min(n, owedQueued));
        this.#count.unconfirmed += owed;
        this.#count.drop("queue_full", n - owed);
      }
      this.releaseDelivered();
    }
  }

  /** Ends the block policy's hold on ingest once memory fell to half its bound (or the policy changed). */
  checkUnblocked(): void {
    if (
      this.#blocked &&
      (this.#overflow !== "block" || this.#memory.bytes <= this.#queueBytes / 2)
    ) {
      this.#blocked = false;
      this.#host.hold(false);
    }
  }

  /** The next write of about `maxBytes` from memory (which must not be empty), now in flight. */
  nextWrite(maxBytes: number): Write {
    const write = takeWrite(this.#memory, maxBytes);
    this.#inflight.push(write);
    return write;
  }

  /**
   * A write completed; `unsent` of its lines were given up on (dropped,
   * send_failed). Returns false when it was no longer in flight (let go of).
   */
  written(write: Write, unsent: number): boolean {
    const i = this.#inflight.indexOf(write);
    if (i < 0) return false;
    this.#inflight.splice(i, 1);
    const resent = this.#resendWindow.written(write);
    this.#count.resent += resent;
    this.#count.forwarded += write.count - resent - unsent;
    if (unsent > 0) this.#count.drop("send_failed", unsent);
    if (this.#disk !== null) {
      this.releaseDelivered();
      this.#disk.replay();
    }
    return true;
  }

  /**
   * The connection failed: what was written recently (the peer may not have
   * read it) and what was still in flight go back, in the original order,
   * ahead of the queue. The window counts the lines it gives back as owed
   * resends.
   */
  takeBack(): void {
    const taken = this.#resendWindow.takeBack();
    this.#count.unconfirmed += taken.beyond;
    putBack(this.#memory, [...taken.writes, ...this.#inflight]);
    this.#inflight = [];
  }

  /**
   * Removes and returns everything in memory, oldest first, for re-routing
   * elsewhere (Destination.takeQueued: nothing is in flight then).
   */
  takeQueued(): Array<{ chunk: Buffer; lines: number }> {
    const chunks: Buffer[] = [];
    const lines: number[] = [];
    const taken = this.#memory.shiftInto(chunks, lines, Number.POSITIVE_INFINITY);
    // Owed resends were counted as forwarded here; the rest leaves this destination.
    this.#count.rerouted += taken - this.#resendWindow.pending;
    this.#resendWindow.clearPending();
    this.releaseDelivered();
    this.checkUnblocked();
    return chunks.map((chunk, i) => ({ chunk, lines: lines[i]! }));
  }

  /** Reads the disk part back into memory, if there is one and memory is low (DestinationDisk.replay). */
  replay(): void {
    this.#disk?.replay();
  }

  /**
   * Releases the records read back from disk whose every line has left
   * memory (written to the socket, dropped or re-routed): the disk may
   * delete them.
   */
  releaseDelivered(): void {
    this.#disk?.tier.release(this.waitingLines());
  }

  /** Nothing left to deliver: memory is empty, and the disk too unless a drain keeps it (drainToDisk). */
  drained(): boolean {
    const tier = this.#disk?.tier;
    return (
      this.#inflight.length === 0 &&
      this.#memory.length === 0 &&
      (tier === undefined || tier.drainToDisk || tier.empty)
    );
  }

  /** Nothing in memory, in flight, or on disk to read back. */
  get empty(): boolean {
    return (
      this.#memory.length === 0 &&
      this.#inflight.length === 0 &&
      (this.#disk === null || this.#disk.tier.empty)
    );
  }

  #inflightLines(): number {
    let n = 0;
    for (const w of this.#inflight) n += w.count;
    return n;
  }

  /** Lines queued or in flight that were never forwarded (owed resends were). */
  waitingLines(): number {
    return Math.max(0, this.#memory.lines + this.#inflightLines() - this.#resendWindow.pending);
  }

  /**
   * At a drain's end: appends what waits in memory and is not on disk yet to
   * the disk part (DiskTier.keep), so that the next process to open it
   * delivers it. Returns the waiting lines that are (now) on disk.
   */
  #keepOnDisk(): number {
    const tier = this.#disk?.tier;
    if (tier === undefined) return 0;
    const runs: LineRun[] = [];
    for (const w of this.#inflight)
      for (let i = 0; i < w.chunks.length; i++)
        runs.push({ chunk: w.chunks[i]!, lines: w.lines[i]! });
    this.#memory.forEach((chunk, lines) => {
      runs.push({ chunk, lines });
    });
    const onDisk = tier.keep(runs, this.waitingLines(), this.#resendWindow.pending);
    this.#kept = tier.kept;
    return onDisk;
  }

  /**
   * Lets go of what memory holds and of the disk part (closed), counted in
   * one step: what is not on disk yet is appended to it, if there is one;
   * the rest is undelivered (never written) or unconfirmed (owed resends).
   * Returns the undelivered lines.
   */
  letGo(): number {
    const kept = this.#keepOnDisk();
    const n = this.waitingLines() - kept;
    this.#count.undelivered += n;
    this.#count.unconfirmed += this.#resendWindow.pending - (this.#disk?.tier.keptOwed ?? 0);
    this.#discard();
    this.#disk?.tier.queue.close();
    return n;
  }

  /**
   * Lets go of the disk part at once (Destination.releaseDisk): what memory
   * holds is appended to it first (letGo); everything it then holds leaves
   * this destination's counts as rerouted. False without a disk part.
   */
  releaseDisk(): boolean {
    const tier = this.#disk?.tier;
    if (tier === undefined) return false;
    this.letGo();
    // Owed resends kept on disk were counted as forwarded already.
    this.#count.rerouted += tier.queue.lines + tier.parked - tier.keptOwed;
    this.#disk = null;
    return true;
  }

  /**
   * Empties memory, what is in flight and the resend window, and closes the
   * disk part (what it holds stays there, for the next process to open it).
   * The hold on ingest ends without "unblocked": a closed destination is out
   * of its owner's set, and ingest must not resume for it (at shutdown, the
   * senders are gone).
   */
  close(): void {
    this.#discard();
    this.#disk?.tier.queue.close();
    this.#blocked = false;
  }

  /** Empties memory, what is in flight and the resend window. */
  #discard(): void {
    this.#memory.clear();
    this.#inflight = [];
    this.#resendWindow.clear();
  }

  /** What waits, for the stats: lines never forwarded (on disk too), and bytes in memory. */
  waiting(): { lines: number; bytes: number } {
    const tier = this.#disk?.tier;
    const waiting = this.waitingLines();
    return {
      lines:
        tier === undefined ? waiting : waiting + tier.queue.lines + tier.parked - tier.keptOwed,
      bytes: this.#memory.bytes,
    };
  }
}
