/**
 * Bracket expressions (`[a-z]`, `[^.]`, `[[:digit:]]`, `[]x]`) as glibc's regcomp reads
 * them in the C locale, where carbon-c-relay runs: one byte per character, ranges by
 * byte value, `[=x=]` and `[.x.]` only for a single character, no escapes inside.
 * A set of bytes is a 256-bit Uint32Array(8).
 */
import { RegexSyntaxError } from "./ere-syntax-error.ts";

/** A set of the 256 byte values. */
export type ByteSet = Uint32Array;

export function emptySet(): ByteSet {
  return new Uint32Array(8);
}

export function addByte(set: ByteSet, b: number): void {
  set[b >>> 5]! |= 1 << (b & 31);
}

export function hasByte(set: ByteSet, b: number): boolean {
  return (set[b >>> 5]! & (1 << (b & 31))) !== 0;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
function isUpper(c: number): boolean {
  return c >= 0x41 && c <= 0x5a;
}
function isLower(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}
function isAlnum(c: number): boolean {
  return isDigit(c) || isUpper(c) || isLower(c);
}
function isGraph(c: number): boolean {
  return c >= 0x21 && c <= 0x7e;
}

/** The C locale's <ctype.h> classes, by the names `[:name:]` accepts. */
const CLASSES: Record<string, (c: number) => boolean> = {
  alnum: isAlnum,
  cntrl: (c) => c < 0x20 || c === 0x7f,
  lower: isLower,
  space: (c) => (c >= 0x09 && c <= 0x0d) || c === 0x20,
  alpha: (c) => isUpper(c) || isLower(c),
  digit: isDigit,
  print: (c) => c >= 0x20 && c <= 0x7e,
  upper: isUpper,
  blank: (c) => c === 0x20 || c === 0x09,
  graph: isGraph,
  punct: (c) => isGraph(c) && !isAlnum(c),
  xdigit: (c) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66),
};

/** Adds the bytes of class `name` to `set`; false when there is no such class. */
export function addClass(set: ByteSet, name: string): boolean {
  const test = Object.hasOwn(CLASSES, name) ? CLASSES[name] : undefined;
  if (test === undefined) return false;
  for (let c = 0; c < 256; c++) if (test(c)) addByte(set, c);
  return true;
}

/** What glibc's `\w`/`\W` and `\s`/`\S` match: [[:alnum:]_] and [[:space:]], or their complement. */
export function classOp(name: "alnum" | "space", extra: string, negate: boolean): ByteSet {
  const set = emptySet();
  addClass(set, name);
  for (let i = 0; i < extra.length; i++) addByte(set, extra.charCodeAt(i));
  if (negate) for (let i = 0; i < 8; i++) set[i] = ~set[i]!;
  return set;
}

/** IS_WORD_CHAR in the C locale: what `\b`, `\<` and `\>` take as part of a word. */
export function isWordByte(c: number): boolean {
  return isAlnum(c) || c === 0x5f;
}

const T_END: number = 0;
const T_CHAR: number = 1;
const T_RANGE: number = 2; // '-'
const T_CLOSE: number = 3; // ']'
const T_NONMATCH: number = 4; // '^'
const T_COLL: number = 5; // '[.'
const T_EQUIV: number = 6; // '[='
const T_CLASS: number = 7; // '[:'

// What one element of the list is (glibc's bracket_elem_t types).
const E_CHAR: number = 0;
const E_COLL: number = 1;
const E_EQUIV: number = 2;
const E_CLASS: number = 3;

/** glibc's BRACKET_NAME_BUF_SIZE: a longer [:name:] is an unmatched bracket. */
const NAME_MAX = 32;

/**
 * Reads a bracket expression. `start` is the index just after its `[`, `open` the index of
 * the `[` (for error offsets). Returns the byte set and the index just after the closing `]`.
 */
export function parseBracket(
  src: string,
  start: number,
  open: number,
): { set: ByteSet; end: number } {
  const n = src.length;
  let pos = start;
  let tokType = T_END;
  let tokChar = 0;
  let tokLen = 0;
  const peek = (at: number): void => {
    if (at >= n) {
      tokType = T_END;
      tokLen = 0;
      return;
    }
    const c = src.charCodeAt(at);
    tokChar = c;
    tokLen = 1;
    if (c === 0x5b /* [ */) {
      const c2 = at + 1 < n ? src.charCodeAt(at + 1) : 0;
      tokType = c2 === 0x2e ? T_COLL : c2 === 0x3d ? T_EQUIV : c2 === 0x3a ? T_CLASS : T_CHAR;
      if (tokType !== T_CHAR) {
        tokChar = c2;
        tokLen = 2;
      }
      return;
    }
    tokType = c === 0x2d ? T_RANGE : c === 0x5d ? T_CLOSE : c === 0x5e ? T_NONMATCH : T_CHAR;
  };
  const fail = (
    code: "REG_BADPAT" | "REG_EBRACK" | "REG_ERANGE" | "REG_ECOLLATE" | "REG_ECTYPE",
  ): never => {
    throw new RegexSyntaxError(code, code === "REG_BADPAT" || code === "REG_EBRACK" ? open : pos);
  };

  // One element: a byte, or the name inside [. .], [= =] or [: :].
  let elemType = E_CHAR;
  let elemChar = 0;
  let elemName = "";
  const parseElement = (acceptHyphen: boolean): void => {
    const type = tokType;
    const c = tokChar;
    pos += tokLen;
    if (type === T_COLL || type === T_EQUIV || type === T_CLASS) {
      if (pos >= n) fail("REG_EBRACK");
      let name = "";
      for (let i = 0; ; i++) {
        if (i >= NAME_MAX) fail("REG_EBRACK");
        const ch = src.charCodeAt(pos++);
        if (pos >= n) fail("REG_EBRACK");
        if (ch === c && src.charCodeAt(pos) === 0x5d) break;
        name += String.fromCharCode(ch);
      }
      pos++;
      elemType = type === T_COLL ? E_COLL : type === T_EQUIV ? E_EQUIV : E_CLASS;
      elemName = name;
      return;
    }
    if (type === T_RANGE && !acceptHyphen) {
      // A '-' that starts an element is only allowed right before the closing ']'.
      peek(pos);
      if (tokType !== T_CLOSE) fail("REG_ERANGE");
    }
    elemType = E_CHAR;
    elemChar = c;
  };
  // The byte an element stands for as a range end, or -1 for a multi-character name.
  const rangeByte = (type: number, ch: number, name: string): number => {
    if (type === E_CHAR) return ch;
    return name.length === 1 ? name.charCodeAt(0) : -1;
  };

  const set = emptySet();
  let negate = false;
  peek(pos);
  if (tokType === T_END) fail("REG_BADPAT");
  if (tokType === T_NONMATCH) {
    negate = true;
    pos += tokLen;
    peek(pos);
    if (tokType === T_END) fail("REG_BADPAT");
  }
  if (tokType === T_CLOSE) tokType = T_CHAR; // a ']' first is an ordinary character
  let firstRound = true;
  for (;;) {
    parseElement(firstRound);
    firstRound = false;
    const startType = elemType;
    const startChar = elemChar;
    const startName = elemName;
    let isRange = false;
    peek(pos);
    if (startType !== E_CLASS && startType !== E_EQUIV) {
      if (tokType === T_END) fail("REG_EBRACK");
      if (tokType === T_RANGE) {
        const hyphenLen = tokLen;
        pos += hyphenLen;
        peek(pos);
        if (tokType === T_END) fail("REG_EBRACK");
        if (tokType === T_CLOSE) {
          // A '-' last is an ordinary character: read it as the next element.
          pos -= hyphenLen;
          tokType = T_CHAR;
          tokChar = 0x2d;
          tokLen = hyphenLen;
        } else {
          isRange = true;
        }
      }
    }
    if (isRange) {
      parseElement(true);
      const endType = elemType;
      const endChar = elemChar;
      const endName = elemName;
      peek(pos);
      if (
        startType === E_EQUIV ||
        startType === E_CLASS ||
        endType === E_EQUIV ||
        endType === E_CLASS
      ) {
        fail("REG_ERANGE");
      }
      const from = rangeByte(startType, startChar, startName);
      const to = rangeByte(endType, endChar, endName);
      if (from < 0 || to < 0) fail("REG_ECOLLATE");
      if (from > to) fail("REG_ERANGE");
      for (let b = from; b <= to; b++) addByte(set, b);
    } else if (startType === E_CHAR) {
      addByte(set, startChar);
    } else if (startType === E_CLASS) {
      if (!addClass(set, startName)) fail("REG_ECTYPE");
    } else {
      // [.x.] and [=x=]: the C locale has no multi-character collating elements.
      if (startName.length !== 1) fail("REG_ECOLLATE");
      addByte(set, startName.charCodeAt(0));
    }
    if (tokType === T_END) fail("REG_EBRACK");
    if (tokType === T_CLOSE) break;
  }
  pos += tokLen;
  if (negate) for (let i = 0; i < 8; i++) set[i] = ~set[i]!;
  return { set, end: pos };
}
