import { Distribution, type NodeConfig } from "../../gen/polymur/control/v1/control_pb.ts";
import { parseDestinationList } from "../forward/destination-spec.ts";
import { datapointTotals, type PipelineStats } from "../observe/pipeline-stats.ts";
import type { HashAlgo, HashCompat } from "../route/hash/hash-router.ts";
import type { RouterConfig } from "../route/router.ts";
import { type RulesConfig, RulesError } from "../route/rules/rules-config.ts";
import { parseRules } from "../route/rules/rules-parser.ts";
import type { NodeStatus } from "./control-subscriber.ts";

/**
 * The configuration a control-plane snapshot asks for: destinations, routing
 * and rules from the snapshot, everything else (listen address, queues,
 * limits) from the node's own options. Throws if the snapshot is not usable
 * (rules that do not parse: RulesError), so that the node keeps its previous
 * configuration.
 */
export function configFromSnapshot<C extends RouterConfig>(base: C, snapshot: NodeConfig): C {
  const r = snapshot.routing;
  const hashRoute = r?.distribution === Distribution.HASH_ROUTE;
  const rules = rulesFromSnapshot(snapshot);
  const destinations = parseDestinationList(snapshot.destinations.join(","));
  return {
    ...base,
    rules,
    // While rules are in effect their clusters are the destinations: the
    // group's and fleet's (kept for nodes without rules) are not opened.
    destinations: rules === null ? destinations : [],
    distribution: hashRoute ? "hash-route" : "broadcast",
    hash:
      r === undefined || !hashRoute
        ? base.hash
        : {
            algo: (r.hash || "carbon_ch") as HashAlgo,
            compat: (r.compat || "carbon") as HashCompat,
            replication: r.replication || 1,
            // carbon-c-relay has no diverse replicas; the control plane sends false there.
            ...(r.compat === "carbon-c-relay" ? {} : { diverseReplicas: r.diverseReplicas }),
            router: (r.router || "consistent-hashing") as "consistent-hashing" | "fast-hashing",
            normalize: (r.normalize || "none") as "none" | "sorted-tags" | "cleanse",
          },
  };
}

/**
 * The snapshot's rules parsed, or null when it has none. The control plane
 * sends only files it has parsed and compiled; a node checks again, as it
 * would a file of its own, and refuses `listen` (it listens where its flags
 * say).
 */
export function rulesFromSnapshot(snapshot: NodeConfig): RulesConfig | null {
  const r = snapshot.rules;
  if (r === undefined) return null;
  const c = r.content;
  // One char per byte, as the rules engine reads a file.
  const text = Buffer.from(c.buffer, c.byteOffset, c.byteLength).toString("latin1");
  const rules = parseRules(text, r.fileName);
  const listen = rules.listen[0];
  if (listen !== undefined) {
    throw new RulesError(
      listen.pos,
      "listen blocks in the control plane's rules: a managed node listens where its --listen-addr and --udp-addr say",
    );
  }
  return rules;
}

/** The longest `last_error` a node reports (the rest is cut): node records stay small. */
export const LAST_ERROR_MAX_CHARS = 200;

/**
 * What a node reports to the control plane, from its pipeline counters:
 * totals, and drops, rejects and unrouted lines by reason (reasons at zero
 * left out). A destination reports its drops by reason and its last error
 * (cut to LAST_ERROR_MAX_CHARS); one with a disk queue (--queue-dir) also
 * what is on disk and the age of its oldest datapoint waiting.
 */
export function nodeStatusFromStats(s: PipelineStats, connections = s.connections): NodeStatus {
  const t = datapointTotals(s);
  return {
    counters: {
      received: BigInt(t.received),
      forwarded: BigInt(t.forwarded),
      dropped: BigInt(t.dropped),
      rejected: BigInt(t.rejected),
      connections: BigInt(connections),
      rejectedBy: nonZero(t.rejectedBy),
      unroutedBy: nonZero(t.unroutedBy),
      droppedBy: nonZero(t.droppedBy),
    },
    destinations: s.destinations.map((d) => ({
      spec: d.spec,
      state: d.state,
      forwarded: BigInt(d.forwarded),
      dropped: BigInt(d.dropped),
      queued: BigInt(d.queuedLines),
      queuedBytes: BigInt(d.queuedBytes),
      resent: BigInt(d.resent),
      droppedBy: nonZero(d.droppedBy),
      ...(d.lastError ? { lastError: d.lastError.slice(0, LAST_ERROR_MAX_CHARS) } : {}),
      ...(d.disk === undefined
        ? {}
        : {
            diskDatapoints: BigInt(d.disk.lines),
            diskBytes: BigInt(d.disk.bytes),
            oldestQueuedSeconds: d.disk.oldestAgeMs / 1000,
          }),
    })),
  };
}

/** A per-reason record as a report's map: only the reasons with a count. */
function nonZero(by: Readonly<Record<string, number>>): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const [reason, n] of Object.entries(by)) if (n > 0) out[reason] = BigInt(n);
  return out;
}
