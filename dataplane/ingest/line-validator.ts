import { PY_DECIMAL, PY_SPECIAL, PY_SPLIT, PY_STRIP } from "../../common/python-float.ts";
/**
 * Per-line validation of Graphite plaintext, with carbon's rules
 * (specs: graphite-protocol.md §1): three fields separated by runs of
 * whitespace, Python `float()` numbers, a finite timestamp, `-1` = now.
 *
 * The fast path works on bytes and accepts the overwhelmingly common line
 * shape (ASCII, single spaces or tabs between fields, nothing around them)
 * without building a string. Anything else goes to `validateSlow`, which
 * decodes the line and applies Python's exact whitespace and float rules.
 */

/** Why a line was rejected. Stable names: they are metric and Prometheus label values. */
export const RejectReason = {
  TooLong: "line_too_long",
  Empty: "empty_line",
  FieldCount: "field_count",
  BadValue: "bad_value",
  NanValue: "nan_value",
  BadTimestamp: "bad_timestamp",
  BadUtf8: "bad_utf8",
  BadName: "bad_name",
  /** A pickle message that does not decode, or an item of another shape in one (pickle-framer.ts). */
  BadPickle: "bad_pickle",
  /** A pickle message declared larger than accepted (pickle-framer.ts). */
  PickleTooLarge: "pickle_too_large",
} as const;
export type RejectReason = (typeof RejectReason)[keyof typeof RejectReason];
export const REJECT_REASONS: readonly RejectReason[] = Object.values(RejectReason);

/** Result of the fast path: the line is fine as it is, or needs the slow path. */
export const FAST_OK = 0;
export const FAST_SLOW = 1;

const SP = 0x20;
const TAB = 0x09;

/**
 * Validates the line in buf[start, end) (no newline). Returns FAST_OK when the
 * line is valid and can be forwarded byte for byte, or FAST_SLOW when the slow
 * path must decide (a rejection, or a line that needs normalising). Allocates
 * nothing.
 */
export function validateFast(buf: Uint8Array, start: number, end: number): number {
  let i = start;
  // Name: printable ASCII up to the first space or tab.
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c <= SP || c >= 0x7f) break;
  }
  if (i === start || i === end) return FAST_SLOW;
  let c = buf[i]!;
  if (c !== SP && c !== TAB) return FAST_SLOW;
  // Separator run.
  i = skipBlanks(buf, i + 1, end);
  // Value.
  const v = i;
  for (; i < end; i++) {
    c = buf[i]!;
    if (c === SP || c === TAB) break;
  }
  if (i === end || !isDecimalFloat(buf, v, i)) return FAST_SLOW;
  i = skipBlanks(buf, i + 1, end);
  // Timestamp: must run to the end of the line, and not be negative (the slow
  // path handles `-1` = now and reports other problems).
  // Long or exponent forms can overflow to infinity (carbon: int() raises); the
  // slow path checks those exactly.
  if (i === end || buf[i] === 0x2d || end - i > 24) return FAST_SLOW;
  for (let j = i; j < end; j++) if ((buf[j]! | 0x20) === 0x65) return FAST_SLOW;
  if (!isDecimalFloat(buf, i, end)) return FAST_SLOW;
  return FAST_OK;
}

/**
 * A finite decimal number as Python's float() reads it, ASCII only:
 * [+-]? (digits [. digits?]? | . digits) ([eE] [+-]? digits)?, where digits
 * may contain single underscores between digits (PEP 515). nan/inf are left
 * to the slow path.
 */
export function isDecimalFloat(buf: Uint8Array, i: number, end: number): boolean {
  if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) i++;
  const intEnd = digitsEnd(buf, i, end);
  let digits = intEnd > i;
  i = intEnd;
  if (i < end && buf[i] === 0x2e) {
    const fracEnd = digitsEnd(buf, i + 1, end);
    digits ||= fracEnd > i + 1;
    i = fracEnd;
  }
  if (!digits) return false;
  if (i < end && (buf[i] === 0x65 || buf[i] === 0x45)) {
    i++;
    if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) i++;
    const expEnd = digitsEnd(buf, i, end);
    if (expEnd === i) return false;
    i = expEnd;
  }
  return i === end;
}

/** End of a run of digits, with single underscores allowed between digits (PEP 515). */
function digitsEnd(buf: Uint8Array, i: number, end: number): number {
  if (i >= end || !isDigit(buf[i]!)) return i;
  i++;
  while (i < end) {
    const c = buf[i]!;
    if (isDigit(c)) i++;
    else if (c === 0x5f && i + 1 < end && isDigit(buf[i + 1]!)) i += 2;
    else break;
  }
  return i;
}

function skipBlanks(buf: Uint8Array, i: number, end: number): number {
  while (i < end) {
    const c = buf[i]!;
    if (c !== SP && c !== TAB) break;
    i++;
  }
  return i;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

// Control characters that Python does not treat as whitespace: carbon would
// take them into the name, and then into a whisper path, which breaks on NUL
// and makes unreadable files otherwise. polymur rejects them.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const NAME_CONTROL = /[\x00-\x08\x0e-\x1b\x7f]/;

// ignoreBOM: Python's bytes.decode("utf-8") keeps a leading U+FEFF, which is
// not whitespace, so carbon takes it into the name. TextDecoder would drop it:
// "\uFEFF 1 2" would become two fields, and a rewritten line would lose it.
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export type SlowResult =
  | { readonly ok: true; readonly line: string; readonly rewritten: boolean }
  | { readonly ok: false; readonly reason: RejectReason; readonly detail: string };

/**
 * The complete carbon rules for one line (no newline). On success, `line` is
 * what polymur forwards (without the newline): the original text with
 * surrounding whitespace removed, or with the timestamp replaced by `nowSec`
 * when it meant "now" (carbon: `int(ts) == -1`).
 */
export function validateSlow(bytes: Uint8Array, nowSec: number): SlowResult {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: RejectReason.BadUtf8, detail: "line is not valid UTF-8" };
  }
  const stripped = text.replace(PY_STRIP, "");
  if (stripped === "") return { ok: false, reason: RejectReason.Empty, detail: "empty line" };
  const fields = stripped.split(PY_SPLIT);
  if (fields.length !== 3) {
    return {
      ok: false,
      reason: RejectReason.FieldCount,
      detail: `expected 3 fields (name value timestamp), got ${fields.length}`,
    };
  }
  const [name, value, ts] = fields as [string, string, string];
  if (NAME_CONTROL.test(name)) {
    return { ok: false, reason: RejectReason.BadName, detail: "control character in metric name" };
  }
  if (!PY_DECIMAL.test(value)) {
    if (!PY_SPECIAL.test(value)) {
      return {
        ok: false,
        reason: RejectReason.BadValue,
        detail: `value "${value}" is not a number`,
      };
    }
    if (/nan/i.test(value)) {
      // carbon drops NaN values silently; polymur says so.
      return { ok: false, reason: RejectReason.NanValue, detail: "value is NaN" };
    }
  }
  if (!PY_DECIMAL.test(ts)) {
    const detail = PY_SPECIAL.test(ts)
      ? `timestamp "${ts}" is not finite`
      : `timestamp "${ts}" is not a number`;
    return { ok: false, reason: RejectReason.BadTimestamp, detail };
  }
  const t = Number(ts.replaceAll("_", ""));
  if (!Number.isFinite(t)) {
    return { ok: false, reason: RejectReason.BadTimestamp, detail: `timestamp "${ts}" overflows` };
  }
  if (t > -2 && t <= -1) {
    return { ok: true, line: `${name} ${value} ${nowSec}`, rewritten: true };
  }
  return { ok: true, line: stripped, rewritten: stripped.length !== text.length };
}
