import { isIP } from "node:net";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import type { DestinationSpec } from "../../forward/destination-spec.ts";

/**
 * Hash-routing configuration: defaults, and the configurations each reference rejects
 * (or would misbehave on), refused with a PolymurError (POLYMUR_ERR_HASH_CONFIG) that
 * names the problem. The ring-dependent check (carbon-c-relay's endless loop) is in
 * hash-router.ts, where the ring is built.
 */

export type HashAlgo = "carbon_ch" | "fnv1a_ch" | "mmh3_ch" | "jump_fnv1a_ch";
export type HashCompat = "carbon" | "carbon-c-relay";
export type HashRouterKind = "consistent-hashing" | "fast-hashing";
export type HashKeyNormalize = "none" | "sorted-tags" | "cleanse";

export interface HashRouterOptions {
  /**
   * Hash algorithm. Default `carbon_ch`, or `mmh3_ch` for `router: "fast-hashing"`
   * (carbon's ROUTER_HASH_TYPE defaults). `mmh3_ch` exists only in carbon and
   * `jump_fnv1a_ch` only in carbon-c-relay; each is rejected under the other compat.
   */
  algo?: HashAlgo;
  /** Which reference to be bit-exact with. Default `carbon`. */
  compat?: HashCompat;
  /**
   * Destinations per metric (carbon REPLICATION_FACTOR, carbon-c-relay `replication`).
   * Default 1. carbon allows more than there are members (all members are returned);
   * carbon-c-relay rejects that, and so does polymur under its compat.
   */
  replication?: number;
  /**
   * carbon's DIVERSE_REPLICAS: replicas on distinct hosts. Default true under carbon
   * compat (carbon's conf.py default); carbon-c-relay has no such option, so it must be
   * false (the default) there.
   */
  diverseReplicas?: boolean;
  /**
   * carbon RELAY_METHOD: `consistent-hashing` (ConsistentHashingRouter, the default) or
   * `fast-hashing` (FastHashingRouter, carbon only).
   */
  router?: HashRouterKind;
  /**
   * Rewrite the key before hashing. Default `none` (both references' default: the name as
   * received). `sorted-tags` is carbon's TAG_RELAY_NORMALIZED; `cleanse` is what
   * carbon-c-relay's live relay hashes (cleansed path, tags cut off).
   */
  normalize?: HashKeyNormalize;
  /**
   * Names memoised by `route()` (bounded, 2-way set-associative, every hit confirmed by a
   * byte compare; about 132 bytes a name); 0 disables. Default 65536 for jump_fnv1a_ch
   * (64-bit FNV and the jump chain cost ~300 ns a name, a hit about half that), else 0:
   * a probe costs a cache miss or two (~100-150 ns), which is what carbon_ch's MD5
   * (~170 ns) costs and more than fnv1a_ch or mmh3_ch (~50 ns). While fewer than a quarter
   * of probes hit, the memo is skipped for the next million names.
   */
  cacheSize?: number;
  /** carbon-c-relay's allowed characters for `normalize: "cleanse"` (its `-c`). Default `-_:#`. */
  cleanseAllowedChars?: string;
}

export const HASH_ALGOS: readonly HashAlgo[] = [
  "carbon_ch",
  "fnv1a_ch",
  "mmh3_ch",
  "jump_fnv1a_ch",
];
export const HASH_COMPATS: readonly HashCompat[] = ["carbon", "carbon-c-relay"];
export const HASH_ROUTER_KINDS: readonly HashRouterKind[] = ["consistent-hashing", "fast-hashing"];

/** carbon-c-relay's CONN_DESTS_SIZE: the most members a cluster may have. */
const CCR_MAX_MEMBERS = 64;
/** `out` is a Uint8Array of member indices. */
const MAX_MEMBERS = 256;

export function fail(message: string): never {
  throw new PolymurError(ErrorCode.HashConfig, message);
}

/** Options with every default filled in. */
export interface Resolved {
  algo: HashAlgo;
  compat: HashCompat;
  replication: number;
  diverseReplicas: boolean;
  router: HashRouterKind;
  normalize: HashKeyNormalize;
  cacheSize: number;
  cleanseAllowedChars: string;
}

export function resolveOptions(options: HashRouterOptions): Resolved {
  const compat = options.compat ?? "carbon";
  if (!HASH_COMPATS.includes(compat))
    fail(`unknown compat "${compat}" (expected carbon or carbon-c-relay)`);
  const router = options.router ?? "consistent-hashing";
  if (!HASH_ROUTER_KINDS.includes(router)) {
    fail(`unknown router "${router}" (expected consistent-hashing or fast-hashing)`);
  }
  const algo = options.algo ?? (router === "fast-hashing" ? "mmh3_ch" : "carbon_ch");
  if (!HASH_ALGOS.includes(algo))
    fail(`unknown hash algorithm "${algo}" (expected ${HASH_ALGOS.join(", ")})`);
  const replication = options.replication ?? 1;
  if (!Number.isInteger(replication) || replication < 1) {
    fail(`replication must be a whole number >= 1, got ${replication}`);
  }
  if (compat === "carbon") {
    if (algo === "jump_fnv1a_ch") {
      // carbon 1.1.7 has no jump hash: its carbonHash() silently falls back to MD5 for an
      // unknown ROUTER_HASH_TYPE. Refuse instead of guessing which one was meant.
      fail(
        "jump_fnv1a_ch is carbon-c-relay's algorithm: use compat carbon-c-relay " +
          "(carbon 1.1.7 would silently treat it as carbon_ch)",
      );
    }
  } else {
    if (algo === "mmh3_ch") fail("mmh3_ch exists only in carbon: carbon-c-relay has no such hash");
    if (router === "fast-hashing")
      fail("fast-hashing is a carbon router: carbon-c-relay has no such router");
    if (options.diverseReplicas === true) {
      fail(
        "diverse replicas is a carbon option (DIVERSE_REPLICAS): carbon-c-relay has no such option",
      );
    }
    if (replication > 255) fail(`replication count must be between 1 and 255, got ${replication}`);
  }
  const normalize = options.normalize ?? "none";
  if (normalize !== "none" && normalize !== "sorted-tags" && normalize !== "cleanse") {
    fail(`unknown key normalisation "${normalize}" (expected none, sorted-tags or cleanse)`);
  }
  const cacheSize = options.cacheSize ?? (algo === "jump_fnv1a_ch" ? 65536 : 0);
  if (!Number.isInteger(cacheSize) || cacheSize < 0)
    fail(`cacheSize must be a whole number >= 0, got ${cacheSize}`);
  return {
    algo,
    compat,
    replication,
    diverseReplicas: options.diverseReplicas ?? compat === "carbon",
    router,
    normalize,
    cacheSize,
    cleanseAllowedChars: options.cleanseAllowedChars ?? "-_:#",
  };
}

/** The address carbon-c-relay would compare for identity, as well as polymur can without DNS. */
function ccrHostIdentity(host: string): string {
  if (isIP(host) === 6) return new URL(`http://[${host}]/`).hostname;
  return isIP(host) === 4 ? host : host.toLowerCase();
}

/** Throws where the chosen reference rejects `members`. */
export function validateMembers(members: readonly DestinationSpec[], o: Resolved): void {
  if (members.length === 0) fail("no destinations to hash over");
  if (members.length > MAX_MEMBERS)
    fail(`too many destinations (${members.length}); at most ${MAX_MEMBERS}`);
  const ids = new Set<string>();
  for (const m of members) {
    if (ids.has(m.id)) fail(`destination "${m.spec}" is listed twice`);
    ids.add(m.id);
  }
  if (o.compat === "carbon") {
    // ConsistentHashingRouter.addDestination: a node is (server, instance); port is ignored.
    const nodes = new Map<string, DestinationSpec>();
    for (const m of members) {
      const node = `${m.host}\u0000${m.instance === undefined ? "\u0001" : m.instance}`;
      const prev = nodes.get(node);
      if (prev !== undefined) {
        fail(
          `destination instance (${m.host}, ${m.instance ?? "None"}) already configured: ` +
            `"${prev.spec}" and "${m.spec}" are the same carbon node (host and instance; the port is not part of it)`,
        );
      }
      nodes.set(node, m);
    }
    return;
  }
  if (members.length > CCR_MAX_MEMBERS) {
    fail(
      `too many destinations (${members.length}): carbon-c-relay allows at most ${CCR_MAX_MEMBERS} (CONN_DESTS_SIZE)`,
    );
  }
  if (o.replication > members.length) {
    fail(
      `replication count (${o.replication}) is larger than the number of servers (${members.length}), ` +
        "which carbon-c-relay rejects",
    );
  }
  // server_cmp: same address and port = same server, which must keep one instance.
  const servers = new Map<string, DestinationSpec>();
  for (const m of members) {
    const key = `${ccrHostIdentity(m.host)}\u0000${m.port}`;
    const prev = servers.get(key);
    if (prev === undefined) {
      servers.set(key, m);
      continue;
    }
    if (prev.instance === undefined && m.instance !== undefined) {
      fail(
        `cannot set instance '${m.instance}' for server ${m.host}:${m.port}: server was previously defined without instance`,
      );
    }
    if (prev.instance !== undefined && m.instance === undefined) {
      fail(
        `cannot define server ${m.host}:${m.port} without instance: server was previously defined with instance '${prev.instance}'`,
      );
    }
    if (prev.instance !== m.instance) {
      fail(
        `cannot set instance '${m.instance}' for server ${m.host}:${m.port}: ` +
          `server was previously defined with instance '${prev.instance}'`,
      );
    }
    fail(`destination "${m.spec}" is listed twice (same server as "${prev.spec}")`);
  }
}
