import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type ApiKeySchema,
  type DestinationSchema,
  type FleetConfigSchema,
  type HistoryEntrySchema,
  type NodeConfigSchema,
  type NodeSchema,
  ChangeKind as ProtoChangeKind,
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
import type { NodeRecord, ReasonCounts } from "./control-store.ts";
import { type ChangeKind, changeSummary, type HistoryEntry } from "./state-history.ts";

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

/** The whole state as the API's FleetConfig. */
export function fleetConfigToProto(s: ControlState): MessageInitShape<typeof FleetConfigSchema> {
  return {
    version: BigInt(s.version),
    destinations: s.destinations.map(destinationToProto),
    routing: s.routing.map((r) => ({
      scope: scopeToProto(r.scope),
      routing: routingToProto(r.routing),
    })),
    rules: s.rules.map((r) => ({ scope: scopeToProto(r.scope), rules: rulesToProto(r.rules) })),
    keys: s.keys.map(keyToProto),
  };
}

const CHANGE_KIND: Record<ChangeKind, ProtoChangeKind> = {
  "dest add": ProtoChangeKind.DEST_ADD,
  "dest rm": ProtoChangeKind.DEST_REMOVE,
  "route set": ProtoChangeKind.ROUTING_SET,
  "route inherit": ProtoChangeKind.ROUTING_INHERIT,
  "rules set": ProtoChangeKind.RULES_SET,
  "rules unset": ProtoChangeKind.RULES_UNSET,
  "key create": ProtoChangeKind.KEY_CREATE,
  "key rotate": ProtoChangeKind.KEY_ROTATE,
  "key rm": ProtoChangeKind.KEY_DELETE,
  rollback: ProtoChangeKind.ROLLBACK,
  baseline: ProtoChangeKind.BASELINE,
};

/** A kept version's record as the API's HistoryEntry, with its one-line summary. */
export function historyEntryToProto(e: HistoryEntry): MessageInitShape<typeof HistoryEntrySchema> {
  return {
    version: BigInt(e.version),
    time: timestampFromMs(e.atMs),
    kind: CHANGE_KIND[e.kind],
    scopes: e.scopes.map(scopeToProto),
    subject: e.subject,
    summary: changeSummary(e),
    rollbackTo: BigInt(e.rollbackTo ?? 0),
    withKeys: e.withKeys ?? false,
    actor: e.actor,
    replica: e.replica,
  };
}

/** A node is connected while some replica holds its stream and refreshed it recently. */
export const CONNECTED_WITHIN_MS = 15_000;

/** When a node was last heard of: its subscription's refresh or its last report, the later. */
export function nodeLastSeenMs(rec: NodeRecord): number {
  return Math.max(rec.subscription?.lastSeenMs ?? 0, rec.report?.lastSeenMs ?? 0);
}

/**
 * A node record as the API's Node. `expiryMs` (--node-expiry; 0: never)
 * gives a node that is not connected its `expires_at`.
 */
export function nodeToProto(
  rec: NodeRecord,
  nowMs: number,
  expiryMs = 0,
): MessageInitShape<typeof NodeSchema> {
  const sub = rec.subscription;
  const rep = rec.report;
  // The report says what the node applied, unless the node re-subscribed since (a restart).
  const reportCurrent = rep !== undefined && (sub === undefined || rep.lastSeenMs >= sub.sinceMs);
  const who = reportCurrent ? rep : (sub ?? rep)!;
  const lastSeenMs = nodeLastSeenMs(rec);
  const connected = sub?.open === true && nowMs - sub.lastSeenMs < CONNECTED_WITHIN_MS;
  return {
    id: rec.nodeId,
    group: who.group,
    role: who.role,
    hostname: who.hostname,
    appliedVersion: BigInt(who.appliedVersion),
    connected,
    lastSeen: timestampFromMs(lastSeenMs),
    ...(connected || expiryMs <= 0 ? {} : { expiresAt: timestampFromMs(lastSeenMs + expiryMs) }),
    ...(rep === undefined
      ? {}
      : {
          counters: {
            received: BigInt(rep.counters.received),
            forwarded: BigInt(rep.counters.forwarded),
            dropped: BigInt(rep.counters.dropped),
            rejected: BigInt(rep.counters.rejected),
            connections: BigInt(rep.counters.connections),
            rejectedBy: reasonsToProto(rep.counters.rejectedBy),
            unroutedBy: reasonsToProto(rep.counters.unroutedBy),
            droppedBy: reasonsToProto(rep.counters.droppedBy),
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
            droppedBy: reasonsToProto(d.droppedBy),
            lastError: typeof d.lastError === "string" ? d.lastError : "",
          })),
        }),
  };
}

/**
 * Counts per reason as the API's map. A record written by an older control
 * plane has none; a count that is not a whole number (a record edited by
 * hand in Consul) is left out rather than failing the whole list.
 */
function reasonsToProto(by: ReasonCounts | undefined): { [reason: string]: bigint } {
  const out: { [reason: string]: bigint } = {};
  if (typeof by !== "object" || by === null) return out;
  for (const [reason, n] of Object.entries(by)) {
    if (Number.isSafeInteger(n) && n > 0) out[reason] = BigInt(n);
  }
  return out;
}
