import type { DestinationSpec } from "../../forward/destination-spec.ts";
import type { HashRing } from "./hash-ring.ts";

/**
 * Replica selection, precomputed: for every place a lookup can start (a ring index, or a
 * fast-hashing seed) the member indices it yields, primary first. A lookup at run time is
 * then one table read and a copy.
 */

/** Rows of precomputed routes: row r is rows[r*width, r*width + counts[r]). */
export interface Rows {
  rows: Uint8Array;
  counts: Uint8Array;
  width: number;
}

function distinctHosts(members: readonly DestinationSpec[]): number {
  return new Set(members.map((m) => m.host)).size;
}

/**
 * carbon `get_nodes` from ring index `start` followed by `getDestinations`'s replica
 * selection (spec §5.4-5.5). The single-node quirk (the node yielded twice) is not copied:
 * carbon's client manager sends to a set of destinations, so it sends once, and so does
 * polymur.
 */
export function carbonRows(
  ring: HashRing,
  members: readonly DestinationSpec[],
  replication: number,
  diverse: boolean,
): Rows {
  const L = ring.owners.length;
  const width = diverse
    ? Math.min(replication, distinctHosts(members))
    : Math.min(replication, members.length);
  const rows = new Uint8Array(L * width);
  const counts = new Uint8Array(L);
  const seen = new Uint8Array(members.length);
  const usedHost = new Set<string>();
  for (let start = 0; start < L; start++) {
    seen.fill(0);
    usedHost.clear();
    let count = 0;
    let nodesSeen = 0;
    const last = (start - 1 + L) % L;
    let idx = start;
    // get_nodes: stop when every node has been yielded or at last_index.
    while (nodesSeen < members.length && count < width) {
      const node = ring.owners[idx]!;
      if (seen[node] === 0) {
        seen[node] = 1;
        nodesSeen++;
        const host = members[node]!.host;
        if (!diverse || !usedHost.has(host)) {
          usedHost.add(host);
          rows[start * width + count++] = node;
        }
      }
      idx = (idx + 1) % L;
      if (idx === last && L > 1) break;
    }
    counts[start] = count;
  }
  return { rows, counts, width };
}

/** carbon-c-relay `ch_get_nodes` from ring index `start`: the next `replication` distinct members. */
export function ccrRows(ring: HashRing, memberCount: number, replication: number): Rows {
  const L = ring.owners.length;
  const width = replication;
  const rows = new Uint8Array(L * width);
  const counts = new Uint8Array(L).fill(width);
  const seen = new Uint8Array(memberCount);
  for (let start = 0; start < L; start++) {
    seen.fill(0);
    let count = 0;
    for (let idx = start; count < width; idx = (idx + 1) % L) {
      const node = ring.owners[idx]!;
      if (seen[node] === 0) {
        seen[node] = 1;
        rows[start * width + count++] = node;
      }
    }
  }
  return { rows, counts, width };
}

/** carbon `FastHashRing.get_nodes` from `sorted_nodes[seed]`, then the replica selection. */
export function fastRows(
  order: Uint16Array,
  members: readonly DestinationSpec[],
  replication: number,
  diverse: boolean,
): Rows {
  const n = order.length;
  const width = diverse ? Math.min(replication, distinctHosts(members)) : Math.min(replication, n);
  const rows = new Uint8Array(n * width);
  const counts = new Uint8Array(n);
  const usedHost = new Set<string>();
  for (let seed = 0; seed < n; seed++) {
    usedHost.clear();
    let count = 0;
    for (let k = 0; k < n && count < width; k++) {
      const node = order[(seed + k) % n]!;
      const host = members[node]!.host;
      if (diverse && usedHost.has(host)) continue;
      usedHost.add(host);
      rows[seed * width + count++] = node;
    }
    counts[seed] = count;
  }
  return { rows, counts, width };
}

/** For 16-bit hashes: ring index of the first position >= h, wrapping to 0. */
export function positionIndex(ring: HashRing): Uint16Array {
  const index = new Uint16Array(65536);
  const L = ring.positions.length;
  let i = 0;
  for (let h = 0; h < 65536; h++) {
    while (i < L && ring.positions[i]! < h) i++;
    index[h] = i < L ? i : 0;
  }
  return index;
}

/**
 * For signed 32-bit hashes (mmh3): per bucket of 2^16 hash values (by the top 16 bits of
 * h + 2^31), the index of the first ring position >= the bucket's lowest hash.
 */
export function signedBucketIndex(ring: HashRing): Uint16Array {
  const index = new Uint16Array(65536);
  const L = ring.positions.length;
  let i = 0;
  for (let b = 0; b < 65536; b++) {
    const low = b * 65536 - 0x80000000;
    while (i < L && ring.positions[i]! < low) i++;
    index[b] = i;
  }
  return index;
}
