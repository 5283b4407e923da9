import fs from "node:fs";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import { PRIVATE_FILE_MODE } from "../../common/private-files.ts";
import { errText } from "./err-text.ts";
import { SpoolDir } from "./spool-dir.ts";
import {
  checkRecord,
  encodeRecordHeader,
  type Hole,
  RECORD_HEADER_BYTES,
  readSegment,
  type SpooledBatch,
  type SpoolLocation,
  type SpoolLoss,
  type SpoolLossReason,
  scanSegment,
} from "./spool-record.ts";

// The types of SegmentSpool's API are defined with the record format they
// describe; callers take them from here, with the spool.
export type { SpooledBatch, SpoolLocation, SpoolLoss, SpoolLossReason } from "./spool-record.ts";

/**
 * Checksummed, append-only segments of numbered records on disk: the one
 * implementation both on-disk buffers of polymur use. The proxy's spool
 * (--spool-dir) appends every batch when it is made, before it is sent, so
 * batches the gateway has not acknowledged survive a restart; a relay's or
 * gateway's destination queue (--queue-dir, forward/disk-queue.ts) appends
 * what its memory queue cannot hold. An appended record is in the page cache
 * when append() returns, so it survives the death of the process (kill -9
 * included); sync() puts it on the disk, which an OS crash needs.
 *
 * The directory (its layout, owner-only modes, lock, proxy id and done mark)
 * is a SpoolDir (spool-dir.ts); the records in its segments, and how damaged
 * ones are found and skipped, are in spool-record.ts. This class keeps the
 * segments: it appends to the newest, reads records back, deletes a segment
 * once every record in it is done, and at open recovers what the segments
 * hold. A segment that cannot be opened at recovery is renamed *.unreadable
 * and reported; what recovery finds damaged is reported as a SpoolLoss,
 * logged here with the file and offset (the owner counts it).
 *
 * The bytes of live segments are what counts against the owner's bound.
 */

/**
 * A batch could not be read back from the spool. `reason` is the loss reason
 * it counts under if it is given up; `transient` says a retry may succeed
 * (an I/O error, not damaged bytes).
 */
export class SpoolReadError extends PolymurError {
  readonly reason: SpoolLossReason;
  readonly file: string;
  readonly offset: number;
  readonly transient: boolean;

  constructor(
    reason: SpoolLossReason,
    file: string,
    offset: number,
    detail: string,
    transient: boolean,
  ) {
    super(ErrorCode.Spool, `spool: cannot read back the record at ${file}:${offset}: ${detail}`);
    this.name = "SpoolReadError";
    this.reason = reason;
    this.file = file;
    this.offset = offset;
    this.transient = transient;
  }
}

interface Segment {
  firstSeq: number;
  lastSeq: number;
  fd: number;
  bytes: number;
  file: string;
}

export interface SpoolOpenOptions {
  /** Bytes after which a new segment is started. Default 8 MiB. */
  segmentBytes?: number;
  log: Logger;
  /** Whether the directory keeps a proxy id (the proxy's spool). Default true. */
  proxyId?: boolean;
  /**
   * The proxy id to save in a directory that has none yet. Default: a new
   * one (the host name and a uuid).
   */
  newProxyId?: () => string;
  /** What to tell an operator whose directory another process holds. Default: the proxy's --spool-dir. */
  inUse?: string;
}

export interface SpoolOpenResult {
  spool: SegmentSpool;
  /** The proxy id kept in the directory ("" when SpoolOpenOptions.proxyId is false). */
  proxyId: string;
  /** Batches not yet done, oldest first (payloads stay on disk). */
  recovered: SpooledBatch[];
  /** The next seq to use: higher than any this spool has ever handed out. */
  nextSeq: number;
  /** Damaged or unreadable stretches that may hold batches not yet done (each logged). */
  losses: SpoolLoss[];
}

export class SegmentSpool {
  readonly dir: string;
  readonly #files: SpoolDir;
  readonly #segmentBytes: number;
  readonly #log: Logger;
  #segments = new Map<number, Segment>();
  #active: Segment | null = null;
  #bytes = 0;
  #done = 0;
  #savedDone = 0;
  #closed = false;

  private constructor(files: SpoolDir, segmentBytes: number, log: Logger) {
    this.dir = files.path;
    this.#files = files;
    this.#segmentBytes = segmentBytes;
    this.#log = log;
  }

  /** Opens (creating if needed, owner-only) and recovers a spool directory. */
  static open(dir: string, options: SpoolOpenOptions): SpoolOpenResult {
    const files = SpoolDir.open(dir, options.log, options.inUse);
    const spool = new SegmentSpool(files, options.segmentBytes ?? 8 * 1024 * 1024, options.log);
    try {
      const proxyId = options.proxyId === false ? "" : files.proxyId(options.newProxyId);
      const { recovered, nextSeq, losses } = spool.#recover();
      // Saved now, while there is room: later saves overwrite it in place.
      spool.saveState();
      return { spool, proxyId, recovered, nextSeq, losses };
    } catch (err) {
      files.unlock();
      throw err;
    }
  }

  /** Bytes of the live segments on disk. */
  get bytes(): number {
    return this.#bytes;
  }

  /** True once close() was called: reads fail from then on, and mean nothing. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Replaces the proxy id kept in the directory (a new id after an id conflict). */
  saveProxyId(id: string): void {
    this.#files.saveProxyId(id);
  }

  #recover(): { recovered: SpooledBatch[]; nextSeq: number; losses: SpoolLoss[] } {
    const done = this.#files.readDone();
    this.#done = done;
    this.#savedDone = done;
    let maxSeq = done;
    const recovered: SpooledBatch[] = [];
    const losses: SpoolLoss[] = [];
    const segments = this.#files.segments();
    for (let i = 0; i < segments.length; i++) {
      const { file, firstSeq } = segments[i]!;
      // Seqs only grow: this segment holds nothing at or after the next one's first.
      const next = segments[i + 1];
      const upper = next === undefined ? Number.POSITIVE_INFINITY : next.firstSeq;
      maxSeq = Math.max(maxSeq, firstSeq);
      let read: { data: Buffer; holes: Hole[] };
      try {
        read = readSegment(file);
      } catch (err) {
        if (Math.max(firstSeq - 1, done) + 1 < upper) {
          losses.push({
            reason: "spool_unreadable",
            file,
            offset: 0,
            bytes: null,
            seq: null,
            lines: null,
            detail: errText(err),
          });
        }
        this.#setAside(file, err, firstSeq, upper);
        continue;
      }
      const scan = scanSegment(read.data, read.holes, { file, firstSeq, upper, done });
      losses.push(...scan.losses);
      maxSeq = Math.max(maxSeq, scan.lastSeq);
      let bytes = read.data.length;
      if (scan.cutAt !== null) {
        try {
          fs.truncateSync(file, scan.cutAt);
          bytes = scan.cutAt;
        } catch (err) {
          this.#log.warn({ file, err: errText(err) }, "spool: cannot cut off a torn record");
        }
      }
      if (scan.found.length === 0) {
        fs.rmSync(file, { force: true });
        continue;
      }
      let fd: number;
      try {
        fd = fs.openSync(file, "r");
      } catch (err) {
        // Read a moment ago: only a racing change to the directory gets here.
        const lines = scan.found.reduce((n, b) => n + b.lines, 0);
        losses.push({
          reason: "spool_unreadable",
          file,
          offset: 0,
          bytes: read.data.length,
          seq: null,
          lines,
          detail: errText(err),
        });
        this.#setAside(file, err, firstSeq, upper);
        continue;
      }
      this.#segments.set(firstSeq, { firstSeq, lastSeq: scan.lastSeq, fd, bytes, file });
      this.#bytes += bytes;
      recovered.push(...scan.found);
    }
    for (const l of losses) {
      this.#log.error(
        {
          reason: l.reason,
          file: l.file,
          offset: l.offset,
          bytes: l.bytes,
          seq: l.seq,
          lines: l.lines,
          detail: l.detail,
        },
        l.lines === null
          ? `spool: ${l.detail} at ${l.file}:${l.offset}; the batches there are lost and their datapoints cannot be counted`
          : `spool: ${l.detail} at ${l.file}:${l.offset}; its ${l.lines} datapoints are lost`,
      );
    }
    return { recovered, nextSeq: maxSeq + 1, losses };
  }

  /**
   * A segment that cannot be read is renamed out of the way: never read nor
   * deleted again, kept for whoever wants to look at it.
   */
  #setAside(file: string, err: unknown, firstSeq: number, upper: number): void {
    const aside = `${file}.unreadable`;
    let moved = true;
    try {
      fs.renameSync(file, aside);
    } catch {
      moved = false;
    }
    this.#log.error(
      {
        file,
        err: errText(err),
        firstSeq,
        lastSeq: Number.isFinite(upper) ? upper - 1 : null,
        setAside: moved ? aside : null,
      },
      moved
        ? `spool: segment ${file} cannot be read; renamed ${aside}`
        : `spool: segment ${file} cannot be read, nor renamed; it will be tried again at the next start`,
    );
  }

  /**
   * Appends one batch. Synchronous: when it returns the record is in the
   * page cache and survives the death of this process. When it throws
   * nothing of the record is left in the segment (or, if that cannot be
   * ensured, the segment takes no more records).
   */
  append(
    seq: number,
    compression: number,
    lines: number,
    rawBytes: number,
    payload: Uint8Array,
  ): SpoolLocation {
    let seg = this.#active;
    if (seg === null || seg.bytes >= this.#segmentBytes) {
      if (seg !== null) {
        // The segment is done: on the disk it goes, so that an OS crash can
        // take only what the newest segment holds since its last sync().
        try {
          fs.fsyncSync(seg.fd);
        } catch {}
      }
      const file = this.#files.segmentFile(seq);
      const fd = fs.openSync(file, "a+", PRIVATE_FILE_MODE);
      let bytes = 0;
      try {
        bytes = fs.fstatSync(fd).size; // 0, unless an append of this seq failed before
      } catch {}
      seg = { firstSeq: seq, lastSeq: seq, fd, bytes, file };
      this.#segments.set(seq, seg);
      this.#bytes += bytes;
      this.#active = seg;
    }
    const h = encodeRecordHeader(seq, compression, lines, rawBytes, payload);
    const offset = seg.bytes;
    const total = h.length + payload.byteLength;
    try {
      const n = fs.writevSync(seg.fd, [h, payload]);
      if (n !== total) throw new Error(`short write (${n} of ${total} bytes)`);
    } catch (err) {
      // A partial record would shift every later record off its offset.
      try {
        fs.ftruncateSync(seg.fd, seg.bytes);
      } catch {
        this.#active = null; // recovery resynchronises past it
      }
      // A segment this failure left without a record would never be
      // released (nothing in it is ever done): it goes now.
      if (seg.bytes === 0) {
        try {
          this.#forget(seg);
        } catch {
          this.#active = null;
        }
      }
      throw err;
    }
    seg.bytes += total;
    seg.lastSeq = seq;
    this.#bytes += total;
    return { segment: seg.firstSeq, offset };
  }

  /**
   * Reads a batch back, checking its record (magic, header, seq, size, crc).
   * Rejects with a SpoolReadError when the record cannot be read or does not
   * check out.
   */
  read(loc: SpoolLocation, seq: number, size: number): Promise<Buffer> {
    const seg = this.#segments.get(loc.segment);
    if (seg === undefined) {
      return Promise.reject(
        new SpoolReadError(
          "spool_unreadable",
          this.#files.segmentFile(loc.segment),
          loc.offset,
          "its segment is gone",
          false,
        ),
      );
    }
    const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + size);
    return new Promise((resolve, reject) => {
      fs.read(seg.fd, buf, 0, buf.length, loc.offset, (err, n) => {
        if (err !== null) {
          reject(new SpoolReadError("spool_unreadable", seg.file, loc.offset, errText(err), true));
          return;
        }
        const r = checkRecord(buf.subarray(0, n), seq, size);
        if (r.payload !== null) resolve(r.payload);
        else reject(new SpoolReadError("spool_corrupt", seg.file, loc.offset, r.detail, false));
      });
    });
  }

  /**
   * Everything up to `seq` is done (acknowledged, rejected or lost): deletes
   * the segments that hold nothing else.
   */
  release(seq: number): void {
    if (seq <= this.#done) return;
    this.#done = seq;
    const dead: Segment[] = [];
    for (const seg of this.#segments.values()) if (seg.lastSeq <= seq) dead.push(seg);
    if (dead.length === 0) return;
    // The state must say these seqs are done before their records vanish, or
    // a restart would hand out their seqs again.
    this.saveState();
    for (const seg of dead) this.#forget(seg);
  }

  /** Closes and deletes a segment that holds nothing still needed. */
  #forget(seg: Segment): void {
    fs.closeSync(seg.fd);
    fs.rmSync(seg.file, { force: true });
    this.#segments.delete(seg.firstSeq);
    this.#bytes -= seg.bytes;
    if (this.#active === seg) this.#active = null;
  }

  /**
   * Flushes the newest segment to the disk (fsync), so that an OS crash
   * cannot take what was appended; older segments were flushed when the next
   * one started. Without `done`, synchronously (throws what fsync throws);
   * with it, in the background, and `done` gets the error, if any.
   */
  sync(done?: (err: Error | null) => void): void {
    const seg = this.#active;
    if (done === undefined) {
      if (seg !== null) fs.fsyncSync(seg.fd);
      return;
    }
    if (seg === null) {
      done(null);
      return;
    }
    fs.fsync(seg.fd, (err) => done(err));
  }

  /** When the segment whose first record is `firstSeq` was last written (ms), or null if unknown. */
  segmentTime(firstSeq: number): number | null {
    const seg = this.#segments.get(firstSeq);
    if (seg === undefined) return null;
    try {
      return fs.fstatSync(seg.fd).mtimeMs;
    } catch {
      return null;
    }
  }

  /** Persists the done mark (atomically; also done on release and close). */
  saveState(): void {
    if (this.#done === this.#savedDone && this.#files.hasDone()) return;
    this.#files.saveDone(this.#done);
    this.#savedDone = this.#done;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.saveState();
    } finally {
      for (const seg of this.#segments.values()) fs.closeSync(seg.fd);
      this.#segments.clear();
      this.#active = null;
      this.#files.unlock();
    }
  }
}
