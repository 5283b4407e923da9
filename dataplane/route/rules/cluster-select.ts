import { isIP } from "node:net";
import { PolymurError } from "../../../common/errors.ts";
import { type DestinationSpec, parseDestination } from "../../forward/destination-spec.ts";
import { createHashRouter, type HashRouter } from "../hash/hash-router.ts";
import { type Cluster, type ClusterMember, type RulesConfig, RulesError } from "./rules-config.ts";

/**
 * Which members of a relay.conf cluster get a line, per cluster type, as
 * carbon-c-relay 3.7.3's `router_route_intern` decides:
 *
 * - `forward`, `file`, `file ip`: every member.
 * - `any_of`: one member, `fnv1a_32(name) % members` (the relay's 32-bit FNV-1a
 *   over sign-extended bytes). When that member is down the relay hands its
 *   queue to the others; polymur sends the line to the up member
 *   `hash % up` (members in order), so each name still sticks to one member.
 * - `failover`: the first member that is up (all down: the first).
 * - `carbon_ch`, `fnv1a_ch`, `jump_fnv1a_ch`: the ring's `replication` members
 *   (hash-router.ts, bit-exact with the relay), hashing the `route using` key
 *   when the match has one. Down members keep their lines, as in the relay;
 *   with `dynamic` a down member's lines go to the next up member in the
 *   ring's order for that name.
 *
 * A network member is one server across all clusters (`ip:port`, per
 * protocol), as the relay's `router_add_server`; buildTargets() numbers them.
 * How a member is reached (`tls://` for `transport plain ssl`, `pickle://`,
 * `pickle+tls://`) is its destination spec's, and is no part of either key:
 * a ring keys members by host, port and instance, so one over `tls://`
 * members hashes exactly as over the same members in plaintext, as the
 * relay's ring over `ssl` members does.
 */

/** What a selector reports to: the RulesVisitor's send and up. */
export interface MemberSink {
  send(cluster: string, target: number, metric: string): void;
  up(target: number): boolean;
}

/** A place lines go to: a network member (one per server), or a file. */
export type RulesTarget =
  | { readonly kind: "tcp" | "udp"; readonly spec: DestinationSpec }
  | { readonly kind: "file"; readonly path: string; readonly ip: boolean };

/** A latin1 name as bytes (one per char) for the hash rings, encoded once per distinct string. */
export class HashKey {
  #text = "";
  #encoded: string | null = null;
  #bytes = new Uint8Array(1024);

  /** The key is now `text`; nothing is encoded until bytes() is asked for. */
  set(text: string): void {
    this.#text = text;
  }

  get length(): number {
    return this.#text.length;
  }

  /** The key's bytes in [0, length). The buffer is reused: do not keep it. */
  bytes(): Uint8Array {
    const text = this.#text;
    if (this.#encoded !== text) {
      const n = text.length;
      if (this.#bytes.length < n) this.#bytes = new Uint8Array(Math.max(n, this.#bytes.length * 2));
      const b = this.#bytes;
      for (let i = 0; i < n; i++) b[i] = text.charCodeAt(i);
      this.#encoded = text;
    }
    return this.#bytes;
  }
}

/** A cluster compiled: picks its members for a name. */
export interface ClusterSelector {
  readonly name: string;
  readonly cluster: Cluster;
  /** Program target per member, in member order. */
  readonly targets: Int32Array;
  /**
   * Sends `metric` to the chosen members. `key` is what hash clusters hash:
   * the name, or the `route using` result.
   */
  select(metric: string, key: HashKey, sink: MemberSink): void;
}

/** What every selector holds. */
abstract class Members implements ClusterSelector {
  readonly name: string;
  readonly cluster: Cluster;
  readonly targets: Int32Array;

  constructor(cluster: Cluster, targets: Int32Array) {
    this.name = cluster.name;
    this.cluster = cluster;
    this.targets = targets;
  }

  abstract select(metric: string, key: HashKey, sink: MemberSink): void;
}

class AllMembers extends Members {
  select(metric: string, _key: HashKey, sink: MemberSink): void {
    const t = this.targets;
    for (let i = 0; i < t.length; i++) sink.send(this.name, t[i]!, metric);
  }
}

/** carbon-c-relay's `fnv1a_32` over a latin1 name: bytes >= 0x80 sign-extended. Unsigned. */
export function anyOfHash(name: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ ((name.charCodeAt(i) << 24) >> 24), 0x01000193);
  }
  return h >>> 0;
}

class AnyOf extends Members {
  select(metric: string, _key: HashKey, sink: MemberSink): void {
    const t = this.targets;
    const h = anyOfHash(metric);
    const first = t[h % t.length]!;
    if (sink.up(first)) {
      sink.send(this.name, first, metric);
      return;
    }
    let up = 0;
    for (let i = 0; i < t.length; i++) if (sink.up(t[i]!)) up++;
    if (up === 0) {
      sink.send(this.name, first, metric);
      return;
    }
    let k = h % up;
    for (let i = 0; i < t.length; i++) {
      if (sink.up(t[i]!) && k-- === 0) {
        sink.send(this.name, t[i]!, metric);
        return;
      }
    }
  }
}

class Failover extends Members {
  select(metric: string, _key: HashKey, sink: MemberSink): void {
    const t = this.targets;
    for (let i = 0; i < t.length; i++) {
      if (sink.up(t[i]!)) {
        sink.send(this.name, t[i]!, metric);
        return;
      }
    }
    sink.send(this.name, t[0]!, metric);
  }
}

class Ring extends Members {
  readonly #router: HashRouter;
  readonly #out: Uint8Array;
  /** dynamic: how many members a name gets (the router gives the ring's whole order). */
  readonly #want: number;
  readonly #dynamic: boolean;

  constructor(cluster: Cluster, targets: Int32Array, router: HashRouter) {
    super(cluster, targets);
    this.#router = router;
    this.#out = new Uint8Array(Math.max(1, router.maxRoutes));
    this.#want = cluster.replication;
    this.#dynamic = cluster.dynamic;
  }

  select(metric: string, key: HashKey, sink: MemberSink): void {
    const out = this.#out;
    const n = this.#router.route(key.bytes(), 0, key.length, out);
    const t = this.targets;
    if (!this.#dynamic) {
      for (let i = 0; i < n; i++) sink.send(this.name, t[out[i]!]!, metric);
      return;
    }
    const want = this.#want;
    let sent = 0;
    for (let i = 0; i < n && sent < want; i++) {
      const target = t[out[i]!]!;
      if (sink.up(target)) {
        sink.send(this.name, target, metric);
        sent++;
      }
    }
    // Too few up: the rest stay with the (down) members the ring names first.
    for (let i = 0; i < n && sent < want; i++) {
      const target = t[out[i]!]!;
      if (!sink.up(target)) {
        sink.send(this.name, target, metric);
        sent++;
      }
    }
  }
}

/**
 * A ring over `members` for cluster `cl`. For `dynamic`, the router lists the
 * whole ring order for a name (as many distinct members as own ring positions),
 * whose first `replication` are the ordinary choice.
 */
function ringRouter(cl: Cluster, members: readonly DestinationSpec[]): HashRouter {
  const algo = cl.type as "carbon_ch" | "fnv1a_ch" | "jump_fnv1a_ch";
  const make = (replication: number): HashRouter =>
    createHashRouter(members, { algo, compat: "carbon-c-relay", replication });
  try {
    const router = make(cl.replication);
    if (!cl.dynamic) return router;
    // Members that own no ring position make a larger replication unreachable: take the largest that works.
    for (let r = members.length; r > cl.replication; r--) {
      try {
        return make(r);
      } catch {
        // fewer distinct owners than r
      }
    }
    return router;
  } catch (err) {
    if (err instanceof PolymurError)
      throw new RulesError(cl.pos, `cluster ${cl.name}: ${err.message}`);
    throw err;
  }
}

/** The address carbon-c-relay compares (as well as polymur can without resolving names). */
function hostIdentity(host: string): string {
  if (isIP(host) === 6) return new URL(`http://[${host}]/`).hostname;
  return isIP(host) === 4 ? host : host.toLowerCase();
}

function display(m: ClusterMember): string {
  return m.host.includes(":") ? `[${m.host}]:${m.port}` : `${m.host}:${m.port}`;
}

/** The scheme a member spec is written after, lower case (`""`: plaintext over TCP). */
function scheme(spec: string): string {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(spec)?.[0].toLowerCase() ?? "";
}

/** carbon-c-relay's checks when one server appears in several places (router_add_server). */
function checkShared(first: ClusterMember, m: ClusterMember, cl: Cluster): void {
  const where = display(m);
  if (first.instance === undefined && m.instance !== undefined) {
    throw new RulesError(
      m.pos,
      `cannot set instance '${m.instance}' for server ${where}: server was previously defined without instance`,
    );
  }
  if (first.instance !== undefined && m.instance === undefined) {
    throw new RulesError(
      m.pos,
      `cannot define server ${where} without instance: server was previously defined with instance '${first.instance}'`,
    );
  }
  if (first.instance !== m.instance) {
    throw new RulesError(
      m.pos,
      `cannot set instance '${m.instance}' for server ${where}: server was previously defined with instance '${first.instance}'`,
    );
  }
  // The relay keeps the first definition's transport, silently; polymur asks for one.
  if (scheme(first.spec) !== scheme(m.spec)) {
    throw new RulesError(
      m.pos,
      `cannot define server ${where} as "${m.spec}": server was previously defined as "${first.spec}" (one server, one transport)`,
    );
  }
  if (cl.type === "any_of" || cl.type === "failover") {
    throw new RulesError(
      m.pos,
      `cannot share server ${where} with any_of/failover cluster '${cl.name}'`,
    );
  }
}

/** The program's targets and a selector per cluster name. Throws RulesError. */
export function buildTargets(config: RulesConfig): {
  targets: RulesTarget[];
  selectors: Map<string, ClusterSelector>;
} {
  const targets: RulesTarget[] = [];
  const servers = new Map<string, { index: number; member: ClusterMember }>();
  const memberTargets = new Map<Cluster, number[]>();
  for (const cl of config.clusters) {
    if (cl.type === "file") continue;
    const list: number[] = [];
    for (const m of cl.members) {
      const key = `${m.proto} ${hostIdentity(m.host)} ${m.port}`;
      const seen = servers.get(key);
      if (seen !== undefined) {
        checkShared(seen.member, m, cl);
        list.push(seen.index);
        continue;
      }
      let spec: DestinationSpec;
      try {
        spec = parseDestination(m.spec);
      } catch (err) {
        if (err instanceof PolymurError) throw new RulesError(m.pos, err.message);
        throw err;
      }
      servers.set(key, { index: targets.length, member: m });
      list.push(targets.length);
      targets.push({ kind: m.proto, spec });
    }
    memberTargets.set(cl, list);
  }
  const files = new Map<string, number>();
  for (const cl of config.clusters) {
    if (cl.type !== "file") continue;
    const list: number[] = [];
    for (const path of cl.paths) {
      const key = `${cl.fileIp ? 1 : 0} ${path}`;
      let index = files.get(key);
      if (index === undefined) {
        index = targets.length;
        files.set(key, index);
        targets.push({ kind: "file", path, ip: cl.fileIp });
      }
      list.push(index);
    }
    memberTargets.set(cl, list);
  }
  const selectors = new Map<string, ClusterSelector>();
  for (const cl of config.clusters) {
    const t = Int32Array.from(memberTargets.get(cl) ?? []);
    selectors.set(cl.name, selector(cl, t, targets));
  }
  return { targets, selectors };
}

function selector(cl: Cluster, t: Int32Array, targets: readonly RulesTarget[]): ClusterSelector {
  if (t.length === 0) throw new RulesError(cl.pos, `cluster ${cl.name} has no members`);
  switch (cl.type) {
    case "forward":
    case "file":
      return new AllMembers(cl, t);
    case "any_of":
      return new AnyOf(cl, t);
    case "failover":
      return new Failover(cl, t);
    default: {
      const members = Array.from(t, (i) => (targets[i] as { spec: DestinationSpec }).spec);
      return new Ring(cl, t, ringRouter(cl, members));
    }
  }
}
