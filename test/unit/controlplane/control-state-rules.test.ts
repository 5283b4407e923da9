import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import {
  type ControlState,
  checkState,
  EMPTY_STATE,
  effectiveRules,
  type RulesFile,
  setRules,
} from "../../../controlplane/control-state.ts";
import { nodeConfigFor } from "../../../controlplane/state-proto.ts";
import { NodeConfigSchema } from "../../../gen/polymur/control/v1/control_pb.ts";

const fleet: RulesFile = { text: "cluster a forward 10.0.0.1:2003;\n", fileName: "fleet.conf" };
const web: RulesFile = { text: "cluster w forward 10.0.0.2:2003;\n", fileName: "web.conf" };
const db: RulesFile = { text: "cluster d forward 10.0.0.3:2003;\n", fileName: "db.conf" };

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof PolymurError) return err.code;
    throw err;
  }
  throw new Error("did not throw");
}

describe("rules in the control state", () => {
  it("a group's own rules, else the fleet's, else none", () => {
    let s: ControlState = EMPTY_STATE;
    expect(effectiveRules(s, "web")).toBeNull();
    s = setRules(s, { group: "web" }, web);
    expect(effectiveRules(s, "web")?.rules).toEqual(web);
    expect(effectiveRules(s, "db")).toBeNull();
    expect(effectiveRules(s, "")).toBeNull();
    s = setRules(s, { all: true }, fleet);
    expect(effectiveRules(s, "web")).toEqual({ scope: { group: "web" }, rules: web });
    expect(effectiveRules(s, "db")).toEqual({ scope: { all: true }, rules: fleet });
    // A node without a group runs the fleet's.
    expect(effectiveRules(s, "")?.rules).toEqual(fleet);
  });

  it("one entry per scope, the fleet's first, then groups by name", () => {
    let s = setRules(EMPTY_STATE, { group: "web" }, web);
    s = setRules(s, { group: "db" }, db);
    s = setRules(s, { all: true }, fleet);
    const replaced = { ...web, text: `${web.text}# v2\n` };
    s = setRules(s, { group: "web" }, replaced);
    expect(s.rules.map((r) => r.scope)).toEqual([{ all: true }, { group: "db" }, { group: "web" }]);
    expect(effectiveRules(s, "web")?.rules).toEqual(replaced);
  });

  it("unset: a group then inherits the fleet's; unsetting what is not there is NOT_FOUND", () => {
    let s = setRules(setRules(EMPTY_STATE, { all: true }, fleet), { group: "web" }, web);
    s = setRules(s, { group: "web" }, null);
    expect(effectiveRules(s, "web")?.rules).toEqual(fleet);
    expect(code(() => setRules(s, { group: "web" }, null))).toBe(ErrorCode.NotFound);
    expect(() => setRules(s, { group: "web" }, null)).toThrow(
      "group web has no rules of its own (polymurctl rules show --group web)",
    );
    s = setRules(s, { all: true }, null);
    expect(s.rules).toEqual([]);
    expect(() => setRules(s, { all: true }, null)).toThrow("the fleet has no rules");
  });

  it("leaves destinations, routing and keys alone", () => {
    const s = setRules(EMPTY_STATE, { all: true }, fleet);
    expect({ ...s, rules: [] }).toEqual(EMPTY_STATE);
  });
});

describe("checkState and rules", () => {
  const doc = (extra: Record<string, unknown>) => ({
    version: 3,
    destinations: [],
    routing: [],
    keys: [],
    ...extra,
  });

  it("a document written before rules existed has none", () => {
    const s = checkState(doc({}), "state.json");
    expect(s.rules).toEqual([]);
    expect(s.version).toBe(3);
  });

  it("keeps rules entries, and refuses damaged ones", () => {
    const rules = [{ scope: { group: "web" }, rules: web }];
    expect(checkState(doc({ rules }), "state.json").rules).toEqual(rules);
    for (const bad of [
      "nope",
      [{ scope: { group: "web" } }],
      [{ scope: { group: "web" }, rules: { text: 1, fileName: "x" } }],
      [{ scope: { group: "web" }, rules: { text: "" } }],
      [{ scope: {}, rules: web }],
    ]) {
      expect(code(() => checkState(doc({ rules: bad }), "state.json"))).toBe(
        ErrorCode.StoreCorrupt,
      );
    }
  });
});

describe("the node snapshot", () => {
  it("carries the rules in effect for the node's group, byte for byte", () => {
    // Bytes 0xC3 0xA9 ("é" in UTF-8) and 0xE9 ("é" in latin1): kept as bytes, one char each.
    const bytes = Buffer.from([...Buffer.from("match ^caf"), 0xc3, 0xa9, 0x20, 0xe9, 0x0a]);
    const group: RulesFile = { text: bytes.toString("latin1"), fileName: "g.conf" };
    let s = setRules(EMPTY_STATE, { all: true }, fleet);
    s = setRules(s, { group: "web" }, group);
    const forWeb = create(NodeConfigSchema, nodeConfigFor(s, "web"));
    expect(forWeb.rules?.fileName).toBe("g.conf");
    expect(Buffer.from(forWeb.rules!.content)).toEqual(bytes);
    const forDb = create(NodeConfigSchema, nodeConfigFor(s, "db"));
    expect(forDb.rules?.fileName).toBe("fleet.conf");
    expect(Buffer.from(forDb.rules!.content).toString("latin1")).toBe(fleet.text);
    expect(create(NodeConfigSchema, nodeConfigFor(EMPTY_STATE, "web")).rules).toBeUndefined();
  });
});
