import { describe, expect, it } from "vitest";
import { hashCommand } from "../../../../../cli/polymurctl/commands/hash.ts";
import { captureIO } from "../io.ts";

describe("polymurctl hash", () => {
  it("routes the names on stdin to the destinations given", async () => {
    const c = captureIO("a.b.c\nfoo bar 1\n\nx.y\n");
    expect(await hashCommand.run(["a:1", "b:2"], c.io)).toBe(0);
    expect(c.stdout()).toBe("a.b.c a:1\nfoo b:2\nx.y b:2\n");
  });

  it("bad usage exits 2 with a one-line reason", async () => {
    for (const [argv, message] of [
      [[], "no destinations given (see --help)"],
      [["--compat", "nope", "a:1"], '--compat must be one of carbon, carbon-c-relay; got "nope"'],
      [["--replication", "x", "a:1"], '--replication must be a whole number; got "x"'],
    ] as const) {
      const c = captureIO();
      expect(await hashCommand.run(argv, c.io)).toBe(2);
      expect(c.stderr()).toBe(`polymurctl hash: ${message}\n`);
    }
    const c = captureIO();
    expect(await hashCommand.run(["--json", "a:1"], c.io)).toBe(2);
    expect(c.stderr()).toBe(
      "polymurctl hash: unknown option --json (see polymurctl hash --help)\n",
    );
  });

  it("a configuration the chosen reference rejects exits 1", async () => {
    const c = captureIO();
    expect(
      await hashCommand.run(["--compat", "carbon-c-relay", "--hash", "mmh3_ch", "a:1"], c.io),
    ).toBe(1);
    expect(c.stderr()).toMatch(/^polymurctl hash: .*mmh3_ch/);
  });
});
