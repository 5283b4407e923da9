import { describe, expect, it } from "vitest";
import {
  FirstCharIndex,
  positionAfter,
} from "../../../../../dataplane/route/rules/first-char-index.ts";

describe("FirstCharIndex", () => {
  const index = new FirstCharIndex(["s", null, "ak", "s", null]);

  it("lists, in order, the steps a name's first character allows", () => {
    expect([...index.steps("servers.x")]).toEqual([0, 1, 3, 4]);
    expect([...index.steps("apps.x")]).toEqual([1, 2, 4]);
    expect([...index.steps("k8s")]).toEqual([1, 2, 4]);
    expect([...index.steps("zzz")]).toEqual([1, 4]);
  });

  it("keeps only the steps without first characters for an empty name or one above latin1", () => {
    expect([...index.steps("")]).toEqual([1, 4]);
    expect([...index.steps("\u0100abc")]).toEqual([1, 4]);
    expect([...index.steps("\0abc")]).toEqual([1, 4]);
  });

  it("finds where to go on after a step", () => {
    const list = Int32Array.from([1, 2, 4, 7]);
    expect(positionAfter(list, 0)).toBe(0);
    expect(positionAfter(list, 2)).toBe(2);
    expect(positionAfter(list, 3)).toBe(2);
    expect(positionAfter(list, 7)).toBe(4);
    expect(positionAfter(Int32Array.from([]), 3)).toBe(0);
  });
});
