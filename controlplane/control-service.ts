import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { ErrorCode, PolymurError } from "../common/errors.ts";
import type { Logger } from "../common/logger.ts";
import type { ControlService } from "../gen/polymur/control/v1/control_pb.ts";
import { generateSecret, secretDigest } from "./api-key-secret.ts";
import {
  addDestination,
  addKey,
  type ControlState,
  describeScope,
  findKey,
  removeDestination,
  removeKey,
  replaceKey,
  type Scope,
  sameScope,
  setRouting,
  setRules,
} from "./control-state.ts";
import { type ControlStore, updateState } from "./control-store.ts";
import { nodeExpired } from "./node-expiry.ts";
import { toConnectError } from "./rpc-errors.ts";
import { rulesFromProto } from "./rules-validation.ts";
import {
  type ChangeKind,
  type ChangeRecord,
  changedScopes,
  FLEET,
  keysDiffering,
  rolledBack,
  touchesGroup,
} from "./state-history.ts";
import {
  destinationToProto,
  fleetConfigToProto,
  historyEntryToProto,
  keyToProto,
  nodeToProto,
  routingToProto,
  rulesToProto,
  scopeToProto,
} from "./state-proto.ts";
import {
  checkGroupName,
  checkKeyName,
  destinationFromProto,
  destinationId,
  routingFromProto,
  scopeFromProto,
} from "./validation.ts";

export interface ControlServiceOptions {
  store: ControlStore;
  log?: Logger;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
  /** This replica's id, recorded in the history with each version it writes. Default "". */
  replica?: string;
  /**
   * --node-expiry in milliseconds (0: never): ListNodes leaves out records
   * past it (whether or not a sweep removed them yet) and says when the
   * others that are not connected expire. Default 0.
   */
  nodeExpiryMs?: number;
}

/**
 * The request header in which a caller says who it is (polymurctl sends
 * `user@host`), recorded in the history. Not a credential: every admin
 * shares one, so this is what the caller claims.
 */
export const ACTOR_HEADER = "polymur-actor";

/** The actor a call claims: printable, at most 128 characters; "" when it says nothing. */
export function actorOf(ctx: HandlerContext | undefined): string {
  const raw = ctx?.requestHeader.get(ACTOR_HEADER) ?? "";
  return raw
    .replace(/[^\x20-\x7e]/g, "")
    .trim()
    .slice(0, 128);
}

/**
 * ControlService: what polymurctl drives. Reads answer from the last state
 * this replica saw (kept current by the store's watch, and still there when
 * the store is not); every mutation re-reads the store, checks
 * `expected_version`, and writes with compare-and-set.
 */
export function createControlService(
  options: ControlServiceOptions,
): ServiceImpl<typeof ControlService> {
  const { store, log } = options;
  const now = options.now ?? Date.now;
  const replica = options.replica ?? "";
  const expiryMs = options.nodeExpiryMs ?? 0;
  const fail = (err: unknown): never => {
    throw toConnectError(err, (e) => log?.error({ err: e }, "internal error in ControlService"));
  };

  const current = (): ControlState => {
    const s = store.current();
    if (s === undefined) {
      throw new ConnectError(
        `state store ${store.description} has not answered yet; no state to serve`,
        Code.Unavailable,
      );
    }
    return s.state;
  };

  /** What the history records of a change: the kind, scopes and subject; who, where and when are added. */
  interface Change {
    kind: ChangeKind;
    scopes: readonly Scope[];
    subject: string;
    rollbackTo?: number;
    withKeys?: boolean;
  }

  /**
   * Applies `fn` with compare-and-set; checks `expected` against the state it
   * applies to. `change` (given the states before and after) is kept in the
   * history with the version written.
   */
  const mutate = async (
    ctx: HandlerContext | undefined,
    expected: bigint | undefined,
    fn: (s: ControlState) => ControlState,
    change: (before: ControlState, after: ControlState) => Change,
    fields: Record<string, unknown>,
  ): Promise<ControlState> => {
    const actor = actorOf(ctx);
    let op = "";
    const record = (before: ControlState, after: ControlState): ChangeRecord => {
      const c = change(before, after);
      op = c.kind;
      return { ...c, actor, replica, atMs: now() };
    };
    try {
      const written = await updateState(
        store,
        (s) => {
          if (expected !== undefined && BigInt(s.version) !== expected) {
            throw new PolymurError(
              ErrorCode.VersionConflict,
              `state is at version ${s.version}, you expected ${expected}; re-read and retry`,
            );
          }
          return fn(s);
        },
        record,
      );
      log?.info(
        { op, ...fields, ...(actor === "" ? {} : { actor }), version: written.version },
        "state changed",
      );
      return written;
    } catch (err) {
      return fail(err);
    }
  };

  const guard = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      return fail(err);
    }
  };

  return {
    async addDestination(req, ctx) {
      const d = guard(() =>
        destinationFromProto(req.destination?.spec ?? "", req.destination?.scope),
      );
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => addDestination(st, d),
        () => ({ kind: "dest add", scopes: [d.scope], subject: d.spec }),
        { spec: d.spec, scope: describeScope(d.scope) },
      );
      return { version: BigInt(s.version) };
    },

    async removeDestination(req, ctx) {
      const { id, scope } = guard(() => ({
        id: destinationId(req.destination?.spec ?? ""),
        scope: scopeFromProto(req.destination?.scope),
      }));
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => removeDestination(st, id, scope),
        (before) => ({
          kind: "dest rm",
          scopes: [scope],
          // As it was added (the spelling the history showed then).
          subject:
            before.destinations.find((e) => e.id === id && sameScope(e.scope, scope))?.spec ?? id,
        }),
        { spec: id, scope: describeScope(scope) },
      );
      return { version: BigInt(s.version) };
    },

    listDestinations() {
      const s = current();
      return { destinations: s.destinations.map(destinationToProto), version: BigInt(s.version) };
    },

    async setRouting(req, ctx) {
      const { scope, routing } = guard(() => {
        const scope = scopeFromProto(req.scope);
        return { scope, routing: routingFromProto(req.routing, scope) };
      });
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => setRouting(st, scope, routing),
        () =>
          routing === null
            ? { kind: "route inherit", scopes: [scope], subject: "" }
            : { kind: "route set", scopes: [scope], subject: routing.distribution },
        { scope: describeScope(scope), routing: routing ?? "inherit" },
      );
      return { version: BigInt(s.version) };
    },

    getRouting() {
      const s = current();
      return {
        routing: s.routing.map((r) => ({
          scope: scopeToProto(r.scope),
          routing: routingToProto(r.routing),
        })),
        version: BigInt(s.version),
      };
    },

    async setRules(req, ctx) {
      // Parsed and compiled here, so a file a node could not run never reaches one.
      const { scope, rules } = guard(() => ({
        scope: scopeFromProto(req.scope),
        rules: rulesFromProto(req.rules),
      }));
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => setRules(st, scope, rules),
        () => ({ kind: "rules set", scopes: [scope], subject: rules.fileName }),
        { scope: describeScope(scope), file: rules.fileName, bytes: rules.text.length },
      );
      return { version: BigInt(s.version) };
    },

    async unsetRules(req, ctx) {
      const scope = guard(() => scopeFromProto(req.scope));
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => setRules(st, scope, null),
        () => ({ kind: "rules unset", scopes: [scope], subject: "" }),
        { scope: describeScope(scope) },
      );
      return { version: BigInt(s.version) };
    },

    getRules() {
      const s = current();
      return {
        rules: s.rules.map((r) => ({ scope: scopeToProto(r.scope), rules: rulesToProto(r.rules) })),
        version: BigInt(s.version),
      };
    },

    async createKey(req, ctx) {
      const name = guard(() => checkKeyName(req.name));
      // Made once, outside the compare-and-set loop: a retried write keeps the same secret.
      const secret = generateSecret();
      const t = now();
      const key = { name, digest: secretDigest(secret), createdAtMs: t, rotatedAtMs: 0 };
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => addKey(st, key),
        () => ({ kind: "key create", scopes: FLEET, subject: name }),
        { name },
      );
      return { key: keyToProto(key), secret, version: BigInt(s.version) };
    },

    listKeys() {
      const s = current();
      return { keys: s.keys.map(keyToProto), version: BigInt(s.version) };
    },

    async rotateKey(req, ctx) {
      const name = guard(() => checkKeyName(req.name));
      const secret = generateSecret();
      const t = now();
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => replaceKey(st, name, secretDigest(secret), t),
        () => ({ kind: "key rotate", scopes: FLEET, subject: name }),
        { name },
      );
      return { key: keyToProto(findKey(s, name)), secret, version: BigInt(s.version) };
    },

    async deleteKey(req, ctx) {
      const name = guard(() => checkKeyName(req.name));
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => removeKey(st, name),
        () => ({ kind: "key rm", scopes: FLEET, subject: name }),
        { name },
      );
      return { version: BigInt(s.version) };
    },

    async listNodes() {
      const s = current();
      const records = await store.listNodes().catch(fail);
      const t = now();
      const nodes = records
        // Expired but not swept yet (sweeps run every minute at most): gone all the same.
        .filter((r) => !nodeExpired(r, t, expiryMs))
        .map((r) => nodeToProto(r, t, expiryMs))
        .sort(
          (a, b) =>
            (a.group ?? "").localeCompare(b.group ?? "") || (a.id ?? "").localeCompare(b.id ?? ""),
        );
      return { nodes, version: BigInt(s.version) };
    },

    async listHistory(req) {
      const group = req.group === "" ? undefined : guard(() => checkGroupName(req.group));
      const s = current();
      const entries = await store.listHistory().catch(fail);
      return {
        entries: entries
          .filter((e) => group === undefined || touchesGroup(e, group))
          .map(historyEntryToProto),
        version: BigInt(s.version),
        keptVersions: store.historyVersions,
      };
    },

    async getVersion(req) {
      const s = current();
      const kept = await store.getVersion(Number(req.version)).catch(fail);
      if (kept === undefined) return fail(await notKept(Number(req.version)));
      return {
        entry: historyEntryToProto(kept.entry),
        config: fleetConfigToProto(kept.state),
        currentVersion: BigInt(s.version),
      };
    },

    async rollback(req, ctx) {
      const to = Number(req.version);
      const withKeys = req.withKeys;
      const kept = await store.getVersion(to).catch(fail);
      if (kept === undefined) return fail(await notKept(to));
      let differing: string[] = [];
      const s = await mutate(
        ctx,
        req.expectedVersion,
        (st) => {
          differing = keysDiffering(st.keys, kept.state.keys);
          return rolledBack(st, kept.state, withKeys);
        },
        (before, after) => ({
          kind: "rollback",
          scopes: changedScopes(before, after, withKeys),
          subject: "",
          rollbackTo: to,
          withKeys,
        }),
        { to, withKeys },
      );
      return {
        version: BigInt(s.version),
        restored: BigInt(to),
        keysDiffering: differing,
        withKeys,
      };
    },
  };

  /** NOT_FOUND for a version the history does not keep, saying which it keeps. */
  async function notKept(version: number): Promise<PolymurError> {
    const kept = await store.listHistory().catch(() => []);
    const range =
      kept.length === 0
        ? "the history keeps none yet"
        : `the history keeps versions ${kept.at(-1)!.version} to ${kept[0]!.version}, the last ${store.historyVersions} at most`;
    return new PolymurError(
      ErrorCode.NotFound,
      `version ${version} is not in the history (${range}; polymurctl history lists them)`,
    );
  }
}
