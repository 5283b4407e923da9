import { Distribution, type NodeConfig } from "../../gen/polymur/control/v1/control_pb.ts";

/**
 * What a snapshot holds that its node does not use: while rules are in
 * effect for its group, the destinations (`polymurctl dest add`) and a
 * hash-route policy (`polymurctl route set`) of the group and the fleet are
 * kept for nodes without rules, and ignored. The warning that says so, or
 * null when there is nothing of the kind.
 */
export function unusedWithRules(snapshot: NodeConfig): string | null {
  if (snapshot.rules === undefined) return null;
  const unused: string[] = [];
  if (snapshot.destinations.length > 0) {
    unused.push(`destinations ${snapshot.destinations.join(", ")} (polymurctl dest)`);
  }
  if (snapshot.routing?.distribution === Distribution.HASH_ROUTE) {
    unused.push("the hash-route policy (polymurctl route)");
  }
  if (unused.length === 0) return null;
  return `control plane: rules ${snapshot.rules.fileName} decide where datapoints go; not used while they are in effect: ${unused.join(", ")}`;
}
