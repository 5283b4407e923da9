import { randomUUID } from "node:crypto";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ChangeSignal } from "../common/change-signal.ts";
import type { Logger } from "../common/logger.ts";
import type { NodeService, SubscribeRequest } from "../gen/polymur/control/v1/control_pb.ts";
import {
  type ControlStore,
  type NodeSubscription,
  REPORT_LIMITS,
  type ReasonCounts,
} from "./control-store.ts";
import { toConnectError } from "./rpc-errors.ts";
import { nodeConfigFor } from "./state-proto.ts";
import { checkGroupName, checkNodeId } from "./validation.ts";

export interface NodeServiceOptions {
  store: ControlStore;
  /** This replica's id, recorded with each stream it holds. */
  replica: string;
  log?: Logger;
  /** How often an open stream refreshes the node's last_seen in the store. Default 5000 ms. */
  heartbeatMs?: number;
  now?: () => number;
}

/**
 * NodeService: data-plane nodes subscribe for their configuration and report
 * their status. A subscription is a full NodeConfig snapshot at once, then
 * one after every state change, coalesced (a node that reads slowly gets the
 * latest state, never a backlog).
 */
export function createNodeService(options: NodeServiceOptions): ServiceImpl<typeof NodeService> {
  const { store, log, replica } = options;
  const now = options.now ?? Date.now;
  const heartbeatMs = options.heartbeatMs ?? 5000;
  const check = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      throw toConnectError(err);
    }
  };

  async function* subscribe(req: SubscribeRequest, ctx: HandlerContext) {
    const nodeId = check(() => checkNodeId(req.nodeId));
    const group = req.group === "" ? "" : check(() => checkGroupName(req.group));
    // Subscribe to changes BEFORE the first snapshot: a change between reading the
    // state and waiting would otherwise be missed until the next one.
    const changed = new ChangeSignal();
    const unwatch = store.watch(() => changed.notify());
    const streamId = randomUUID();
    const since = now();
    const record = (): NodeSubscription => ({
      nodeId,
      group,
      role: req.role,
      hostname: req.hostname,
      appliedVersion: Number(req.appliedVersion),
      replica,
      streamId,
      open: true,
      sinceMs: since,
      lastSeenMs: now(),
    });
    const beat = (): void => {
      store.putSubscription(record()).catch((err: unknown) => {
        log?.debug({ node: nodeId, err: (err as Error).message }, "cannot record subscription");
      });
    };
    beat();
    const timer = setInterval(beat, heartbeatMs);
    timer.unref();
    const fields = { node: nodeId, group, nodeRole: req.role, hostname: req.hostname };
    log?.info(fields, "node subscribed");
    try {
      let sent = -1;
      for (;;) {
        const cur = store.current();
        if (cur !== undefined && cur.state.version !== sent) {
          sent = cur.state.version;
          yield { config: nodeConfigFor(cur.state, group) };
        }
        await changed.wait(ctx.signal);
      }
    } catch (err) {
      // On shutdown the client must see the shutdown reason (UNAVAILABLE), not OK.
      throw ctx.signal.aborted ? ctx.signal.reason : err;
    } finally {
      unwatch();
      clearInterval(timer);
      log?.info(fields, "node unsubscribed");
      store.endSubscription(nodeId, streamId, now()).catch((err: unknown) => {
        log?.debug({ node: nodeId, err: (err as Error).message }, "cannot record unsubscription");
      });
    }
  }

  return {
    subscribe,
    async reportStatus(req) {
      const nodeId = check(() => checkNodeId(req.nodeId));
      const group = req.group === "" ? "" : check(() => checkGroupName(req.group));
      const c = req.counters;
      try {
        await store.putReport({
          nodeId,
          group,
          role: req.role,
          hostname: req.hostname,
          appliedVersion: Number(req.appliedVersion),
          counters: {
            received: Number(c?.received ?? 0n),
            forwarded: Number(c?.forwarded ?? 0n),
            dropped: Number(c?.dropped ?? 0n),
            rejected: Number(c?.rejected ?? 0n),
            connections: Number(c?.connections ?? 0n),
            rejectedBy: reasonCounts(c?.rejectedBy),
            unroutedBy: reasonCounts(c?.unroutedBy),
            droppedBy: reasonCounts(c?.droppedBy),
          },
          destinations: req.destinations.map((d) => ({
            spec: d.spec,
            state: d.state,
            forwarded: Number(d.forwarded),
            dropped: Number(d.dropped),
            queued: Number(d.queued),
            queuedBytes: Number(d.queuedBytes),
            resent: Number(d.resent),
            diskDatapoints: Number(d.diskDatapoints),
            diskBytes: Number(d.diskBytes),
            oldestQueuedSeconds: Number.isFinite(d.oldestQueuedSeconds)
              ? Math.max(0, d.oldestQueuedSeconds)
              : 0,
            droppedBy: reasonCounts(d.droppedBy),
            ...(d.lastError === ""
              ? {}
              : { lastError: d.lastError.slice(0, REPORT_LIMITS.lastErrorChars) }),
          })),
          lastSeenMs: now(),
        });
      } catch (err) {
        throw toConnectError(err);
      }
      return {};
    },
  };
}

/**
 * A report's per-reason map as kept: reasons with a count only, names cut
 * and the number of reasons bounded (REPORT_LIMITS), so that a node sending
 * more than polymur's own reasons cannot grow its record without end.
 */
export function reasonCounts(by: { [reason: string]: bigint } | undefined): ReasonCounts {
  const out: Record<string, number> = {};
  let n = 0;
  for (const [reason, count] of Object.entries(by ?? {})) {
    // "__proto__" would not be kept as a key of a plain object.
    if (count <= 0n || reason === "" || reason === "__proto__") continue;
    if (n++ >= REPORT_LIMITS.reasons) break;
    out[reason.slice(0, REPORT_LIMITS.reasonChars)] = Number(count);
  }
  return out;
}
