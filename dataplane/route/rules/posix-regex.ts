/**
 * POSIX extended regular expressions exactly as glibc's regcomp(REG_EXTENDED) and
 * regexec run them in the C locale, which is what carbon-c-relay 3.7.3 calls for its
 * match, rewrite and aggregate expressions (router.c). Strings are latin1: one char
 * per byte of the metric name; a NUL ends the string, as it ends a C string.
 *
 * compile() parses as glibc does (ere-syntax.ts) and builds glibc's automaton
 * (ere-tree.ts, ere-nfa.ts); exec() runs glibc's matcher on it (ere-dfa.ts,
 * ere-matcher.ts): leftmost-longest overall, groups from the first path in glibc's
 * priority order that reaches that end, with glibc's quirks. test() runs a JavaScript
 * RegExp translated from the expression where it provably decides the same
 * (ere-js.ts), and the matcher otherwise.
 *
 * Back-references (`\1`) are refused: glibc accepts them, but matches them with a
 * separate backtracking algorithm that polymur does not reproduce.
 */
import { EreMatcher } from "./ere-matcher.ts";
import { buildNfa } from "./ere-nfa.ts";
import { parseEre } from "./ere-syntax.ts";
import { RegexSyntaxError } from "./ere-syntax-error.ts";
import { buildTree } from "./ere-tree.ts";

export { type RegexErrorCode, RegexSyntaxError } from "./ere-syntax-error.ts";

/** A compiled expression. */
export class PosixRegex {
  /** The expression as given to compile(). */
  readonly source: string;
  /** Number of parenthesised groups (re_nsub). */
  readonly groupCount: number;
  readonly #matcher: EreMatcher;
  readonly #js: RegExp | null;

  private constructor(source: string, groupCount: number, matcher: EreMatcher, js: RegExp | null) {
    this.source = source;
    this.groupCount = groupCount;
    this.#matcher = matcher;
    this.#js = js;
  }

  /** Throws RegexSyntaxError where glibc's regcomp would fail, with regerror's text. */
  static compile(source: string): PosixRegex {
    const nul = source.indexOf("\0");
    const pattern = nul < 0 ? source : source.slice(0, nul);
    let parsed: ReturnType<typeof parseEre>;
    let matcher: EreMatcher;
    try {
      parsed = parseEre(pattern);
      const tree = buildTree(parsed.ast, parsed.groupCount);
      matcher = new EreMatcher(buildNfa(tree), parsed.groupCount, tree.subexpMap, parsed.wordOps);
    } catch (err) {
      // An expression nested too deeply for the parser's recursion.
      if (err instanceof RangeError) throw new RegexSyntaxError("REG_ESIZE", 0);
      throw err;
    }
    return new PosixRegex(source, parsed.groupCount, matcher, null);
  }

  /** Whether the expression matches anywhere in `s` (what regexec's return value says). */
  test(s: string): boolean {
    const js = this.#js;
    if (js !== null) return js.test(s);
    return this.#matcher.exec(cString(s), null);
  }

  /**
   * regexec's pmatch: [start0, end0, start1, end1, ...] (2 * (groupCount + 1) numbers,
   * -1 for a group that did not take part), or null when there is no match.
   */
  exec(s: string): Int32Array | null {
    const out = new Int32Array(2 * (this.groupCount + 1));
    return this.#matcher.exec(cString(s), out) ? out : null;
  }
}

/** The string as regexec sees it: up to the first NUL. */
function cString(s: string): string {
  const nul = s.indexOf("\0");
  return nul < 0 ? s : s.slice(0, nul);
}
