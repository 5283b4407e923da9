import { ThrottledWarning } from "../../common/log-throttle.ts";
import type { Logger } from "../../common/logger.ts";
import { errText } from "../spool/err-text.ts";
import { SegmentSpool, type SpoolLocation, SpoolReadError } from "../spool/segment-spool.ts";
import { RECORD_HEADER_BYTES } from "../spool/spool-record.ts";
import type { DiskBudget } from "./disk-budget.ts";

/**
 * When what a disk queue appended is flushed to the disk (fsync): every
 * `interval` (--queue-fsync-interval, in the background), or after every
 * `write` of a record, before the next one. Appended records survive the
 * death of the process either way (they are in the page cache); the policy
 * bounds what an operating-system crash or a power cut can take.
 */
export type FsyncPolicy = "interval" | "write";
export const FSYNC_POLICIES: readonly FsyncPolicy[] = ["interval", "write"];

export interface DiskQueueOptions {
  /** This destination's directory for this process. */
  dir: string;
  /** The destination, as logs name it. */
  name: string;
  /** Most bytes of live segments (this process's share of --queue-disk-size). */
  maxBytes: number;
  /** The bound on every disk queue of the process together. */
  budget: DiskBudget;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  /** Most bytes of lines in one record. Default 1 MiB. */
  recordBytes?: number;
  log: Logger;
}

/** One record read back, in order: its lines, or (chunk null) why they are lost. */
export interface DiskRead {
  seq: number;
  lines: number;
  chunk: Buffer | null;
  lost?: "disk_corrupt" | "disk_unreadable";
}

interface Entry {
  seq: number;
  loc: SpoolLocation;
  size: number;
  lines: number;
  /** When it was appended (ms; for a recovered record, when its segment was last written). */
  at: number;
}

/** What recovery found lost in a directory, by reason (datapoints it could count). */
export interface DiskRecoveryLoss {
  disk_corrupt: number;
  disk_unreadable: number;
}

const RECORD_BYTES = 1024 * 1024;
/** How long appends are refused after one failed, before the disk is tried again. */
const RETRY_MS = 5_000;

/**
 * The part of one destination's queue that is on disk (--queue-dir), in one
 * process: records of whole lines in checksummed segments (a SegmentSpool:
 * the same format and recovery as the proxy's spool), appended in order and
 * read back in order.
 *
 * Appends are gathered for the rest of the event-loop turn (or until a
 * record's worth) and written as one record, so a trickle does not cost a
 * write per line and a flood costs one write per megabyte. A record read back
 * is released (its segment deleted once every record in it is) only when the
 * destination says its lines were written to the socket: what was on disk
 * stays on disk until it is delivered, whatever happens to the process.
 *
 * Bounded by bytes: its own bound and the process's budget. An append beyond
 * either, or while the disk fails (full, read-only, gone), is refused: the
 * destination then keeps the lines in memory under its overflow policy.
 */
export class DiskQueue {
  readonly #spool: SegmentSpool;
  readonly #o: Required<Omit<DiskQueueOptions, "recordBytes">> & { recordBytes: number };
  /** Records not yet released, oldest first; #read is the next one to read back. */
  #entries: Entry[] = [];
  #head = 0;
  #read = 0;
  #nextSeq: number;
  /** Lines gathered for the next record. */
  #pending: Buffer[] = [];
  #pendingLines = 0;
  #pendingBytes = 0;
  #pendingAt = 0;
  #flushScheduled = false;
  /** Lines in records not yet read back. */
  #unreadLines = 0;
  /** Bytes the budget holds for this queue. */
  #accounted = 0;
  #failingUntil = 0;
  #unsynced = false;
  #syncTimer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #failed: ThrottledWarning;
  readonly #refuse: (chunks: Buffer[], lines: number[]) => void;

  /** Lines appended (spilled) and read back (replayed), in all. */
  spilled = 0;
  replayed = 0;
  /** Appends that failed (the disk, not a bound). */
  failures = 0;

  private constructor(
    spool: SegmentSpool,
    o: DiskQueueOptions,
    nextSeq: number,
    refuse: (chunks: Buffer[], lines: number[]) => void,
  ) {
    this.#spool = spool;
    this.#o = { ...o, recordBytes: o.recordBytes ?? RECORD_BYTES };
    this.#nextSeq = nextSeq;
    this.#refuse = refuse;
    this.#failed = new ThrottledWarning(
      o.log,
      60_000,
      `disk queue of ${o.name}: appends keep failing; new datapoints stay in memory under the overflow policy`,
    );
    if (o.fsync === "interval") {
      this.#syncTimer = setInterval(() => this.#syncNow(), o.fsyncIntervalMs);
      this.#syncTimer.unref();
    }
  }

  /**
   * Opens (creating it, owner-only) and recovers a destination's directory.
   * `refuse` gets the lines of a record whose write failed: the caller keeps
   * them in memory. Throws a PolymurError when the directory cannot be
   * created or another process holds it.
   */
  static open(
    o: DiskQueueOptions,
    refuse: (chunks: Buffer[], lines: number[]) => void,
  ): { queue: DiskQueue; lost: DiskRecoveryLoss } {
    const opened = SegmentSpool.open(o.dir, {
      log: o.log,
      proxyId: false,
      segmentBytes: segmentBytes(o.maxBytes),
      inUse: "each polymur needs its own --queue-dir",
    });
    const q = new DiskQueue(opened.spool, o, opened.nextSeq, refuse);
    const times = new Map<number, number>();
    for (const b of opened.recovered) {
      let at = times.get(b.loc.segment);
      if (at === undefined) {
        at = opened.spool.segmentTime(b.loc.segment) ?? Date.now();
        times.set(b.loc.segment, at);
      }
      q.#entries.push({ seq: b.seq, loc: b.loc, size: b.size, lines: b.lines, at });
      q.#unreadLines += b.lines;
    }
    const lost: DiskRecoveryLoss = { disk_corrupt: 0, disk_unreadable: 0 };
    for (const l of opened.losses) {
      lost[l.reason === "spool_corrupt" ? "disk_corrupt" : "disk_unreadable"] += l.lines ?? 0;
    }
    q.#account();
    return { queue: q, lost };
  }

  get dir(): string {
    return this.#o.dir;
  }

  /** Lines on disk (or about to be) not yet read back. */
  get lines(): number {
    return this.#unreadLines + this.#pendingLines;
  }

  /** Bytes of live segments, and of lines about to be written. */
  get bytes(): number {
    return this.#spool.bytes + this.#pendingBytes;
  }

  /** Nothing left to read back. */
  get empty(): boolean {
    return this.#read === this.#entries.length && this.#pendingLines === 0;
  }

  /** When the oldest line not yet read back was appended (ms), or null. */
  get oldestAt(): number | null {
    const e = this.#entries[this.#read];
    if (e !== undefined) return e.at;
    return this.#pendingLines > 0 ? this.#pendingAt : null;
  }

  /** Changes the bounds (a reload). */
  setMaxBytes(bytes: number): void {
    this.#o.maxBytes = bytes;
  }

  /**
   * Appends whole lines (`chunk` is not modified, nor kept past the flush).
   * False when they do not fit a bound, or the disk is failing: nothing was
   * taken.
   */
  append(chunk: Buffer, lines: number): boolean {
    if (this.#closed) return false;
    const n = chunk.length;
    // A record's worth gathered: written first (if that fails, its lines go
    // back to memory through `refuse`, and so does this chunk, in order).
    if (this.#pendingBytes > 0 && this.#pendingBytes + n > this.#o.recordBytes) this.flush();
    if (Date.now() < this.#failingUntil) return false;
    // The first lines of a record bring its header along.
    const need = n + (this.#pendingLines === 0 ? RECORD_HEADER_BYTES : 0);
    if (this.bytes + need > this.#o.maxBytes || !this.#o.budget.fits(need)) return false;
    if (this.#pendingLines === 0) this.#pendingAt = Date.now();
    this.#pending.push(chunk);
    this.#pendingLines += lines;
    this.#pendingBytes += n;
    this.spilled += lines;
    this.#account();
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.flush());
    }
    return true;
  }

  /** Writes what was gathered as one record now. */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#pendingLines === 0 || this.#closed) return;
    const chunks = this.#pending;
    const lines = this.#pendingLines;
    const payload = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#pendingBytes);
    const at = this.#pendingAt;
    this.#pending = [];
    this.#pendingLines = 0;
    this.#pendingBytes = 0;
    const seq = this.#nextSeq++;
    let loc: SpoolLocation;
    try {
      loc = this.#spool.append(seq, 0, lines, payload.length, payload);
    } catch (err) {
      this.failures++;
      this.spilled -= lines;
      this.#failingUntil = Date.now() + RETRY_MS;
      this.#account();
      this.#failed.note({ err: errText(err), destination: this.#o.name, dir: this.#o.dir, lines });
      this.#refuse([payload], [lines]);
      return;
    }
    // Written: the record is in the file (and the page cache) whatever fsync
    // says next, and the next process would find it. Handing its lines back
    // to memory now would send them twice.
    this.#entries.push({ seq, loc, size: payload.length, lines, at });
    this.#unreadLines += lines;
    this.#account();
    if (this.#o.fsync === "write") {
      try {
        this.#spool.sync();
      } catch (err) {
        this.#fsyncFailed(err);
      }
    } else {
      this.#unsynced = true;
    }
  }

  /**
   * The next records, in order, up to about `maxBytes` (at least one): what
   * is on disk first, then what was gathered and not yet written (taken
   * from memory, never written). A record that cannot be read back or does
   * not check out comes back with chunk null and the reason its lines are
   * lost. Only one read at a time.
   */
  async read(maxBytes: number): Promise<DiskRead[]> {
    const out: DiskRead[] = [];
    let bytes = 0;
    // The records read stay counted on disk (lines, empty) until the read
    // returns them all at once: until then they are nowhere else. A read cut
    // short by close() takes nothing, and they stay for the next process.
    // Entries are found from #read on every turn: release() may compact them.
    let taken = 0;
    let takenLines = 0;
    let replayed = 0;
    while (
      !this.#closed &&
      this.#read + taken < this.#entries.length &&
      (bytes === 0 || bytes < maxBytes)
    ) {
      const e = this.#entries[this.#read + taken]!;
      let chunk: Buffer | null = null;
      let lost: DiskRead["lost"];
      try {
        chunk = await this.#spool.read(e.loc, e.seq, e.size);
      } catch (err) {
        if (this.#closed) break;
        lost =
          err instanceof SpoolReadError && err.reason === "spool_corrupt"
            ? "disk_corrupt"
            : "disk_unreadable";
        this.#o.log.error(
          { destination: this.#o.name, seq: e.seq, lines: e.lines, err: errText(err) },
          `disk queue of ${this.#o.name}: a record cannot be read back; its ${e.lines} datapoints are lost (counted as dropped, reason ${lost})`,
        );
      }
      taken++;
      takenLines += e.lines;
      if (lost === undefined) replayed += e.lines;
      out.push(
        lost === undefined
          ? { seq: e.seq, lines: e.lines, chunk }
          : { seq: e.seq, lines: e.lines, chunk: null, lost },
      );
      bytes += e.size;
    }
    if (this.#closed) return [];
    this.#read += taken;
    this.#unreadLines -= takenLines;
    this.replayed += replayed;
    if (this.#read === this.#entries.length && this.#pendingLines > 0 && bytes < maxBytes) {
      // Gathered and not yet written: straight back to memory, no disk.
      const chunk =
        this.#pending.length === 1
          ? this.#pending[0]!
          : Buffer.concat(this.#pending, this.#pendingBytes);
      const lines = this.#pendingLines;
      this.#pending = [];
      this.#pendingLines = 0;
      this.#pendingBytes = 0;
      this.replayed += lines;
      this.#account();
      out.push({ seq: -1, lines, chunk });
    }
    return out;
  }

  /**
   * Every record read back up to `seq` was delivered (or its loss counted):
   * segments holding nothing newer are deleted.
   */
  release(seq: number): void {
    if (seq < 0 || this.#closed) return;
    while (this.#head < this.#read && this.#entries[this.#head]!.seq <= seq) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#read -= this.#head;
      this.#head = 0;
    }
    try {
      this.#spool.release(seq);
    } catch (err) {
      this.#o.log.warn(
        { destination: this.#o.name, dir: this.#o.dir, err: errText(err) },
        `disk queue of ${this.#o.name}: cannot delete a delivered segment; it is sent again after a restart`,
      );
    }
    this.#account();
  }

  #syncNow(): void {
    if (!this.#unsynced || this.#closed) return;
    this.#unsynced = false;
    this.#spool.sync((err) => {
      if (err !== null && !this.#closed) this.#fsyncFailed(err);
    });
  }

  #fsyncFailed(err: unknown): void {
    this.#o.log.warn(
      { destination: this.#o.name, dir: this.#o.dir, err: errText(err) },
      `disk queue of ${this.#o.name}: fsync failed; what was written survives the death of the process, not a crash of the system`,
    );
  }

  #account(): void {
    const now = this.bytes;
    this.#o.budget.change(now - this.#accounted);
    this.#accounted = now;
  }

  /**
   * Writes what was gathered, flushes to the disk, saves how far delivery
   * got, and lets the directory go. What is on disk is found again by the
   * next process that opens the directory.
   */
  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    if (this.#syncTimer !== null) clearInterval(this.#syncTimer);
    try {
      this.#spool.sync();
    } catch {}
    try {
      this.#spool.close();
    } catch (err) {
      // The done mark could not be saved: delivered records are sent again
      // after a restart (duplicates, not losses).
      this.#o.log.warn(
        { destination: this.#o.name, dir: this.#o.dir, err: errText(err) },
        `disk queue of ${this.#o.name}: cannot save how far delivery got; what was delivered since the last save is sent again at the next start`,
      );
    }
    this.#o.budget.change(-this.#accounted);
    this.#accounted = 0;
  }
}

/**
 * Segment size for a queue bounded at `maxBytes`: an eighth of it (within
 * 64 KiB and 32 MiB), so that delivered bytes are freed soon. A segment
 * goes only once every record in it is delivered: one as large as the bound
 * would keep delivered bytes counted against it, and refuse appends, until
 * the queue emptied.
 */
function segmentBytes(maxBytes: number): number {
  return Math.max(64 * 1024, Math.min(32 * 1024 * 1024, Math.floor(maxBytes / 8)));
}
