/**
 * An expression of a relay.conf rule as carbon-c-relay 3.7.3 runs it
 * (router.c): `*` matches every name, a plain word is compared as a string
 * (determine_if_regex), anything else is a POSIX ERE (posix-regex.ts).
 */
import { PosixRegex, RegexSyntaxError } from "./posix-regex.ts";
import { type Expr, RulesError } from "./rules-config.ts";

/** relay.conf's limit: RE_MAX_MATCHES offset pairs, group 0 included. */
const MAX_GROUPS = 63;

/** How an expression is compared: every name, a regular expression, or a string comparison. */
export const Kind = {
  All: 0,
  Regex: 1,
  Contains: 2,
  StartsWith: 3,
  EndsWith: 4,
  Equals: 5,
} as const;
/** One of Kind's values. */
export type Kind = (typeof Kind)[keyof typeof Kind];

/** An expression as the relay runs it: `*`, a string comparison, or a regular expression. Throws RulesError for a bad one. */
export class Matcher {
  readonly source: string;
  readonly kind: Kind;
  /** Groups the expression has (0 for all but regular expressions). */
  readonly groups: number;
  readonly #literal: string;
  readonly #regex: PosixRegex | null;
  /** The offsets match() returns, reused. */
  readonly #match: Int32Array;

  constructor(expr: Expr) {
    this.source = expr.source;
    const { kind, literal } = classify(expr.source);
    this.kind = kind;
    this.#literal = literal;
    if (kind !== Kind.Regex) {
      this.#regex = null;
      this.groups = 0;
      this.#match = new Int32Array(2);
      return;
    }
    try {
      this.#regex = PosixRegex.compile(expr.source);
    } catch (err) {
      if (!(err instanceof RegexSyntaxError)) throw err;
      const pos = { ...expr.pos, column: expr.pos.column + Math.max(0, err.offset) };
      throw new RulesError(pos, `invalid expression '${expr.source}': ${err.message}`);
    }
    this.groups = this.#regex.groupCount;
    if (this.groups > MAX_GROUPS) {
      throw new RulesError(
        expr.pos,
        `too many match groups in '${expr.source}' (at most ${MAX_GROUPS})`,
      );
    }
    this.#match = new Int32Array(2 * (this.groups + 1));
  }

  /** Whether the expression matches `s`; `cut` is `s` up to its first NUL (what a regular expression sees). */
  test(s: string, cut: string): boolean {
    const lit = this.#literal;
    switch (this.kind) {
      case Kind.All:
        return true;
      case Kind.Regex:
        return this.#regex!.testCut(cut);
      case Kind.Contains:
        return s.includes(lit);
      case Kind.StartsWith:
        return s.startsWith(lit);
      case Kind.EndsWith:
        return s.endsWith(lit);
      default:
        return s === lit;
    }
  }

  /**
   * The characters a name must start with for the expression to match (each
   * once), or null when it may start with any. A name that is empty, or starts with
   * a NUL, matches none of an expression with such characters.
   */
  firstChars(): string | null {
    if (this.kind === Kind.Regex) return this.#regex!.firstChars();
    if (this.kind === Kind.StartsWith || this.kind === Kind.Equals) {
      return this.#literal === "" ? null : this.#literal[0]!;
    }
    return null;
  }

  /**
   * Lists of strings of which a name must contain one each, anywhere, for the
   * expression to match, where finding them means searching the name (for
   * bigram-filter.ts): a regular expression's factors, a `contains` literal.
   * Empty when there are none.
   */
  factors(): readonly (readonly string[])[] {
    if (this.kind === Kind.Regex) return this.#regex!.factors();
    return this.kind === Kind.Contains ? [[this.#literal]] : [];
  }

  /** False when the expression cannot match `s` (`cut` as for test()), by a quick check; true says nothing. */
  mayMatch(s: string, cut: string): boolean {
    return this.kind === Kind.Regex ? this.#regex!.mayMatch(cut) : this.test(s, cut);
  }

  /**
   * The match offsets when the expression matches `s` (`cut` as for test()), else
   * null. The array is reused: use it at once.
   */
  match(s: string, cut: string): Int32Array | null {
    const m = this.#match;
    if (this.kind === Kind.Regex) return this.#regex!.execCut(cut, m) ? m : null;
    if (!this.test(s, cut)) return null;
    const n = this.#literal.length;
    switch (this.kind) {
      case Kind.All:
        m[0] = 0;
        m[1] = s.length;
        break;
      case Kind.Contains:
        m[0] = s.indexOf(this.#literal);
        m[1] = m[0] + n;
        break;
      case Kind.EndsWith:
        m[0] = s.length - n;
        m[1] = s.length;
        break;
      default:
        m[0] = 0;
        m[1] = n;
    }
    return m;
  }
}

/**
 * carbon-c-relay's `determine_if_regex`: `*` matches everything; letters,
 * digits, `_`, `-` and backslash-escaped `.^*+\` make a literal, compared as a
 * string (`^` at the start: a prefix; `$` at the end: a suffix; both: the whole
 * name). Anything else is a regular expression.
 */
function classify(source: string): { kind: Kind; literal: string } {
  if (source === "*") return { kind: Kind.All, literal: "" };
  let kind: Kind = Kind.Contains;
  let i = 0;
  if (source.startsWith("^")) {
    kind = Kind.StartsWith;
    i = 1;
  }
  let literal = "";
  let esc = false;
  for (; i < source.length; i++) {
    const c = source[i]!;
    if (c === "\\") {
      if (esc) literal += c;
      esc = !esc;
    } else if (c === "." || c === "^" || c === "*" || c === "+") {
      if (!esc) return { kind: Kind.Regex, literal: "" };
      literal += c;
      esc = false;
    } else if (c === "$") {
      if (esc || i !== source.length - 1) return { kind: Kind.Regex, literal: "" };
      kind = kind === Kind.StartsWith ? Kind.Equals : Kind.EndsWith;
    } else if (!esc && /[A-Za-z0-9_-]/.test(c)) {
      literal += c;
    } else {
      return { kind: Kind.Regex, literal: "" };
    }
  }
  return { kind, literal };
}
