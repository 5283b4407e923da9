import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ErrorCode, PolymurError, UsageError } from "../../../common/errors.ts";
import {
  copyOptions,
  getAddress,
  getBytes,
  getInt,
  type LegacyFlag,
  type OptionSpec,
  optionLabel,
  parseArgv,
  parseConfigFile,
  resolveOptions,
} from "../../../common/options.ts";

const SPECS: readonly OptionSpec[] = [
  { name: "listen-addr", type: "string", default: "0.0.0.0:2003", help: "" },
  { name: "hash", type: "string", default: "", help: "", choices: ["carbon_ch", "fnv1a_ch"] },
  { name: "hash-normalize", type: "string", default: "none", help: "", aliases: ["normalize"] },
  { name: "replication", type: "int", default: "1", help: "" },
  { name: "queue-size", type: "string", default: "1MiB", help: "" },
  { name: "console-out", type: "bool", default: "false", help: "" },
];
const LEGACY: readonly LegacyFlag[] = [
  { name: "queue-cap", takesValue: true, action: "ignore", advice: "use --queue-size" },
  { name: "dev-mode", takesValue: false, action: "refuse", advice: "use --keys-file" },
];
const CONTEXT = { command: "polymur relay", legacy: LEGACY };

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error("did not throw");
}

function file(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "polymur-options-")), "polymur.conf");
  writeFileSync(path, text);
  return path;
}

describe("parseArgv", () => {
  it("takes --name value, --name=value and the Go polymur's -name=value / -name value", () => {
    const { flags, positional, notes } = parseArgv(
      SPECS,
      ["-listen-addr=127.0.0.1:1", "-replication", "2", "--hash=fnv1a_ch", "-console-out", "x"],
      CONTEXT,
    );
    expect(Object.fromEntries(flags)).toEqual({
      "listen-addr": "127.0.0.1:1",
      replication: "2",
      hash: "fnv1a_ch",
      "console-out": "true",
    });
    expect(positional).toEqual(["x"]);
    expect(notes).toEqual([]);
  });

  it("names an unknown option with the closest valid one when it is close", () => {
    const err = thrown(() => parseArgv(SPECS, ["--hsah", "carbon_ch"], CONTEXT));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe("unknown option --hsah; did you mean --hash?");
    expect(thrown(() => parseArgv(SPECS, ["-replicaton=2"], CONTEXT)).message).toBe(
      "unknown option -replicaton; did you mean --replication?",
    );
    expect(thrown(() => parseArgv(SPECS, ["--frobnicate"], CONTEXT)).message).toBe(
      "unknown option --frobnicate (see polymur relay --help)",
    );
  });

  it("an option without its value is a usage error, also when a flag follows", () => {
    for (const argv of [["--listen-addr"], ["--listen-addr", "--hash", "fnv1a_ch"]]) {
      const err = thrown(() => parseArgv(SPECS, argv, CONTEXT));
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toBe("option --listen-addr needs a value");
    }
  });

  it("takes an old spelling with a deprecation note", () => {
    const { flags, notes } = parseArgv(SPECS, ["--normalize", "cleanse"], CONTEXT);
    expect(flags.get("hash-normalize")).toBe("cleanse");
    expect(notes).toEqual(["--normalize is deprecated: use --hash-normalize"]);
    // A near miss of the old spelling is pointed at the current one.
    expect(thrown(() => parseArgv(SPECS, ["--normalise", "x"], CONTEXT)).message).toBe(
      "unknown option --normalise; did you mean --hash-normalize?",
    );
  });

  it("answers the Go polymur's other flags: ignored with a note, or refused saying what to use", () => {
    const { flags, notes } = parseArgv(
      SPECS,
      ["-queue-cap", "4096", "-listen-addr", "127.0.0.1:1", "-queue-cap=10"],
      CONTEXT,
    );
    expect(Object.fromEntries(flags)).toEqual({ "listen-addr": "127.0.0.1:1" });
    expect(notes).toEqual([
      "-queue-cap (a Go polymur option) is ignored: use --queue-size",
      "-queue-cap (a Go polymur option) is ignored: use --queue-size",
    ]);
    const err = thrown(() => parseArgv(SPECS, ["-dev-mode"], CONTEXT));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(
      "-dev-mode is a Go polymur option that polymur does not have: use --keys-file",
    );
    // Without the context's list, it is just unknown.
    expect(() => parseArgv(SPECS, ["-dev-mode"])).toThrow(/^unknown option -dev-mode/);
  });
});

describe("where a bad value came from", () => {
  it("a flag is named as the flag, a variable as the variable, a file line as file:line", () => {
    const flag = parseArgv(SPECS, ["--hash", "md5"]).flags;
    expect(() => resolveOptions(SPECS, flag, {}, new Map())).toThrow(
      '--hash must be one of carbon_ch, fnv1a_ch; got "md5"',
    );
    const env = { POLYMUR_HASH: "md5" };
    const err = thrown(() => resolveOptions(SPECS, new Map(), env, new Map()));
    expect(err).toBeInstanceOf(PolymurError);
    expect((err as PolymurError).code).toBe(ErrorCode.Config);
    expect(err.message).toBe('POLYMUR_HASH must be one of carbon_ch, fnv1a_ch; got "md5"');
    const path = file("# polymur\nlisten-addr = 127.0.0.1:1\nhash = md5\n");
    expect(() => resolveOptions(SPECS, new Map(), {}, parseConfigFile(SPECS, path))).toThrow(
      `${path}:3: hash must be one of carbon_ch, fnv1a_ch; got "md5"`,
    );
  });

  it("the value getters name the source too", () => {
    const path = file("replication = two\nqueue-size = lots\n");
    const o = resolveOptions(
      SPECS,
      new Map(),
      { POLYMUR_LISTEN_ADDR: "nowhere" },
      parseConfigFile(SPECS, path),
    );
    expect(optionLabel(o, "listen-addr")).toBe("POLYMUR_LISTEN_ADDR");
    expect(() => getAddress(o, "listen-addr")).toThrow(
      'POLYMUR_LISTEN_ADDR must be host:port (or [ipv6]:port); got "nowhere"',
    );
    expect(() => getInt(o, "replication")).toThrow(
      `${path}:1: replication must be a whole number; got "two"`,
    );
    expect(() => getBytes(copyOptions(o), "queue-size")).toThrow(
      `${path}:2: queue-size must be a size`,
    );
    // A flag wins over both, and is named as the flag.
    const flagged = resolveOptions(SPECS, new Map([["replication", "x"]]), {}, new Map());
    expect(() => getInt(flagged, "replication")).toThrow(
      '--replication must be a whole number; got "x"',
    );
    // A map that did not come from resolveOptions: the flag's name.
    expect(optionLabel(new Map(), "replication")).toBe("--replication");
  });

  it("a config file's unknown name is suggested a close one", () => {
    const path = file("listen-adr = 127.0.0.1:1\nbogus = 1\n");
    expect(() => parseConfigFile(SPECS, path)).toThrow(
      `${path}:1: unknown option "listen-adr"; did you mean "listen-addr"?`,
    );
    const other = file("bogus = 1\n");
    expect(() => parseConfigFile(SPECS, other)).toThrow(/:1: unknown option "bogus"$/);
  });
});
