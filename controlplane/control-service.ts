import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
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
  setRouting,
  setRules,
} from "./control-state.ts";
import { type ControlStore, updateState } from "./control-store.ts";
import { toConnectError } from "./rpc-errors.ts";
import { rulesFromProto } from "./rules-validation.ts";
import {
  destinationToProto,
  keyToProto,
  nodeToProto,
  routingToProto,
  rulesToProto,
  scopeToProto,
} from "./state-proto.ts";
import {
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

  /** Applies `fn` with compare-and-set; checks `expected` against the state it applies to. */
  const mutate = async (
    op: string,
    expected: bigint | undefined,
    fn: (s: ControlState) => ControlState,
    fields: Record<string, unknown>,
  ): Promise<ControlState> => {
    try {
      const written = await updateState(store, (s) => {
        if (expected !== undefined && BigInt(s.version) !== expected) {
          throw new PolymurError(
            ErrorCode.VersionConflict,
            `state is at version ${s.version}, you expected ${expected}; re-read and retry`,
          );
        }
        return fn(s);
      });
      log?.info({ op, ...fields, version: written.version }, "state changed");
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
    async addDestination(req) {
      const d = guard(() =>
        destinationFromProto(req.destination?.spec ?? "", req.destination?.scope),
      );
      const s = await mutate("dest add", req.expectedVersion, (st) => addDestination(st, d), {
        spec: d.spec,
        scope: describeScope(d.scope),
      });
      return { version: BigInt(s.version) };
    },

    async removeDestination(req) {
      const { id, scope } = guard(() => ({
        id: destinationId(req.destination?.spec ?? ""),
        scope: scopeFromProto(req.destination?.scope),
      }));
      const s = await mutate(
        "dest rm",
        req.expectedVersion,
        (st) => removeDestination(st, id, scope),
        {
          spec: id,
          scope: describeScope(scope),
        },
      );
      return { version: BigInt(s.version) };
    },

    listDestinations() {
      const s = current();
      return { destinations: s.destinations.map(destinationToProto), version: BigInt(s.version) };
    },

    async setRouting(req) {
      const { scope, routing } = guard(() => {
        const scope = scopeFromProto(req.scope);
        return { scope, routing: routingFromProto(req.routing, scope) };
      });
      const s = await mutate(
        "route set",
        req.expectedVersion,
        (st) => setRouting(st, scope, routing),
        {
          scope: describeScope(scope),
          routing: routing ?? "inherit",
        },
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

    async setRules(req) {
      // Parsed and compiled here, so a file a node could not run never reaches one.
      const { scope, rules } = guard(() => ({
        scope: scopeFromProto(req.scope),
        rules: rulesFromProto(req.rules),
      }));
      const s = await mutate("rules set", req.expectedVersion, (st) => setRules(st, scope, rules), {
        scope: describeScope(scope),
        file: rules.fileName,
        bytes: rules.text.length,
      });
      return { version: BigInt(s.version) };
    },

    async unsetRules(req) {
      const scope = guard(() => scopeFromProto(req.scope));
      const s = await mutate(
        "rules unset",
        req.expectedVersion,
        (st) => setRules(st, scope, null),
        {
          scope: describeScope(scope),
        },
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

    async createKey(req) {
      const name = guard(() => checkKeyName(req.name));
      // Made once, outside the compare-and-set loop: a retried write keeps the same secret.
      const secret = generateSecret();
      const t = now();
      const key = { name, digest: secretDigest(secret), createdAtMs: t, rotatedAtMs: 0 };
      const s = await mutate("key create", req.expectedVersion, (st) => addKey(st, key), { name });
      return { key: keyToProto(key), secret, version: BigInt(s.version) };
    },

    listKeys() {
      const s = current();
      return { keys: s.keys.map(keyToProto), version: BigInt(s.version) };
    },

    async rotateKey(req) {
      const name = guard(() => checkKeyName(req.name));
      const secret = generateSecret();
      const t = now();
      const s = await mutate(
        "key rotate",
        req.expectedVersion,
        (st) => replaceKey(st, name, secretDigest(secret), t),
        { name },
      );
      return { key: keyToProto(findKey(s, name)), secret, version: BigInt(s.version) };
    },

    async deleteKey(req) {
      const name = guard(() => checkKeyName(req.name));
      const s = await mutate("key rm", req.expectedVersion, (st) => removeKey(st, name), { name });
      return { version: BigInt(s.version) };
    },

    async listNodes() {
      const s = current();
      const records = await store.listNodes().catch(fail);
      const t = now();
      const nodes = records
        .map((r) => nodeToProto(r, t))
        .sort(
          (a, b) =>
            (a.group ?? "").localeCompare(b.group ?? "") || (a.id ?? "").localeCompare(b.id ?? ""),
        );
      return { nodes, version: BigInt(s.version) };
    },
  };
}
