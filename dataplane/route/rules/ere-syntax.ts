/**
 * Parses a POSIX extended regular expression the way glibc's regcomp does with
 * REG_EXTENDED (syntax RE_SYNTAX_POSIX_EXTENDED, C locale) into an EreAst: what it
 * accepts, what it refuses and with which error, and the tree shape glibc builds
 * (which later decides the priority among paths, see ere-nfa.ts).
 *
 * What glibc does that other engines do not:
 * - `\d`, `\n`, `\.`: an escaped character is that character, except the GNU
 *   operators `\w \W \s \S` (classes), `\b \B \< \>` (word anchors),
 *   `` \` `` `\'` (buffer anchors) and `\1`..`\9` (back-references);
 * - `*` `+` `?` `{` at the start of an expression or after `(` or `|` are an error,
 *   and so is one after an anchor (`^*`); `a**`, `a+?`, `a{2}{3}` repeat a repetition;
 * - `{,n}` is `{0,n}`; `{n}` is `{n,n}`; counts go up to RE_DUP_MAX (32767);
 * - a `)` with no `(` open, and `}` or `]` out of place, are ordinary characters;
 * - empty alternatives and groups (`a|`, `()`) match the empty string.
 */
import { type ByteSet, classOp, parseBracket } from "./ere-bracket.ts";
import { RegexSyntaxError } from "./ere-syntax-error.ts";

/** Context constraints of anchors (glibc's re_context_type bits). */
export const PREV_WORD = 0x1;
export const PREV_NOTWORD = 0x2;
export const NEXT_WORD = 0x4;
export const NEXT_NOTWORD = 0x8;
export const PREV_NEWLINE = 0x10;
export const NEXT_NEWLINE = 0x20;
export const PREV_BEGBUF = 0x40;
export const NEXT_ENDBUF = 0x80;
export const LINE_FIRST = PREV_NEWLINE; // ^
export const LINE_LAST = NEXT_NEWLINE; // $
export const BUF_FIRST = PREV_BEGBUF; // \`
export const BUF_LAST = NEXT_ENDBUF; // \'
export const WORD_FIRST = PREV_NOTWORD | NEXT_WORD; // \<
export const WORD_LAST = PREV_WORD | NEXT_NOTWORD; // \>
export const INSIDE_WORD = PREV_WORD | NEXT_WORD;
export const INSIDE_NOTWORD = PREV_NOTWORD | NEXT_NOTWORD;

/** glibc's RE_DUP_MAX: the largest count in `{n,m}`. */
export const RE_DUP_MAX = 0x7fff;

/** A parsed expression. `null` where glibc's parser has no tree (an empty branch, `x{0}`). */
export type EreAst =
  | { readonly kind: "char"; readonly code: number }
  | { readonly kind: "set"; readonly set: ByteSet }
  | { readonly kind: "any" }
  | { readonly kind: "anchor"; readonly constraint: number }
  | { readonly kind: "concat"; readonly items: readonly EreAst[] }
  | { readonly kind: "alt"; readonly branches: readonly (EreAst | null)[] }
  | { readonly kind: "group"; readonly index: number; readonly body: EreAst | null }
  | {
      readonly kind: "repeat";
      readonly min: number;
      /** -1: unbounded. */
      readonly max: number;
      readonly body: EreAst;
    };

export interface EreParse {
  /** null for an expression that matches only the empty string by construction (``, `a{0}`). */
  readonly ast: EreAst | null;
  /** re_nsub: every `(`, also those inside a `{0}` that glibc drops. */
  readonly groupCount: number;
  /** `\b \B \< \>` appear: glibc then tracks word context (init_word_char). */
  readonly wordOps: boolean;
}

// Token types (a subset of glibc's re_token_type_t).
const CHARACTER: number = 1;
const END: number = 2;
const BACK_REF: number = 3;
const PERIOD: number = 4;
const OPEN_SUBEXP: number = 5;
const CLOSE_SUBEXP: number = 6;
const ALT: number = 7;
const DUP_ASTERISK: number = 8;
const ANCHOR: number = 9;
const DUP_PLUS: number = 10;
const DUP_QUESTION: number = 11;
const OPEN_BRACKET: number = 12;
const OPEN_DUP_NUM: number = 13;
const CLOSE_DUP_NUM: number = 14;
const WORD: number = 15;
const NOTWORD: number = 16;
const SPACE: number = 17;
const NOTSPACE: number = 18;
const BACK_SLASH: number = 19;
// Anchor values of `\b` and `\B`, which become two anchors.
const WORD_DELIM = 0x100;
const NOT_WORD_DELIM = 0x200;

const SINGLE: Record<string, number> = {
  "|": ALT,
  "*": DUP_ASTERISK,
  "+": DUP_PLUS,
  "?": DUP_QUESTION,
  "{": OPEN_DUP_NUM,
  "}": CLOSE_DUP_NUM,
  "(": OPEN_SUBEXP,
  ")": CLOSE_SUBEXP,
  "[": OPEN_BRACKET,
  ".": PERIOD,
  "^": ANCHOR,
  $: ANCHOR,
};

const ESCAPED: Record<string, [type: number, value: number]> = {
  "<": [ANCHOR, WORD_FIRST],
  ">": [ANCHOR, WORD_LAST],
  b: [ANCHOR, WORD_DELIM],
  B: [ANCHOR, NOT_WORD_DELIM],
  "`": [ANCHOR, BUF_FIRST],
  "'": [ANCHOR, BUF_LAST],
  w: [WORD, 0],
  W: [NOTWORD, 0],
  s: [SPACE, 0],
  S: [NOTSPACE, 0],
};

/** Parses `source` (already cut at a NUL, as regcomp sees a C string). */
export function parseEre(source: string): EreParse {
  return new Parser(source).parse();
}

class Parser {
  readonly #src: string;
  #pos = 0;
  // The current token.
  #type = END;
  #char = 0;
  #value = 0; // anchor constraint, or back-reference group index
  #start = 0;
  #groups = 0;
  #completed = 0; // groups closed so far, for back-references (completed_bkref_map)
  #wordOps = false;

  constructor(src: string) {
    this.#src = src;
  }

  parse(): EreParse {
    this.#fetch();
    const ast = this.#regExp(0);
    return { ast, groupCount: this.#groups, wordOps: this.#wordOps };
  }

  /** glibc's fetch_token: reads the token at #pos and moves past it. */
  #fetch(): void {
    const src = this.#src;
    const pos = this.#pos;
    this.#start = pos;
    if (pos >= src.length) {
      this.#type = END;
      return;
    }
    const c = src[pos]!;
    this.#char = src.charCodeAt(pos);
    if (c === "\\") {
      if (pos + 1 >= src.length) {
        this.#type = BACK_SLASH;
        this.#pos = pos + 1;
        return;
      }
      const c2 = src[pos + 1]!;
      this.#char = src.charCodeAt(pos + 1);
      this.#pos = pos + 2;
      if (c2 >= "1" && c2 <= "9") {
        this.#type = BACK_REF;
        this.#value = this.#char - 0x31;
        return;
      }
      const op = Object.hasOwn(ESCAPED, c2) ? ESCAPED[c2] : undefined;
      this.#type = op === undefined ? CHARACTER : op[0];
      this.#value = op === undefined ? 0 : op[1];
      return;
    }
    this.#pos = pos + 1;
    this.#type = Object.hasOwn(SINGLE, c) ? SINGLE[c]! : CHARACTER;
    if (this.#type === ANCHOR) this.#value = c === "^" ? LINE_FIRST : LINE_LAST;
  }

  #fail(code: ConstructorParameters<typeof RegexSyntaxError>[0], offset: number): never {
    throw new RegexSyntaxError(code, offset);
  }

  /** branch ( '|' branch )*: glibc's parse_reg_exp. */
  #regExp(nest: number): EreAst | null {
    const initialCompleted = this.#completed;
    const first = this.#branch(nest);
    if (this.#type !== ALT) return first;
    const branches: (EreAst | null)[] = [first];
    while (this.#type === ALT) {
      this.#fetch();
      if (this.#type !== ALT && this.#type !== END && (nest === 0 || this.#type !== CLOSE_SUBEXP)) {
        const accumulated = this.#completed;
        this.#completed = initialCompleted;
        branches.push(this.#branch(nest));
        this.#completed |= accumulated;
      } else {
        branches.push(null);
      }
    }
    return { kind: "alt", branches };
  }

  /** A sequence of expressions: glibc's parse_branch. */
  #branch(nest: number): EreAst | null {
    const items: EreAst[] = [];
    const first = this.#expression(nest);
    if (first !== null) items.push(first);
    while (
      this.#type !== ALT &&
      this.#type !== END &&
      (nest === 0 || this.#type !== CLOSE_SUBEXP)
    ) {
      const next = this.#expression(nest);
      if (next !== null) items.push(next);
    }
    if (items.length === 0) return null;
    return items.length === 1 ? items[0]! : { kind: "concat", items };
  }

  /** One atom and its repetitions: glibc's parse_expression. */
  #expression(nest: number): EreAst | null {
    let tree: EreAst | null;
    const at = this.#start;
    switch (this.#type) {
      case CHARACTER:
      case CLOSE_SUBEXP: // only reached outside any group: an ordinary ')'
      case CLOSE_DUP_NUM:
        tree = { kind: "char", code: this.#char };
        break;
      case OPEN_SUBEXP:
        tree = this.#subExp(nest + 1, at);
        break;
      case OPEN_BRACKET: {
        const { set, end } = parseBracket(this.#src, this.#pos, at);
        this.#pos = end;
        tree = { kind: "set", set };
        break;
      }
      case BACK_REF:
        if ((this.#completed & (1 << this.#value)) === 0) this.#fail("REG_ESUBREG", at);
        return this.#fail("BACKREF_UNSUPPORTED", at);
      case OPEN_DUP_NUM:
      case DUP_ASTERISK:
      case DUP_PLUS:
      case DUP_QUESTION:
        return this.#fail("REG_BADRPT", at);
      case ANCHOR: {
        const v = this.#value;
        if (v === WORD_DELIM || v === NOT_WORD_DELIM) {
          this.#wordOps = true;
          const [a, b] = v === WORD_DELIM ? [WORD_FIRST, WORD_LAST] : [INSIDE_WORD, INSIDE_NOTWORD];
          tree = {
            kind: "alt",
            branches: [
              { kind: "anchor", constraint: a },
              { kind: "anchor", constraint: b },
            ],
          };
        } else {
          if (v === WORD_FIRST || v === WORD_LAST) this.#wordOps = true;
          tree = { kind: "anchor", constraint: v };
        }
        // An anchor takes no repetition: what follows starts a new expression.
        this.#fetch();
        return tree;
      }
      case PERIOD:
        tree = { kind: "any" };
        break;
      case WORD:
      case NOTWORD:
        tree = { kind: "set", set: classOp("alnum", "_", this.#type === NOTWORD) };
        break;
      case SPACE:
      case NOTSPACE:
        tree = { kind: "set", set: classOp("space", "", this.#type === NOTSPACE) };
        break;
      case BACK_SLASH:
        return this.#fail("REG_EESCAPE", at);
      default: // ALT, END
        return null;
    }
    this.#fetch();
    while (
      this.#type === DUP_ASTERISK ||
      this.#type === DUP_PLUS ||
      this.#type === DUP_QUESTION ||
      this.#type === OPEN_DUP_NUM
    ) {
      tree = this.#dupOp(tree);
    }
    return tree;
  }

  /** '(' regexp ')': glibc's parse_sub_exp. `at` is the index of the '('. */
  #subExp(nest: number, at: number): EreAst {
    const index = this.#groups++;
    this.#fetch();
    let body: EreAst | null = null;
    if (this.#type !== CLOSE_SUBEXP) {
      body = this.#regExp(nest);
      if (this.#type !== CLOSE_SUBEXP) this.#fail("REG_EPAREN", at);
    }
    if (index <= 8) this.#completed |= 1 << index;
    return { kind: "group", index, body };
  }

  /** One of `*` `+` `?` `{n,m}` applied to `elem`: glibc's parse_dup_op. */
  #dupOp(elem: EreAst | null): EreAst | null {
    const at = this.#start;
    let min: number;
    let max: number;
    if (this.#type === OPEN_DUP_NUM) {
      max = 0;
      min = this.#number();
      if (min === -1) {
        if (this.#type === CHARACTER && this.#char === 0x2c) min = 0;
        else this.#fail("REG_BADBR", at); // {}
      }
      if (min !== -2) {
        max =
          this.#type === CLOSE_DUP_NUM
            ? min
            : this.#type === CHARACTER && this.#char === 0x2c
              ? this.#number()
              : -2;
      }
      if (min === -2 || max === -2) this.#fail(this.#type === END ? "REG_EBRACE" : "REG_BADBR", at);
      if ((max !== -1 && min > max) || this.#type !== CLOSE_DUP_NUM) this.#fail("REG_BADBR", at);
      if ((max === -1 ? min : max) > RE_DUP_MAX) this.#fail("REG_ESIZE", at);
    } else {
      min = this.#type === DUP_PLUS ? 1 : 0;
      max = this.#type === DUP_QUESTION ? 1 : -1;
    }
    this.#fetch();
    if (elem === null || (min === 0 && max === 0)) return null;
    return { kind: "repeat", min, max, body: elem };
  }

  /**
   * A count inside `{}`: glibc's fetch_number. -1 when empty, -2 when not a number,
   * RE_DUP_MAX + 1 when too large. Stops at ',' (even `\,`) or '}'.
   */
  #number(): number {
    let num = -1;
    for (;;) {
      this.#fetch();
      if (this.#type === END) return -2;
      const c = this.#char;
      if (this.#type === CLOSE_DUP_NUM || (c === 0x2c && this.#type !== ANCHOR)) break;
      num =
        this.#type !== CHARACTER || c < 0x30 || c > 0x39 || num === -2
          ? -2
          : num === -1
            ? c - 0x30
            : Math.min(RE_DUP_MAX + 1, num * 10 + c - 0x30);
    }
    return num;
  }
}
