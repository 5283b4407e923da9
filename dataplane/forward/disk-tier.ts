import type { DropReason } from "./destination-stats.ts";
import type { DiskQueue, DiskRead } from "./disk-queue.ts";
import { type LineRun, memoryOnlyLines } from "./memory-only-lines.ts";

/**
 * What ties a destination's disk queue to the lines in its memory queue.
 *
 * Every line pushed onto memory's tail gets a number (`memIn` counts them).
 * A record read back from disk takes a range of those numbers, and is
 * released (its segment may go) only once every line of the range has left
 * memory: written to the socket, dropped or re-routed. Lines leave memory in
 * order, so "left" is a number too: memIn less the lines still waiting.
 *
 * The destination decides when to spill and read back; this says which
 * records may go, which waiting lines are on disk already, and what a
 * drain's end must still append.
 */
export class DiskTier {
  readonly queue: DiskQueue;
  /** Lines ever pushed onto the memory queue's tail. */
  memIn = 0;
  /**
   * Records read back and not yet released, oldest first: their seq (-1:
   * lines that were gathered, never written) and the line numbers (start
   * exclusive, end inclusive) their lines took in memory.
   */
  #marks: Array<{ seq: number; start: number; end: number }> = [];
  /** Lines of records read back and still on disk after memory was let go (a drain's end). */
  parked = 0;
  /** Owed resends a drain's end appended (keep): on disk, but counted as forwarded already. */
  keptOwed = 0;
  /** Lines a drain's end appended (what memory held and the disk did not). */
  kept = 0;
  /** A read from disk is under way. */
  replaying = false;
  /** A drain that ends with memory empty and leaves the disk as it is (a shutdown). */
  drainToDisk = false;
  /**
   * keep() is appending memory's lines: a record the disk fails to write
   * holds lines that are still in memory, where they stay.
   */
  keeping = false;

  constructor(queue: DiskQueue) {
    this.queue = queue;
  }

  /** Nothing left on disk to read back. */
  get empty(): boolean {
    return this.queue.empty;
  }

  /**
   * Records read back: each intact one is pushed onto memory (`push`), a lost
   * one's lines counted (`drop`); each takes its range of line numbers.
   */
  took(
    reads: readonly DiskRead[],
    push: (chunk: Buffer, lines: number) => void,
    drop: (reason: DropReason, lines: number) => void,
  ): void {
    for (const r of reads) {
      const start = this.memIn;
      if (r.chunk !== null) {
        push(r.chunk, r.lines);
        this.memIn += r.lines;
      } else {
        drop(r.lost ?? "disk_unreadable", r.lines);
      }
      this.#marks.push({ seq: r.seq, start, end: this.memIn });
    }
  }

  /** Records up to `seq` were taken away (re-routed), not into memory: released in turn. */
  tookAway(seq: number): void {
    if (this.#marks.length === 0) this.queue.release(seq);
    else this.#marks.push({ seq, start: this.memIn, end: this.memIn });
  }

  /** Releases the records whose every line left memory (`waiting`: the lines still there). */
  release(waiting: number): void {
    const marks = this.#marks;
    if (marks.length === 0) return;
    const left = this.memIn - waiting;
    let seq = -1;
    let n = 0;
    while (n < marks.length && marks[n]!.end <= left) {
      seq = Math.max(seq, marks[n]!.seq);
      n++;
    }
    if (n === 0) return;
    this.#marks = n === marks.length ? [] : marks.slice(n);
    this.queue.release(seq);
  }

  /** Of the `waiting` lines in memory, those read back from disk (and still there). */
  readBackWaiting(waiting: number): number {
    const gone = this.memIn - waiting;
    let n = 0;
    for (const m of this.#marks) {
      if (m.seq >= 0 && m.end > gone) n += m.end - Math.max(m.start, gone);
    }
    return n;
  }

  /** Datapoints on disk not yet delivered: unread, parked, and read back into memory. */
  diskLines(waiting: number): number {
    return this.queue.lines + this.parked + this.readBackWaiting(waiting);
  }

  /**
   * At a drain's end: appends to the disk what waits in memory (`runs`,
   * oldest first: what is in flight, then the queue) and is not on disk yet,
   * the `owed` resends first (forwarded once, then the connection failed:
   * the destination may not have them). Returns the waiting lines that are
   * (now) on disk, owed ones not counted; those of records read back stay
   * there, unreleased (parked).
   *
   * What memory held is appended behind what the disk holds: the next
   * process sends it after that, although it came first.
   */
  keep(runs: readonly LineRun[], waiting: number, owed: number): number {
    const disk = this.queue;
    // What was gathered for the disk before: written first.
    disk.flush();
    const first = this.memIn - waiting + 1;
    const ranges = this.#marks.filter((m) => m.seq >= 0).map((m) => [m.start, m.end] as const);
    const toKeep = memoryOnlyLines(runs, 0, first - owed, ranges);
    let owedToKeep = 0;
    for (const r of toKeep) owedToKeep += r.lines;
    for (const r of memoryOnlyLines(runs, owed, first, ranges)) owedToKeep -= r.lines;
    // Kept: what the disk took and wrote (a record it fails to write leaves
    // its lines in memory, and they are not counted as kept).
    const before = disk.spilled;
    this.keeping = true;
    try {
      for (const r of toKeep) disk.append(r.chunk, r.lines);
      disk.flush();
    } finally {
      this.keeping = false;
    }
    // Appended in order: the owed ones are the first of what was kept.
    const appended = disk.spilled - before;
    this.keptOwed = Math.min(appended, owedToKeep);
    this.kept = appended;
    // Lines of records read back that had not left memory: still on disk.
    let parked = 0;
    const gone = first - 1;
    for (const m of this.#marks) {
      if (m.seq >= 0) parked += Math.max(0, m.end - Math.max(m.start, gone));
    }
    this.parked = parked;
    this.#marks = [];
    return appended - this.keptOwed + parked;
  }
}
