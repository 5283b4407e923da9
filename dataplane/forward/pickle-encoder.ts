import { PY_DECIMAL, PY_SPECIAL, PY_SPLIT, PY_STRIP } from "../../common/python-float.ts";
/**
 * Graphite plaintext lines to carbon's pickle protocol (specs:
 * graphite-protocol.md §3), for a `pickle://` destination: frames of a
 * 4-byte big-endian length, then the bytes of
 * `pickle.dumps([(name, (timestamp, value)), ...], protocol=2)` (what
 * carbon's own relay sends, and what Python 2 and 3 unpickle alike).
 *
 * Opcodes (all of protocol 2): PROTO 2, EMPTY_LIST, MARK ... APPENDS, TUPLE2,
 * BINUNICODE for the name (its UTF-8 bytes as they came, tags included),
 * BININT1/BININT2/BININT/LONG1 for an integral timestamp, BINFLOAT for a
 * fractional one and for every value (carbon stores floats), STOP. No memo:
 * nothing is referenced twice.
 */

/** carbon's MAX_DATAPOINTS_PER_MESSAGE: datapoints in one frame at most. */
export const PICKLE_MAX_DATAPOINTS = 500;

/**
 * The receiver's cap on a frame (carbon's PICKLE_RECEIVER_MAX_LENGTH, 1 MiB):
 * a larger frame closes the connection. A line whose datapoint alone would
 * not fit is skipped (never happens with lines of the default maximum
 * length, 16 KiB).
 */
export const PICKLE_MAX_FRAME_BYTES = 1024 * 1024;

/**
 * A frame is closed once its pickle would grow past this, well under the
 * receiver's cap (500 datapoints of ordinary names take ~40 KiB; this only
 * binds for very long names).
 */
export const PICKLE_FRAME_TARGET_BYTES = 256 * 1024;

/** What encodePickleFrames made of a buffer of lines. */
export interface PickleFrames {
  /** The frames, one after the other (empty when no line was encoded). */
  readonly bytes: Buffer;
  /** Frames in `bytes`. */
  readonly frames: number;
  /** Lines encoded as datapoints. */
  readonly encoded: number;
  /** Lines skipped: not `name value timestamp`, a number that does not parse, or too long for a frame. */
  readonly skipped: number;
}

const NL = 0x0a;
const HEADER = 4;

// Opcodes.
const PROTO = 0x80;
const EMPTY_LIST = 0x5d; // ]
const MARK = 0x28; // (
const APPENDS = 0x65; // e
const STOP = 0x2e; // .
const TUPLE2 = 0x86;
const BINUNICODE = 0x58; // X
const BININT = 0x4a; // J
const BININT1 = 0x4b; // K
const BININT2 = 0x4d; // M
const LONG1 = 0x8a;
const BINFLOAT = 0x47; // G

/** PROTO 2, EMPTY_LIST, MARK. */
const FRAME_OPEN = 4;
/** APPENDS, STOP. */
const FRAME_CLOSE = 2;
/** BINUNICODE + length, BINFLOAT value, two TUPLE2: an item's size besides its name and timestamp. */
const ITEM_FIXED = 1 + 4 + 9 + 2;

// A forwarded line may keep any of Python's whitespace between fields: it is
// split as line-validator.ts splits it (common/python-float.ts).
const PY_INTEGER = /^[+-]?\d+$/;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A growing output buffer. */
class Out {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(b: number): void {
    this.buf[this.pos++] = b;
  }
}

/** A timestamp as pickled: an integer (number when it fits BININT, else bigint) or a float. */
type Timestamp =
  | { readonly kind: "int"; readonly value: number }
  | { readonly kind: "long"; readonly value: bigint; readonly bytes: number }
  | { readonly kind: "float"; readonly value: number };

/** One parsed line: where its name's bytes are (or the bytes themselves), its value and timestamp. */
interface Datapoint {
  name: Buffer;
  nameStart: number;
  nameEnd: number;
  value: number;
  ts: Timestamp;
}

/**
 * Encodes the newline-terminated lines of `buf` (Graphite plaintext,
 * validated upstream) as pickle frames of at most PICKLE_MAX_DATAPOINTS
 * datapoints, in order. A trailing piece without a newline is not a line
 * and is ignored. Lines that do not parse are skipped and counted.
 */
export function encodePickleFrames(buf: Buffer): PickleFrames {
  const out = new Out(Math.max(64, Math.ceil(buf.length * 1.25) + 64));
  let frames = 0;
  let encoded = 0;
  let skipped = 0;
  /** Where the open frame starts (its header), or -1; and what it holds. */
  let frameStart = -1;
  let frameItems = 0;
  const closeFrame = (): void => {
    if (frameStart < 0) return;
    out.ensure(FRAME_CLOSE);
    out.byte(APPENDS);
    out.byte(STOP);
    out.buf.writeUInt32BE(out.pos - frameStart - HEADER, frameStart);
    frameStart = -1;
    frameItems = 0;
    frames++;
  };
  const dp: Datapoint = {
    name: buf,
    nameStart: 0,
    nameEnd: 0,
    value: 0,
    ts: { kind: "int", value: 0 },
  };
  let start = 0;
  for (let nl = buf.indexOf(NL); nl >= 0; start = nl + 1, nl = buf.indexOf(NL, start)) {
    if (!parseLine(buf, start, nl, dp)) {
      skipped++;
      continue;
    }
    const nameBytes = dp.nameEnd - dp.nameStart;
    const item = ITEM_FIXED + nameBytes + timestampBytes(dp.ts);
    if (FRAME_OPEN + item + FRAME_CLOSE > PICKLE_MAX_FRAME_BYTES) {
      skipped++;
      continue;
    }
    if (
      frameStart >= 0 &&
      (frameItems === PICKLE_MAX_DATAPOINTS ||
        out.pos - frameStart - HEADER + item + FRAME_CLOSE > PICKLE_FRAME_TARGET_BYTES)
    ) {
      closeFrame();
    }
    if (frameStart < 0) {
      out.ensure(HEADER + FRAME_OPEN);
      frameStart = out.pos;
      out.pos += HEADER;
      out.byte(PROTO);
      out.byte(2);
      out.byte(EMPTY_LIST);
      out.byte(MARK);
    }
    out.ensure(item);
    const b = out.buf;
    b[out.pos++] = BINUNICODE;
    out.pos = b.writeUInt32LE(nameBytes, out.pos);
    out.pos += dp.name.copy(b, out.pos, dp.nameStart, dp.nameEnd);
    writeTimestamp(out, dp.ts);
    b[out.pos++] = BINFLOAT;
    out.pos = b.writeDoubleBE(dp.value, out.pos);
    b[out.pos++] = TUPLE2;
    b[out.pos++] = TUPLE2;
    frameItems++;
    encoded++;
  }
  closeFrame();
  return { bytes: out.buf.subarray(0, out.pos), frames, encoded, skipped };
}

/** Parses buf[start, end) into `dp`; false when it is not `name value timestamp`. */
function parseLine(buf: Buffer, start: number, end: number, dp: Datapoint): boolean {
  // Fast path: ASCII, fields separated by ASCII whitespace.
  const fields: number[] = [];
  let i = start;
  let ascii = true;
  while (i < end && fields.length <= 6) {
    while (i < end && isAsciiSpace(buf[i]!)) i++;
    if (i === end) break;
    const f = i;
    while (i < end && !isAsciiSpace(buf[i]!)) {
      if (buf[i]! >= 0x80) ascii = false;
      i++;
    }
    fields.push(f, i);
  }
  if (ascii) {
    if (fields.length !== 6) return false;
    return fill(
      dp,
      buf,
      fields[0]!,
      fields[1]!,
      buf.toString("latin1", fields[2]!, fields[3]!),
      buf.toString("latin1", fields[4]!, fields[5]!),
    );
  }
  // Anything else: decode, and split as Python does.
  let text: string;
  try {
    text = utf8.decode(buf.subarray(start, end));
  } catch {
    return false;
  }
  const parts = text.replace(PY_STRIP, "").split(PY_SPLIT);
  if (parts.length !== 3) return false;
  const name = Buffer.from(parts[0]!, "utf8");
  return fill(dp, name, 0, name.length, parts[1]!, parts[2]!);
}

function fill(
  dp: Datapoint,
  name: Buffer,
  nameStart: number,
  nameEnd: number,
  valueText: string,
  tsText: string,
): boolean {
  if (nameEnd === nameStart) return false;
  const value = pyFloat(valueText);
  if (value === null) return false;
  const ts = timestamp(tsText);
  if (ts === null) return false;
  dp.name = name;
  dp.nameStart = nameStart;
  dp.nameEnd = nameEnd;
  dp.value = value;
  dp.ts = ts;
  return true;
}

/** `text` as Python's float() reads it, or null when it does not. */
function pyFloat(text: string): number | null {
  if (PY_DECIMAL.test(text)) return Number(text.replaceAll("_", ""));
  const special = PY_SPECIAL.exec(text);
  if (special === null) return null;
  if (special[2]!.toLowerCase() === "nan") return Number.NaN;
  return special[1] === "-" ? -Infinity : Infinity;
}

/** A timestamp: an integer when it is integral, else a float; null when not finite or not a number. */
function timestamp(text: string): Timestamp | null {
  const plain = text.replaceAll("_", "");
  if (PY_INTEGER.test(plain)) return integer(BigInt(plain));
  const n = pyFloat(text);
  if (n === null || !Number.isFinite(n)) return null;
  if (Number.isInteger(n)) return integer(BigInt(n));
  return { kind: "float", value: n };
}

function integer(v: bigint): Timestamp {
  if (v >= -0x8000_0000n && v <= 0x7fff_ffffn) return { kind: "int", value: Number(v) };
  // LONG1: the fewest bytes holding v in two's complement.
  let bytes = 1;
  while (v < -(1n << BigInt(8 * bytes - 1)) || v >= 1n << BigInt(8 * bytes - 1)) bytes++;
  return { kind: "long", value: v, bytes };
}

function timestampBytes(ts: Timestamp): number {
  if (ts.kind === "float") return 9;
  if (ts.kind === "long") return 2 + ts.bytes;
  const v = ts.value;
  if (v >= 0 && v < 0x100) return 2;
  if (v >= 0 && v < 0x10000) return 3;
  return 5;
}

function writeTimestamp(out: Out, ts: Timestamp): void {
  const b = out.buf;
  if (ts.kind === "float") {
    b[out.pos++] = BINFLOAT;
    out.pos = b.writeDoubleBE(ts.value, out.pos);
    return;
  }
  if (ts.kind === "long") {
    b[out.pos++] = LONG1;
    b[out.pos++] = ts.bytes;
    let u = BigInt.asUintN(8 * ts.bytes, ts.value);
    for (let k = 0; k < ts.bytes; k++) {
      b[out.pos++] = Number(u & 0xffn);
      u >>= 8n;
    }
    return;
  }
  const v = ts.value;
  if (v >= 0 && v < 0x100) {
    b[out.pos++] = BININT1;
    b[out.pos++] = v;
  } else if (v >= 0 && v < 0x10000) {
    b[out.pos++] = BININT2;
    out.pos = b.writeUInt16LE(v, out.pos);
  } else {
    b[out.pos++] = BININT;
    out.pos = b.writeInt32LE(v, out.pos);
  }
}

/** Python's ASCII whitespace: \t \n \v \f \r, \x1c-\x1f and space. */
function isAsciiSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
}
