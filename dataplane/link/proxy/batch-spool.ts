import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import type { Logger } from "../../../common/logger.ts";

/**
 * The proxy's optional on-disk spool: every batch is appended to it when it
 * is made, before it is sent, so batches the gateway has not acknowledged
 * survive a crash or restart of the proxy (kill -9 included: an appended
 * record is in the page cache when append() returns; an OS crash can lose the
 * last few seconds, since records are not fsynced one by one).
 *
 * Layout of the directory:
 *   proxy-id            this proxy's stable id (Hello.proxy_id), made once
 *   state.json          {"done": N}: every seq <= N is acknowledged or rejected
 *   seg-<firstSeq>.spool   append-only segments of records
 *   lock                pid of the proxy using the directory
 *
 * Record (little-endian): magic u32 "PMB1", payload length u32, seq u64,
 * compression u8, lines u32, raw bytes u32, crc32 u32 (of the 25 header bytes
 * before it and the payload), payload. A torn or corrupt record at the end of
 * a segment (crash in the middle of a write) is cut off at recovery.
 *
 * A segment is deleted once every batch in it is done; the bytes of live
 * segments are what counts against --spool-size.
 */

const MAGIC = 0x31424d50; // "PMB1"
const HEADER = 29;
const STATE_FILE = "state.json";
const ID_FILE = "proxy-id";
const LOCK_FILE = "lock";

export interface SpoolLocation {
  segment: number;
  offset: number;
}

export interface SpooledBatch {
  seq: number;
  compression: number;
  lines: number;
  rawBytes: number;
  size: number;
  loc: SpoolLocation;
}

interface Segment {
  firstSeq: number;
  lastSeq: number;
  fd: number;
  bytes: number;
  file: string;
}

export interface SpoolOpenResult {
  spool: BatchSpool;
  proxyId: string;
  /** Batches not yet done, oldest first (payloads stay on disk). */
  recovered: SpooledBatch[];
  /** The next seq to use: higher than any this spool has ever handed out. */
  nextSeq: number;
}

export class BatchSpool {
  readonly dir: string;
  readonly #segmentBytes: number;
  readonly #log: Logger;
  #segments = new Map<number, Segment>();
  #active: Segment | null = null;
  #bytes = 0;
  #done = 0;
  #savedDone = 0;
  #closed = false;

  private constructor(dir: string, segmentBytes: number, log: Logger) {
    this.dir = dir;
    this.#segmentBytes = segmentBytes;
    this.#log = log;
  }

  /** Opens (creating if needed) and recovers a spool directory. */
  static open(dir: string, options: { segmentBytes?: number; log: Logger }): SpoolOpenResult {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new PolymurError(
        ErrorCode.Spool,
        `cannot create spool directory ${dir}: ${(err as Error).message}`,
      );
    }
    lock(dir);
    const spool = new BatchSpool(dir, options.segmentBytes ?? 8 * 1024 * 1024, options.log);
    try {
      const proxyId = readOrCreateId(dir);
      const { recovered, nextSeq } = spool.#recover();
      return { spool, proxyId, recovered, nextSeq };
    } catch (err) {
      unlock(dir);
      throw err;
    }
  }

  /** Bytes of the live segments on disk. */
  get bytes(): number {
    return this.#bytes;
  }

  #recover(): { recovered: SpooledBatch[]; nextSeq: number } {
    let done = 0;
    try {
      const state = JSON.parse(fs.readFileSync(path.join(this.dir, STATE_FILE), "utf8")) as {
        done?: unknown;
      };
      if (typeof state.done === "number" && Number.isSafeInteger(state.done)) done = state.done;
    } catch {}
    this.#done = done;
    this.#savedDone = done;
    let maxSeq = done;
    const recovered: SpooledBatch[] = [];
    const files = fs
      .readdirSync(this.dir)
      .filter((f) => /^seg-\d+\.spool$/.test(f))
      .sort();
    for (const name of files) {
      const file = path.join(this.dir, name);
      const data = fs.readFileSync(file);
      const firstSeq = Number(name.slice(4, -6));
      let off = 0;
      let lastSeq = 0;
      const found: SpooledBatch[] = [];
      while (off + HEADER <= data.length) {
        if (data.readUInt32LE(off) !== MAGIC) break;
        const size = data.readUInt32LE(off + 4);
        if (off + HEADER + size > data.length) break;
        const crc = zlib.crc32(
          data.subarray(off + HEADER, off + HEADER + size),
          zlib.crc32(data.subarray(off, off + 25)),
        );
        if (crc !== data.readUInt32LE(off + 25)) break;
        const seq = Number(data.readBigUInt64LE(off + 8));
        lastSeq = seq;
        if (seq > done) {
          found.push({
            seq,
            compression: data.readUInt8(off + 16),
            lines: data.readUInt32LE(off + 17),
            rawBytes: data.readUInt32LE(off + 21),
            size,
            loc: { segment: firstSeq, offset: off + HEADER },
          });
        }
        off += HEADER + size;
      }
      if (off < data.length) {
        this.#log.warn(
          { file, at: off, size: data.length },
          "spool: torn or corrupt record at the end of a segment (crash during a write?); cut off",
        );
        fs.truncateSync(file, off);
      }
      maxSeq = Math.max(maxSeq, lastSeq);
      if (found.length === 0) {
        fs.rmSync(file, { force: true });
        continue;
      }
      const fd = fs.openSync(file, "r");
      this.#segments.set(firstSeq, { firstSeq, lastSeq, fd, bytes: off, file });
      this.#bytes += off;
      recovered.push(...found);
    }
    return { recovered, nextSeq: maxSeq + 1 };
  }

  /**
   * Appends one batch. Synchronous: when it returns the record is in the
   * page cache and survives the death of this process.
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
      const file = path.join(this.dir, `seg-${String(seq).padStart(16, "0")}.spool`);
      const fd = fs.openSync(file, "a+");
      seg = { firstSeq: seq, lastSeq: seq, fd, bytes: 0, file };
      this.#segments.set(seq, seg);
      this.#active = seg;
    }
    const h = Buffer.allocUnsafe(HEADER);
    h.writeUInt32LE(MAGIC, 0);
    h.writeUInt32LE(payload.byteLength, 4);
    h.writeBigUInt64LE(BigInt(seq), 8);
    h.writeUInt8(compression, 16);
    h.writeUInt32LE(lines, 17);
    h.writeUInt32LE(rawBytes, 21);
    h.writeUInt32LE(zlib.crc32(payload, zlib.crc32(h.subarray(0, 25))), 25);
    const offset = seg.bytes + HEADER;
    fs.writevSync(seg.fd, [h, payload]);
    seg.bytes += HEADER + payload.byteLength;
    seg.lastSeq = seq;
    this.#bytes += HEADER + payload.byteLength;
    return { segment: seg.firstSeq, offset };
  }

  /** Reads a payload back. */
  read(loc: SpoolLocation, size: number): Promise<Buffer> {
    const seg = this.#segments.get(loc.segment);
    if (seg === undefined) {
      return Promise.reject(new Error(`spool segment ${loc.segment} is gone`));
    }
    const buf = Buffer.allocUnsafe(size);
    return new Promise((resolve, reject) => {
      fs.read(seg.fd, buf, 0, size, loc.offset, (err, n) => {
        if (err !== null) reject(err);
        else if (n !== size) reject(new Error(`spool: short read in ${seg.file}`));
        else resolve(buf);
      });
    });
  }

  /**
   * Everything up to `seq` is done (acknowledged or rejected): deletes the
   * segments that hold nothing else.
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
    for (const seg of dead) {
      fs.closeSync(seg.fd);
      fs.rmSync(seg.file, { force: true });
      this.#segments.delete(seg.firstSeq);
      this.#bytes -= seg.bytes;
      if (this.#active === seg) this.#active = null;
    }
  }

  /** Persists the done mark (atomically; also done on release and close). */
  saveState(): void {
    if (this.#done === this.#savedDone && fs.existsSync(path.join(this.dir, STATE_FILE))) return;
    const file = path.join(this.dir, STATE_FILE);
    const tmp = `${file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ done: this.#done }), { flush: true });
    fs.renameSync(tmp, file);
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
      unlock(this.dir);
    }
  }
}

function readOrCreateId(dir: string): string {
  const file = path.join(dir, ID_FILE);
  try {
    const id = fs.readFileSync(file, "utf8").trim();
    if (id !== "") return id;
  } catch {}
  const id = `${hostname().split(".")[0]}-${randomUUID()}`;
  fs.writeFileSync(`${file}.tmp`, id, { flush: true });
  fs.renameSync(`${file}.tmp`, file);
  return id;
}

/** One proxy per spool directory: two would hand out the same seqs. */
function lock(dir: string): void {
  const file = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: "wx" });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new PolymurError(
          ErrorCode.Spool,
          `cannot lock spool directory ${dir}: ${(err as Error).message}`,
        );
      }
    }
    const pid = Number(fs.readFileSync(file, "utf8").trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      throw new PolymurError(
        ErrorCode.Spool,
        `spool directory ${dir} is in use by process ${pid}; each proxy needs its own --spool-dir`,
      );
    }
    fs.rmSync(file, { force: true }); // stale: its proxy died
  }
  throw new PolymurError(ErrorCode.Spool, `cannot lock spool directory ${dir}`);
}

function unlock(dir: string): void {
  fs.rmSync(path.join(dir, LOCK_FILE), { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
