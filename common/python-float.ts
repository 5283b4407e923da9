/**
 * How Python reads a Graphite line and its numbers, which carbon does with
 * `line.split()` and `float()` (specs: graphite-protocol.md §1): the
 * validator reads plaintext lines by these rules, the pickle decoder numeric
 * strings, the pickle encoder the lines it turns into pickle.
 */

/** Python's str.isspace() set, on which str.split() splits, as a regular-expression class body. */
export const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/** A run of that whitespace: what str.split() splits on. */
export const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`, "u");
/** That whitespace at either end: what str.strip() removes (use with replace). */
export const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");
/** float()'s special values, in any case, with a sign: (sign)(name). */
export const PY_SPECIAL = /^([+-]?)(nan|inf|infinity)$/i;
/** float()'s decimal spellings: ASCII digits, underscores between digits, an exponent. */
export const PY_DECIMAL =
  /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/;
