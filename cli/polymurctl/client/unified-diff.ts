/**
 * A unified diff of two texts by lines, as `diff -u` prints it: `---`/`+++`
 * labels, hunks with three lines of context, and `\ No newline at end of
 * file` after a last line without one. Texts are latin1 strings (one char per
 * byte), so the diff is of the bytes, whatever their encoding.
 */

/** Lines of context around each change, as `diff -u`. */
const CONTEXT = 3;

/**
 * Past this many differences, the middle (between the common head and tail)
 * is shown as all removed, then all added: still a correct diff, and the
 * search's memory (which grows with the square of the differences) stays
 * small.
 */
const MAX_EDIT_DISTANCE = 2000;

type Op = { readonly kind: " " | "-" | "+"; readonly line: string };

/** The diff of `a` into `b`, or "" when they are equal. */
export function unifiedDiff(a: string, b: string, aLabel: string, bLabel: string): string {
  if (a === b) return "";
  const ops = lineOps(splitLines(a), splitLines(b));
  let out = `--- ${aLabel}\n+++ ${bLabel}\n`;
  for (const h of hunks(ops)) {
    out += `@@ -${range(h.aStart, h.aLen)} +${range(h.bStart, h.bLen)} @@\n`;
    for (let i = h.from; i < h.to; i++) {
      const op = ops[i]!;
      out += op.kind + op.line;
      if (!op.line.endsWith("\n")) out += "\n\\ No newline at end of file\n";
    }
  }
  return out;
}

/** Lines with their `\n` (the last may have none), so a missing final newline is a difference. */
function splitLines(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) break;
    lines.push(text.slice(start, nl + 1));
    start = nl + 1;
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

/** The edit script: the common head and tail, and between them Myers' shortest one. */
function lineOps(a: readonly string[], b: readonly string[]): Op[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (
    tail < a.length - head &&
    tail < b.length - head &&
    a[a.length - 1 - tail] === b[b.length - 1 - tail]
  ) {
    tail++;
  }
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const middle = myers(am, bm) ?? [
    ...am.map((line): Op => ({ kind: "-", line })),
    ...bm.map((line): Op => ({ kind: "+", line })),
  ];
  const same = (line: string): Op => ({ kind: " ", line });
  return [...a.slice(0, head).map(same), ...middle, ...a.slice(a.length - tail).map(same)];
}

/**
 * Myers' O(ND) shortest edit script ("An O(ND) Difference Algorithm and Its
 * Variations", 1986), removals before additions; null past
 * MAX_EDIT_DISTANCE differences.
 */
function myers(a: readonly string[], b: readonly string[]): Op[] | null {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, MAX_EDIT_DISTANCE);
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  /** trace[d][k + d]: the furthest x on diagonal k after d differences. */
  const trace: Int32Array[] = [];
  for (let d = 0; d <= max; d++) {
    for (let k = -d; k <= d; k += 2) {
      let x =
        k === -d || (k !== d && v[off + k - 1]! < v[off + k + 1]!)
          ? v[off + k + 1]!
          : v[off + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[off + k] = x;
      if (x >= n && y >= m) {
        trace.push(v.slice(off - d, off + d + 1));
        return backtrack(a, b, trace);
      }
    }
    trace.push(v.slice(off - d, off + d + 1));
  }
  return null;
}

function backtrack(a: readonly string[], b: readonly string[], trace: Int32Array[]): Op[] {
  const ops: Op[] = [];
  let x = a.length;
  let y = b.length;
  for (let d = trace.length - 1; d > 0; d--) {
    const prev = trace[d - 1]!;
    const at = (k: number) => prev[k + d - 1]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    for (; x > prevX && y > prevY; x--, y--) ops.push({ kind: " ", line: a[x - 1]! });
    if (x === prevX) ops.push({ kind: "+", line: b[--y]! });
    else ops.push({ kind: "-", line: a[--x]! });
  }
  for (; x > 0 && y > 0; x--, y--) ops.push({ kind: " ", line: a[x - 1]! });
  return ops.reverse();
}

interface Hunk {
  /** Ops [from, to). */
  readonly from: number;
  readonly to: number;
  readonly aStart: number;
  readonly aLen: number;
  readonly bStart: number;
  readonly bLen: number;
}

/** Changes with CONTEXT lines around them; changes closer than twice that share a hunk. */
function hunks(ops: readonly Op[]): Hunk[] {
  const changes: number[] = [];
  ops.forEach((op, i) => {
    if (op.kind !== " ") changes.push(i);
  });
  const out: Hunk[] = [];
  let i = 0;
  while (i < changes.length) {
    let j = i;
    while (j + 1 < changes.length && changes[j + 1]! - changes[j]! - 1 <= 2 * CONTEXT) j++;
    const from = Math.max(0, changes[i]! - CONTEXT);
    const to = Math.min(ops.length, changes[j]! + CONTEXT + 1);
    let aBefore = 0;
    let bBefore = 0;
    for (let k = 0; k < from; k++) {
      if (ops[k]!.kind !== "+") aBefore++;
      if (ops[k]!.kind !== "-") bBefore++;
    }
    let aLen = 0;
    let bLen = 0;
    for (let k = from; k < to; k++) {
      if (ops[k]!.kind !== "+") aLen++;
      if (ops[k]!.kind !== "-") bLen++;
    }
    out.push({
      from,
      to,
      aStart: aLen === 0 ? aBefore : aBefore + 1,
      aLen,
      bStart: bLen === 0 ? bBefore : bBefore + 1,
      bLen,
    });
    i = j + 1;
  }
  return out;
}

/** `start,len`, or `start` alone for one line (as GNU diff). */
function range(start: number, len: number): string {
  return len === 1 ? `${start}` : `${start},${len}`;
}
