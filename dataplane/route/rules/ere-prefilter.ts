/**
 * Quick refusals for a compiled expression: strings every match must contain,
 * computed from its parsed form (EreAst), so that most subjects an expression
 * cannot match are refused by a string comparison instead of the automaton.
 *
 * Every fact is a necessary condition, never a sufficient one: a refused subject
 * has no match, and a subject that passes still goes through the matcher. Anchors
 * are read as the empty string (they only restrict where a match may be), sets of
 * more than a few bytes and `.` as "anything", repetitions that may be absent as
 * the empty string. So the facts hold for every string the expression can match,
 * and with them whatever glibc decides about a match, because glibc never matches
 * a string the expression does not describe.
 *
 * - prefix: when a match can only start at the subject's start (the matcher says:
 *   `^...`), the subject starts with one of these;
 * - suffix: when the expression ends with `$` at its top level, a match ends at the
 *   subject's end, so the subject ends with one of these;
 * - factors: lists of which the subject contains one string each (the most
 *   selective two not already implied by the prefix or suffix check).
 */
import type { ByteSet } from "./ere-bracket.ts";
import { BUF_LAST, type EreAst, LINE_LAST } from "./ere-syntax.ts";

/** Most strings a set of facts keeps; beyond, the facts are dropped or shortened. */
const MAX_STRINGS = 16;
/** Longest string kept; prefixes and suffixes are cut to it (still necessary). */
const MAX_LENGTH = 64;
/** Sets with at most this many bytes are read as alternatives of single characters. */
const MAX_SET_BYTES = 8;
/** Factor lists kept per part of an expression, and checked per subject. */
const MAX_FACTORS = 4;
const CHECKED_FACTORS = 2;
/** Shorter factors are in nearly every metric name: not worth a search. */
const MIN_FACTOR = 3;

/**
 * What is known about the strings a part of an expression matches.
 * A list containing "" says nothing.
 */
interface Facts {
  /** Every string the part matches, when few and short; null otherwise. */
  readonly exact: readonly string[] | null;
  /** Every match starts with one of these. */
  readonly prefix: readonly string[];
  /** Every match ends with one of these. */
  readonly suffix: readonly string[];
  /** Lists of alternatives: every match contains one string of each (informative ones only). */
  readonly factors: readonly (readonly string[])[];
}

const NOTHING: readonly string[] = [""];
const UNKNOWN: Facts = { exact: null, prefix: NOTHING, suffix: NOTHING, factors: [] };
const EMPTY: Facts = exactly([""]);

function exactly(strings: readonly string[]): Facts {
  return { exact: strings, prefix: strings, suffix: strings, factors: keep([strings]) };
}

function informative(list: readonly string[]): boolean {
  return !list.includes("");
}

/** Each of `a` followed by each of `b`, or null when that makes too many or too long strings. */
function cross(a: readonly string[], b: readonly string[]): string[] | null {
  if (a.length * b.length > MAX_STRINGS) return null;
  const out = new Set<string>();
  for (const x of a) {
    for (const y of b) {
      if (x.length + y.length > MAX_LENGTH) return null;
      out.add(x + y);
    }
  }
  return [...out];
}

/** `a` joined with the starts of `b` (cut to MAX_LENGTH): still prefixes of every match. */
function crossPrefix(a: readonly string[], b: readonly string[]): readonly string[] | null {
  if (a.length * b.length > MAX_STRINGS) return null;
  return [...new Set(a.flatMap((x) => b.map((y) => (x + y).slice(0, MAX_LENGTH))))];
}

/** The ends of `a` joined with `b` (cut to MAX_LENGTH from the left): still suffixes. */
function crossSuffix(a: readonly string[], b: readonly string[]): readonly string[] | null {
  if (a.length * b.length > MAX_STRINGS) return null;
  return [...new Set(a.flatMap((x) => b.map((y) => (x + y).slice(-MAX_LENGTH))))];
}

/** The shortest string of a list: how selective it is. */
function shortest(list: readonly string[]): number {
  let n = Number.POSITIVE_INFINITY;
  for (const x of list) n = Math.min(n, x.length);
  return n;
}

/** Whether containing a string of `a` means containing one of `b`: each of `a` contains one of `b`. */
function implies(a: readonly string[], b: readonly string[]): boolean {
  return a.every((x) => b.some((y) => x.includes(y)));
}

/** A list without the strings that contain another of it (containing those is implied). */
function minimal(list: readonly string[]): readonly string[] {
  return list.filter(
    (x, i) => !list.some((y, j) => j !== i && x.includes(y) && (x !== y || j < i)),
  );
}

/**
 * The informative lists, most selective first (longer shortest string, then fewer),
 * without those a more selective one implies, at most MAX_FACTORS.
 */
function keep(lists: readonly (readonly string[])[]): readonly (readonly string[])[] {
  const ranked = lists
    .filter(informative)
    .map(minimal)
    .sort((a, b) => shortest(b) - shortest(a) || a.length - b.length);
  const out: (readonly string[])[] = [];
  for (const l of ranked) {
    if (out.some((k) => implies(k, l))) continue;
    out.push(l);
    if (out.length === MAX_FACTORS) break;
  }
  return out;
}

/** All the strings of `lists`, or null when they are more than MAX_STRINGS. */
function union(lists: readonly (readonly string[])[]): readonly string[] | null {
  const out = new Set<string>();
  for (const l of lists) for (const s of l) out.add(s);
  return out.size > MAX_STRINGS ? null : [...out];
}

/**
 * Alternatives of prefixes (or, with `fromEnd`, suffixes), shortened until they are
 * few enough: a shorter start of a prefix is still a prefix.
 */
function unionCut(lists: readonly (readonly string[])[], fromEnd: boolean): readonly string[] {
  const all = union(lists);
  if (all !== null) return all;
  const longest = Math.max(...lists.flat().map((s) => s.length));
  for (let n = longest - 1; n > 0; n--) {
    const cut = union(lists.map((l) => l.map((s) => (fromEnd ? s.slice(-n) : s.slice(0, n)))));
    if (cut !== null) return cut;
  }
  return NOTHING;
}

function setBytes(set: ByteSet): string[] | null {
  const out: string[] = [];
  for (let b = 0; b < 256; b++) {
    if ((set[b >>> 5]! & (1 << (b & 31))) === 0) continue;
    if (out.length === MAX_SET_BYTES) return null;
    out.push(String.fromCharCode(b));
  }
  return out;
}

function concat(a: Facts, b: Facts): Facts {
  const exact = a.exact !== null && b.exact !== null ? cross(a.exact, b.exact) : null;
  if (exact !== null) return exactly(exact);
  const prefix = (a.exact !== null ? crossPrefix(a.exact, b.prefix) : null) ?? a.prefix;
  const suffix = (b.exact !== null ? crossSuffix(a.suffix, b.exact) : null) ?? b.suffix;
  // what spans the join: an end of a followed by a start of b
  const join = cross(a.suffix, b.prefix) ?? NOTHING;
  return { exact: null, prefix, suffix, factors: keep([...a.factors, ...b.factors, join]) };
}

function alternatives(branches: readonly Facts[]): Facts {
  const exact = branches.every((f) => f.exact !== null)
    ? union(branches.map((f) => f.exact!))
    : null;
  if (exact !== null) return exactly(exact);
  return {
    exact: null,
    prefix: unionCut(
      branches.map((f) => f.prefix),
      false,
    ),
    suffix: unionCut(
      branches.map((f) => f.suffix),
      true,
    ),
    // a string from the best list of each branch
    factors: branches.every((f) => f.factors.length > 0)
      ? keep([union(branches.map((f) => f.factors[0]!)) ?? NOTHING])
      : [],
  };
}

function facts(ast: EreAst | null): Facts {
  if (ast === null) return EMPTY;
  switch (ast.kind) {
    case "char":
      return exactly([String.fromCharCode(ast.code)]);
    case "set": {
      const bytes = setBytes(ast.set);
      return bytes === null || bytes.length === 0 ? UNKNOWN : exactly(bytes);
    }
    case "any":
      return UNKNOWN;
    case "anchor":
      return EMPTY;
    case "group":
      return facts(ast.body);
    case "alt":
      return alternatives(ast.branches.map(facts));
    case "concat":
      return ast.items.map(facts).reduce(concat, EMPTY);
    case "repeat": {
      if (ast.max === 0) return EMPTY;
      const body = facts(ast.body);
      if (ast.min === 0) return UNKNOWN;
      if (ast.min === 1 && ast.max === 1) return body;
      // one or more copies: each match starts with a copy, ends with one, contains one
      return { exact: null, prefix: body.prefix, suffix: body.suffix, factors: body.factors };
    }
  }
}

/** Whether a match must end at the subject's end: the top level ends with `$` (or `\'`). */
function endAnchored(ast: EreAst | null): boolean {
  const last = ast?.kind === "concat" ? ast.items[ast.items.length - 1] : ast;
  return last?.kind === "anchor" && (last.constraint === LINE_LAST || last.constraint === BUF_LAST);
}

/** The checks for one expression. */
export class Prefilter {
  readonly #prefix: readonly string[] | null;
  readonly #suffix: readonly string[] | null;
  readonly #factors: readonly (readonly string[])[];

  private constructor(
    prefix: readonly string[] | null,
    suffix: readonly string[] | null,
    factors: readonly (readonly string[])[],
  ) {
    this.#prefix = prefix;
    this.#suffix = suffix;
    this.#factors = factors;
  }

  /**
   * The prefilter of a parsed expression, or null when its facts say nothing.
   * `startAnchored`: the matcher only tries a match at the subject's start.
   */
  static of(ast: EreAst | null, startAnchored: boolean): Prefilter | null {
    const f = facts(ast);
    const prefix = startAnchored && informative(f.prefix) ? f.prefix : null;
    const suffix = endAnchored(ast) && informative(f.suffix) ? f.suffix : null;
    // a list is implied by a check when each string that check accepts contains one of it
    const within = (checked: readonly string[] | null, l: readonly string[]) =>
      checked !== null && implies(checked, l);
    const implied = (l: readonly string[]) => within(prefix, l) || within(suffix, l);
    const factors = f.factors
      .filter((l) => shortest(l) >= MIN_FACTOR && !implied(l))
      .slice(0, CHECKED_FACTORS);
    if (prefix === null && suffix === null && factors.length === 0) return null;
    return new Prefilter(prefix, suffix, factors);
  }

  /** The characters a subject must start with to pass (each once), or null when any. */
  firstChars(): string | null {
    const prefix = this.#prefix;
    if (prefix === null) return null;
    return [...new Set(prefix.map((p) => p[0]!))].join("");
  }

  /** False when `s` (a C string: no NUL) cannot contain a match. */
  admits(s: string): boolean {
    const prefix = this.#prefix;
    if (prefix !== null && !someStart(s, prefix)) return false;
    const suffix = this.#suffix;
    if (suffix !== null && !someEnd(s, suffix)) return false;
    const factors = this.#factors;
    for (let i = 0; i < factors.length; i++) if (!someIn(s, factors[i]!)) return false;
    return true;
  }

  /** The facts checked (for tests and diagnostics). */
  describe(): {
    prefix: readonly string[] | null;
    suffix: readonly string[] | null;
    factors: readonly (readonly string[])[];
  } {
    return { prefix: this.#prefix, suffix: this.#suffix, factors: this.#factors };
  }
}

function someStart(s: string, list: readonly string[]): boolean {
  for (let i = 0; i < list.length; i++) if (s.startsWith(list[i]!)) return true;
  return false;
}

function someEnd(s: string, list: readonly string[]): boolean {
  for (let i = 0; i < list.length; i++) if (s.endsWith(list[i]!)) return true;
  return false;
}

function someIn(s: string, list: readonly string[]): boolean {
  for (let i = 0; i < list.length; i++) if (s.includes(list[i]!)) return true;
  return false;
}
