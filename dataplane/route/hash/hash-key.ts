/**
 * Optional rewrites of the routing key before it is hashed, one per reference:
 *
 * - `sortedTagsKey`: graphite-carbon's TAG_RELAY_NORMALIZED (`TaggedSeries.parse(metric).path`,
 *   spec §5.6): `name;b=2;a=1` routes as `name;a=1;b=2`.
 * - `cleanseKey`: what carbon-c-relay's live relay hashes (`dispatch_received_metrics`,
 *   spec §6.7): the cleansed path, without its tags.
 *
 * Both write into a caller-provided scratch buffer and allocate nothing on the common path.
 * They return the key length in `scratch`, or -1 when the key is to be hashed unchanged.
 */

const SEMI = 0x3b; // ;
const EQ = 0x3d; // =
const TILDE = 0x7e; // ~
const DOT = 0x2e;
const SPACE = 0x20;
const TAB = 0x09;

/** Segment bounds of the tags, reused across calls (grown when a name has more tags). */
let segStart: Int32Array = new Int32Array(64);
let segEnd: Int32Array = new Int32Array(64);
let segOrder: Int32Array = new Int32Array(64);

function compareRanges(b: Uint8Array, s1: number, e1: number, s2: number, e2: number): number {
  const n = Math.min(e1 - s1, e2 - s2);
  for (let i = 0; i < n; i++) {
    const d = b[s1 + i]! - b[s2 + i]!;
    if (d !== 0) return d;
  }
  return e1 - s1 - (e2 - s2);
}

function sameTag(b: Uint8Array, s1: number, s2: number, end1: number, end2: number): boolean {
  // Tags are the bytes up to the first '=' of each segment (validated to exist).
  let i = s1;
  let j = s2;
  for (;;) {
    const x = i < end1 ? b[i]! : -1;
    const y = j < end2 ? b[j]! : -1;
    if (x === EQ || y === EQ) return x === y;
    if (x !== y) return false;
    i++;
    j++;
  }
}

/**
 * carbon's `TaggedSeries.parse(path).path` for the carbon form `name;tag=value;...`:
 * the name with leading `~` stripped, then `;tag=value` pairs sorted (by their text, as
 * Python sorts the `';%s=%s'` strings; UTF-8 byte order is code point order), the last
 * value of a repeated tag winning and a `name` tag dropped. Where carbon's parser raises
 * (empty name or tag, missing `=`, `!` or `^` in a tag, empty value or one starting with
 * `~`), carbon routes the metric unnormalised, and so does this (-1).
 * The OpenMetrics form `name{tag="value",...}` goes through `sortedTagsKeyOpenMetrics`.
 */
export function sortedTagsKey(
  key: Uint8Array,
  start: number,
  end: number,
  scratch: Uint8Array,
): number {
  // OpenMetrics form: path[-2:] == '"}' and '{' in path.
  if (end - start >= 2 && key[end - 1] === 0x7d && key[end - 2] === 0x22) {
    if (key.subarray(start, end).includes(0x7b))
      return sortedTagsKeyOpenMetrics(key, start, end, scratch);
  }
  let nameEnd = start;
  while (nameEnd < end && key[nameEnd] !== SEMI) nameEnd++;
  if (nameEnd === start) return -1; // "Cannot parse path, no metric found"
  let nameStart = start;
  while (nameStart < nameEnd && key[nameStart] === TILDE) nameStart++;
  if (nameStart === nameEnd) return -1; // name is only '~'
  if (nameEnd === end)
    return nameStart === start ? -1 : copyOut(key, nameStart, nameEnd, scratch, 0);

  // Split and validate the tag segments.
  let nseg = 0;
  let s = nameEnd + 1;
  for (;;) {
    let e = s;
    while (e < end && key[e] !== SEMI) e++;
    let eq = s;
    while (eq < e && key[eq] !== EQ) eq++;
    if (eq === e || eq === s) return -1; // no '=' or empty tag
    for (let i = s; i < eq; i++) if (key[i] === 0x21 || key[i] === 0x5e) return -1; // ! ^
    if (eq + 1 === e || key[eq + 1] === TILDE) return -1; // empty value, or starts with ~
    if (nseg === segStart.length) growSegments();
    segStart[nseg] = s;
    segEnd[nseg] = e;
    nseg++;
    if (e === end) break;
    s = e + 1;
  }

  // Keep the last occurrence of each tag; drop `name` (overwritten by the metric name).
  let nkeep = 0;
  for (let i = 0; i < nseg; i++) {
    const si = segStart[i]!;
    const ei = segEnd[i]!;
    if (
      ei - si >= 5 &&
      key[si] === 0x6e &&
      key[si + 1] === 0x61 &&
      key[si + 2] === 0x6d &&
      key[si + 3] === 0x65 &&
      key[si + 4] === EQ
    )
      continue;
    let later = false;
    for (let j = i + 1; j < nseg && !later; j++)
      later = sameTag(key, si, segStart[j]!, ei, segEnd[j]!);
    if (!later) segOrder[nkeep++] = i;
  }
  // Insertion sort of the kept segments by their bytes (few tags per name).
  for (let i = 1; i < nkeep; i++) {
    const v = segOrder[i]!;
    let j = i - 1;
    while (j >= 0) {
      const u = segOrder[j]!;
      if (compareRanges(key, segStart[u]!, segEnd[u]!, segStart[v]!, segEnd[v]!) <= 0) break;
      segOrder[j + 1] = u;
      j--;
    }
    segOrder[j + 1] = v;
  }
  // Already normalised? (the common case for well-behaved clients) Then hash as is.
  if (nameStart === start && nkeep === nseg) {
    let inOrder = true;
    for (let i = 0; i < nkeep && inOrder; i++) inOrder = segOrder[i] === i;
    if (inOrder) return -1;
  }
  let len = end - start;
  if (scratch.length < len) return -1; // cannot happen with a scratch as long as the key
  len = copyOut(key, nameStart, nameEnd, scratch, 0);
  for (let i = 0; i < nkeep; i++) {
    const u = segOrder[i]!;
    scratch[len++] = SEMI;
    len = copyOut(key, segStart[u]!, segEnd[u]!, scratch, len);
  }
  return len;
}

function copyOut(src: Uint8Array, s: number, e: number, dst: Uint8Array, at: number): number {
  for (let i = s; i < e; i++) dst[at++] = src[i]!;
  return at;
}

function growSegments(): void {
  const n = segStart.length * 2;
  const grow = (a: Int32Array): Int32Array => {
    const b = new Int32Array(n);
    b.set(a);
    return b;
  };
  segStart = grow(segStart);
  segEnd = grow(segEnd);
  segOrder = grow(segOrder);
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();
// carbon: re.match(r'([^=]+)="((?:[\\]["\\]|[^"\\])+)"(:?,|$)', rawtags)
const openMetricsSegment = /^([^=]+)="((?:[\\]["\\]|[^"\\])+)"(:?,|$)/;

/**
 * carbon's `TaggedSeries.parse_openmetrics` + `format` for `name{tag="value",...}` (rare:
 * allocates). -1 where carbon raises.
 */
export function sortedTagsKeyOpenMetrics(
  key: Uint8Array,
  start: number,
  end: number,
  scratch: Uint8Array,
): number {
  const path = decoder.decode(key.subarray(start, end));
  const parts = path.slice(0, -1).split("{");
  if (parts.length !== 2) return -1; // Python's 2-tuple unpacking of split('{', 2) fails
  const metric = parts[0]!;
  let rawtags = parts[1]!;
  if (metric === "") return -1;
  const tags = new Map<string, string>();
  while (rawtags.length > 0) {
    const m = openMetricsSegment.exec(rawtags);
    if (m === null) return -1;
    const tag = m[1]!;
    const value = m[2]!.replaceAll('\\"', '"').replaceAll("\\\\", "\\");
    if (/[;!^=]/.test(tag) || value === "" || value.includes(";") || value.startsWith("~"))
      return -1;
    tags.set(tag, value);
    rawtags = rawtags.slice(m[0].length);
  }
  const name = metric.replace(/^~+/, "");
  if (name === "") return -1;
  const pairs: Uint8Array[] = [];
  for (const [tag, value] of tags)
    if (tag !== "name") pairs.push(encoder.encode(`;${tag}=${value}`));
  pairs.sort((a, b) => compareRanges2(a, b));
  const out = [encoder.encode(name), ...pairs];
  let len = 0;
  for (const p of out) {
    if (len + p.length > scratch.length) return -1;
    scratch.set(p, len);
    len += p.length;
  }
  return len;
}

function compareRanges2(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** carbon-c-relay's default allowed characters besides `[A-Za-z0-9]` (relay.c, option `-c`). */
export const CCR_DEFAULT_ALLOWED_CHARS = "-_:#";

/** Byte classes for `cleanseKey`, one table per allowed-characters setting. */
const Cleanse = { Copy: 0, Replace: 1, Dot: 2, End: 3, Tags: 4 } as const;

/**
 * The byte-class table `cleanseKey` runs on: bytes in `[A-Za-z0-9]` or in `allowedChars`
 * are copied, `.` is a separator, space and tab end the path, `;` starts the tags unless
 * it is an allowed character (carbon-c-relay then has no tag support), and every other
 * byte becomes `_`.
 */
export function ccrCleanseTable(allowedChars: string = CCR_DEFAULT_ALLOWED_CHARS): Uint8Array {
  const t = new Uint8Array(256).fill(Cleanse.Replace);
  for (let c = 0x30; c <= 0x39; c++) t[c] = Cleanse.Copy;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = Cleanse.Copy;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = Cleanse.Copy;
  const allowed = encoder.encode(allowedChars);
  for (const b of allowed) if (b !== 0) t[b] = Cleanse.Copy;
  if (!allowed.includes(SEMI)) t[SEMI] = Cleanse.Tags;
  t[DOT] = Cleanse.Dot;
  t[SPACE] = Cleanse.End;
  t[TAB] = Cleanse.End;
  t[0] = Cleanse.Replace;
  return t;
}

/**
 * The key carbon-c-relay's live relay hashes for a metric name (its
 * `dispatch_received_metrics` loop run over `name + " "`): bytes outside `[A-Za-z0-9]` and
 * the allowed characters become `_` (one per byte), runs of `.` collapse, leading dots go,
 * a trailing `.` goes, and with tag support (`;` not allowed) the key ends at the first
 * `;`. A trailing dot right before that `;` is kept, as in the C loop. `table` is
 * `ccrCleanseTable(allowedChars)`. Returns the length in `scratch` (always rewritten;
 * `scratch` must be at least `end - start` long).
 *
 * One difference is deliberate: for a name made only of dots, carbon-c-relay would skip the
 * separator too and take the *value* as the metric; polymur routes the empty key.
 */
export function cleanseKey(
  key: Uint8Array,
  start: number,
  end: number,
  scratch: Uint8Array,
  table: Uint8Array,
): number {
  let q = 0;
  for (let p = start; p < end; p++) {
    const c = key[p]!;
    const k = table[c]!;
    if (k === Cleanse.Copy) {
      scratch[q++] = c;
    } else if (k === Cleanse.Replace) {
      scratch[q++] = 0x5f; // _
    } else if (k === Cleanse.Dot) {
      // Don't start with a separator; collapse "..".
      if (q > 0 && scratch[q - 1] !== DOT) scratch[q++] = DOT;
    } else if (k === Cleanse.Tags) {
      return q; // tags are not part of the key
    } else if (q > 0) {
      break; // the first space ends the path (leading ones are skipped)
    }
  }
  if (q > 0 && scratch[q - 1] === DOT) q--; // strip the trailing separator before the space
  return q;
}
