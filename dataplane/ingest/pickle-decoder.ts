import {
  decimalInt,
  floatLine,
  latin1,
  memoIndex,
  pyStringLiteral,
  rawUnicodeEscape,
  twosComplement,
  utf8Text,
} from "./pickle-arguments.ts";
import { type PickleDecodeResult, toPoints } from "./pickle-points.ts";
import {
  type Container,
  depthOf,
  FALSE,
  NONE,
  TRUE,
  typeName,
  type Value,
} from "./pickle-value.ts";

export { floatText, type PickleDecodeResult, type PicklePoint } from "./pickle-points.ts";

/**
 * A safe decoder of one carbon pickle message (specs: graphite-protocol.md §3):
 * the payload after the 4-byte length prefix, a list of
 * `(path, (timestamp, value))` as Python's `pickle.dumps` writes it with
 * protocols 0 to 5 (carbon-relay: 2; carbon-relay-ng and others: 0, 1, 3, 4).
 *
 * It executes nothing: only the opcodes that build lists, tuples, strings,
 * bytes, numbers, None and booleans, and the memo and stack opcodes, are
 * implemented. Any other opcode (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST,
 * OBJ, NEWOBJ, PERSID, EXT*, dicts, sets, buffers) refuses the whole message.
 * So do truncation, stack underflow, a missing STOP, bytes after the STOP, a
 * top level that is not a list, an unknown memo index and declared lengths
 * beyond the payload. Errors are returned, never thrown.
 *
 * Memory is bounded by the payload: every value comes from at least one byte
 * of it, no value is ever copied (memo and DUP share references), and
 * `maxItems` caps the stack, the memo and every list or tuple, `maxDepth` the
 * nesting of containers and MARKs. Nothing recurses.
 *
 * Items are read as carbon reads them (`(metric, (value, timestamp)) = raw`,
 * then `float()` on both numbers): outer and inner may be tuples or lists of
 * two; the path a str (UTF-8) or bytes (latin1); timestamp and value an int,
 * a float, a bool or a str/bytes that Python's float() accepts. Other items
 * are skipped and counted, as carbon skips them.
 */

/** Bounds of one decode. */
export interface PickleDecodeLimits {
  /** Most elements in the stack, the memo or any list or tuple (default 1,000,000). */
  maxItems?: number;
  /** Deepest nesting of lists/tuples, and most open MARKs (default 64). */
  maxDepth?: number;
}

/** Default of `PickleDecodeLimits.maxItems`. */
export const DEFAULT_PICKLE_MAX_ITEMS = 1_000_000;
/** Default of `PickleDecodeLimits.maxDepth`. */
export const DEFAULT_PICKLE_MAX_DEPTH = 64;

/** Highest pickle protocol Python writes (3.8+). */
const HIGHEST_PROTOCOL = 5;
/** Python's default `sys.get_int_max_str_digits()`: int() refuses longer decimal text. */

// ---------------------------------------------------------------------------
// Opcodes

const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  FLOAT: 0x46,
  INT: 0x49,
  BININT: 0x4a,
  BININT1: 0x4b,
  LONG: 0x4c,
  BININT2: 0x4d,
  NONE: 0x4e,
  STRING: 0x53,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  UNICODE: 0x56,
  BINUNICODE: 0x58,
  EMPTY_LIST: 0x5d,
  APPEND: 0x61,
  APPENDS: 0x65,
  GET: 0x67,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  PUT: 0x70,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  TUPLE: 0x74,
  EMPTY_TUPLE: 0x29,
  BINFLOAT: 0x47,
  PROTO: 0x80,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

/** Names of the opcodes that exist but are refused, for error messages. */
const REFUSED: Record<number, string> = {
  80: "PERSID",
  81: "BINPERSID",
  82: "REDUCE",
  98: "BUILD",
  99: "GLOBAL",
  100: "DICT",
  105: "INST",
  111: "OBJ",
  115: "SETITEM",
  117: "SETITEMS",
  125: "EMPTY_DICT",
  129: "NEWOBJ",
  130: "EXT1",
  131: "EXT2",
  132: "EXT4",
  143: "EMPTY_SET",
  144: "ADDITEMS",
  145: "FROZENSET",
  146: "NEWOBJ_EX",
  147: "STACK_GLOBAL",
  150: "BYTEARRAY8",
  151: "NEXT_BUFFER",
  152: "READONLY_BUFFER",
};

const NAMES: Record<number, string> = {
  ...REFUSED,
  ...Object.fromEntries(Object.entries(OP).map(([name, code]) => [code, name])),
};

function hex2(b: number): string {
  return `0x${b.toString(16).padStart(2, "0")}`;
}

/** Thrown inside the decoder only; decodePickle turns it into `{ok: false}`. */
class PickleError extends Error {}

// ---------------------------------------------------------------------------
// The machine

/**
 * Decodes one pickle message payload into datapoints. Never throws: a payload
 * that is not a safe, well-formed pickle of a list gives `{ok: false, error}`.
 */
export function decodePickle(payload: Uint8Array, limits?: PickleDecodeLimits): PickleDecodeResult {
  const maxItems = limits?.maxItems ?? DEFAULT_PICKLE_MAX_ITEMS;
  const maxDepth = limits?.maxDepth ?? DEFAULT_PICKLE_MAX_DEPTH;
  let top: Value;
  try {
    top = run(payload, maxItems, maxDepth);
  } catch (err) {
    if (err instanceof PickleError) return { ok: false, error: err.message };
    // A bug of this file, or the engine out of memory: still the message's fault only.
    return { ok: false, error: `pickle decode failed: ${String(err)}` };
  }
  if (top.k !== "list") {
    return { ok: false, error: `pickle top level is a ${typeName(top)}, not a list` };
  }
  return toPoints(top.items);
}

function run(buf: Uint8Array, maxItems: number, maxDepth: number): Value {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const end = buf.length;
  const stack: Value[] = [];
  const marks: number[] = [];
  const memo = new Map<number, Value>();
  let pos = 0;
  let at = 0; // offset of the opcode being run

  const fail = (what: string): never => {
    throw new PickleError(`${what} at offset ${at}`);
  };
  const need = (n: number, what: string): void => {
    if (n > end - pos) fail(`truncated pickle: ${what} needs ${n} bytes, ${end - pos} left`);
  };
  const base = (): number => (marks.length > 0 ? marks[marks.length - 1]! : 0);
  const push = (v: Value): void => {
    if (stack.length >= maxItems) fail(`pickle stack deeper than ${maxItems} items`);
    stack.push(v);
  };
  const pop = (): Value => {
    if (stack.length <= base()) fail(`pickle stack underflow in ${NAMES[buf[at]!]}`);
    return stack.pop()!;
  };
  const peek = (): Value => {
    if (stack.length <= base()) fail(`pickle stack underflow in ${NAMES[buf[at]!]}`);
    return stack[stack.length - 1]!;
  };
  const popMark = (): Value[] => {
    if (marks.length === 0) fail(`${NAMES[buf[at]!]} without a MARK`);
    const m = marks.pop()!;
    return stack.splice(m);
  };
  const container = (k: "list" | "tuple", items: Value[]): Container => {
    if (items.length > maxItems) fail(`pickle ${k} longer than ${maxItems} items`);
    let depth = 1;
    for (const it of items) depth = Math.max(depth, depthOf(it) + 1);
    if (depth > maxDepth) fail(`pickle nested deeper than ${maxDepth}`);
    return { k, items, depth };
  };
  const extend = (list: Value, items: Value[]): void => {
    if (list.k !== "list") fail(`${NAMES[buf[at]!]} to a ${typeName(list)}, not a list`);
    const l = list as Container;
    if (l.items.length + items.length > maxItems) fail(`pickle list longer than ${maxItems} items`);
    for (const it of items) {
      const d = depthOf(it) + 1;
      if (d > maxDepth) fail(`pickle nested deeper than ${maxDepth}`);
      if (d > l.depth) l.depth = d;
      l.items.push(it);
    }
  };
  const u8 = (): number => {
    need(1, NAMES[buf[at]!]!);
    return buf[pos++]!;
  };
  const u16 = (): number => {
    need(2, NAMES[buf[at]!]!);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4, NAMES[buf[at]!]!);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4, NAMES[buf[at]!]!);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  /** An 8-byte little-endian length, checked against what is left. */
  const len64 = (): number => {
    need(8, NAMES[buf[at]!]!);
    const lo = view.getUint32(pos, true);
    const hi = view.getUint32(pos + 4, true);
    pos += 8;
    if (hi !== 0 || lo > end - pos) {
      const n = (BigInt(hi) << 32n) | BigInt(lo);
      fail(`${NAMES[buf[at]!]} declares ${n} bytes, ${end - pos} left`);
    }
    return lo;
  };
  const bytes = (n: number): Uint8Array => {
    if (n > end - pos) fail(`${NAMES[buf[at]!]} declares ${n} bytes, ${end - pos} left`);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  /** The text up to the next newline (not included), as latin1. */
  const line = (): string => {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) fail(`truncated pickle: ${NAMES[buf[at]!]} argument has no newline`);
    const s = latin1(buf.subarray(pos, nl));
    pos = nl + 1;
    return s;
  };
  const memoPut = (i: number): void => {
    const v = peek();
    if (!memo.has(i) && memo.size >= maxItems) fail(`pickle memo larger than ${maxItems} entries`);
    memo.set(i, v);
  };
  const memoGet = (i: number): void => {
    const v = memo.get(i);
    if (v === undefined) fail(`pickle memo index ${i} unknown`);
    push(v as Value);
  };

  while (pos < end) {
    at = pos;
    const op = buf[pos++]!;
    switch (op) {
      case OP.PROTO: {
        const p = u8();
        if (p > HIGHEST_PROTOCOL) fail(`unsupported pickle protocol ${p}`);
        break;
      }
      case OP.FRAME:
        // Frames only group opcodes for buffered reading; the frame must be there.
        len64();
        break;
      case OP.STOP: {
        const v = pop();
        if (pos !== end) {
          throw new PickleError(`${end - pos} bytes after the pickle STOP at offset ${at}`);
        }
        return v;
      }
      case OP.MARK:
        if (marks.length >= maxDepth) fail(`more than ${maxDepth} open pickle MARKs`);
        marks.push(stack.length);
        break;
      case OP.POP:
        // As Python: with nothing above the mark, POP discards the mark.
        if (stack.length > base()) stack.pop();
        else if (marks.length > 0) marks.pop();
        else fail("pickle stack underflow in POP");
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        push(peek());
        break;
      case OP.EMPTY_LIST:
        push(container("list", []));
        break;
      case OP.LIST:
        push(container("list", popMark()));
        break;
      case OP.APPEND: {
        const v = pop();
        extend(peek(), [v]);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        extend(peek(), items);
        break;
      }
      case OP.EMPTY_TUPLE:
        push(container("tuple", []));
        break;
      case OP.TUPLE:
        push(container("tuple", popMark()));
        break;
      case OP.TUPLE1:
      case OP.TUPLE2:
      case OP.TUPLE3: {
        const n = op - OP.TUPLE1 + 1;
        if (stack.length - base() < n) fail(`pickle stack underflow in ${NAMES[op]}`);
        push(container("tuple", stack.splice(stack.length - n)));
        break;
      }
      case OP.STRING:
        push({ k: "bytes", s: pyStringLiteral(line(), fail) });
        break;
      case OP.BINSTRING: {
        const n = i32();
        if (n < 0) fail(`BINSTRING declares a negative length ${n}`);
        push({ k: "bytes", s: latin1(bytes(n)) });
        break;
      }
      case OP.SHORT_BINSTRING:
      case OP.SHORT_BINBYTES:
        push({ k: "bytes", s: latin1(bytes(u8())) });
        break;
      case OP.BINBYTES:
        push({ k: "bytes", s: latin1(bytes(u32())) });
        break;
      case OP.BINBYTES8:
        push({ k: "bytes", s: latin1(bytes(len64())) });
        break;
      case OP.UNICODE:
        push({ k: "str", s: rawUnicodeEscape(line(), fail) });
        break;
      case OP.SHORT_BINUNICODE:
        push({ k: "str", s: utf8Text(bytes(u8()), fail) });
        break;
      case OP.BINUNICODE:
        push({ k: "str", s: utf8Text(bytes(u32()), fail) });
        break;
      case OP.BINUNICODE8:
        push({ k: "str", s: utf8Text(bytes(len64()), fail) });
        break;
      case OP.INT: {
        const s = line();
        // Protocol 0 writes booleans as I01 / I00.
        if (s === "01") push(TRUE);
        else if (s === "00") push(FALSE);
        else push(decimalInt(s, "INT", fail));
        break;
      }
      case OP.LONG: {
        const s = line();
        push(decimalInt(s.endsWith("L") ? s.slice(0, -1) : s, "LONG", fail));
        break;
      }
      case OP.BININT:
        push({ k: "int", v: i32() });
        break;
      case OP.BININT1:
        push({ k: "int", v: u8() });
        break;
      case OP.BININT2:
        push({ k: "int", v: u16() });
        break;
      case OP.LONG1:
        push(twosComplement(bytes(u8())));
        break;
      case OP.LONG4: {
        const n = i32();
        if (n < 0) fail(`LONG4 declares a negative length ${n}`);
        push(twosComplement(bytes(n)));
        break;
      }
      case OP.FLOAT:
        push({ k: "float", v: floatLine(line(), fail) });
        break;
      case OP.BINFLOAT:
        need(8, "BINFLOAT");
        push({ k: "float", v: view.getFloat64(pos, false) });
        pos += 8;
        break;
      case OP.NONE:
        push(NONE);
        break;
      case OP.NEWTRUE:
        push(TRUE);
        break;
      case OP.NEWFALSE:
        push(FALSE);
        break;
      case OP.PUT:
        memoPut(memoIndex(line(), "PUT", fail));
        break;
      case OP.BINPUT:
        memoPut(u8());
        break;
      case OP.LONG_BINPUT:
        memoPut(u32());
        break;
      case OP.MEMOIZE:
        memoPut(memo.size);
        break;
      case OP.GET:
        memoGet(memoIndex(line(), "GET", fail));
        break;
      case OP.BINGET:
        memoGet(u8());
        break;
      case OP.LONG_BINGET:
        memoGet(u32());
        break;
      default: {
        const name = REFUSED[op];
        if (name !== undefined) fail(`unsupported pickle opcode ${name} (${hex2(op)})`);
        fail(`unknown pickle opcode ${hex2(op)}`);
      }
    }
  }
  throw new PickleError(`truncated pickle: no STOP opcode in ${end} bytes`);
}
