import fs from "node:fs";
import type zlib from "node:zlib";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import { errText } from "./err-text.ts";

const loadZlib = lazyBuiltin<typeof zlib>("node:zlib");

/**
 * The spool's record format, and how the records of a segment file are found
 * again, damaged or not: at recovery (readSegment, scanSegment) and when a
 * batch is read back to be sent (checkRecord).
 *
 * Record (little-endian), written as "PMB2":
 *   magic u32 "PMB2", payload length u32, seq u64, compression u8, lines u32,
 *   raw bytes u32, header crc32 u32 (of the 25 bytes before it), payload
 *   crc32 u32, payload.
 * Records written before PMB2 ("PMB1") are still read: magic u32 "PMB1",
 * payload length u32, seq u64, compression u8, lines u32, raw bytes u32,
 * crc32 u32 (of the 25 header bytes and the payload), payload.
 *
 * Why PMB2 has a crc of its own for the header: a damaged record must be
 * counted (its datapoints are lost), and only a header known to be intact
 * says how many datapoints it held and where the next record starts. With
 * PMB1's single crc a damaged record's line count cannot be trusted.
 *
 * Every read checks the record: at recovery and when a batch is read back to
 * be sent. A damaged stretch in the middle of a segment does not end it:
 * recovery skips a record whose payload is damaged (its header says where
 * the next one starts), and after a damaged header it resynchronises on the
 * next "PMB" magic whose record checks out, so every intact record after the
 * damage is kept. What is skipped is reported as a SpoolLoss (logged by the
 * spool with the file and offset, counted by the buffer), unless it can only
 * hold batches already done. A torn record at the end of a segment (a crash
 * in the middle of a write) is to be cut off, and is counted the same way. A
 * part of a segment that cannot be read (EIO) is a hole, and the records in
 * it are reported.
 */

const MAGIC_V1 = 0x31424d50; // "PMB1"
const MAGIC_V2 = 0x32424d50; // "PMB2"
/** The bytes every magic starts with: what resynchronisation looks for. */
const MAGIC_PREFIX = Buffer.from("PMB", "latin1");
const HEADER_V1 = 29;
const HEADER_V2 = 33;
/** The 25 header bytes both versions share (magic to raw bytes). */
const FIELDS = 25;
/** Recovery reads a segment in chunks of this size, so an I/O error loses one chunk, not the segment. */
const READ_CHUNK = 64 * 1024;

/** Bytes of the header of a record as it is written now (PMB2): a record is this plus its payload. */
export const RECORD_HEADER_BYTES = HEADER_V2;

/** Why the spool lost batches (a proxy loss reason: see LossCounts). */
export type SpoolLossReason = "spool_corrupt" | "spool_unreadable";

/** Where a record is: its segment (by first seq) and the offset of the record's first byte. */
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

/**
 * Batches recovery found damaged or unreadable, in one stretch of a segment
 * (or a whole segment), that may not be done: their datapoints are lost.
 */
export interface SpoolLoss {
  reason: SpoolLossReason;
  file: string;
  /** Where the stretch starts in the file. */
  offset: number;
  /** Its length in bytes; null when the whole segment could not be read. */
  bytes: number | null;
  /** The batch's seq, when the record's header is intact. */
  seq: number | null;
  /** Datapoints lost; null when they cannot be counted (the header is damaged or unread). */
  lines: number | null;
  /** What is wrong, for the log. */
  detail: string;
}

/** The header of a record (PMB2) for `payload`; the record is the header, then the payload. */
export function encodeRecordHeader(
  seq: number,
  compression: number,
  lines: number,
  rawBytes: number,
  payload: Uint8Array,
): Buffer {
  const h = Buffer.allocUnsafe(HEADER_V2);
  h.writeUInt32LE(MAGIC_V2, 0);
  h.writeUInt32LE(payload.byteLength, 4);
  h.writeBigUInt64LE(BigInt(seq), 8);
  h.writeUInt8(compression, 16);
  h.writeUInt32LE(lines, 17);
  h.writeUInt32LE(rawBytes, 21);
  h.writeUInt32LE(loadZlib().crc32(h.subarray(0, FIELDS)), 25);
  h.writeUInt32LE(loadZlib().crc32(payload), 29);
  return h;
}

/** What is at one offset of a segment. */
export type ParsedRecord =
  | {
      /** An intact record. */
      kind: "record";
      seq: number;
      compression: number;
      lines: number;
      rawBytes: number;
      size: number;
      payloadStart: number;
      end: number;
    }
  | {
      /** A PMB2 record whose header is intact but whose payload is not. */
      kind: "damaged-payload";
      seq: number;
      lines: number;
      size: number;
      end: number;
    }
  | {
      /** A PMB2 record whose header is intact, cut short by the end of the data. */
      kind: "torn";
      seq: number;
      lines: number;
    }
  | {
      /** Nothing that checks out starts here. */
      kind: "none";
    };

const NONE: ParsedRecord = { kind: "none" };

/** Parses the record that starts at `off`, checking every crc. Never throws. */
export function parseRecord(data: Buffer, off: number): ParsedRecord {
  if (off + FIELDS > data.length) return NONE;
  const magic = data.readUInt32LE(off);
  const size = data.readUInt32LE(off + 4);
  const seq = Number(data.readBigUInt64LE(off + 8));
  const lines = data.readUInt32LE(off + 17);
  if (magic === MAGIC_V2) {
    if (off + HEADER_V2 > data.length) return NONE;
    if (loadZlib().crc32(data.subarray(off, off + FIELDS)) !== data.readUInt32LE(off + 25))
      return NONE;
    const payloadStart = off + HEADER_V2;
    const end = payloadStart + size;
    if (end > data.length) return { kind: "torn", seq, lines };
    if (loadZlib().crc32(data.subarray(payloadStart, end)) !== data.readUInt32LE(off + 29)) {
      return { kind: "damaged-payload", seq, lines, size, end };
    }
    return whole(data, off, payloadStart, end);
  }
  if (magic === MAGIC_V1) {
    const payloadStart = off + HEADER_V1;
    const end = payloadStart + size;
    if (end > data.length) return NONE;
    const crc = loadZlib().crc32(
      data.subarray(payloadStart, end),
      loadZlib().crc32(data.subarray(off, off + FIELDS)),
    );
    if (crc !== data.readUInt32LE(off + 25)) return NONE;
    return whole(data, off, payloadStart, end);
  }
  return NONE;
}

/**
 * Checks the bytes read back where a batch's record should be (`data`: from
 * the record's first byte, RECORD_HEADER_BYTES + size asked for): the
 * batch's payload, or what is wrong with the record there.
 */
export function checkRecord(
  data: Buffer,
  seq: number,
  size: number,
): { payload: Buffer; detail: null } | { payload: null; detail: string } {
  const r = parseRecord(data, 0);
  if (r.kind === "record" && r.seq === seq && r.size === size) {
    return { payload: data.subarray(r.payloadStart, r.end), detail: null };
  }
  let detail: string;
  if (r.kind === "record" || r.kind === "damaged-payload") {
    detail =
      r.seq !== seq || r.size !== size
        ? `the record there is seq ${r.seq} of ${r.size} bytes, not seq ${seq} of ${size}`
        : "payload crc mismatch";
  } else if (r.kind === "torn") {
    detail = `short read (${data.length} bytes)`;
  } else {
    detail = "no intact record header (crc mismatch)";
  }
  return { payload: null, detail };
}

/** An intact record at `off` (either format: the fields sit at the same offsets). */
function whole(data: Buffer, off: number, payloadStart: number, end: number): ParsedRecord {
  return {
    kind: "record",
    seq: Number(data.readBigUInt64LE(off + 8)),
    compression: data.readUInt8(off + 16),
    lines: data.readUInt32LE(off + 17),
    rawBytes: data.readUInt32LE(off + 21),
    size: data.readUInt32LE(off + 4),
    payloadStart,
    end,
  };
}

/** The next offset at or after `from` where a record with an intact header starts, or -1. */
function resync(data: Buffer, from: number): number {
  for (
    let at = data.indexOf(MAGIC_PREFIX, from);
    at >= 0;
    at = data.indexOf(MAGIC_PREFIX, at + 1)
  ) {
    if (parseRecord(data, at).kind !== "none") return at;
  }
  return -1;
}

/** Bytes [start, end) of a segment that could not be read. */
export type Hole = readonly [start: number, end: number, err: string];

/**
 * Reads a whole segment, a chunk at a time: a chunk that fails (EIO on a bad
 * sector) is left zeroed and reported as a hole, and the rest is still read.
 * Throws only when the file cannot be opened or measured at all.
 */
export function readSegment(file: string): { data: Buffer; holes: Hole[] } {
  const fd = fs.openSync(file, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const data = Buffer.alloc(size);
    const holes: Hole[] = [];
    for (let pos = 0; pos < size; pos += READ_CHUNK) {
      const end = Math.min(size, pos + READ_CHUNK);
      try {
        let at = pos;
        while (at < end) {
          const n = fs.readSync(fd, data, at, end - at, at);
          if (n === 0) throw new Error("the file shrank while it was read");
          at += n;
        }
      } catch (err) {
        holes.push([pos, end, errText(err)]);
      }
    }
    if (holes.length > 0 && holes.length === Math.ceil(size / READ_CHUNK)) {
      throw new Error(`every read failed: ${holes[0]![2]}`);
    }
    return { data, holes };
  } finally {
    fs.closeSync(fd);
  }
}

/** What scanSegment found in a segment. */
export interface SegmentScan {
  /** Intact records not yet done, in file order. */
  found: SpooledBatch[];
  /** Damaged or unread stretches that may hold batches not yet done. */
  losses: SpoolLoss[];
  /** The highest seq known to be in the segment (firstSeq - 1 if none). */
  lastSeq: number;
  /** Where the segment should be cut (a torn or damaged tail), or null. */
  cutAt: number | null;
}

/**
 * Walks a segment's records, keeping the intact ones (not yet done) and
 * reporting what in between may hold batches not yet done. `upper` is the
 * next segment's first seq (or +Infinity): no seq of this one reaches it.
 */
export function scanSegment(
  data: Buffer,
  holes: readonly Hole[],
  seg: { file: string; firstSeq: number; upper: number; done: number },
): SegmentScan {
  const found: SpooledBatch[] = [];
  const losses: SpoolLoss[] = [];
  const { file, done } = seg;
  /** The highest seq known to be in the segment so far (seqs grow in a segment). */
  let lastSeq = seg.firstSeq - 1;
  let cutAt: number | null = null;
  const hole = (start: number, end: number): Hole | undefined =>
    holes.find(([a, b]) => a < end && start < b);
  const lose = (
    start: number,
    end: number,
    seq: number | null,
    lines: number | null,
    what: string,
  ): void => {
    const h = hole(start, end);
    losses.push({
      reason: h === undefined ? "spool_corrupt" : "spool_unreadable",
      file,
      offset: start,
      bytes: end - start,
      seq,
      lines,
      detail: h === undefined ? what : `${what} (read error: ${h[2]})`,
    });
  };
  let off = 0;
  while (off < data.length) {
    const r = parseRecord(data, off);
    if (r.kind === "record" && hole(off, r.end) === undefined) {
      if (r.seq > done) {
        found.push({
          seq: r.seq,
          compression: r.compression,
          lines: r.lines,
          rawBytes: r.rawBytes,
          size: r.size,
          loc: { segment: seg.firstSeq, offset: off },
        });
      }
      lastSeq = Math.max(lastSeq, r.seq);
      off = r.end;
      continue;
    }
    if (r.kind === "record" || r.kind === "damaged-payload") {
      // The header is intact: exactly one batch, of known size, is damaged.
      if (r.seq > done) lose(off, r.end, r.seq, r.lines, `damaged record (seq ${r.seq})`);
      lastSeq = Math.max(lastSeq, r.seq);
      off = r.end;
      continue;
    }
    if (r.kind === "torn") {
      if (r.seq > done) {
        lose(
          off,
          data.length,
          r.seq,
          r.lines,
          `torn record (seq ${r.seq}) at the end of a segment`,
        );
      }
      lastSeq = Math.max(lastSeq, r.seq);
      cutAt = off;
      break;
    }
    // No intact header here: skip to the next one. The seqs in between lie
    // after the last one seen and before the next one's (or the next segment's).
    const next = resync(data, off + 1);
    const end = next < 0 ? data.length : next;
    const after = next < 0 ? NONE : parseRecord(data, next);
    const upper = after.kind === "none" ? seg.upper : after.seq;
    if (Math.max(lastSeq, done) + 1 < upper) {
      lose(
        off,
        end,
        null,
        null,
        next < 0
          ? "damaged or torn bytes at the end of a segment"
          : "damaged record header (resynchronised on the next record)",
      );
    }
    if (next < 0) {
      cutAt = off;
      break;
    }
    off = next;
  }
  return { found, losses, lastSeq, cutAt };
}
