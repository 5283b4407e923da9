import { Distribution, type NodeConfig } from "../../gen/polymur/control/v1/control_pb.ts";
import { parseDestinationList } from "../forward/destination-spec.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { HashAlgo, HashCompat } from "../route/hash/hash-router.ts";
import type { RouterConfig } from "../route/router.ts";
import type { NodeStatus } from "./control-subscriber.ts";

/**
 * The configuration a control-plane snapshot asks for: destinations and
 * routing from the snapshot, everything else (listen address, queues, limits)
 * from the node's own options. Throws if the snapshot is not usable, so that
 * the node keeps its previous configuration.
 */
export function configFromSnapshot<C extends RouterConfig>(base: C, snapshot: NodeConfig): C {
  const r = snapshot.routing;
  const hashRoute = r?.distribution === Distribution.HASH_ROUTE;
  return {
    ...base,
    destinations: parseDestinationList(snapshot.destinations.join(",")),
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

/** What a node reports to the control plane, from its pipeline counters. */
export function nodeStatusFromStats(s: PipelineStats, connections = s.connections): NodeStatus {
  let forwarded = 0;
  let dropped = 0;
  for (const d of s.destinations) {
    forwarded += d.forwarded;
    dropped += d.dropped;
  }
  const rejected = Object.values(s.rejected).reduce((a, b) => a + b, 0);
  return {
    counters: {
      received: BigInt(s.received),
      forwarded: BigInt(forwarded),
      dropped: BigInt(dropped),
      rejected: BigInt(rejected),
      connections: BigInt(connections),
    },
    destinations: s.destinations.map((d) => ({
      spec: d.spec,
      state: d.state,
      forwarded: BigInt(d.forwarded),
      dropped: BigInt(d.dropped),
      queued: BigInt(d.queuedLines),
      queuedBytes: BigInt(d.queuedBytes),
      resent: BigInt(d.resent),
    })),
  };
}
