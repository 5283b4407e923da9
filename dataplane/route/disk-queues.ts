import type { Logger } from "../../common/logger.ts";
import type { DiskQueueOpener, DiskQueueSettings } from "../forward/destination-options.ts";
import { DiskBudget } from "../forward/disk-budget.ts";
import { DiskQueue } from "../forward/disk-queue.ts";
import { type FoundQueue, findQueues, processQueueDir } from "../forward/queue-dir.ts";

/**
 * The disk queues (--queue-dir) of one process of a group: where each
 * destination's is, how it is opened (this process's share of the bounds,
 * one budget for all of them), and which queues left by earlier processes
 * are this one's to adopt.
 */
export class DiskQueues {
  readonly settings: DiskQueueSettings;
  readonly #budget: DiskBudget;
  readonly #process: { index: number; count: number };
  #share: number;
  readonly #log: Logger;
  /** The queues opened, for setShare (a closed one keeps no disk space, so a new bound does no harm). */
  readonly #opened = new Set<WeakRef<DiskQueue>>();

  /** `process`: this process's number in its group and the group's size; `share`: its share of the bounds. */
  constructor(
    settings: DiskQueueSettings,
    process: { index: number; count: number },
    share: number,
    log: Logger,
  ) {
    this.settings = settings;
    this.#process = process;
    this.#share = share;
    this.#log = log;
    this.#budget = new DiskBudget(Math.floor(settings.totalBytes * share));
  }

  /** This process's directory for destination `id` (made, with its identity file). */
  dirFor(id: string, spec: string): string {
    return processQueueDir(this.settings.dir, id, spec, this.#process.index);
  }

  /** Opens the disk queue in `dir` of destination `spec` (locked by this process while open). */
  opener(dir: string, spec: string): DiskQueueOpener {
    const s = this.settings;
    const options = {
      dir,
      name: spec,
      maxBytes: Math.floor(s.maxBytes * this.#share),
      budget: this.#budget,
      fsync: s.fsync,
      fsyncIntervalMs: s.fsyncIntervalMs,
      log: this.#log,
    };
    return (refuse) => {
      const opened = DiskQueue.open(
        { ...options, maxBytes: Math.floor(s.maxBytes * this.#share) },
        refuse,
      );
      this.#opened.add(new WeakRef(opened.queue));
      return opened;
    };
  }

  /**
   * A new share of the bounds (the relay runs more or fewer processes): the
   * process's total and every open queue's bound follow it. A queue above its
   * new bound takes nothing more until it is back under it.
   */
  setShare(share: number): void {
    this.#share = share;
    this.#budget.limit = Math.floor(this.settings.totalBytes * share);
    const bytes = Math.floor(this.settings.maxBytes * share);
    for (const ref of this.#opened) {
      const q = ref.deref();
      if (q === undefined) this.#opened.delete(ref);
      else q.setMaxBytes(bytes);
    }
  }

  /**
   * Queues in the directory that hold segments, are not in `open`, and are
   * this process's to adopt: process k of n takes its own number's, and
   * every number j >= n with j mod n = k (a group that had more processes).
   */
  leftovers(open: ReadonlySet<string>): FoundQueue[] {
    const { index, count } = this.#process;
    return findQueues(this.settings.dir).filter(
      (q) => !open.has(q.dir) && (q.index >= count ? q.index % count === index : q.index === index),
    );
  }
}
