import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type ApiKeySchema,
  type DestinationSchema,
  type NodeConfigSchema,
  type NodeSchema,
  Distribution as ProtoDistribution,
  type RoutingSchema,
  type RulesSchema,
  type ScopeSchema,
} from "../gen/polymur/control/v1/control_pb.ts";
import {
  type ControlState,
  type DestinationEntry,
  destinationsFor,
  effectiveRouting,
  effectiveRules,
  type KeyEntry,
  type RoutingPolicy,
  type RulesFile,
  type Scope,
} from "./control-state.ts";
import type { NodeRecord } from "./control-store.ts";

/** State values as API messages. */

export function scopeToProto(s: Scope): MessageInitShape<typeof ScopeSchema> {
  return "all" in s
    ? { target: { case: "all", value: true } }
    : { target: { case: "group", value: s.group } };
}

export function destinationToProto(
  d: DestinationEntry,
): MessageInitShape<typeof DestinationSchema> {
  return { spec: d.spec, scope: scopeToProto(d.scope) };
}

export function routingToProto(r: RoutingPolicy): MessageInitShape<typeof RoutingSchema> {
  return {
    distribution:
      r.distribution === "broadcast" ? ProtoDistribution.BROADCAST : ProtoDistribution.HASH_ROUTE,
    hash: r.hash,
    compat: r.compat,
    replication: r.replication,
    diverseReplicas: r.diverseReplicas,
    router: r.router,
    normalize: r.normalize,
  };
}

/** Rules as sent: the file's bytes (the state keeps them one char per byte) and its name. */
export function rulesToProto(r: RulesFile): MessageInitShape<typeof RulesSchema> {
  return { content: Buffer.from(r.text, "latin1"), fileName: r.fileName };
}

export function keyToProto(k: KeyEntry): MessageInitShape<typeof ApiKeySchema> {
  return {
    name: k.name,
    digest: k.digest,
    createdAt: timestampFromMs(k.createdAtMs),
    ...(k.rotatedAtMs > 0 ? { rotatedAt: timestampFromMs(k.rotatedAtMs) } : {}),
  };
}

/** The snapshot a node of `group` applies (see NodeConfig in control.proto). */
export function nodeConfigFor(
  s: ControlState,
  group: string,
): MessageInitShape<typeof NodeConfigSchema> {
  return {
    version: BigInt(s.version),
    group,
    destinations: destinationsFor(s, group),
    routing: routingToProto(effectiveRouting(s, group)),
    keys: s.keys.map(keyToProto),
    ...rulesFor(s, group),
  };
}

function rulesFor(
  s: ControlState,
  group: string,
): { rules?: MessageInitShape<typeof RulesSchema> } {
  const r = effectiveRules(s, group);
  return r === null ? {} : { rules: rulesToProto(r.rules) };
}

/** A node is connected while some replica holds its stream and refreshed it recently. */
export const CONNECTED_WITHIN_MS = 15_000;

export function nodeToProto(rec: NodeRecord, nowMs: number): MessageInitShape<typeof NodeSchema> {
  const sub = rec.subscription;
  const rep = rec.report;
  // The report says what the node applied, unless the node re-subscribed since (a restart).
  const reportCurrent = rep !== undefined && (sub === undefined || rep.lastSeenMs >= sub.sinceMs);
  const who = reportCurrent ? rep : (sub ?? rep)!;
  const lastSeenMs = Math.max(sub?.lastSeenMs ?? 0, rep?.lastSeenMs ?? 0);
  return {
    id: rec.nodeId,
    group: who.group,
    role: who.role,
    hostname: who.hostname,
    appliedVersion: BigInt(who.appliedVersion),
    connected: sub?.open === true && nowMs - sub.lastSeenMs < CONNECTED_WITHIN_MS,
    lastSeen: timestampFromMs(lastSeenMs),
    ...(rep === undefined
      ? {}
      : {
          counters: {
            received: BigInt(rep.counters.received),
            forwarded: BigInt(rep.counters.forwarded),
            dropped: BigInt(rep.counters.dropped),
            rejected: BigInt(rep.counters.rejected),
            connections: BigInt(rep.counters.connections),
          },
          destinations: rep.destinations.map((d) => ({
            spec: d.spec,
            state: d.state,
            forwarded: BigInt(d.forwarded),
            dropped: BigInt(d.dropped),
            queued: BigInt(d.queued),
            queuedBytes: BigInt(d.queuedBytes),
            resent: BigInt(d.resent),
            diskDatapoints: BigInt(d.diskDatapoints ?? 0),
            diskBytes: BigInt(d.diskBytes ?? 0),
            oldestQueuedSeconds: d.oldestQueuedSeconds ?? 0,
          })),
        }),
  };
}
