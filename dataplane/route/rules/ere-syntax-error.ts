/**
 * The error PosixRegex.compile throws where glibc's regcomp(REG_EXTENDED) fails.
 * Its message is the text glibc's regerror gives for the same code, which is what
 * carbon-c-relay prints for a bad expression.
 */

/** glibc's regcomp error codes (regex.h), plus one for what polymur refuses. */
export type RegexErrorCode =
  | "REG_BADPAT"
  | "REG_ECOLLATE"
  | "REG_ECTYPE"
  | "REG_EESCAPE"
  | "REG_ESUBREG"
  | "REG_EBRACK"
  | "REG_EPAREN"
  | "REG_EBRACE"
  | "REG_BADBR"
  | "REG_ERANGE"
  | "REG_ESPACE"
  | "REG_BADRPT"
  | "REG_ESIZE"
  /** A back-reference (`\1`..`\9`) to a completed group: glibc accepts it, polymur does not. */
  | "BACKREF_UNSUPPORTED";

const MESSAGES: Record<RegexErrorCode, string> = {
  REG_BADPAT: "Invalid regular expression",
  REG_ECOLLATE: "Invalid collation character",
  REG_ECTYPE: "Invalid character class name",
  REG_EESCAPE: "Trailing backslash",
  REG_ESUBREG: "Invalid back reference",
  REG_EBRACK: "Unmatched [, [^, [:, [., or [=",
  REG_EPAREN: "Unmatched ( or \\(",
  REG_EBRACE: "Unmatched \\{",
  REG_BADBR: "Invalid content of \\{\\}",
  REG_ERANGE: "Invalid range end",
  REG_ESPACE: "Memory exhausted",
  REG_BADRPT: "Invalid preceding regular expression",
  REG_ESIZE: "Regular expression too big",
  BACKREF_UNSUPPORTED: "Back references (\\1 to \\9) are not supported",
};

/** An expression glibc's regcomp would refuse (or a back-reference, which polymur refuses). */
export class RegexSyntaxError extends Error {
  /** 0-based index into the source where the problem was found. */
  readonly offset: number;
  /** glibc's error code (regerror's text is the message). */
  readonly code: RegexErrorCode;

  constructor(code: RegexErrorCode, offset: number) {
    super(MESSAGES[code]);
    this.name = "RegexSyntaxError";
    this.code = code;
    this.offset = offset;
  }
}
