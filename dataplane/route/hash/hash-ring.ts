import type { DestinationSpec } from "../../forward/destination-spec.ts";
import { fnv1aPos16, fnv1aPos16Signed, md5Pos16, murmur3x86_32 } from "./hashing.ts";

/**
 * Ring construction, exactly as each reference builds it (shared/specs/consistent-hashing.md
 * §5.2-5.3, §5.7 for graphite-carbon 1.1.7 and §6.2-6.4, §6.6 for carbon-c-relay 3.7.3).
 * Everything here runs at configuration time; the per-line path is in hash-router.ts.
 */

/** The ring-based algorithms (jump_fnv1a_ch has no ring, only a bucket order). */
export type RingAlgo = "carbon_ch" | "fnv1a_ch" | "mmh3_ch";

/** A built ring: parallel arrays sorted by position. */
export interface HashRing {
  /**
   * Ring positions, ascending. carbon: unique, and may exceed 65535 (md5, fnv1a) or
   * 2^31-1 (mmh3) after collision bumps, hence Float64. carbon-c-relay: 0..65535, and
   * may repeat.
   */
  readonly positions: Float64Array;
  /** The member index (into the member list the ring was built from) owning each position. */
  readonly owners: Uint16Array;
}

/** Vnodes per member in both references (`replica_count = 100`, `HASH_REPLICAS 100`). */
export const VNODES_PER_MEMBER = 100;

const utf8 = new TextEncoder();

function hashKeyBytes(bytes: Uint8Array, algo: RingAlgo): number {
  switch (algo) {
    case "carbon_ch":
      return md5Pos16(bytes, 0, bytes.length);
    case "fnv1a_ch":
      return fnv1aPos16(bytes, 0, bytes.length);
    case "mmh3_ch":
      return murmur3x86_32(bytes, 0, bytes.length);
  }
}

/** `carbon.hashing.carbonHash(key, hash_type)` for a Python str. */
export function carbonHash(key: string, algo: RingAlgo): number {
  return hashKeyBytes(utf8.encode(key), algo);
}

// Python's str.isprintable(): false for categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs (but " ").
const nonPrintable = /[\p{C}\p{Z}]/u;

/**
 * Python 3 `repr()` of a str: single quotes unless the text holds `'` and no `"`,
 * backslash escapes for the quote, `\\`, `\t`, `\n`, `\r`, and `\xNN`/`\uNNNN`/`\UNNNNNNNN`
 * for non-printable characters. (Printability follows the Unicode tables of the running
 * Node, which can differ from Python 3.11's for characters assigned after Unicode 14.)
 */
export function pythonRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp < 0x7f || ch === " ") out += ch;
    else if (!nonPrintable.test(ch)) out += ch;
    else if (cp <= 0xff) out += "\\x" + cp.toString(16).padStart(2, "0");
    else if (cp <= 0xffff) out += "\\u" + cp.toString(16).padStart(4, "0");
    else out += "\\U" + cp.toString(16).padStart(8, "0");
  }
  return out + quote;
}

/** carbon's node tuple `(server, instance)` as `str()` prints it. */
export function carbonNodeString(member: DestinationSpec): string {
  const inst = member.instance === undefined ? "None" : pythonRepr(member.instance);
  return `(${pythonRepr(member.host)}, ${inst})`;
}

/** carbon's vnode key for replica i (`ConsistentHashRing.add_node`). */
export function carbonVnodeKey(member: DestinationSpec, i: number, algo: RingAlgo): string {
  // fnv1a_ch uses only the instance, and "%s" of None is "None" (spec §5.2).
  if (algo === "fnv1a_ch") return `${i}-${member.instance ?? "None"}`;
  return `${carbonNodeString(member)}:${i}`;
}

/**
 * carbon `ConsistentHashRing.add_node`: adds the member's 100 vnodes one by one, each
 * moved to the next free integer while its position is taken (no modulo), so the
 * earlier-added node keeps a contested position. Returns a new ring.
 */
export function carbonAddNode(
  ring: HashRing,
  memberIndex: number,
  member: DestinationSpec,
  algo: RingAlgo,
): HashRing {
  const taken = new Set<number>(ring.positions);
  const added: number[] = [];
  for (let i = 0; i < VNODES_PER_MEMBER; i++) {
    let pos = carbonHash(carbonVnodeKey(member, i, algo), algo);
    while (taken.has(pos)) pos += 1;
    taken.add(pos);
    added.push(pos);
  }
  added.sort((a, b) => a - b);
  // Merge the (unique) new positions into the sorted ring.
  const n = ring.positions.length;
  const positions = new Float64Array(n + added.length);
  const owners = new Uint16Array(n + added.length);
  let i = 0;
  let j = 0;
  for (let k = 0; k < positions.length; k++) {
    if (j >= added.length || (i < n && ring.positions[i]! < added[j]!)) {
      positions[k] = ring.positions[i]!;
      owners[k] = ring.owners[i]!;
      i++;
    } else {
      positions[k] = added[j]!;
      owners[k] = memberIndex;
      j++;
    }
  }
  return { positions, owners };
}

/**
 * carbon `ConsistentHashRing.remove_node`: drops the member's entries and keeps every
 * other entry where it is, bumped positions included. Owners above `memberIndex` are
 * renumbered down by one, matching a member list with that member spliced out.
 */
export function carbonRemoveNode(ring: HashRing, memberIndex: number): HashRing {
  let keep = 0;
  for (const o of ring.owners) if (o !== memberIndex) keep++;
  const positions = new Float64Array(keep);
  const owners = new Uint16Array(keep);
  let k = 0;
  for (let i = 0; i < ring.owners.length; i++) {
    const o = ring.owners[i]!;
    if (o === memberIndex) continue;
    positions[k] = ring.positions[i]!;
    owners[k] = o > memberIndex ? o - 1 : o;
    k++;
  }
  return { positions, owners };
}

export const EMPTY_RING: HashRing = { positions: new Float64Array(0), owners: new Uint16Array(0) };

/** carbon's ring for members added in order (what DESTINATIONS gives at startup). */
export function buildCarbonRing(members: readonly DestinationSpec[], algo: RingAlgo): HashRing {
  let ring = EMPTY_RING;
  for (let m = 0; m < members.length; m++) ring = carbonAddNode(ring, m, members[m]!, algo);
  return ring;
}

/**
 * carbon `FastHashRing.sorted_nodes`: member indices sorted by `carbonHash(str(node))`
 * (one entry per node, no `:i` suffix; fnv1a_ch hashes the whole tuple string too).
 * carbon breaks ties by `set` iteration order, which is not stable across processes;
 * polymur keeps configuration order for ties.
 */
export function buildFastHashOrder(
  members: readonly DestinationSpec[],
  algo: RingAlgo,
): Uint16Array {
  const keyed = members.map((m, i) => ({ i, h: carbonHash(carbonNodeString(m), algo) }));
  keyed.sort((a, b) => a.h - b.h || a.i - b.i);
  return Uint16Array.from(keyed, (k) => k.i);
}

// ---------------------------------------------------------------------------------------
// carbon-c-relay 3.7.3

/** `char buf[256]` + snprintf: vnode keys longer than 255 bytes are cut (spec §6.1). */
const CCR_KEY_MAX = 255;

/** carbon-c-relay's vnode key bytes for replica i (`ch_addnode`). */
export function ccrVnodeKey(member: DestinationSpec, i: number, algo: "carbon_ch" | "fnv1a_ch") {
  let key: string;
  if (algo === "carbon_ch") {
    const inst = member.instance === undefined ? "None" : `'${member.instance}'`;
    key = `('${member.host}', ${inst}):${i}`;
  } else {
    key =
      member.instance === undefined
        ? `${i}-${member.host}:${member.port}`
        : `${i}-${member.instance}`;
  }
  const bytes = utf8.encode(key);
  return bytes.length > CCR_KEY_MAX ? bytes.subarray(0, CCR_KEY_MAX) : bytes;
}

/** C `strcmp` on the UTF-8 bytes (glibc compares as unsigned char). */
export function strcmpBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * glibc 2.36 `qsort` for these sizes: the top-down merge sort `msort_with_tmp` (n1 = n/2,
 * take from the left run while cmp <= 0). Reproducing the algorithm, not just
 * stability, makes even a non-transitive comparator (jump's mixed numeric and
 * non-numeric instances, spec §6.6) give carbon-c-relay's order.
 */
export function glibcMergeSort<T>(items: T[], cmp: (a: T, b: T) => number): T[] {
  const tmp: T[] = new Array<T>(items.length);
  const sort = (lo: number, n: number): void => {
    if (n <= 1) return;
    const n1 = n >>> 1;
    const n2 = n - n1;
    sort(lo, n1);
    sort(lo + n1, n2);
    let i = lo;
    let j = lo + n1;
    const iEnd = lo + n1;
    const jEnd = lo + n;
    let k = 0;
    while (i < iEnd && j < jEnd) {
      if (cmp(items[i]!, items[j]!) <= 0) tmp[k++] = items[i++]!;
      else tmp[k++] = items[j++]!;
    }
    while (i < iEnd) tmp[k++] = items[i++]!;
    // Whatever remains of the right run is already in place.
    for (let t = 0; t < k; t++) items[lo + t] = tmp[t]!;
  };
  sort(0, items.length);
  return items;
}

interface CcrEntry {
  pos: number;
  owner: number;
}

/**
 * carbon-c-relay's ring (`ch_addnode` for every member, then one `qsort` and the
 * shared-position cascade): entries are sorted by position, then by host bytes, then
 * instance (carbon_ch; no instance sorts last) or port (fnv1a_ch). Every entry at a
 * shared position then belongs to the member that sorts first there. Nothing is bumped,
 * so the ring does not depend on configuration order.
 */
export function buildCcrRing(
  members: readonly DestinationSpec[],
  algo: "carbon_ch" | "fnv1a_ch",
): HashRing {
  const hostBytes = members.map((m) => utf8.encode(m.host));
  const instBytes = members.map((m) =>
    m.instance === undefined ? undefined : utf8.encode(m.instance),
  );
  const entries: CcrEntry[] = [];
  for (let m = 0; m < members.length; m++) {
    for (let i = 0; i < VNODES_PER_MEMBER; i++) {
      const key = ccrVnodeKey(members[m]!, i, algo);
      const pos =
        algo === "carbon_ch" ? md5Pos16(key, 0, key.length) : fnv1aPos16Signed(key, 0, key.length);
      entries.push({ pos, owner: m });
    }
  }
  const cmp =
    algo === "carbon_ch"
      ? (l: CcrEntry, r: CcrEntry): number => {
          if (l.pos !== r.pos) return l.pos - r.pos;
          const d = strcmpBytes(hostBytes[l.owner]!, hostBytes[r.owner]!);
          if (d !== 0) return d;
          const il = instBytes[l.owner];
          const ir = instBytes[r.owner];
          if (il === undefined && ir === undefined) return 0;
          if (il === undefined) return 1;
          if (ir === undefined) return -1;
          return strcmpBytes(il, ir);
        }
      : (l: CcrEntry, r: CcrEntry): number => {
          if (l.pos !== r.pos) return l.pos - r.pos;
          const d = strcmpBytes(hostBytes[l.owner]!, hostBytes[r.owner]!);
          if (d !== 0) return d;
          return members[l.owner]!.port - members[r.owner]!.port;
        };
  glibcMergeSort(entries, cmp);
  for (let i = 0; i + 1 < entries.length; i++) {
    if (entries[i]!.pos === entries[i + 1]!.pos) entries[i + 1]!.owner = entries[i]!.owner;
  }
  return {
    positions: Float64Array.from(entries, (e) => e.pos),
    owners: Uint16Array.from(entries, (e) => e.owner),
  };
}

/**
 * C `strtol(s, &end, 10)` followed by `*end == '\0'`: the value when the whole string
 * parses as a base-10 long (leading whitespace and a sign allowed; an empty string
 * parses as 0), else undefined. Saturates at LONG_MIN/LONG_MAX like glibc.
 */
export function strtolWhole(s: string): bigint | undefined {
  const m = /^[\t\n\v\f\r ]*([+-]?)([0-9]*)$/.exec(s);
  if (m === null) return undefined;
  const digits = m[2]!;
  if (digits === "") return s === "" ? 0n : undefined;
  let v = BigInt(digits);
  if (m[1] === "-") v = -v;
  const max = (1n << 63n) - 1n;
  if (v > max) return max;
  if (v < -max - 1n) return -max - 1n;
  return v;
}

/**
 * carbon-c-relay's jump bucket order (`entrycmp_jump_fnv1a`): members with an instance
 * first, compared numerically when both instances parse entirely as base-10 numbers
 * (`(int)(val_l - val_r)`), else by strcmp; members without an instance follow in
 * configuration order. Host and port play no part.
 */
export function buildJumpOrder(members: readonly DestinationSpec[]): Uint16Array {
  const inst = members.map((m) => (m.instance === undefined ? undefined : utf8.encode(m.instance)));
  const nums = members.map((m) => (m.instance === undefined ? undefined : strtolWhole(m.instance)));
  const order = members.map((_, i) => i);
  glibcMergeSort(order, (l, r) => {
    const il = inst[l];
    const ir = inst[r];
    if (il === undefined && ir === undefined) return l - r;
    if (il === undefined) return 1;
    if (ir === undefined) return -1;
    const vl = nums[l];
    if (vl !== undefined) {
      const vr = nums[r];
      if (vr !== undefined) return Number(BigInt.asIntN(32, BigInt.asIntN(64, vl - vr)));
    }
    return strcmpBytes(il, ir);
  });
  return Uint16Array.from(order);
}
