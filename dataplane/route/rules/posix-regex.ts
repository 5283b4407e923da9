/**
 * POSIX extended regular expressions exactly as glibc's regcomp(REG_EXTENDED) and
 * regexec run them in the C locale, which is what carbon-c-relay 3.7.3 calls for its
 * match, rewrite and aggregate expressions (router.c). Strings are latin1: one char
 * per byte of the metric name; a NUL ends the string, as it ends a C string.
 *
 * compile() parses as glibc does (ere-syntax.ts) and builds glibc's automaton
 * (ere-tree.ts, ere-nfa.ts); exec() runs glibc's matcher on it (ere-dfa.ts,
 * ere-matcher.ts): leftmost-longest overall, groups from the first path in glibc's
 * priority order that reaches that end, with glibc's quirks.
 *
 * test() runs a JavaScript RegExp translated from the expression (ere-js.ts) where
 * ere-verdict.ts shows glibc's answer is the plain regular-language one and the
 * translation cannot backtrack badly.
 *
 * Shortcuts that cannot change an answer: test() and exec() first ask the
 * expression's prefilter (ere-prefilter.ts: literal text every match contains, read
 * from the parsed expression) and refuse a subject without it. Where ere-verdict.ts
 * shows that glibc's work after the DFA cannot turn a match into none (no groups, or
 * no anchors or empty loops where they would matter), test() stops at the DFA's first
 * match, and exec() finds the groups' path depth first (ere-path.ts) instead of
 * sifting every state of the match.
 *
 * Back-references (`\1`) are refused: glibc accepts them, but matches them with a
 * separate backtracking algorithm that polymur does not reproduce.
 */
import { existenceRegExp } from "./ere-js.ts";
import { EreMatcher } from "./ere-matcher.ts";
import { buildNfa } from "./ere-nfa.ts";
import { Prefilter } from "./ere-prefilter.ts";
import { parseEre } from "./ere-syntax.ts";
import { RegexSyntaxError } from "./ere-syntax-error.ts";
import { buildTree } from "./ere-tree.ts";
import { dfaDecides } from "./ere-verdict.ts";

/**
 * Longest subject test() hands to the JavaScript RegExp: its worst case (ere-js.ts)
 * grows with the square of the length; longer subjects (not metric names) take the DFA.
 */
const MAX_JS_SUBJECT = 1024;

export { type RegexErrorCode, RegexSyntaxError } from "./ere-syntax-error.ts";

/** compile() options. */
export interface PosixRegexOptions {
  /**
   * The prefilter, the DFA-only test and the depth-first groups (default true).
   * Off, every call runs the whole of glibc's algorithm: for tests that check the
   * shortcuts change no answer.
   */
  readonly shortcuts?: boolean;
}

/** A compiled expression. */
export class PosixRegex {
  /** The expression as given to compile(). */
  readonly source: string;
  /** Number of parenthesised groups (re_nsub). */
  readonly groupCount: number;
  readonly #matcher: EreMatcher;
  /** Refuses subjects without text every match contains; null when it knows none. */
  readonly #prefilter: Prefilter | null;
  /** Decides test() where glibc's answer is the plain one (ere-js.ts); null elsewhere. */
  readonly #js: RegExp | null;

  private constructor(
    source: string,
    groupCount: number,
    matcher: EreMatcher,
    prefilter: Prefilter | null,
    js: RegExp | null,
  ) {
    this.source = source;
    this.groupCount = groupCount;
    this.#matcher = matcher;
    this.#prefilter = prefilter;
    this.#js = js;
  }

  /** Throws RegexSyntaxError where glibc's regcomp would fail, with regerror's text. */
  static compile(source: string, options: PosixRegexOptions = {}): PosixRegex {
    const nul = source.indexOf("\0");
    const pattern = nul < 0 ? source : source.slice(0, nul);
    let parsed: ReturnType<typeof parseEre>;
    let matcher: EreMatcher;
    let nfa: ReturnType<typeof buildNfa>;
    try {
      parsed = parseEre(pattern);
      const tree = buildTree(parsed.ast, parsed.groupCount);
      nfa = buildNfa(tree);
      matcher = new EreMatcher(
        nfa,
        parsed.groupCount,
        tree.subexpMap,
        parsed.wordOps,
        options.shortcuts !== false,
      );
    } catch (err) {
      // An expression nested too deeply for the parser's recursion.
      if (err instanceof RangeError) throw new RegexSyntaxError("REG_ESIZE", 0);
      throw err;
    }
    const shortcuts = options.shortcuts !== false;
    const prefilter = shortcuts ? Prefilter.of(parsed.ast, matcher.anchored) : null;
    // With groups the matcher has the verdict already (it costs a pass over the closures).
    const plain =
      parsed.groupCount > 0
        ? matcher.dfaDecides
        : dfaDecides(nfa, parsed.wordOps, matcher.anchored);
    const js = shortcuts && plain ? existenceRegExp(parsed.ast, matcher.anchored) : null;
    return new PosixRegex(source, parsed.groupCount, matcher, prefilter, js);
  }

  /** Whether the expression matches anywhere in `s` (what regexec's return value says). */
  test(s: string): boolean {
    return this.testCut(cString(s));
  }

  /**
   * regexec's pmatch: [start0, end0, start1, end1, ...] (2 * (groupCount + 1) numbers,
   * -1 for a group that did not take part), or null when there is no match.
   */
  exec(s: string): Int32Array | null {
    const out = new Int32Array(2 * (this.groupCount + 1));
    return this.execCut(cString(s), out) ? out : null;
  }

  /** test() of a subject already cut at its first NUL (cString), for callers that cut once for many expressions. */
  testCut(c: string): boolean {
    // the prefilter's string comparisons first: they refuse most subjects for less
    if (this.#prefilter !== null && !this.#prefilter.admits(c)) return false;
    const js = this.#js;
    if (js !== null && c.length <= MAX_JS_SUBJECT) return js.test(c);
    const matcher = this.#matcher;
    return matcher.dfaDecides ? matcher.found(c) : matcher.exec(c, null);
  }

  /**
   * Lists of strings of which a subject (cut at its first NUL) must contain one
   * each, anywhere, to match (the prefilter's factors); empty when it knows none.
   */
  factors(): readonly (readonly string[])[] {
    return this.#prefilter?.describe().factors ?? [];
  }

  /**
   * The characters a subject (cut at its first NUL) must start with to match, or
   * null when it may start with any: what the prefilter knows of a `^...`
   * expression's start.
   */
  firstChars(): string | null {
    return this.#prefilter?.firstChars() ?? null;
  }

  /**
   * False when the prefilter shows a subject (cut at its first NUL) has no match;
   * true says nothing. For callers that remember results: asking costs less than
   * remembering.
   */
  mayMatch(c: string): boolean {
    return this.#prefilter === null || this.#prefilter.admits(c);
  }

  /**
   * exec() of a subject already cut at its first NUL, into `out` (at least
   * 2 * (groupCount + 1) numbers): whether it matched.
   */
  execCut(c: string, out: Int32Array): boolean {
    if (this.#prefilter !== null && !this.#prefilter.admits(c)) return false;
    return this.#matcher.exec(c, out);
  }
}

/** The string as regexec sees it: up to the first NUL. */
export function cString(s: string): string {
  const nul = s.indexOf("\0");
  return nul < 0 ? s : s.slice(0, nul);
}
