import { beforeAll, describe, expect, it } from "vitest";
import type { Command } from "../../../../../cli/polymurctl/command.ts";
import {
  type CompletionSpec,
  completionScript,
  completionSpecs,
  SHELLS,
  subcommandsOf,
} from "../../../../../cli/polymurctl/commands/completion.ts";
import { commands, main } from "../../../../../cli/polymurctl/main.ts";
import { captureIO } from "../io.ts";

// Every word is checked against the tables the program itself uses (main.ts's
// commands, each command's `options`, which its `run` parses), never against a
// list kept here: a command or option added later is checked the same way.

let specs: CompletionSpec[];
const tables = new Map<string, Command>();

beforeAll(async () => {
  specs = await completionSpecs(commands);
  for (const [name, entry] of Object.entries(commands)) tables.set(name, await entry.load());
});

/** The ways each option of a command is written: `--name`, and `-x` where it has a short form. */
function flagsOf(name: string): string[] {
  return Object.entries(tables.get(name)!.options).flatMap(([o, spec]) =>
    spec.short === undefined ? [`--${o}`] : [`--${o}`, `-${spec.short}`],
  );
}

/** The words of a bash `case` branch's `var="…"` for a command, or zsh's `var=(…)`. */
function branchWords(script: string, command: string, variable: string): string[] {
  const line = script.split("\n").find((l) => l.trimStart().startsWith(`${command}) subs=`));
  expect(line, `${command}'s branch`).toBeDefined();
  const m = new RegExp(`\\b${variable}=(?:"([^"]*)"|\\(([^)]*)\\))`).exec(line!);
  expect(m, `${variable} in ${line}`).not.toBeNull();
  return (m![1] ?? m![2]!).split(" ").filter((w) => w !== "");
}

describe("polymurctl completion: the scripts are made from the tables", () => {
  it("reads the subcommands from each command's usage lines", () => {
    const subs = Object.fromEntries(specs.map((s) => [s.name, s.subcommands]));
    expect(subs).toEqual({
      hash: ["moves"],
      dest: ["add", "rm", "ls"],
      route: ["set", "show", "test"],
      rules: ["set", "unset", "show", "diff"],
      key: ["create", "rotate", "rm", "ls"],
      history: ["show"],
      diff: [],
      rollback: [],
      nodes: ["ls"],
      status: [],
      completion: ["bash", "zsh", "fish"],
    });
    // Only `polymurctl <that command> <word>` at a line's start counts.
    expect(
      subcommandsOf("x", "usage: polymurctl x go [--a]\n  polymurctl y no\n  see polymurctl x not"),
    ).toEqual(["go"]);
  });

  it("knows which options take a file, from the usage (FILE, relay.conf)", () => {
    const files = Object.fromEntries(specs.map((s) => [s.name, [...s.fileOptions].sort()]));
    expect(files["rules"]).toEqual(["ca", "file"]);
    expect(files["route"]).toEqual(["ca", "rules"]);
    expect(files["hash"]).toEqual(["names"]);
    for (const s of specs) {
      for (const o of s.fileOptions) expect(s.options[o]?.type).toBe("string");
    }
  });

  it.each(SHELLS)("%s: names every command, and every subcommand and option of each", (shell) => {
    const script = completionScript(shell, specs);
    for (const name of Object.keys(commands)) {
      const spec = specs.find((s) => s.name === name)!;
      if (shell === "fish") {
        const lines = script
          .split("\n")
          .filter((l) => l.includes(`__polymurctl_command_is ${name}`));
        expect(script).toContain(`-n __fish_use_subcommand -a ${name} -d `);
        if (spec.subcommands.length > 0) {
          expect(lines.some((l) => l.endsWith(`-a '${spec.subcommands.join(" ")}'`))).toBe(true);
        }
        for (const [o, opt] of Object.entries(tables.get(name)!.options)) {
          const short = opt.short === undefined ? "" : ` -s ${opt.short}`;
          expect(lines.some((l) => l.includes(`'${short} -l ${o}`))).toBe(true);
        }
      } else {
        expect(branchWords(script, name, "subs")).toEqual(spec.subcommands);
        expect(branchWords(script, name, "opts").sort()).toEqual(flagsOf(name).sort());
        expect(script).toContain(name); // and the list of commands, below
      }
    }
    if (shell === "bash") {
      expect(script).toContain(`compgen -W "${Object.keys(commands).join(" ")}"`);
    }
    if (shell === "zsh") {
      for (const [name, e] of Object.entries(commands)) {
        expect(script).toContain(`'${name}:${e.summary.replace(/:/g, "\\:")}'`);
      }
    }
  });

  it.each(SHELLS)(
    "%s: offers the values polymurctl checks, and files after -f/--rules",
    (shell) => {
      const script = completionScript(shell, specs);
      for (const s of specs) {
        for (const values of Object.values(s.choices)) expect(script).toContain(values.join(" "));
      }
      if (shell === "bash") {
        expect(script).toContain('"rules --ca"|"rules -f"|"rules --file") compopt -o filenames');
        expect(script).toContain('"route --ca"|"route --rules") compopt -o filenames');
      } else if (shell === "zsh") {
        expect(script).toContain('"rules --ca"|"rules -f"|"rules --file") _files');
      } else {
        expect(script).toContain("'__polymurctl_command_is rules' -s f -l file -r -F");
        expect(script).toContain("'__polymurctl_command_is route' -l rules -r -F");
      }
    },
  );
});

describe("polymurctl completion: the command", () => {
  it("prints the script for the shell asked for", async () => {
    for (const shell of SHELLS) {
      const c = captureIO();
      expect(await main(["completion", shell], c.io)).toBe(0);
      expect(c.stdout()).toBe(completionScript(shell, specs));
      expect(c.stderr()).toBe("");
    }
  });

  it("refuses a missing or unknown shell with exit 2", async () => {
    for (const [argv, message] of [
      [[], "say which shell: bash, zsh, fish"],
      [["tcsh"], 'no completion for "tcsh" (shells: bash, zsh, fish)'],
      [["bash", "zsh"], "one shell only; got bash zsh"],
      [["--frobnicate", "bash"], "unknown option --frobnicate (see polymurctl completion --help)"],
    ] as const) {
      const c = captureIO();
      expect(await main(["completion", ...argv], c.io)).toBe(2);
      expect(c.stderr()).toBe(`polymurctl completion: ${message}\n`);
      expect(c.stdout()).toBe("");
    }
  });

  it("--help tells how to install it", async () => {
    const c = captureIO();
    expect(await main(["completion", "-h"], c.io)).toBe(0);
    expect(c.stdout()).toContain("polymurctl completion bash > /etc/bash_completion.d/polymurctl");
  });
});
