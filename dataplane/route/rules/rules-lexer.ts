import { RulesError, type SourcePos } from "./rules-config.ts";

/**
 * The tokens of carbon-c-relay 3.7.3's relay.conf, as its flex scanner
 * (conffile.l) makes them. That scanner is a state machine: a word is a
 * keyword only in the states where conffile.l lists it (`stop` is a keyword
 * after `send to`, an expression after `match`), anything made of IDCHR
 * characters is a string where a string may come, and elsewhere a character
 * no rule takes is an "unexpected" token. Like flex, every step takes the
 * longest match of the rules active in the current state, the earlier rule
 * on a tie, so `clusterfoo` is `cluster` then the name `foo`, and
 * `60seconds` is `60` then `seconds`.
 *
 * Quoted strings (`"..."`, only where a string may come): a backslash takes
 * the next character literally and is dropped (`"^a\.b"` is `^a.b`,
 * `"\\"` is `\`); an empty string, a newline or the end of the file inside
 * one is an error, and so are more than 1023 characters. Unquoted strings
 * keep their backslashes; `\ ` (backslash, space) continues one
 * (`foo\ bar` is the string `foo\ bar`). `#` starts a comment to the end of
 * the line; `;` ends a statement and returns the scanner to its first state.
 *
 * Deliberate differences from conffile.l, each a carbon-c-relay bug:
 * a comment on the last line without a newline after it is a comment (there
 * a syntax error); `#` inside a quoted string is a character (there a quoted
 * string starting with `#` swallows the rest of the line); a newline in a
 * quoted string ends it with an error even when an empty line follows (there
 * two newlines are skipped); `stop` is a keyword after an aggregate's
 * `write to` (the grammar allows `stop` there, the scanner did not); a NUL
 * byte is an error (there the file silently ends at it).
 */

/** Keyword token kinds; aliases (`summary`, `cnt`, `maximum`, `minimum`, `avg`) take their canonical kind. */
export const KEYWORD_KINDS = [
  ...[
    "cluster",
    "forward",
    "any_of",
    "failover",
    "useall",
    "carbon_ch",
    "fnv1a_ch",
    "jump_fnv1a_ch",
  ],
  ...["replication", "dynamic", "file", "ip", "proto", "udp", "tcp", "unix", "type", "linemode"],
  ...["syslog", "transport", "plain", "gzip", "lz4", "snappy", "ssl", "match", "validate", "else"],
  ...["log", "drop", "route", "using", "send", "to", "blackhole", "stop", "rewrite", "into"],
  ...["aggregate", "every", "seconds", "expire", "after", "timestamp", "at", "start", "middle"],
  ...["end", "of", "bucket", "compute", "sum", "count", "max", "min", "average", "median"],
  ...["variance", "stddev", "write", "statistics", "submit", "reset", "counters", "interval"],
  ...["prefix", "with", "listen", "include"],
] as const;
export type Keyword = (typeof KEYWORD_KINDS)[number];

/**
 * `string`: a quoted or unquoted string; `int`: digits (where numbers are
 * read); `percentile`: `percentileNN`; `unexpected`: one character no rule
 * takes in the current state; `eof`: the end of the file.
 */
export type TokenKind =
  | Keyword
  | "string"
  | "int"
  | "percentile"
  | "="
  | "*"
  | ";"
  | "unexpected"
  | "eof";

export interface Token {
  readonly kind: TokenKind;
  /** The text as written (a quoted string with its quotes). */
  readonly raw: string;
  /** A string's value (quotes and escaping backslashes removed); otherwise `raw`. */
  readonly text: string;
  /** `int` and `percentile` (no digits: 0): the number, possibly beyond 2^31-1. */
  readonly value: number;
  readonly quoted: boolean;
  /** Where the token starts. */
  readonly pos: SourcePos;
  /** Where its value starts: after the opening quote of a quoted string, else `pos`. */
  readonly valuePos: SourcePos;
  /**
   * For messages: for `unexpected`, the word it starts (up to white space or
   * `;`); for a keyword, it and the letters glued to it; else `raw`.
   */
  readonly word: string;
}

const States = [
  "INITIAL",
  "cl",
  "ma",
  "re",
  "ag",
  "se",
  "st",
  "li",
  "idcl",
  "idma",
  "idag",
  "idin",
  "idli",
] as const;
type LexState = (typeof States)[number];

/** A keyword rule of conffile.l: the states it is active in, and what it does to the state. */
interface KeywordRule {
  readonly states: readonly LexState[];
  readonly word: string;
  readonly kind: TokenKind;
  /** Sets identstate (the state a string returns to). */
  readonly ident?: LexState;
  /** BEGIN(state). */
  readonly begin?: LexState;
}

const kw = (
  states: readonly LexState[],
  words: string,
  kind?: TokenKind,
  ident?: LexState,
  begin?: LexState,
): KeywordRule[] =>
  words.split(" ").map((word) => ({
    states,
    word,
    kind: kind ?? (word as TokenKind),
    ...(ident === undefined ? {} : { ident }),
    ...(begin === undefined ? {} : { begin }),
  }));

// In conffile.l's order: on a tie in length the earlier rule wins.
const KEYWORDS: readonly KeywordRule[] = [
  ...kw(["INITIAL"], "cluster", "cluster", "cl", "idcl"),
  ...kw(["cl"], "forward", "forward", "idcl", "idcl"),
  ...kw(["cl"], "any_of", "any_of", "idcl", "idcl"),
  ...kw(["cl"], "failover", "failover", "idcl", "idcl"),
  ...kw(["idcl"], "useall"),
  ...kw(["cl"], "carbon_ch", "carbon_ch", "idcl", "idcl"),
  ...kw(["cl"], "fnv1a_ch", "fnv1a_ch", "idcl", "idcl"),
  ...kw(["cl"], "jump_fnv1a_ch", "jump_fnv1a_ch", "idcl", "idcl"),
  ...kw(["idcl"], "replication"),
  ...kw(["idcl"], "dynamic"),
  ...kw(["cl"], "file", "file", "idcl", "idcl"),
  ...kw(["idcl"], "ip"),
  ...kw(["idcl"], "proto"),
  ...kw(["idcl"], "udp"),
  ...kw(["idcl"], "tcp"),
  ...kw(["idcl"], "type"),
  ...kw(["idcl"], "linemode"),
  ...kw(["idcl"], "syslog"),
  ...kw(["idcl"], "transport"),
  ...kw(["idcl"], "plain"),
  ...kw(["idcl"], "gzip"),
  ...kw(["idcl"], "lz4"),
  ...kw(["idcl"], "snappy"),
  ...kw(["idcl"], "ssl"),
  ...kw(["idcl"], "="),
  ...kw(["INITIAL"], "match", "match", "idma", "idma"),
  ...kw(["idma"], "*"),
  ...kw(["idma"], "validate", "validate", "ma", "idma"),
  ...kw(["ma"], "else"),
  ...kw(["ma"], "log"),
  ...kw(["ma"], "drop"),
  ...kw(["ma", "idma"], "route", "route", undefined, "ma"),
  ...kw(["ma"], "using", "using", "ma", "idma"),
  ...kw(["ma", "idma"], "send", "send", undefined, "ma"),
  ...kw(["ma"], "to", "to", "idcl", "idcl"),
  ...kw(["idcl"], "blackhole"),
  // "ag": a deliberate difference, see above.
  ...kw(["ma", "idcl", "ag"], "stop"),
  ...kw(["INITIAL"], "rewrite", "rewrite", "re", "idma"),
  ...kw(["re"], "into", "into", "re", "idma"),
  ...kw(["INITIAL"], "aggregate", "aggregate", "idag", "idag"),
  ...kw(["idag"], "every", "every", undefined, "ag"),
  ...kw(["ag"], "seconds expire after timestamp at start middle end of bucket compute"),
  ...kw(["ag"], "summary sum", "sum"),
  ...kw(["ag"], "count cnt", "count"),
  ...kw(["ag"], "maximum max", "max"),
  ...kw(["ag"], "minimum min", "min"),
  ...kw(["ag"], "average avg", "average"),
  ...kw(["ag"], "median"),
  // percentile[0-9]* comes here (matchPercentile).
  ...kw(["ag"], "variance stddev write"),
  ...kw(["ag"], "to", "to", "ag", "idag"),
  ...kw(["ag"], "send", "send", undefined, "ma"),
  ...kw(["INITIAL"], "send", "send", undefined, "se"),
  ...kw(["se"], "statistics", "statistics", undefined, "ma"),
  ...kw(["INITIAL"], "statistics", "statistics", undefined, "st"),
  ...kw(["st"], "submit every seconds reset counters after interval prefix"),
  ...kw(["st"], "with", "with", "st", "idag"),
  ...kw(["st"], "send", "send", undefined, "ma"),
  ...kw(["INITIAL"], "listen", "listen", undefined, "li"),
  ...kw(["li"], "type"),
  ...kw(["li"], "linemode", "linemode", "li", "idli"),
  ...kw(["idli"], "transport plain"),
  ...kw(["idli"], "gzip lz4 snappy", undefined, "li", "idli"),
  ...kw(["idli"], "ssl", "ssl", "idli", "idli"),
  ...kw(["li", "idli"], "proto", "proto", undefined, "li"),
  ...kw(["li"], "udp tcp unix", undefined, "li", "idli"),
  ...kw(["INITIAL"], "include", "include", "INITIAL", "idin"),
];

const KEYWORDS_BY_STATE = new Map<LexState, readonly KeywordRule[]>(
  States.map((s) => [s, KEYWORDS.filter((rule) => rule.states.includes(s))]),
);

/** States in which a string (quoted or IDCHR) may come. */
const STRING_STATES: ReadonlySet<LexState> = new Set(["idcl", "idma", "idag", "idin", "idli"]);
/** States in which digits are a number. */
const INT_STATES: ReadonlySet<LexState> = new Set(["idcl", "ag", "st"]);

/** conffile.l's IDCHR: `[a-zA-Z0-9[\](){}|\\^?*$&%<>:/,._+-]`. */
const IDCHR = new Uint8Array(256);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789[](){}|\\^?*$&%<>:/,._+-") {
  IDCHR[c.charCodeAt(0)] = 1;
}
const isIdchr = (s: string, i: number): boolean => i < s.length && IDCHR[s.charCodeAt(i)] === 1;
const isDigit = (s: string, i: number): boolean => {
  const c = s.charCodeAt(i);
  return c >= 0x30 && c <= 0x39;
};

/** The longest `{IDCHR}+(\\[ ]{IDCHR}+)*` at i (0: none). */
function matchIdent(s: string, i: number): number {
  let j = i;
  while (isIdchr(s, j)) j++;
  if (j === i) return 0;
  // A run ending in a backslash (after at least one other IDCHR) continues past one space.
  while (s[j] === " " && j - 1 > i && s[j - 1] === "\\" && isIdchr(s, j + 1)) {
    j++;
    while (isIdchr(s, j)) j++;
  }
  return j - i;
}

/** `percentile[0-9]*` at i (0: none). */
function matchPercentile(s: string, i: number): number {
  if (!s.startsWith("percentile", i)) return 0;
  let j = i + "percentile".length;
  while (j < s.length && isDigit(s, j)) j++;
  return j - i;
}

/** Quoted strings hold at most this many characters (conffile.l's 1024-byte buffer). */
export const MAX_QUOTED = 1023;

/** Reads relay.conf tokens one at a time (the parser pulls; errors surface where they are reached). */
export class RulesLexer {
  readonly file: string;
  readonly #s: string;
  #i = 0;
  #line = 1;
  #col = 1;
  #state: LexState = "INITIAL";
  #ident: LexState = "INITIAL";
  /** conffile.l ends the file at a NUL byte; here it is an error, raised by the first next(). */
  readonly #nul: RulesError | null = null;

  /** `text`: the file's bytes as a latin1 string. */
  constructor(text: string, file: string) {
    this.#s = text;
    this.file = file;
    const nul = text.indexOf("\0");
    if (nul >= 0) {
      const before = text.slice(0, nul);
      const line = before.split("\n").length;
      const column = nul - before.lastIndexOf("\n");
      this.#nul = new RulesError({ file, line, column }, "NUL byte in the file");
    }
  }

  #pos(): SourcePos {
    return { file: this.file, line: this.#line, column: this.#col };
  }

  /** Moves over n characters, counting lines and columns (a tab is one column). */
  #advance(n: number): void {
    const end = this.#i + n;
    for (; this.#i < end; this.#i++) {
      if (this.#s.charCodeAt(this.#i) === 0x0a) {
        this.#line++;
        this.#col = 1;
      } else {
        this.#col++;
      }
    }
  }

  /** The next token; `eof` for ever at the end. Throws RulesError on a lexical error. */
  next(): Token {
    if (this.#nul !== null) throw this.#nul;
    const s = this.#s;
    for (;;) {
      const i = this.#i;
      const pos = this.#pos();
      if (i >= s.length) return this.#token("eof", "", "", pos, pos);
      const c = s[i]!;
      // <*>#.*\n (and, unlike conffile.l, a comment that ends the file).
      if (c === "#") {
        const nl = s.indexOf("\n", i);
        this.#advance((nl < 0 ? s.length : nl + 1) - i);
        continue;
      }
      if (c === " " || c === "\t" || c === "\r" || c === "\n") {
        this.#advance(1);
        continue;
      }
      const state = this.#state;
      if (STRING_STATES.has(state) && c === '"') return this.#quoted(pos);
      // Longest match over the rules active here; on a tie the earlier rule in conffile.l:
      // keywords, then percentile[0-9]*, then digits, then IDCHR strings.
      let best = 0;
      let bestRule: KeywordRule | null = null;
      for (const rule of KEYWORDS_BY_STATE.get(state)!) {
        if (rule.word.length > best && s.startsWith(rule.word, i)) {
          best = rule.word.length;
          bestRule = rule;
        }
      }
      const pct = state === "ag" ? matchPercentile(s, i) : 0;
      let digits = 0;
      if (INT_STATES.has(state)) while (isDigit(s, i + digits)) digits++;
      const ident = STRING_STATES.has(state) ? matchIdent(s, i) : 0;
      if (pct > best && pct >= digits && pct >= ident) {
        const raw = s.slice(i, i + pct);
        this.#advance(pct);
        return this.#token("percentile", raw, raw, pos, pos, atoiValue(raw.slice(10)));
      }
      if (digits > best && digits >= ident) {
        const raw = s.slice(i, i + digits);
        this.#advance(digits);
        return this.#token("int", raw, raw, pos, pos, atoiValue(raw));
      }
      if (ident > best) {
        const raw = s.slice(i, i + ident);
        this.#advance(ident);
        this.#state = this.#ident;
        return this.#token("string", raw, raw, pos, pos);
      }
      if (bestRule !== null) {
        const raw = s.slice(i, i + best);
        this.#advance(best);
        if (bestRule.ident !== undefined) this.#ident = bestRule.ident;
        if (bestRule.begin !== undefined) this.#state = bestRule.begin;
        return this.#token(bestRule.kind, raw, raw, pos, pos);
      }
      this.#advance(1);
      if (c === ";") {
        this.#state = "INITIAL";
        return this.#token(";", c, c, pos, pos);
      }
      const word = /^[^\s;]*/.exec(s.slice(i, i + 64))![0];
      return { ...this.#token("unexpected", c, c, pos, pos), word };
    }
  }

  /** A quoted string; the opening quote is at the current position. */
  #quoted(pos: SourcePos): Token {
    const s = this.#s;
    const start = this.#i;
    this.#advance(1);
    const valuePos = this.#pos();
    let value = "";
    for (;;) {
      const here = this.#pos();
      if (this.#i >= s.length) throw new RulesError(pos, "unterminated string (no closing quote)");
      const c = s[this.#i]!;
      if (c === '"') {
        this.#advance(1);
        break;
      }
      if (c === "\n")
        throw new RulesError(pos, "unterminated string (a newline before the closing quote)");
      if (c === "\\") {
        const n = s[this.#i + 1];
        if (n === undefined || n === "\n") {
          throw new RulesError(here, "unterminated string (a backslash at the end of the line)");
        }
        value += n;
        this.#advance(2);
      } else {
        value += c;
        this.#advance(1);
      }
      if (value.length > MAX_QUOTED) {
        throw new RulesError(pos, `string too large (more than ${MAX_QUOTED} characters)`);
      }
    }
    if (value === "") throw new RulesError(pos, "empty string");
    this.#state = this.#ident;
    const raw = s.slice(start, this.#i);
    return { ...this.#token("string", raw, value, pos, valuePos), quoted: true };
  }

  #token(
    kind: TokenKind,
    raw: string,
    text: string,
    pos: SourcePos,
    valuePos: SourcePos,
    value = 0,
  ): Token {
    // A keyword glued to more letters (`to` in `total`) is shown with them.
    let word = raw;
    if (kind !== "string" && /^[a-z]/.test(raw)) {
      const start = this.#i - raw.length;
      word = /^[A-Za-z0-9_]*/.exec(this.#s.slice(start, start + 64))![0];
    }
    return { kind, raw, text, value, quoted: false, pos, valuePos, word };
  }
}

/** The number a run of digits is, as atoi would read it before it overflows (the parser bounds it). */
function atoiValue(digits: string): number {
  return digits === "" ? 0 : Number(digits);
}

/**
 * Whether `t` is `word` written bare: a word this (3.7.3) scanner has no
 * keyword for where it stands, such as carbon-c-relay 3.8's `mtls`.
 */
export function isBareWord(t: Token, word: string): boolean {
  return t.kind === "string" && !t.quoted && t.text === word;
}

/** A token for messages: `"sned"`, `the number 5`, `end of file`. */
export function describeToken(t: Token): string {
  switch (t.kind) {
    case "eof":
      return "end of file";
    case "int":
      return `the number ${t.raw}`;
    case "string":
      return t.quoted ? `the string ${t.raw}` : `"${t.raw}"`;
    default:
      return `"${t.word}"`;
  }
}
