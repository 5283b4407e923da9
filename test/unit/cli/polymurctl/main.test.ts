import { describe, expect, it } from "vitest";
import { commands, main, unknownCommandText, usage } from "../../../../cli/polymurctl/main.ts";
import { captureIO } from "./io.ts";

describe("polymurctl: an unknown command", () => {
  it("names the closest command and exits 2", async () => {
    for (const [typed, meant] of [
      ["rouet", "route"],
      ["rule", "rules"],
      ["dset", "dest"],
      ["node", "nodes"],
      ["stauts", "status"],
      ["completoin", "completion"],
    ] as const) {
      const c = captureIO();
      expect(await main([typed], c.io)).toBe(2);
      expect(c.stderr()).toBe(`polymurctl: unknown command "${typed}"; did you mean "${meant}"?\n`);
      expect(c.stdout()).toBe("");
    }
  });

  it("lists the commands when none is close", async () => {
    const c = captureIO();
    expect(await main(["frobnicate", "--all"], c.io)).toBe(2);
    expect(c.stderr()).toBe(
      `polymurctl: unknown command "frobnicate" (commands: ${Object.keys(commands).join(", ")}; see polymurctl --help)\n`,
    );
    expect(unknownCommandText("xyzzy")).toContain("completion");
  });

  it("lists completion among the commands in --help", async () => {
    const c = captureIO();
    expect(await main(["--help"], c.io)).toBe(0);
    expect(c.stdout()).toBe(`${usage()}\n`);
    expect(c.stdout()).toMatch(/^ {2}completion {2,}print a shell completion script/m);
  });
});
