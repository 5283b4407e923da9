import { describe, expect, it } from "vitest";
import { NameMemo } from "../../../../../dataplane/route/rules/name-memo.ts";

describe("NameMemo", () => {
  it("remembers values, null included", () => {
    const m = new NameMemo<string | null>(4);
    m.set("a", "x");
    m.set("b", null);
    expect(m.get("a")).toBe("x");
    expect(m.get("b")).toBeNull();
    expect(m.get("c")).toBeUndefined();
  });

  it("keeps at most two generations of `size` names, and what is used stays", () => {
    const m = new NameMemo<number>(2);
    m.set("a", 1);
    m.set("b", 2);
    m.set("c", 3); // a, b become the old generation
    expect(m.get("a")).toBe(1); // copied into the young one: c, a
    m.set("d", 4); // young c, a -> old; young d
    expect(m.get("b")).toBeUndefined();
    expect(m.get("c")).toBe(3);
    expect(m.get("a")).toBe(1);
  });

  it("does not remember long names", () => {
    const m = new NameMemo<number>(4);
    const long = "x".repeat(300);
    m.set(long, 1);
    expect(m.get(long)).toBeUndefined();
  });
});
