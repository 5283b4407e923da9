import { describe, expect, it } from "vitest";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  expectedVersion,
  parseCommandArgs,
} from "../../../../../cli/polymurctl/client/args.ts";
import { DEFAULT_SERVER } from "../../../../../cli/polymurctl/client/settings.ts";
import { UsageError } from "../../../../../common/errors.ts";
import { captureIO } from "../io.ts";

const OPTIONS = { all: { type: "boolean" }, group: { type: "string" } } as const;

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

describe("polymurctl arguments", () => {
  it("takes the common options and the command's own", () => {
    const { values, positionals } = parseCommandArgs(
      ["add", "--server", "http://x:1", "--json", "a:1", "--group", "web", "-h"],
      OPTIONS,
    );
    expect(positionals).toEqual(["add", "a:1"]);
    expect(values).toEqual({ server: "http://x:1", json: true, group: "web", help: true });
  });

  it("an unknown option is a one-line UsageError that points at --help", () => {
    const err = thrown(() => parseCommandArgs(["ls", "--bogus"], OPTIONS));
    expect(err).toBeInstanceOf(UsageError);
    const message = (err as Error).message;
    expect(message).toBe("unknown option --bogus (see polymurctl --help)");
    expect(message).not.toContain("\n");
  });

  it("an option without its value is a UsageError", () => {
    const err = thrown(() => parseCommandArgs(["ls", "--group"], OPTIONS));
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe("option --group needs a value (see polymurctl --help)");
  });

  it("a command's options are its own: another command's are unknown", () => {
    expect(() => parseCommandArgs(["--group", "web"], {})).toThrow(/^unknown option --group /);
  });

  it("commandArgs prints a usage error on stderr and returns 2", () => {
    const c = captureIO();
    expect(commandArgs("dest", "usage: dest", ["ls", "--bogus", "--json"], OPTIONS, c.io)).toBe(2);
    expect(c.stderr()).toBe(
      "polymurctl dest: unknown option --bogus (see polymurctl dest --help)\n",
    );
    expect(c.stdout()).toBe(""); // --json was not understood: no JSON either
  });

  it("commandArgs answers --help on stdout and returns 0", () => {
    const c = captureIO();
    expect(commandArgs("dest", "usage: polymurctl dest …", ["ls", "--help"], OPTIONS, c.io)).toBe(
      0,
    );
    expect(c.stdout()).toBe("usage: polymurctl dest …\n");
    expect(c.stderr()).toBe("");
  });

  it("commandArgs returns the parsed arguments otherwise", () => {
    const c = captureIO();
    const parsed = commandArgs("dest", "usage", ["ls", "--all"], OPTIONS, c.io);
    expect(parsed).toEqual({ values: { all: true }, positionals: ["ls"] });
    expect(c.stdout() + c.stderr()).toBe("");
  });

  it("--expected-version is a whole number", () => {
    expect(expectedVersion(undefined)).toBeUndefined();
    expect(expectedVersion("0")).toBe(0n);
    expect(expectedVersion("18446744073709551615")).toBe(18446744073709551615n);
    for (const bad of ["x1", "-1", "1.5", ""]) {
      expect(() => expectedVersion(bad)).toThrow(
        new UsageError(`--expected-version must be a whole number; got "${bad}"`),
      );
      expect(() => expectedVersion(bad)).toThrow(UsageError);
    }
  });

  it("the common help documents every common option and the default server", () => {
    for (const name of Object.keys(COMMON_OPTIONS)) expect(COMMON_HELP).toContain(`--${name}`);
    expect(COMMON_HELP).toContain(`default ${DEFAULT_SERVER}`);
    expect(COMMON_HELP).toContain(
      "Exit status: 0 ok, 1 the control plane refused, 2 usage or configuration, 3 unreachable.",
    );
  });
});
