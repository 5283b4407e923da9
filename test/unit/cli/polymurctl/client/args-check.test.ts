import { describe, expect, it } from "vitest";
import { checkArgv, commandArgs } from "../../../../../cli/polymurctl/client/args.ts";
import { hashCommand } from "../../../../../cli/polymurctl/commands/hash.ts";
import { routeCommand } from "../../../../../cli/polymurctl/commands/route.ts";
import { UsageError } from "../../../../../common/errors.ts";
import { captureIO } from "../io.ts";

const OPTIONS = {
  hash: { type: "string" },
  "hash-normalize": { type: "string" },
  json: { type: "boolean" },
  file: { type: "string", short: "f" },
  help: { type: "boolean", short: "h" },
} as const;
const EXTRAS = {
  aliases: { normalize: "hash-normalize", algo: "hash" },
  choices: { hash: ["carbon_ch", "fnv1a_ch"] },
};

function message(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error("did not throw");
}

describe("polymurctl option checks", () => {
  const check = (argv: string[]) => checkArgv("polymurctl x", argv, OPTIONS, EXTRAS);

  it("rewrites old spellings, with a note each, and keeps the rest", () => {
    expect(
      check(["a", "--algo", "fnv1a_ch", "--normalize=cleanse", "-f", "x", "-h", "--", "--b"]),
    ).toEqual({
      argv: ["a", "--hash=fnv1a_ch", "--hash-normalize=cleanse", "--file=x", "--help", "--", "--b"],
      notes: [
        "--algo is deprecated: use --hash",
        "--normalize is deprecated: use --hash-normalize",
      ],
    });
  });

  it("says what is wrong in our words", () => {
    expect(message(() => check(["--hsah", "x"]))).toBe(
      "unknown option --hsah; did you mean --hash?",
    );
    expect(message(() => check(["--bogus"]))).toBe(
      "unknown option --bogus (see polymurctl x --help)",
    );
    expect(message(() => check(["-hash", "x"]))).toBe("unknown option -hash; did you mean --hash?");
    expect(message(() => check(["--hash"]))).toBe(
      "option --hash needs a value (see polymurctl x --help)",
    );
    expect(message(() => check(["--hash", "--json"]))).toBe(
      "option --hash needs a value (see polymurctl x --help)",
    );
    expect(message(() => check(["--json=yes"]))).toBe(
      "option --json takes no value (see polymurctl x --help)",
    );
    expect(message(() => check(["--hash", "md5"]))).toBe(
      '--hash must be one of carbon_ch, fnv1a_ch; got "md5"',
    );
    // Named as written.
    expect(message(() => check(["--algo=md5"]))).toBe(
      '--algo must be one of carbon_ch, fnv1a_ch; got "md5"',
    );
    // An old name is a candidate too, suggested by its current name.
    expect(message(() => check(["--algp", "x"]))).toBe(
      "unknown option --algp; did you mean --hash?",
    );
  });

  it("commandArgs prints the notes on stderr and goes on", () => {
    const c = captureIO();
    const parsed = commandArgs("x", "usage", ["--normalize", "none"], OPTIONS, c.io, EXTRAS);
    expect(parsed).toEqual({ values: { "hash-normalize": "none" }, positionals: [] });
    expect(c.stderr()).toBe("polymurctl x: --normalize is deprecated: use --hash-normalize\n");
  });
});

describe("one vocabulary with polymur relay", () => {
  it("polymurctl hash takes --hash and --hash-normalize; --algo and --normalize still work", async () => {
    const names = "a.b.c\nx.y;tag=1\n";
    const now = captureIO(names);
    expect(
      await hashCommand.run(
        ["--hash", "fnv1a_ch", "--hash-normalize", "sorted-tags", "a:1", "b:2"],
        now.io,
      ),
    ).toBe(0);
    expect(now.stderr()).toBe("");
    const old = captureIO(names);
    expect(
      await hashCommand.run(
        ["--algo", "fnv1a_ch", "--normalize", "sorted-tags", "a:1", "b:2"],
        old.io,
      ),
    ).toBe(0);
    expect(old.stdout()).toBe(now.stdout());
    expect(old.stderr()).toBe(
      "polymurctl hash: --algo is deprecated: use --hash\n" +
        "polymurctl hash: --normalize is deprecated: use --hash-normalize\n",
    );
  });

  it("polymurctl route set checks the hash options' values before calling anyone", async () => {
    const c = captureIO();
    const argv = ["set", "--all", "hash-route", "--router", "fastest-hashing"];
    expect(await routeCommand.run(argv, c.io)).toBe(2);
    expect(c.stderr()).toBe(
      'polymurctl route: --router must be one of consistent-hashing, fast-hashing; got "fastest-hashing"\n',
    );
    const d = captureIO();
    expect(
      await routeCommand.run(["set", "--all", "hash-route", "--normalise", "none"], d.io),
    ).toBe(2);
    expect(d.stderr()).toBe(
      "polymurctl route: unknown option --normalise; did you mean --hash-normalize?\n",
    );
  });
});
