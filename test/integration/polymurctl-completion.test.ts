import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CTL_BIN } from "../fixtures/control-plane.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

// The scripts `polymurctl completion` prints, as the shells run them: bash's
// completion function with COMP_WORDS/COMP_CWORD as bash sets them (it splits
// `--hash=mm` at "="), fish's own `complete -C`, and zsh's function with the
// completion builtins (compadd, _describe, _files) stood in for, since zsh
// completes only inside its line editor. scripts/install-test-deps.sh
// installs zsh and fish; without them those tests skip (and fail under CI=true).

function run(file: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${file} ${args.join(" ")}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const has = (shell: string): boolean => {
  try {
    execFileSync(shell, ["-c", "exit 0"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

let dir: string;
const scripts: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "polymurctl-completion-"));
  // Files for -f/--rules to complete.
  writeFileSync(join(dir, "relay.conf"), "");
  writeFileSync(join(dir, "other.txt"), "");
  mkdirSync(join(dir, "rules.d"));
  for (const shell of ["bash", "zsh", "fish"]) {
    const text = await run(process.execPath, [CTL_BIN, "completion", shell], dir);
    scripts[shell] = join(dir, `polymurctl.${shell}`);
    writeFileSync(scripts[shell], text);
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** bash's candidates with the cursor at the end of the last word. */
async function bashComplete(...words: string[]): Promise<string[]> {
  const out = await run(
    "bash",
    [
      "-c",
      `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 )); _polymurctl; printf "%s\\n" "\${COMPREPLY[@]}"`,
      "_",
      scripts["bash"]!,
      ...words,
    ],
    dir,
  );
  return out.split("\n").filter((l) => l !== "");
}

describe("bash completion of polymurctl", () => {
  it("completes commands, subcommands and options", async () => {
    expect(await bashComplete("polymurctl", "rou")).toEqual(["route"]);
    expect(await bashComplete("polymurctl", "r")).toEqual(["route", "rules", "rollback"]);
    expect(await bashComplete("polymurctl", "-")).toEqual(["--help", "--version"]);
    expect(await bashComplete("polymurctl", "rules", "s")).toEqual(["set", "show"]);
    expect(await bashComplete("polymurctl", "dest", "")).toEqual(["add", "rm", "ls"]);
    expect(await bashComplete("polymurctl", "completion", "")).toEqual(["bash", "zsh", "fish"]);
    expect(await bashComplete("polymurctl", "rules", "set", "--gr")).toEqual(["--group"]);
    expect(await bashComplete("polymurctl", "route", "set", "--hash-")).toEqual([
      "--hash-normalize",
    ]);
    expect(await bashComplete("polymurctl", "hash", "--group")).toEqual([]); // not hash's
    expect(await bashComplete("polymurctl", "hash", "m")).toEqual(["moves"]);
    expect(await bashComplete("polymurctl", "hash", "moves", "--replication-")).toEqual([
      "--replication-to",
    ]);
  });

  it("skips options and their values to find the subcommand", async () => {
    expect(await bashComplete("polymurctl", "dest", "--group", "web", "")).toEqual([
      "add",
      "rm",
      "ls",
    ]);
    expect(await bashComplete("polymurctl", "dest", "--group", "=", "web", "r")).toEqual(["rm"]);
    expect(await bashComplete("polymurctl", "dest", "--all", "add", "")).toEqual([]);
    expect(await bashComplete("polymurctl", "nodes", "ls", "--group", "")).toEqual([]);
  });

  it("completes the values polymurctl checks, also after --option=", async () => {
    expect(await bashComplete("polymurctl", "route", "set", "--all", "--hash", "")).toEqual([
      "carbon_ch",
      "fnv1a_ch",
      "mmh3_ch",
      "jump_fnv1a_ch",
    ]);
    expect(await bashComplete("polymurctl", "hash", "--compat", "=", "carbon-")).toEqual([
      "carbon-c-relay",
    ]);
  });

  it("completes file names after -f, --file and --rules", async () => {
    // compgen -f lists in directory order.
    expect((await bashComplete("polymurctl", "rules", "set", "-f", "r")).sort()).toEqual([
      "relay.conf",
      "rules.d",
    ]);
    expect(await bashComplete("polymurctl", "rules", "diff", "--file", "o")).toEqual(["other.txt"]);
    expect(await bashComplete("polymurctl", "route", "test", "--rules", "rel")).toEqual([
      "relay.conf",
    ]);
  });

  it("works as installed: source <(polymurctl completion bash)", async () => {
    const out = await run(
      "bash",
      [
        "-c",
        `source <("$1" "$2" completion bash); complete -p polymurctl; COMP_WORDS=(polymurctl rou); COMP_CWORD=1; _polymurctl; printf "%s\\n" "\${COMPREPLY[@]}"`,
        "_",
        process.execPath,
        CTL_BIN,
      ],
      dir,
    );
    expect(out).toBe("complete -F _polymurctl polymurctl\nroute\n");
  });
});

describe.skipIf(skipUnlessAvailable("fish", has("fish")))(
  "fish completion of polymurctl (fish's complete -C)",
  () => {
    async function fishComplete(line: string): Promise<string[]> {
      const out = await run(
        "fish",
        ["-c", 'source $argv[1]; complete -C"$argv[2]"', scripts["fish"]!, line],
        dir,
      );
      return out
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.split("\t")[0]!);
    }

    it("completes commands, subcommands, options, values and files", async () => {
      expect(await fishComplete("polymurctl rou")).toEqual(["route"]);
      expect(await fishComplete("polymurctl rules s")).toEqual(["set", "show"]);
      expect(await fishComplete("polymurctl dest --group web ")).toEqual(["add", "ls", "rm"]);
      expect(await fishComplete("polymurctl rules set --gr")).toEqual(["--group"]);
      expect(await fishComplete("polymurctl route set --hash=mm")).toEqual(["--hash=mmh3_ch"]);
      expect(await fishComplete("polymurctl rules set -f r")).toEqual(["relay.conf", "rules.d/"]);
    });
  },
);

describe.skipIf(skipUnlessAvailable("zsh", has("zsh")))(
  "zsh completion of polymurctl (builtins stood in for)",
  () => {
    /** The candidates the function hands to compadd/_describe (zsh filters them by prefix). */
    async function zshCandidates(...words: string[]): Promise<string[]> {
      const out = await run(
        "zsh",
        [
          "-fc",
          [
            "compdef() { }",
            'compadd() { while (( $# )) && [[ $1 != -- ]]; do shift; done; shift; print -rl -- "$@"; }',
            `_describe() { print -rl -- "\${(@)\${(P)4}%%:*}"; }`,
            "_files() { print -r -- '<files>'; }",
            "compset() { }",
            'source "$1"; shift; words=("$@"); CURRENT=$#words; _polymurctl',
          ].join("\n"),
          "_",
          scripts["zsh"]!,
          ...words,
        ],
        dir,
      );
      return out.split("\n").filter((l) => l !== "");
    }

    it("offers commands, subcommands, options, values and files", async () => {
      expect(await zshCandidates("polymurctl", "")).toEqual([
        "hash",
        "dest",
        "route",
        "rules",
        "key",
        "history",
        "diff",
        "rollback",
        "nodes",
        "status",
        "completion",
      ]);
      expect(await zshCandidates("polymurctl", "rules", "")).toEqual([
        "set",
        "unset",
        "show",
        "diff",
      ]);
      expect(await zshCandidates("polymurctl", "dest", "--group", "web", "")).toEqual([
        "add",
        "rm",
        "ls",
      ]);
      const nodeOptions = await zshCandidates("polymurctl", "nodes", "-");
      expect(nodeOptions).toContain("--group");
      expect(nodeOptions).toContain("--json");
      expect(nodeOptions).not.toContain("--all");
      expect(await zshCandidates("polymurctl", "route", "set", "--router=")).toEqual([
        "consistent-hashing",
        "fast-hashing",
      ]);
      expect(await zshCandidates("polymurctl", "rules", "set", "-f", "")).toEqual(["<files>"]);
    });
  },
);
