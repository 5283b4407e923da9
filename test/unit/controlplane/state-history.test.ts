import { describe, expect, it } from "vitest";
import {
  addDestination,
  addKey,
  BROADCAST,
  type ControlState,
  EMPTY_STATE,
  setRouting,
  setRules,
} from "../../../controlplane/control-state.ts";
import {
  type ChangeRecord,
  changedScopes,
  changeSummary,
  entryFromJson,
  entryToJson,
  keysDiffering,
  rolledBack,
  touchesGroup,
} from "../../../controlplane/state-history.ts";

const all = { all: true } as const;
const web = { group: "web" } as const;
const db = { group: "db" } as const;
const key = (name: string, digest = `sha256:${name}`) => ({
  name,
  digest,
  createdAtMs: 1,
  rotatedAtMs: 0,
});
const dest = (spec: string, scope: typeof all | typeof web | typeof db) => ({
  spec,
  id: spec,
  scope,
});
const record = (over: Partial<ChangeRecord>): ChangeRecord => ({
  kind: "dest add",
  scopes: [all],
  subject: "",
  actor: "",
  replica: "r1",
  atMs: 0,
  ...over,
});

/** version 1: a fleet destination, a web destination, web rules, one key. */
function base(): ControlState {
  let s = addDestination(EMPTY_STATE, dest("10.0.0.1:2003", all));
  s = addDestination(s, dest("10.0.0.2:2003", web));
  s = setRules(s, web, { text: "cluster c\n  forward 10.0.0.3:2003\n  ;\n", fileName: "web.conf" });
  s = addKey(s, key("a"));
  return { ...s, version: 1 };
}

describe("changedScopes", () => {
  it("names the scopes whose destinations, routing or rules differ, fleet first", () => {
    const a = base();
    let b = addDestination(a, dest("10.0.0.9:2003", db));
    b = setRouting(b, all, { ...BROADCAST, distribution: "hash-route" });
    expect(changedScopes(a, b, false)).toEqual([all, db]);
    expect(changedScopes(b, a, false)).toEqual([all, db]);
    // Rules: a new file name alone is a change of the group's rules.
    const renamed = setRules(a, web, { text: a.rules[0]!.rules.text, fileName: "other.conf" });
    expect(changedScopes(a, renamed, false)).toEqual([web]);
    expect(changedScopes(a, a, false)).toEqual([]);
  });

  it("counts API keys (every node's) as fleet-wide, only when keys are restored", () => {
    const a = base();
    const b = addKey(a, key("b"));
    expect(changedScopes(a, b, false)).toEqual([]);
    expect(changedScopes(a, b, true)).toEqual([all]);
  });
});

describe("rollback content", () => {
  it("takes the target's destinations, routing and rules; keys stay unless withKeys", () => {
    const target = base();
    let now = setRules(target, web, null);
    now = addDestination(now, dest("10.0.0.7:2003", all));
    now = addKey(now, key("new"));
    now = { ...now, keys: now.keys.map((k) => (k.name === "a" ? key("a", "sha256:rotated") : k)) };
    now = { ...now, version: 9 };
    const back = rolledBack(now, target, false);
    expect(back.destinations).toEqual(target.destinations);
    expect(back.rules).toEqual(target.rules);
    expect(back.routing).toEqual(target.routing);
    expect(back.keys).toEqual(now.keys);
    expect(back.version).toBe(9); // updateState numbers the new version
    expect(rolledBack(now, target, true).keys).toEqual(target.keys);
    // a was rotated since, "new" created since: both differ.
    expect(keysDiffering(now.keys, target.keys)).toEqual(["a", "new"]);
    expect(keysDiffering(target.keys, target.keys)).toEqual([]);
  });
});

describe("history records", () => {
  it("summaries in polymurctl's words", () => {
    expect(changeSummary(record({ kind: "dest add", subject: "10.0.0.1:2003" }))).toBe(
      "dest add 10.0.0.1:2003 --all",
    );
    expect(changeSummary(record({ kind: "route set", scopes: [web], subject: "broadcast" }))).toBe(
      "route set --group web broadcast",
    );
    expect(changeSummary(record({ kind: "route inherit", scopes: [web] }))).toBe(
      "route set --group web inherit",
    );
    expect(changeSummary(record({ kind: "rules unset", scopes: [web] }))).toBe(
      "rules unset --group web",
    );
    expect(changeSummary(record({ kind: "key rotate", subject: "product-A" }))).toBe(
      "key rotate product-A",
    );
    expect(
      changeSummary(
        record({ kind: "rollback", scopes: [all, web], rollbackTo: 3, withKeys: false }),
      ),
    ).toBe("rollback to version 3 (API keys kept)");
    expect(changeSummary(record({ kind: "rollback", rollbackTo: 3, withKeys: true }))).toBe(
      "rollback to version 3 (API keys restored too)",
    );
  });

  it("a group's history is its own changes and the fleet's", () => {
    expect(touchesGroup(record({ scopes: [web] }), "web")).toBe(true);
    expect(touchesGroup(record({ scopes: [all] }), "web")).toBe(true);
    expect(touchesGroup(record({ scopes: [db] }), "web")).toBe(false);
    expect(touchesGroup(record({ kind: "rollback", scopes: [] }), "web")).toBe(false);
  });

  it("round-trips through JSON, and a foreign document is POLYMUR_ERR_STORE_CORRUPT", () => {
    const e = {
      ...record({ kind: "rollback", scopes: [web], rollbackTo: 2, withKeys: true, actor: "me@h" }),
      version: 7,
    };
    expect(entryFromJson(JSON.parse(JSON.stringify(entryToJson(e))), "x")).toEqual(e);
    expect(() => entryFromJson({ ...entryToJson(e), kind: "frobnicate" }, "k")).toThrow(
      /k does not hold a polymur history record: kind "frobnicate"/,
    );
    expect(() => entryFromJson({ version: 1 }, "k")).toThrow(/format undefined/);
  });
});
