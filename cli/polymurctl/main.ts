/**
 * `polymurctl`: the operator's command-line tool. Each subcommand lives in its own module
 * under commands/ and is loaded on demand, so a command that talks to the control
 * plane (dest, route, rules, key, history, diff, rollback, nodes, status) never slows down
 * one that does not (hash).
 */
import { closestName } from "../../common/option-suggest.ts";
import { versionLine } from "../../common/version.ts";
import type { CommandEntry, CommandIO } from "./command.ts";

/** The commands, by name: what `main` dispatches, `usage` lists and `completion` completes. */
export const commands: Readonly<Record<string, CommandEntry>> = {
  hash: {
    summary:
      "show where metric names (stdin) are routed by carbon/carbon-c-relay hashing, and which move when the ring changes",
    load: async () => (await import("./commands/hash.ts")).hashCommand,
  },
  dest: {
    summary: "add, remove and list destinations, fleet-wide (--all) or per group",
    load: async () => (await import("./commands/dest.ts")).destCommand,
  },
  route: {
    summary: "set and show the routing policy (broadcast or hash-route), fleet-wide or per group",
    load: async () => (await import("./commands/route.ts")).routeCommand,
  },
  rules: {
    summary: "set, show, diff and unset relay.conf rules (clusters, match, rewrite, aggregate)",
    load: async () => (await import("./commands/rules.ts")).rulesCommand,
  },
  key: {
    summary: "create, list, rotate and remove API keys (the secret is shown once)",
    load: async () => (await import("./commands/key.ts")).keyCommand,
  },
  history: {
    summary: "list the state versions kept (when, what, who), or show one",
    load: async () => (await import("./commands/history.ts")).historyCommand,
  },
  diff: {
    summary: "show what changed between two state versions (a unified diff)",
    load: async () => (await import("./commands/diff.ts")).diffCommand,
  },
  rollback: {
    summary: "make a new state version with the destinations, routing and rules of an earlier one",
    load: async () => (await import("./commands/rollback.ts")).rollbackCommand,
  },
  nodes: {
    summary: "list data-plane nodes: connected, applied version, counters",
    load: async () => (await import("./commands/nodes.ts")).nodesCommand,
  },
  status: {
    summary: "control plane health and a summary of the fleet",
    load: async () => (await import("./commands/status.ts")).statusCommand,
  },
  completion: {
    summary: "print a shell completion script (bash, zsh or fish) made from these commands",
    load: async () => (await import("./commands/completion.ts")).createCompletionCommand(commands),
  },
};

/** The top-level --help text: the commands and their summaries. */
export function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(
    ([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`,
  );
  return [
    "usage: polymurctl <command> [options]",
    "",
    "commands:",
    ...lines,
    "",
    "Run `polymurctl <command> --help` for a command's options; `polymurctl --version` for the version.",
  ].join("\n");
}

/**
 * `unknown command "rouet"; did you mean "route"?`, or with nothing close,
 * the list of commands.
 */
export function unknownCommandText(name: string): string {
  const close = closestName(name, Object.keys(commands));
  return close === undefined
    ? `unknown command "${name}" (commands: ${Object.keys(commands).join(", ")}; see polymurctl --help)`
    : `unknown command "${name}"; did you mean "${close}"?`;
}

/** Runs polymurctl with `argv` (the arguments after the program name); resolves to the exit status. */
export async function main(argv: readonly string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    io.stdout.write(`${versionLine("polymurctl")}\n`);
    return 0;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (entry === undefined) {
    io.stderr.write(`polymurctl: ${unknownCommandText(name)}\n`);
    return 2;
  }
  const command = await entry.load();
  return command.run(rest, io);
}

// Run when executed (bin/polymurctl.js imports this module), not when imported by a test.
const entryPoint = process.argv[1] ?? "";
if (/polymurctl(\.js|\.ts)?$/.test(entryPoint)) {
  main(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`polymurctl: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
