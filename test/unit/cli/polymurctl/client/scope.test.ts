import { describe, expect, it } from "vitest";
import { scopeArg, scopeJson, scopeText } from "../../../../../cli/polymurctl/client/scope.ts";
import { UsageError } from "../../../../../common/errors.ts";

describe("polymurctl scopes", () => {
  it("--all or --group NAME", () => {
    expect(scopeArg({ all: true }, true)).toEqual({ case: "all", value: true });
    expect(scopeArg({ group: "web" }, true)).toEqual({ case: "group", value: "web" });
    expect(scopeArg({}, false)).toBeUndefined();
  });

  it("not both, and one when required", () => {
    expect(() => scopeArg({ all: true, group: "web" }, false)).toThrow(
      new UsageError("give --all or --group NAME, not both"),
    );
    expect(() => scopeArg({}, true)).toThrow(
      new UsageError("say where: --all (every node) or --group NAME"),
    );
    expect(() => scopeArg({}, true)).toThrow(UsageError);
  });

  it("shows a scope as text and as JSON", () => {
    const group = { target: { case: "group", value: "web" } };
    const all = { target: { case: "all", value: true } };
    expect(scopeText(group)).toBe("group web");
    expect(scopeText(all)).toBe("all");
    expect(scopeText(undefined)).toBe("all");
    expect(scopeJson(group)).toEqual({ group: "web" });
    expect(scopeJson(all)).toEqual({ all: true });
    expect(scopeJson(undefined)).toEqual({ all: true });
  });
});
