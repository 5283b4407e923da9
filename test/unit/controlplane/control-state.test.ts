import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import { secretDigest } from "../../../controlplane/api-key-secret.ts";
import {
  addDestination,
  addKey,
  BROADCAST,
  type ControlState,
  checkState,
  destinationsFor,
  EMPTY_STATE,
  effectiveRouting,
  removeDestination,
  removeKey,
  replaceKey,
  setRouting,
} from "../../../controlplane/control-state.ts";
import {
  destinationFromProto,
  routingFromProto,
  scopeFromProto,
} from "../../../controlplane/validation.ts";
import {
  Distribution,
  RoutingSchema,
  ScopeSchema,
} from "../../../gen/polymur/control/v1/control_pb.ts";

const all = create(ScopeSchema, { target: { case: "all", value: true } });
const group = (g: string) => create(ScopeSchema, { target: { case: "group", value: g } });

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof PolymurError) return err.code;
    throw err;
  }
  throw new Error("did not throw");
}

describe("control state", () => {
  const d = (spec: string, scope = all) => destinationFromProto(spec, scope);

  it("puts fleet-wide destinations first, then the group's, in the order added", () => {
    let s: ControlState = EMPTY_STATE;
    s = addDestination(s, d("10.0.0.2:2003", group("web")));
    s = addDestination(s, d("10.0.0.1:2003"));
    s = addDestination(s, d("10.0.0.3:2003=b", group("web")));
    s = addDestination(s, d("10.0.0.4:2003", group("db")));
    expect(destinationsFor(s, "web")).toEqual([
      "10.0.0.1:2003",
      "10.0.0.2:2003",
      "10.0.0.3:2003=b",
    ]);
    expect(destinationsFor(s, "db")).toEqual(["10.0.0.1:2003", "10.0.0.4:2003"]);
    expect(destinationsFor(s, "")).toEqual(["10.0.0.1:2003"]);
  });

  it("refuses a destination twice, whatever its spelling or scope", () => {
    let s = addDestination(EMPTY_STATE, d("10.0.0.1:2003:a"));
    expect(code(() => addDestination(s, d("10.0.0.1:2003=a")))).toBe(ErrorCode.AlreadyExists);
    expect(code(() => addDestination(s, d("10.0.0.1:2003:a", group("web"))))).toBe(
      ErrorCode.AlreadyExists,
    );
    s = addDestination(EMPTY_STATE, d("10.0.0.1:2003", group("web")));
    expect(() => addDestination(s, d("10.0.0.1:2003"))).toThrow(/remove it there/);
    // Another group is fine: nodes of one group never see the other's.
    expect(destinationsFor(addDestination(s, d("10.0.0.1:2003", group("db"))), "db")).toEqual([
      "10.0.0.1:2003",
    ]);
  });

  it("removes by canonical id and scope, and says where a destination is", () => {
    const s = addDestination(EMPTY_STATE, d("10.0.0.1:2003", group("web")));
    expect(removeDestination(s, "10.0.0.1:2003", { group: "web" }).destinations).toEqual([]);
    expect(() => removeDestination(s, "10.0.0.1:2003", { all: true })).toThrow(
      /is in group web, not in all nodes/,
    );
    expect(code(() => removeDestination(s, "10.0.0.9:2003", { all: true }))).toBe(
      ErrorCode.NotFound,
    );
  });

  it("routing: the group's, else the fleet's, else broadcast; a group can go back to inheriting", () => {
    const hash = routingFromProto(
      create(RoutingSchema, { distribution: Distribution.HASH_ROUTE, replication: 2 }),
      { all: true },
    )!;
    const jump = routingFromProto(
      create(RoutingSchema, {
        distribution: Distribution.HASH_ROUTE,
        hash: "jump_fnv1a_ch",
        compat: "carbon-c-relay",
        replication: 1,
      }),
      { group: "web" },
    )!;
    expect(effectiveRouting(EMPTY_STATE, "web")).toEqual(BROADCAST);
    let s = setRouting(EMPTY_STATE, { group: "web" }, jump);
    s = setRouting(s, { all: true }, hash);
    expect(s.routing.map((r) => ("all" in r.scope ? "*" : r.scope.group))).toEqual(["*", "web"]);
    expect(effectiveRouting(s, "web")).toEqual(jump);
    expect(effectiveRouting(s, "db")).toEqual(hash);
    expect(hash).toMatchObject({
      hash: "carbon_ch",
      compat: "carbon",
      router: "consistent-hashing",
    });
    s = setRouting(s, { group: "web" }, null);
    expect(effectiveRouting(s, "web")).toEqual(hash);
    expect(code(() => setRouting(s, { group: "web" }, null))).toBe(ErrorCode.NotFound);
  });

  it("keys: create, rotate, remove; names are unique", () => {
    const k = { name: "product-A", digest: secretDigest("x"), createdAtMs: 1, rotatedAtMs: 0 };
    let s = addKey(EMPTY_STATE, k);
    expect(() => addKey(s, k)).toThrow(/key rotate product-A/);
    s = replaceKey(s, "product-A", secretDigest("y"), 5);
    expect(s.keys[0]).toEqual({ ...k, digest: secretDigest("y"), rotatedAtMs: 5 });
    expect(removeKey(s, "product-A").keys).toEqual([]);
    expect(code(() => removeKey(EMPTY_STATE, "nope"))).toBe(ErrorCode.NotFound);
  });

  it("reads back what it writes, and refuses a document that is not a state", () => {
    const s = addDestination(EMPTY_STATE, d("10.0.0.1:2003"));
    expect(checkState(JSON.parse(JSON.stringify(s)), "x")).toEqual(s);
    expect(code(() => checkState({ version: -1 }, "x"))).toBe(ErrorCode.StoreCorrupt);
    expect(code(() => checkState({ ...s, keys: {} }, "x"))).toBe(ErrorCode.StoreCorrupt);
  });
});

describe("validation", () => {
  it("needs a scope, and a sane group name", () => {
    expect(() => scopeFromProto(undefined)).toThrow(/--all or --group NAME/);
    expect(() => scopeFromProto(group("has space"))).toThrow(/group name "has space" is not valid/);
    expect(scopeFromProto(group("web-1.eu"))).toEqual({ group: "web-1.eu" });
  });

  it("checks destination specs with the data plane's parser", () => {
    expect(code(() => destinationFromProto("10.0.0.1", all))).toBe(ErrorCode.DestinationSpec);
    expect(() => destinationFromProto("10.0.0.1:99999", all)).toThrow(/out of range/);
    expect(destinationFromProto(" [::1]:2003=a ", all)).toEqual({
      spec: "[::1]:2003=a",
      id: "[::1]:2003:a",
      scope: { all: true },
    });
  });

  it.each([
    [
      { distribution: Distribution.UNSPECIFIED },
      /DISTRIBUTION_BROADCAST or DISTRIBUTION_HASH_ROUTE/,
    ],
    [{ distribution: Distribution.HASH_ROUTE, replication: 0 }, /replication must be at least 1/],
    [{ distribution: Distribution.HASH_ROUTE, replication: 1, hash: "md5" }, /hash must be one of/],
    [
      { distribution: Distribution.HASH_ROUTE, replication: 1, compat: "x" },
      /compat must be one of/,
    ],
    [
      { distribution: Distribution.HASH_ROUTE, replication: 1, hash: "jump_fnv1a_ch" },
      /set compat carbon-c-relay/,
    ],
    [
      {
        distribution: Distribution.HASH_ROUTE,
        replication: 1,
        compat: "carbon-c-relay",
        hash: "mmh3_ch",
      },
      /only in carbon/,
    ],
    [
      {
        distribution: Distribution.HASH_ROUTE,
        replication: 1,
        compat: "carbon-c-relay",
        diverseReplicas: true,
      },
      /diverse replicas is a carbon option/,
    ],
  ])("refuses routing %o", (r, message) => {
    expect(() => routingFromProto(create(RoutingSchema, r), { all: true })).toThrow(message);
  });

  it("defaults fast-hashing to mmh3_ch, as carbon does", () => {
    const r = routingFromProto(
      create(RoutingSchema, {
        distribution: Distribution.HASH_ROUTE,
        replication: 1,
        router: "fast-hashing",
      }),
      { all: true },
    );
    expect(r?.hash).toBe("mmh3_ch");
  });
});
