/**
 * Replacement templates of relay.conf (`rewrite … into`, `route using`,
 * aggregate `write to`), read exactly as carbon-c-relay 3.7.3's
 * `router_rewrite_metric` reads them:
 *
 * - `\N` inserts group N (`\1`..`\9`, `\10` and up: every digit after the
 *   backslash counts, so `\01` is group 1); `\0`, a group the expression does
 *   not have and a group that did not take part insert nothing.
 * - `\_N` lower-cases, `\^N` upper-cases, `\.N` turns dots into underscores;
 *   `\_.N` and `\^.N` combine them (ASCII only: the relay runs in the C locale).
 * - A backslash right after a reference keeps the case of that reference:
 *   `\_1\2` lower-cases `\2` too. Anything else after such a backslash is
 *   literal (`\1\_2` gives group 1 then `_2`).
 * - A backslash before anything else is dropped (`\x` is `x`, `\\1` is `\1`).
 *
 * The result is the name before the match, the expanded template, and the name
 * after the match: the part of the name outside the match is kept.
 */

/** carbon-c-relay's METRIC_BUFSIZ: a rewritten line (name, rest, newline, NUL) must fit. */
export const METRIC_BUFSIZ = 32768;

const Case = { Retain: 0, Lower: 1, Upper: 2 } as const;
type Case = (typeof Case)[keyof typeof Case];

/** One piece of a compiled template: literal text (ref 0), or a group reference. */
interface Piece {
  readonly ref: number;
  readonly text: string;
  readonly letterCase: Case;
  readonly dots: boolean;
}

/** References above this are never a group (a POSIX expression here has at most 63). */
const REF_CAP = 1 << 20;

const BACKSLASH = 0x5c;

export class Replacement {
  /** The template as written. */
  readonly template: string;
  /** The highest group number the template refers to (0: none). */
  readonly maxRef: number;
  readonly #pieces: readonly Piece[];

  private constructor(template: string, pieces: readonly Piece[]) {
    this.template = template;
    this.#pieces = pieces;
    let max = 0;
    for (const p of pieces) if (p.ref > max) max = p.ref;
    this.maxRef = max;
  }

  /** Reads a template (latin1 string). Every template is valid. */
  static compile(template: string): Replacement {
    return new Replacement(template, parse(template));
  }

  /**
   * The name with its matched part, `name[match[0], match[1])`, replaced by the
   * expanded template. `match` holds regexec offset pairs (group 0 first, -1
   * for a group that did not take part); `groups` is the expression's group
   * count: references above it insert nothing.
   */
  apply(name: string, match: Int32Array, groups: number): string {
    const so = match[0]!;
    const eo = match[1]!;
    let out = so > 0 ? name.slice(0, so) : "";
    for (const p of this.#pieces) {
      if (p.ref === 0) {
        out += p.text;
        continue;
      }
      if (p.ref > groups) continue;
      const gs = match[2 * p.ref]!;
      const ge = match[2 * p.ref + 1]!;
      if (gs < 0 || ge < gs) continue;
      out += convert(name, gs, ge, p.letterCase, p.dots);
    }
    return eo < name.length ? out + name.slice(eo) : out;
  }
}

/** name[start, end) with carbon-c-relay's case and dot conversions (ASCII only). */
function convert(
  name: string,
  start: number,
  end: number,
  letterCase: Case,
  dots: boolean,
): string {
  const part = name.slice(start, end);
  if (letterCase === Case.Retain && !dots) return part;
  let out = "";
  for (let i = 0; i < part.length; i++) {
    let c = part.charCodeAt(i);
    if (dots && c === 0x2e) c = 0x5f;
    else if (letterCase === Case.Lower && c >= 0x41 && c <= 0x5a) c += 0x20;
    else if (letterCase === Case.Upper && c >= 0x61 && c <= 0x7a) c -= 0x20;
    out += String.fromCharCode(c);
  }
  return out;
}

/**
 * The template's pieces, by carbon-c-relay's state machine: `esc` is 0
 * (plain text), 1 (after a backslash) or 2 (reading a reference's digits).
 * A reference ends at the first character that is not a digit; a backslash
 * there starts the next reference without resetting the case.
 */
function parse(template: string): Piece[] {
  const pieces: Piece[] = [];
  let text = "";
  let esc = 0;
  let ref = 0;
  let letterCase: Case = Case.Retain;
  let dots = false;
  const flushText = (): void => {
    if (text !== "") pieces.push({ ref: 0, text, letterCase: Case.Retain, dots: false });
    text = "";
  };
  // One step past the end: the terminating NUL ends a pending reference.
  for (let i = 0; i <= template.length; i++) {
    const c = i < template.length ? template.charCodeAt(i) : -1;
    if (c === BACKSLASH && esc === 0) {
      esc = 1;
      letterCase = Case.Retain;
      dots = false;
      continue;
    }
    if (esc === 1 && letterCase === Case.Retain && !dots && c === 0x5f) {
      letterCase = Case.Lower;
    } else if (esc === 1 && letterCase === Case.Retain && !dots && c === 0x5e) {
      letterCase = Case.Upper;
    } else if (esc === 1 && c === 0x2e) {
      // `\_.` and `\^.` keep their case; a second dot (`\_..`) drops it, as in the relay.
      if (dots) letterCase = Case.Retain;
      dots = true;
    } else if (esc !== 0 && c >= 0x30 && c <= 0x39) {
      esc = 2;
      ref = Math.min(ref * 10 + (c - 0x30), REF_CAP);
    } else {
      if (esc !== 0 && ref > 0) {
        flushText();
        pieces.push({ ref, text: "", letterCase, dots });
      }
      ref = 0;
      if (c !== BACKSLASH) {
        esc = 0;
        letterCase = Case.Retain;
        dots = false;
        if (c >= 0) text += template[i];
      }
    }
  }
  flushText();
  return pieces;
}
