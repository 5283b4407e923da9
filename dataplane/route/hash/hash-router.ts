import type { DestinationSpec } from "../../forward/destination-spec.ts";
import {
  fail,
  HASH_ALGOS,
  HASH_COMPATS,
  HASH_ROUTER_KINDS,
  type HashAlgo,
  type HashCompat,
  type HashKeyNormalize,
  type HashRouterKind,
  type HashRouterOptions,
  type Resolved,
  resolveOptions,
  validateMembers,
} from "./hash-config.ts";
import { ccrCleanseTable, cleanseKey, sortedTagsKey } from "./hash-key.ts";
import {
  carbonRows,
  ccrRows,
  fastRows,
  positionIndex,
  type Rows,
  signedBucketIndex,
} from "./hash-replicas.ts";
import {
  buildCarbonRing,
  buildCcrRing,
  buildFastHashOrder,
  buildJumpOrder,
  carbonAddNode,
  carbonRemoveNode,
  type HashRing,
  type RingAlgo,
} from "./hash-ring.ts";
import {
  fnv1a64Signed,
  fnv1aPos16,
  fnv1aPos16Signed,
  jumpBucket,
  jumpRemix,
  md5Pos16,
  murmur3x86_32,
  u64,
} from "./hashing.ts";
import { RouteCache } from "./route-cache.ts";

/**
 * Hash routing, bit-exact with graphite-carbon 1.1.7 (`compat: "carbon"`, the default) or
 * carbon-c-relay 3.7.3 (`compat: "carbon-c-relay"`). The behaviour of both, and where they
 * disagree, is in shared/specs/consistent-hashing.md; the choices polymur makes where a
 * reference misbehaves are listed on `createHashRouter`.
 *
 * Everything is computed when the router is built: a ring lookup reduces to "hash the
 * name, index a table, copy the precomputed replica list", so `route()` allocates nothing.
 */

export type { HashAlgo, HashCompat, HashKeyNormalize, HashRouterKind, HashRouterOptions };
export { HASH_ALGOS, HASH_COMPATS, HASH_ROUTER_KINDS };

export interface HashRouter {
  readonly members: readonly DestinationSpec[];
  readonly algo: HashAlgo;
  readonly compat: HashCompat;
  readonly replication: number;
  readonly diverseReplicas: boolean;
  readonly router: HashRouterKind;
  readonly normalize: HashKeyNormalize;
  /** The most indices `route()` can write: `out` must be at least this long. */
  readonly maxRoutes: number;
  /**
   * Member indices (into `members`, primary first) for the metric name held in
   * key[start, end) as UTF-8 bytes; writes them into `out` and returns how many.
   * Allocates nothing.
   */
  route(key: Uint8Array, start: number, end: number, out: Uint8Array): number;
  /** Convenience for tests/CLI. */
  routeName(name: string): number[];
}

const Lookup = {
  /** 16-bit position (md5, fnv1a) → ring index → precomputed row. */
  Pos16: 0,
  /** mmh3 signed position → binary search of the ring → precomputed row. */
  Mmh3Ring: 1,
  /** fast-hashing: hash mod n → precomputed row. */
  Fast: 2,
  /** jump_fnv1a_ch: computed per name. */
  Jump: 3,
  /** No members (every one removed by `withoutMember`). */
  Empty: 4,
} as const;
type Lookup = (typeof Lookup)[keyof typeof Lookup];

const Hash16 = { Md5: 0, Fnv: 1, FnvSigned: 2, Mmh3: 3 } as const;
type Hash16 = (typeof Hash16)[keyof typeof Hash16];

const Normalize = { None: 0, SortedTags: 1, Cleanse: 2 } as const;
type Normalize = (typeof Normalize)[keyof typeof Normalize];

/** The memo's hit rate is judged over this many probes; under 25%, it is skipped for CACHE_BYPASS names. */
const CACHE_WINDOW = 65536;
const CACHE_BYPASS = 1 << 20;

const utf8 = new TextEncoder();

class RingRouter implements HashRouter {
  readonly members: readonly DestinationSpec[];
  readonly algo: HashAlgo;
  readonly compat: HashCompat;
  readonly replication: number;
  readonly diverseReplicas: boolean;
  readonly router: HashRouterKind;
  readonly normalize: HashKeyNormalize;
  readonly maxRoutes: number;
  /** The options this router was created with, resolved (for withMember/withoutMember). */
  readonly resolved: Resolved;
  /** carbon consistent-hashing only: the ring, kept for carbon's add/remove semantics. */
  readonly carbonRing: HashRing | undefined;

  readonly #lookup: Lookup;
  readonly #hash16: Hash16;
  readonly #normalizeKind: Normalize;
  readonly #positions: Float64Array;
  readonly #posIndex: Uint16Array;
  readonly #rows: Uint8Array;
  readonly #counts: Uint8Array;
  readonly #width: number;
  readonly #jumpOrder: Uint8Array;
  readonly #jumpList: Uint8Array;
  readonly #cache: RouteCache | null;
  readonly #cleanseTable: Uint8Array;
  #scratch = new Uint8Array(256);
  #cacheProbes = 0;
  #cacheHits = 0;
  #cacheBypass = 0;
  readonly #routeOut: Uint8Array;

  constructor(members: readonly DestinationSpec[], o: Resolved, carbonRing?: HashRing) {
    this.members = Object.freeze([...members]);
    this.algo = o.algo;
    this.compat = o.compat;
    this.replication = o.replication;
    this.diverseReplicas = o.diverseReplicas;
    this.router = o.router;
    this.normalize = o.normalize;
    this.resolved = o;
    this.#normalizeKind =
      o.normalize === "sorted-tags"
        ? Normalize.SortedTags
        : o.normalize === "cleanse"
          ? Normalize.Cleanse
          : Normalize.None;
    this.#cleanseTable = ccrCleanseTable(o.cleanseAllowedChars);
    this.#hash16 =
      o.algo === "carbon_ch"
        ? Hash16.Md5
        : o.algo === "mmh3_ch"
          ? Hash16.Mmh3
          : o.compat === "carbon"
            ? Hash16.Fnv
            : Hash16.FnvSigned;

    let positions: Float64Array = new Float64Array(0);
    let posIndex: Uint16Array = new Uint16Array(0);
    let rows: Rows = { rows: new Uint8Array(0), counts: new Uint8Array(0), width: 0 };
    let jumpOrder = new Uint8Array(0);
    let lookup: Lookup;
    let ring: HashRing | undefined;

    if (members.length === 0) {
      lookup = Lookup.Empty;
      ring = carbonRing;
    } else if (o.router === "fast-hashing") {
      lookup = Lookup.Fast;
      rows = fastRows(
        buildFastHashOrder(members, o.algo as RingAlgo),
        members,
        o.replication,
        o.diverseReplicas,
      );
    } else if (o.algo === "jump_fnv1a_ch") {
      lookup = Lookup.Jump;
      jumpOrder = Uint8Array.from(buildJumpOrder(members));
      rows.width = o.replication;
    } else if (o.compat === "carbon") {
      ring = carbonRing ?? buildCarbonRing(members, o.algo as RingAlgo);
      rows = carbonRows(ring, members, o.replication, o.diverseReplicas);
      positions = ring.positions;
      if (o.algo === "mmh3_ch") {
        lookup = Lookup.Mmh3Ring;
        posIndex = signedBucketIndex(ring);
      } else {
        lookup = Lookup.Pos16;
        posIndex = positionIndex(ring);
      }
    } else {
      const ccrRing = buildCcrRing(members, o.algo as "carbon_ch" | "fnv1a_ch");
      const owners = new Set(ccrRing.owners).size;
      if (owners < o.replication) {
        const lost = members.filter((_, i) => !ccrRing.owners.includes(i)).map((m) => m.spec);
        fail(
          `replication ${o.replication} needs ${o.replication} distinct servers on the ring, but only ${owners} ` +
            `own a position (${lost.join(", ")} share every vnode key with another member, which wins ` +
            `them all); carbon-c-relay would hang on every metric`,
        );
      }
      rows = ccrRows(ccrRing, members.length, o.replication);
      positions = ccrRing.positions;
      lookup = Lookup.Pos16;
      posIndex = positionIndex(ccrRing);
    }
    this.carbonRing = ring;
    this.#lookup = lookup;
    this.#positions = positions;
    this.#posIndex = posIndex;
    this.#rows = rows.rows;
    this.#counts = rows.counts;
    this.#width = rows.width;
    this.maxRoutes = lookup === Lookup.Empty ? 0 : rows.width;
    this.#jumpOrder = jumpOrder;
    this.#jumpList = new Uint8Array(jumpOrder.length);
    this.#routeOut = new Uint8Array(Math.max(1, this.maxRoutes));
    this.#cache =
      o.cacheSize > 0 && lookup !== Lookup.Empty
        ? new RouteCache(this.maxRoutes, { slots: o.cacheSize })
        : null;
  }

  route(key: Uint8Array, start: number, end: number, out: Uint8Array): number {
    const cache = this.#cache;
    if (cache === null) return this.#compute(key, start, end, out);
    if (this.#cacheBypass > 0) {
      this.#cacheBypass--;
      return this.#compute(key, start, end, out);
    }
    let n = cache.get(key, start, end, out);
    if (n >= 0) {
      this.#cacheHits++;
    } else {
      n = this.#compute(key, start, end, out);
      cache.set(key, start, end, out, n);
    }
    if (++this.#cacheProbes === CACHE_WINDOW) {
      // A memo that misses most of the time only adds a probe to every name (a stream of
      // ever-new names, or a working set far beyond its size): skip it for a while.
      if (this.#cacheHits < CACHE_WINDOW / 4) this.#cacheBypass = CACHE_BYPASS;
      this.#cacheHits = 0;
      this.#cacheProbes = 0;
    }
    return n;
  }

  #compute(key: Uint8Array, start: number, end: number, out: Uint8Array): number {
    if (this.#normalizeKind !== Normalize.None) {
      const len = end - start;
      if (this.#scratch.length < len)
        this.#scratch = new Uint8Array(Math.max(len, this.#scratch.length * 2));
      const scratch = this.#scratch;
      const n =
        this.#normalizeKind === Normalize.SortedTags
          ? sortedTagsKey(key, start, end, scratch)
          : cleanseKey(key, start, end, scratch, this.#cleanseTable);
      if (n >= 0) {
        key = scratch;
        start = 0;
        end = n;
      }
    }
    let row: number;
    switch (this.#lookup) {
      case Lookup.Pos16:
        row = this.#posIndex[this.#hashPos16(key, start, end)]!;
        break;
      case Lookup.Mmh3Ring:
        row = this.#searchRing(murmur3x86_32(key, start, end));
        break;
      case Lookup.Fast: {
        const n = this.#counts.length;
        const h =
          this.#hash16 === Hash16.Mmh3
            ? murmur3x86_32(key, start, end)
            : this.#hashPos16(key, start, end);
        // Python's h % n (never negative). Only non-negative dividends: a negative one can
        // yield -0, which sends V8 to a floating-point modulo (~25 ns). ~h is -h - 1.
        row = h >= 0 ? h % n : n - 1 - (~h % n);
        break;
      }
      case Lookup.Jump:
        return this.#jump(key, start, end, out);
      default:
        return 0;
    }
    const n = this.#counts[row]!;
    const rows = this.#rows;
    const at = row * this.#width;
    for (let i = 0; i < n; i++) out[i] = rows[at + i]!;
    return n;
  }

  #hashPos16(key: Uint8Array, start: number, end: number): number {
    switch (this.#hash16) {
      case Hash16.Md5:
        return md5Pos16(key, start, end);
      case Hash16.Fnv:
        return fnv1aPos16(key, start, end);
      default:
        return fnv1aPos16Signed(key, start, end);
    }
  }

  /**
   * bisect_left on the ring: first position >= h, wrapping to index 0. `#posIndex` gives,
   * per top 16 bits of h, the first candidate, so this scans ~0-1 entries.
   */
  #searchRing(h: number): number {
    const positions = this.#positions;
    const L = positions.length;
    let i = this.#posIndex[((h ^ 0x80000000) >>> 16) & 0xffff]!;
    while (i < L && positions[i]! < h) i++;
    return i === L ? 0 : i;
  }

  /** carbon-c-relay `ch_get_nodes` for JUMP_FNV1a (spec §6.6). */
  #jump(key: Uint8Array, start: number, end: number, out: Uint8Array): number {
    const list = this.#jumpList;
    list.set(this.#jumpOrder);
    fnv1a64Signed(key, start, end);
    let hi = u64[0]!;
    let lo = u64[1]!;
    let i = list.length;
    const want = this.#width;
    let count = 0;
    for (;;) {
      const j = jumpBucket(hi, lo, i);
      out[count++] = list[j]!;
      if (count === want) return count;
      jumpRemix(hi, lo);
      hi = u64[0]!;
      lo = u64[1]!;
      list[j] = list[--i]!;
    }
  }

  routeName(name: string): number[] {
    const bytes = utf8.encode(name);
    const n = this.route(bytes, 0, bytes.length, this.#routeOut);
    return Array.from(this.#routeOut.subarray(0, n));
  }
}

/**
 * Builds a router over `members` (in configuration order: carbon DESTINATIONS order, or the
 * order of a carbon-c-relay cluster's members). Throws a PolymurError
 * (POLYMUR_ERR_HASH_CONFIG) naming the problem for a configuration the chosen reference
 * rejects, or on which it would misbehave:
 *
 * - both: no members; the same destination twice; a hash or router the reference lacks
 *   (jump_fnv1a_ch under carbon: carbon 1.1.7 would silently fall back to carbon_ch;
 *   mmh3_ch, fast-hashing or diverse replicas under carbon-c-relay).
 * - carbon: two members with the same host and instance (whatever their ports).
 * - carbon-c-relay: replication above the member count or 255; more than 64 members; the
 *   same address and port with different instances; and replication above the number of
 *   members that own any ring position (members whose vnode keys are all identical to an
 *   earlier-sorting member's own nothing, e.g. carbon_ch members on one host without
 *   instances): carbon-c-relay 3.7.3 loops forever on every metric there.
 *
 * Where the references are not bit-exact themselves, polymur documents its choice:
 * carbon's single-node duplicate (`[A, A]`) is returned once; carbon's ties in
 * fast-hashing's node sort keep configuration order; carbon-c-relay identity is compared
 * on the host text (IP literals canonicalised, names case-folded), as polymur resolves no
 * names while building a ring.
 */
export function createHashRouter(
  members: readonly DestinationSpec[],
  options: HashRouterOptions = {},
): HashRouter {
  const o = resolveOptions(options);
  validateMembers(members, o);
  return new RingRouter(members, o);
}

function asRouter(router: HashRouter): RingRouter {
  if (!(router instanceof RingRouter)) fail("not a router made by createHashRouter");
  return router;
}

/**
 * The router with one member taken out of the ring (a dead destination).
 *
 * - carbon compat, consistent-hashing: carbon's DYNAMIC_ROUTER `removeDestination`, i.e.
 *   `ConsistentHashRing.remove_node`: the member's vnodes go and every other vnode stays
 *   where it is, including positions bumped by collisions with the removed member. After
 *   a remove and re-add the ring can differ from the original, exactly as in carbon.
 * - fast-hashing: the node order is recomputed from the remaining members, as carbon does.
 * - carbon-c-relay compat: carbon-c-relay never takes members out of a ring at run time;
 *   the result is the ring of a configuration without that member (and it throws where
 *   carbon-c-relay would reject that configuration).
 *
 * Member indices of the result refer to its own `members` (the removed one spliced out).
 */
export function withoutMember(router: HashRouter, member: number | DestinationSpec): HashRouter {
  const r = asRouter(router);
  const index =
    typeof member === "number" ? member : r.members.findIndex((m) => m.id === member.id);
  if (index < 0 || index >= r.members.length)
    fail(
      `destination ${typeof member === "number" ? member : `"${member.spec}"`} is not in the ring`,
    );
  const members = r.members.filter((_, i) => i !== index);
  if (r.compat === "carbon" && r.router === "consistent-hashing") {
    const ring = carbonRemoveNode(r.carbonRing!, index);
    return new RingRouter(members, r.resolved, ring);
  }
  if (members.length === 0 && r.compat === "carbon") return new RingRouter(members, r.resolved);
  validateMembers(members, r.resolved);
  return new RingRouter(members, r.resolved);
}

/**
 * The router with a member added at the end (a destination that came back, or a new one).
 * Under carbon compat with consistent-hashing this is carbon's `addDestination`, whose new
 * vnodes are bumped past every position already taken; elsewhere the ring is rebuilt.
 */
export function withMember(router: HashRouter, member: DestinationSpec): HashRouter {
  const r = asRouter(router);
  const members = [...r.members, member];
  validateMembers(members, r.resolved);
  if (r.compat === "carbon" && r.router === "consistent-hashing") {
    const ring = carbonAddNode(r.carbonRing!, members.length - 1, member, r.algo as RingAlgo);
    return new RingRouter(members, r.resolved, ring);
  }
  return new RingRouter(members, r.resolved);
}
