import { lstatSync, readdirSync } from "node:fs";

/**
 * glob(3) as carbon-c-relay calls it for `include` (glibc, flags 0, C
 * locale): `*`, `?` and bracket expressions (`[a-z]`, `[!.]`, `[^x]`,
 * `[[:digit:]]`) per path component, a backslash quoting the next
 * character; a leading `.` in a name only matched by a literal `.`; no
 * `**`, no braces, no `~`. Matches come sorted by bytes; a pattern matching
 * nothing gives none.
 */

/** carbon-c-relay's test for a glob: a `*` or `?`, or both `[` and `]`. */
export function hasGlobMagic(path: string): boolean {
  return path.includes("*") || path.includes("?") || (path.includes("[") && path.includes("]"));
}

/** The paths matching `pattern`, relative to the working directory unless it is absolute. */
export function posixGlob(pattern: string): string[] {
  const parts = pattern.split("/");
  // An absolute pattern starts from "/" (the first part is empty).
  let paths = [parts[0] === "" ? "" : null];
  let literalTail = false;
  for (let i = parts[0] === "" ? 1 : 0; i < parts.length; i++) {
    const part = parts[i]!;
    const join = (base: string | null, name: string): string =>
      base === null ? name : `${base}/${name}`;
    if (!isMagic(part)) {
      const name = unquote(part);
      paths = paths.map((p) => join(p, name));
      literalTail = true;
      continue;
    }
    literalTail = false;
    const next: string[] = [];
    for (const p of paths) {
      let names: string[];
      try {
        names = readdirSync(p === null ? "." : p === "" ? "/" : p);
      } catch {
        continue; // not a directory, or unreadable: glob skips it
      }
      for (const name of [".", "..", ...names]) if (fnmatch(part, name)) next.push(join(p, name));
    }
    paths = next;
  }
  let out = paths.filter((p): p is string => p !== null);
  if (literalTail) out = out.filter(exists);
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function exists(p: string): boolean {
  try {
    lstatSync(p === "" ? "/" : p);
    return true;
  } catch {
    return false;
  }
}

/** An unquoted `*`, `?` or `[`. */
function isMagic(part: string): boolean {
  for (let i = 0; i < part.length; i++) {
    const c = part[i];
    if (c === "\\") i++;
    else if (c === "*" || c === "?" || c === "[") return true;
  }
  return false;
}

const unquote = (s: string): string => s.replace(/\\(.)/gs, "$1");

/** fnmatch(pattern, name, FNM_PERIOD). */
export function fnmatch(pattern: string, name: string): boolean {
  return match(pattern, 0, name, 0);
}

function match(p: string, pi: number, s: string, si: number): boolean {
  while (pi < p.length) {
    const c = p[pi]!;
    const leadingDot = si === 0 && s[0] === ".";
    if (c === "*") {
      if (leadingDot) return false;
      while (p[pi] === "*") pi++;
      if (pi === p.length) return true;
      for (let k = si; k <= s.length; k++) if (match(p, pi, s, k)) return true;
      return false;
    }
    if (si >= s.length) return false;
    if (c === "?") {
      if (leadingDot) return false;
      pi++;
      si++;
      continue;
    }
    if (c === "[") {
      const b = bracket(p, pi, s[si]!);
      if (b !== null) {
        if (leadingDot || !b.matched) return false;
        pi = b.end;
        si++;
        continue;
      }
      // No closing "]": a literal "[".
    }
    let lit = c;
    if (c === "\\" && pi + 1 < p.length) lit = p[++pi]!;
    if (s[si] !== lit) return false;
    pi++;
    si++;
  }
  return si === s.length;
}

const CLASSES: Record<string, (c: number) => boolean> = {
  alnum: (c) => CLASSES["alpha"]!(c) || CLASSES["digit"]!(c),
  alpha: (c) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122),
  blank: (c) => c === 32 || c === 9,
  cntrl: (c) => c < 32 || c === 127,
  digit: (c) => c >= 48 && c <= 57,
  graph: (c) => c > 32 && c < 127,
  lower: (c) => c >= 97 && c <= 122,
  print: (c) => c >= 32 && c < 127,
  punct: (c) => c > 32 && c < 127 && !CLASSES["alnum"]!(c),
  space: (c) => c === 32 || (c >= 9 && c <= 13),
  upper: (c) => c >= 65 && c <= 90,
  xdigit: (c) => CLASSES["digit"]!(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102),
};

/** A bracket expression at p[start] ("["): whether ch matches and where it ends; null if unclosed. */
function bracket(p: string, start: number, ch: string): { matched: boolean; end: number } | null {
  let i = start + 1;
  const negate = p[i] === "!" || p[i] === "^";
  if (negate) i++;
  const code = ch.charCodeAt(0);
  let matched = false;
  let first = true;
  while (i < p.length && (first || p[i] !== "]")) {
    first = false;
    if (p.startsWith("[:", i)) {
      const close = p.indexOf(":]", i + 2);
      const cls = close < 0 ? undefined : CLASSES[p.slice(i + 2, close)];
      if (cls !== undefined) {
        if (cls(code)) matched = true;
        i = close + 2;
        continue;
      }
    }
    let lo = p[i]!;
    if (lo === "\\" && i + 1 < p.length) lo = p[++i]!;
    i++;
    let hi = lo;
    if (p[i] === "-" && i + 1 < p.length && p[i + 1] !== "]") {
      hi = p[i + 1]!;
      if (hi === "\\" && i + 2 < p.length) hi = p[++i + 1]!;
      i += 2;
    }
    if (code >= lo.charCodeAt(0) && code <= hi.charCodeAt(0)) matched = true;
  }
  if (i >= p.length) return null;
  return { matched: matched !== negate, end: i + 1 };
}
