/**
 * A JavaScript RegExp that says whether an expression matches, for test() on the hot
 * path: V8 runs it as native code, two to four times faster than stepping glibc's
 * DFA in JavaScript. Whether a match exists does not depend on leftmost-longest, so
 * any correct engine agrees with glibc wherever glibc's own answer is the plain
 * regular-language one; the caller establishes that (ere-verdict.ts: no word
 * anchors, `^` and `$` only where glibc's contexts cannot come into play, no loops of
 * what may match empty). This module translates the syntax (brackets as byte sets,
 * `\d` is `d`, `{,2}`, `+?` as a repetition of a repetition, `.` any byte but NUL)
 * and refuses expressions a backtracking engine could take more than about
 * quadratic time on, which glibc's DFA never does:
 *
 * - a repetition of more than one character (`(ab)+`, `(a|b)*`, `x{2}{3}`) could
 *   match the same text in many ways: refused, unless it is at most once (`(...)?`);
 * - a repetition of a single character backtracks only usefully where that character
 *   can also start what follows it ("ambiguous", like the first `.*` in
 *   `^(.*)\.(.*)$`); an expression anchored at the start may have one such, an
 *   unanchored one (tried from every start) none;
 * - alternatives multiply the paths to try: at most MAX_PATHS in all.
 *
 * With that, a subject of n bytes costs O(n^2) steps at worst (each start, one
 * ambiguous loop's positions times the scans after it); the caller also caps n.
 */
import { addByte, type ByteSet, emptySet } from "./ere-bracket.ts";
import type { EreAst } from "./ere-syntax.ts";
import { BUF_FIRST, BUF_LAST, LINE_FIRST, LINE_LAST } from "./ere-syntax.ts";

/** Most combinations of alternatives a translated expression may have. */
const MAX_PATHS = 1024;
/** Largest bound of a repetition worth translating (V8 writes bounds out). */
const MAX_BOUND = 1000;

interface Facts {
  readonly first: ByteSet;
  readonly nullable: boolean;
}

class Refused extends Error {}

/**
 * The RegExp deciding whether `ast` matches, or null when the translation could
 * backtrack badly. `anchored`: glibc only tries the subject's start (every branch
 * begins with `^`). Only for expressions whose answer is the plain one (see above).
 */
export function existenceRegExp(ast: EreAst | null, anchored: boolean): RegExp | null {
  if (ast === null) return /(?:)/;
  try {
    const facts = new Map<EreAst, Facts>();
    const info = (a: EreAst): Facts => {
      let f = facts.get(a);
      if (f === undefined) {
        f = computeFacts(a, info);
        facts.set(a, f);
      }
      return f;
    };
    const counts = { ambiguous: 0, paths: 1 };
    checkLoops(ast, emptySet(), info, counts);
    if (counts.ambiguous > (anchored ? 1 : 0) || counts.paths > MAX_PATHS) return null;
    return new RegExp(source(ast));
  } catch (err) {
    // Refused, or V8 rejected it (too large).
    if (err instanceof Refused || err instanceof SyntaxError) return null;
    throw err;
  }
}

function union(a: ByteSet, b: ByteSet): ByteSet {
  const out = Uint32Array.from(a);
  for (let i = 0; i < 8; i++) out[i]! |= b[i]!;
  return out;
}

function intersects(a: ByteSet, b: ByteSet): boolean {
  for (let i = 0; i < 8; i++) if ((a[i]! & b[i]!) !== 0) return true;
  return false;
}

/** FIRST (bytes a match can start with) and whether it may match empty. */
function computeFacts(a: EreAst, info: (a: EreAst) => Facts): Facts {
  switch (a.kind) {
    case "char": {
      const first = emptySet();
      addByte(first, a.code);
      return { first, nullable: false };
    }
    case "set":
      return { first: a.set, nullable: false };
    case "any":
      return { first: ANY, nullable: false };
    case "anchor":
      return { first: emptySet(), nullable: true };
    case "concat": {
      let first = emptySet();
      for (const item of a.items) {
        const f = info(item);
        first = union(first, f.first);
        if (!f.nullable) return { first, nullable: false };
      }
      return { first, nullable: true };
    }
    case "alt": {
      let first = emptySet();
      let nullable = false;
      for (const b of a.branches) {
        if (b === null) {
          nullable = true;
          continue;
        }
        const f = info(b);
        first = union(first, f.first);
        nullable ||= f.nullable;
      }
      return { first, nullable };
    }
    case "group":
      return a.body === null ? { first: emptySet(), nullable: true } : info(a.body);
    case "repeat": {
      const f = info(a.body);
      return { first: f.first, nullable: f.nullable || a.min === 0 };
    }
  }
}

/** The byte set of an expression that is one character, possibly in groups; else null. */
function singleByte(a: EreAst): ByteSet | null {
  switch (a.kind) {
    case "char":
      return charSet(a.code);
    case "set":
      return a.set;
    case "any":
      return ANY;
    case "group":
      return a.body === null ? null : singleByte(a.body);
    default:
      return null;
  }
}

/** What `.` matches: any byte but NUL (RE_DOT_NOT_NULL). */
const ANY = (() => {
  const s = new Uint32Array(8).fill(0xffffffff);
  s[0] = 0xfffffffe;
  return s;
})();

/**
 * Walks `a`, which `follow` (the bytes that can come right after it) follows:
 * refuses what may backtrack badly and counts ambiguous loops and paths.
 */
function checkLoops(
  a: EreAst,
  follow: ByteSet,
  info: (a: EreAst) => Facts,
  counts: { ambiguous: number; paths: number },
): void {
  switch (a.kind) {
    case "concat": {
      let after = follow;
      for (let i = a.items.length - 1; i >= 0; i--) {
        const item = a.items[i]!;
        checkLoops(item, after, info, counts);
        const f = info(item);
        after = f.nullable ? union(f.first, after) : f.first;
      }
      return;
    }
    case "alt":
      counts.paths *= a.branches.length;
      for (const b of a.branches) if (b !== null) checkLoops(b, follow, info, counts);
      return;
    case "group":
      if (a.body !== null) checkLoops(a.body, follow, info, counts);
      return;
    case "repeat": {
      if (a.max === 1) {
        checkLoops(a.body, follow, info, counts);
        return;
      }
      if (a.max > MAX_BOUND || a.min > MAX_BOUND) throw new Refused();
      const body = singleByte(a.body);
      if (body === null) throw new Refused();
      if (intersects(body, follow)) counts.ambiguous++;
      return;
    }
    default:
      return;
  }
}

function charSet(code: number): ByteSet {
  const s = emptySet();
  addByte(s, code);
  return s;
}

function hex(b: number): string {
  return `\\x${b.toString(16).padStart(2, "0")}`;
}

function literal(b: number): string {
  return /[A-Za-z0-9_]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : hex(b);
}

function setSource(set: ByteSet): string {
  let out = "";
  for (let b = 0; b < 256; ) {
    if ((set[b >>> 5]! & (1 << (b & 31))) === 0) {
      b++;
      continue;
    }
    let e = b;
    while (e + 1 < 256 && (set[(e + 1) >>> 5]! & (1 << ((e + 1) & 31))) !== 0) e++;
    out += e === b ? hex(b) : `${hex(b)}-${hex(e)}`;
    b = e + 1;
  }
  // An empty class matches nothing, as an empty byte set does.
  return `[${out}]`;
}

/** The expression in JavaScript syntax (no captures: only whether it matches counts). */
function source(a: EreAst | null): string {
  if (a === null) return "";
  switch (a.kind) {
    case "char":
      return literal(a.code);
    case "set":
      return setSource(a.set);
    case "any":
      return "[\\x01-\\xff]";
    case "anchor":
      if (a.constraint === LINE_FIRST || a.constraint === BUF_FIRST) return "^";
      if (a.constraint === LINE_LAST || a.constraint === BUF_LAST) return "$";
      throw new Refused(); // word anchors: the caller rules them out
    case "concat":
      return a.items.map(source).join("");
    case "alt":
      return `(?:${a.branches.map(source).join("|")})`;
    case "group":
      return `(?:${source(a.body)})`;
    case "repeat": {
      const q =
        a.max === -1
          ? a.min === 0
            ? "*"
            : a.min === 1
              ? "+"
              : `{${a.min},}`
          : a.min === a.max
            ? `{${a.min}}`
            : `{${a.min},${a.max}}`;
      return `(?:${source(a.body)})${q}`;
    }
  }
}
