import { ErrorCode, PolymurError } from "../common/errors.ts";
import { parseDestination } from "../dataplane/forward/destination-spec.ts";
import {
  Distribution as ProtoDistribution,
  type Scope as ProtoScope,
  type Routing,
} from "../gen/polymur/control/v1/control_pb.ts";
import type { DestinationEntry, RoutingPolicy, Scope } from "./control-state.ts";

/**
 * Checks what callers send and turns it into state values. Messages say what
 * to send instead, in the words of both the API and polymurctl.
 */

export const HASHES = ["carbon_ch", "fnv1a_ch", "mmh3_ch", "jump_fnv1a_ch"] as const;
export const COMPATS = ["carbon", "carbon-c-relay"] as const;
export const ROUTERS = ["consistent-hashing", "fast-hashing"] as const;
export const NORMALIZES = ["none", "sorted-tags", "cleanse"] as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const invalid = (message: string): never => {
  throw new PolymurError(ErrorCode.Config, message);
};

export function checkGroupName(group: string): string {
  if (!NAME.test(group)) {
    invalid(
      `group name "${group}" is not valid: use 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  return group;
}

export function scopeFromProto(scope: ProtoScope | undefined): Scope {
  const t = scope?.target;
  if (t?.case === "all" && t.value) return { all: true };
  if (t?.case === "group") return { group: checkGroupName(t.value) };
  return invalid(
    "say where it applies: scope.all or scope.group (polymurctl: --all or --group NAME)",
  );
}

export function destinationFromProto(
  spec: string,
  scope: ProtoScope | undefined,
): DestinationEntry {
  const s = scopeFromProto(scope);
  const d = parseDestination(spec); // POLYMUR_ERR_DEST_SPEC, saying which forms are accepted
  return { spec: d.spec, id: d.id, scope: s };
}

/** The canonical id of a spec, to find a destination however it is spelled. */
export function destinationId(spec: string): string {
  return parseDestination(spec).id;
}

function oneOf<T extends string>(what: string, value: string, allowed: readonly T[], def: T): T {
  if (value === "") return def;
  if (!(allowed as readonly string[]).includes(value)) {
    invalid(`${what} must be one of ${allowed.join(", ")}; got "${value}"`);
  }
  return value as T;
}

/**
 * A routing policy, with proto3 defaults ("" and 0) read as the relay's
 * defaults except `replication`, which must be set. Combinations that the
 * chosen reference (carbon or carbon-c-relay) rejects are refused here, as
 * `polymur relay` and `polymurctl hash` refuse them, so no node is ever sent a
 * policy it cannot apply. Null for DISTRIBUTION_UNSPECIFIED on a group: the
 * group then follows the fleet-wide policy.
 */
export function routingFromProto(r: Routing | undefined, scope: Scope): RoutingPolicy | null {
  const distribution = r?.distribution ?? ProtoDistribution.UNSPECIFIED;
  if (distribution === ProtoDistribution.UNSPECIFIED) {
    if ("group" in scope) return null;
    return invalid(
      "routing.distribution must be DISTRIBUTION_BROADCAST or DISTRIBUTION_HASH_ROUTE (polymurctl route set --all broadcast|hash-route)",
    );
  }
  if (
    distribution !== ProtoDistribution.BROADCAST &&
    distribution !== ProtoDistribution.HASH_ROUTE
  ) {
    return invalid(`routing.distribution ${distribution} is not known to this control plane`);
  }
  const router = oneOf("routing.router", r?.router ?? "", ROUTERS, "consistent-hashing");
  const hash = oneOf(
    "routing.hash",
    r?.hash ?? "",
    HASHES,
    router === "fast-hashing" ? "mmh3_ch" : "carbon_ch",
  );
  const compat = oneOf("routing.compat", r?.compat ?? "", COMPATS, "carbon");
  const normalize = oneOf("routing.normalize", r?.normalize ?? "", NORMALIZES, "none");
  const replication = r?.replication ?? 0;
  const diverseReplicas = r?.diverseReplicas ?? false;
  const policy: RoutingPolicy = {
    distribution: distribution === ProtoDistribution.BROADCAST ? "broadcast" : "hash-route",
    hash,
    compat,
    replication,
    diverseReplicas,
    router,
    normalize,
  };
  if (policy.distribution === "broadcast")
    return { ...policy, replication: Math.max(1, replication) };
  if (replication < 1) invalid("routing.replication must be at least 1 (--replication N)");
  if (compat === "carbon") {
    if (hash === "jump_fnv1a_ch") {
      invalid("jump_fnv1a_ch is carbon-c-relay's algorithm: set compat carbon-c-relay");
    }
  } else {
    if (hash === "mmh3_ch")
      invalid("mmh3_ch exists only in carbon: use compat carbon, or another hash");
    if (router === "fast-hashing")
      invalid("fast-hashing is a carbon router: carbon-c-relay has none");
    if (diverseReplicas) {
      invalid(
        "diverse replicas is a carbon option: set diverse_replicas false with compat carbon-c-relay",
      );
    }
    if (replication > 255) invalid("carbon-c-relay allows a replication of 1 to 255");
  }
  return policy;
}

export function checkKeyName(name: string): string {
  if (!KEY_NAME.test(name)) {
    invalid(
      `API key name "${name}" is not valid: use 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit (gateways may prefix metric names with it)`,
    );
  }
  return name;
}

export function checkNodeId(id: string): string {
  if (id === "" || id.length > 256 || /[\s/]/.test(id)) {
    invalid(
      "node_id must be 1-256 characters without whitespace or /, stable for the node process",
    );
  }
  return id;
}
