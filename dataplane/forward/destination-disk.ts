import type { ByteQueue } from "./byte-queue.ts";
import type { DestinationCounters } from "./destination-counters.ts";
import type { DiskQueueStats } from "./destination-stats.ts";
import type { DiskQueue, DiskRecoveryLoss } from "./disk-queue.ts";
import { DiskTier } from "./disk-tier.ts";
import type { LineRun } from "./memory-only-lines.ts";

/** Bytes read back from disk at once. */
const REPLAY_BYTES = 4 * 1024 * 1024;
/** Memory below which the disk part is read back (or half the memory bound, if less). */
const REPLAY_LOW_WATER = 8 * 1024 * 1024;

/** Milliseconds since `at` (0 when null). */
function ageMs(at: number | null): number {
  return at === null ? 0 : Math.max(0, Math.round(Date.now() - at));
}

/**
 * What a destination's disk part asks of the destination (its link's
 * state), and tells it. Made once per destination.
 */
export interface DestinationDiskHost {
  /** Whether the link takes what is read back from disk now: a socket that is not connecting. */
  sending(): boolean;
  /** Whether the destination closed: records read back then are let go of (still on disk). */
  closed(): boolean;
  /** Lines went into memory (read back, or refused by the disk): they are to be written. */
  filled(): void;
  /** Memory (and the disk) may hold nothing more to deliver: a drain waiting for it may end. */
  emptied(): void;
}

/**
 * What the disk part needs of the queue it is part of (a DestinationQueue,
 * which may let go of it: releaseDelivered and replay then do nothing).
 */
export interface DestinationDiskOwner {
  /** Memory's bound, in bytes. */
  readonly queueBytes: number;
  /** Lines in memory or in flight that were never forwarded. */
  waitingLines(): number;
  /** Releases the records read back whose every line has left memory. */
  releaseDelivered(): void;
  /** Reads more back, if the disk part is still the queue's and memory is low. */
  replay(): void;
}

/**
 * A destination's disk part (--queue-dir) as its queue drives it: whether a
 * chunk spills to it, reading it back into memory as memory empties
 * (replay) or out for re-routing elsewhere (take), and its stats. The line
 * numbering that says which records may go is its DiskTier's.
 */
export class DestinationDisk {
  readonly tier: DiskTier;
  readonly #memory: ByteQueue;
  readonly #owner: DestinationDiskOwner;
  readonly #count: DestinationCounters;
  readonly #host: DestinationDiskHost;

  /**
   * The disk queue `opened` (DiskQueueOpener), behind `memory`: what it
   * holds, and what recovery found lost, count as recovered.
   */
  constructor(
    opened: { queue: DiskQueue; lost: DiskRecoveryLoss },
    memory: ByteQueue,
    owner: DestinationDiskOwner,
    count: DestinationCounters,
    host: DestinationDiskHost,
  ) {
    const { queue, lost } = opened;
    this.tier = new DiskTier(queue);
    this.#memory = memory;
    this.#owner = owner;
    this.#count = count;
    this.#host = host;
    count.recovered = queue.lines + lost.disk_corrupt + lost.disk_unreadable;
    for (const r of ["disk_corrupt", "disk_unreadable"] as const) count.drop(r, lost[r]);
  }

  /** The disk queue. */
  get queue(): DiskQueue {
    return this.tier.queue;
  }

  /**
   * Whether a chunk of `bytes` goes to disk whatever the link: behind what is
   * there already, or when memory cannot take it.
   */
  spills(bytes: number): boolean {
    return !this.tier.empty || this.#memory.bytes + bytes > this.#owner.queueBytes;
  }

  /** Appends lines behind what the disk holds; false when they do not fit or the disk is failing. */
  append(chunk: Buffer, lines: number): boolean {
    return this.tier.queue.append(chunk, lines);
  }

  /**
   * Reads records back from disk while the destination can send and memory
   * is low, in order, behind what memory holds.
   */
  replay(): void {
    const tier = this.tier;
    if (tier.replaying || tier.empty || tier.drainToDisk) return;
    if (!this.#host.sending()) return;
    const queueBytes = this.#owner.queueBytes;
    if (this.#memory.bytes >= Math.min(queueBytes / 2, REPLAY_LOW_WATER)) return;
    tier.replaying = true;
    // No more than memory has room for (a record at least).
    const room = Math.max(1, Math.min(REPLAY_BYTES, queueBytes - this.#memory.bytes));
    void tier.queue
      .read(room)
      .then((got) => {
        tier.replaying = false;
        if (this.#host.closed()) return; // let go of: still on disk
        tier.took(
          got,
          (chunk, lines) => this.#memory.push(chunk, lines),
          (reason, lines) => this.#count.drop(reason, lines),
        );
        this.#owner.releaseDelivered();
        this.#host.filled();
        this.#owner.replay();
        // Records that were all lost leave nothing to write: no write
        // completes to say that the disk is empty now.
        this.#host.emptied();
      })
      .catch(() => {
        tier.replaying = false;
      });
  }

  /**
   * Removes and returns the next records, about `maxBytes`, for re-routing
   * elsewhere (counted as rerouted; their records are released). Empty while
   * a read is under way, or when there is nothing (more) to take.
   */
  async take(maxBytes: number): Promise<LineRun[]> {
    const tier = this.tier;
    if (tier.empty || tier.replaying) return [];
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
      this.#owner.releaseDelivered();
      this.#host.emptied();
      return out;
    } finally {
      tier.replaying = false;
      // Connected meanwhile: what is left on disk is read back now, not at
      // the next write.
      this.#owner.replay();
    }
  }

  /** The disk part as the stats show it. */
  stats(): DiskQueueStats {
    const disk = this.tier.queue;
    return {
      // Read back into memory and not yet delivered is still on disk too.
      lines: this.tier.diskLines(this.#owner.waitingLines()),
      bytes: disk.bytes,
      spilled: disk.spilled,
      replayed: disk.replayed,
      failures: disk.failures,
      oldestAgeMs: ageMs(disk.oldestAt ?? this.#memory.oldestAt),
    };
  }
}
