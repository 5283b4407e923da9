import type { Value } from "./pickle-value.ts";

/**
 * The arguments of a pickle message's opcodes, read as Python's unpickler
 * reads them: protocol 0's text forms (decimal ints, float lines, Python
 * string literals, raw-unicode-escape), little-endian integers of any width,
 * latin1 and UTF-8 text. Each reports what is wrong through `fail`, which
 * throws inside the decoder.
 */

const MAX_INT_DIGITS = 4300;
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export type Fail = (what: string) => never;

export function latin1(b: Uint8Array): string {
  // Chunks: String.fromCharCode takes its arguments on the stack.
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + 8192) as unknown as number[]);
  }
  return s;
}

export function utf8Text(b: Uint8Array, fail: Fail): string {
  try {
    return utf8.decode(b);
  } catch {
    // Python writes lone surrogates with "surrogatepass"; those are refused
    // too: a metric name cannot hold them.
    return fail("invalid UTF-8 in a pickle string");
  }
}

export function memoIndex(s: string, name: string, fail: Fail): number {
  if (!/^\d{1,15}$/.test(s)) fail(`bad ${name} argument ${JSON.stringify(s.slice(0, 40))}`);
  return Number(s);
}

/** int(text) as Python's INT and LONG opcodes take it: decimal, optional sign. */
export function decimalInt(s: string, name: string, fail: Fail): Value {
  const m = /^([+-]?)(\d+)$/.exec(s);
  if (m === null) return fail(`bad ${name} argument ${JSON.stringify(s.slice(0, 40))}`);
  if (m[2]!.length > MAX_INT_DIGITS)
    return fail(`${name} argument longer than ${MAX_INT_DIGITS} digits`);
  const v = BigInt(s);
  return intValue(v);
}

export function intValue(v: bigint): Value {
  if (v >= -9007199254740991n && v <= 9007199254740991n) return { k: "int", v: Number(v) };
  return Number.isFinite(Number(v)) ? { k: "int", v } : { k: "hugeint" };
}

/** LONG1/LONG4: little-endian two's complement; empty is 0. */
export function twosComplement(b: Uint8Array): Value {
  if (b.length === 0) return { k: "int", v: 0 };
  const neg = (b[b.length - 1]! & 0x80) !== 0;
  const pad = neg ? 0xff : 0x00;
  let n = b.length;
  while (n > 1 && b[n - 1] === pad && (b[n - 2]! & 0x80) === (pad & 0x80)) n--;
  // Past 129 significant bytes the magnitude is at least 2**1024: float()
  // overflows, so the exact value is never needed (and never built).
  if (n > 129) return { k: "hugeint" };
  let hex = "";
  for (let i = n - 1; i >= 0; i--) hex += b[i]!.toString(16).padStart(2, "0");
  let v = BigInt(`0x${hex}`);
  if (neg) v -= 1n << BigInt(8 * n);
  return intValue(v);
}

/** FLOAT's argument: what PyOS_string_to_double reads, overflow refused. */
export function floatLine(s: string, fail: Fail): number {
  if (/^[+-]?(?:nan|inf|infinity)$/i.test(s)) {
    if (s.toLowerCase().includes("nan")) return Number.NaN;
    return s.startsWith("-") ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (!/^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(s)) {
    return fail(`bad FLOAT argument ${JSON.stringify(s.slice(0, 40))}`);
  }
  const v = Number(s);
  if (!Number.isFinite(v)) fail(`FLOAT argument ${JSON.stringify(s.slice(0, 40))} out of range`);
  return v;
}

/**
 * STRING's argument (protocol 0 from Python 2): a quoted Python literal,
 * decoded as codecs.escape_decode does.
 */
export function pyStringLiteral(s: string, fail: Fail): string {
  const q = s[0];
  if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) {
    return fail("the STRING opcode argument must be quoted");
  }
  const body = s.slice(1, -1);
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    if (i + 1 >= body.length) return fail("STRING argument ends with a lone backslash");
    const e = body[++i]!;
    const simple = ESCAPES[e];
    if (simple !== undefined) {
      out += simple;
    } else if (e === "\n") {
      // Line continuation: nothing.
    } else if (e >= "0" && e <= "7") {
      let n = 0;
      let j = i;
      for (; j < body.length && j < i + 3 && body[j]! >= "0" && body[j]! <= "7"; j++) {
        n = n * 8 + (body.charCodeAt(j) - 0x30);
      }
      i = j - 1;
      out += String.fromCharCode(n & 0xff);
    } else if (e === "x") {
      const h = body.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(h)) return fail("invalid \\x escape in a STRING argument");
      out += String.fromCharCode(Number.parseInt(h, 16));
      i += 2;
    } else {
      out += `\\${e}`;
    }
  }
  return out;
}

const ESCAPES: Record<string, string> = {
  "\\": "\\",
  "'": "'",
  '"': '"',
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
};

/**
 * UNICODE's argument (protocol 0 from Python 3): raw-unicode-escape, that is
 * latin1 bytes where `\uXXXX` and `\UXXXXXXXX` (after an odd run of
 * backslashes) are code points.
 */
export function rawUnicodeEscape(s: string, fail: Fail): string {
  if (!s.includes("\\")) return s;
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c !== "\\") {
      out += c;
      i++;
      continue;
    }
    let j = i;
    while (j < s.length && s[j] === "\\") j++;
    const run = j - i;
    const e = s[j];
    if (run % 2 === 0 || (e !== "u" && e !== "U")) {
      out += s.slice(i, j);
      i = j;
      continue;
    }
    out += "\\".repeat(run - 1);
    const n = e === "u" ? 4 : 8;
    const h = s.slice(j + 1, j + 1 + n);
    if (h.length !== n || !/^[0-9a-fA-F]+$/.test(h)) {
      return fail(`truncated \\${e} escape in a UNICODE argument`);
    }
    const cp = Number.parseInt(h, 16);
    if (cp > 0x10ffff) return fail("\\U escape out of range in a UNICODE argument");
    out += String.fromCodePoint(cp);
    i = j + 1 + n;
  }
  return out;
}
