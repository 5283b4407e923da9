import { readFileSync } from "node:fs";
import { UsageError } from "../../../common/errors.ts";
import {
  ControlService,
  type GetRulesResponse,
  type Rules,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  type CtlConnection,
  commandArgs,
  EXIT,
  expectedVersion,
  finishChange,
  normalizeWait,
  printJson,
  runWithConnection,
  type ScopeArg,
  scopeArg,
  scopeJson,
  WAIT_HELP,
  WAIT_OPTION,
  waitTimeoutMs,
} from "../client/index.ts";
import { unifiedDiff } from "../client/unified-diff.ts";
import type { Command, CommandIO } from "../command.ts";

const usage = `usage: polymurctl rules set (--all | --group NAME) -f FILE [--expected-version N] [--wait [TIMEOUT]]
       polymurctl rules unset (--all | --group NAME) [--expected-version N] [--wait [TIMEOUT]]
       polymurctl rules show [--group NAME]
       polymurctl rules diff [--all | --group NAME] -f FILE

carbon-c-relay relay.conf rules (cluster, match, rewrite, aggregate) for the fleet
(--all) or for one group. The rules in effect for a node are its group's own, else the
fleet's; while there are any, they alone decide where its datapoints go: the
destinations (dest) and routing policy (route) are kept for nodes without rules, and
not used. "unset --group NAME" makes the group follow the fleet's rules; with none at
all, nodes route by destinations and routing policy.

set: the control plane parses and compiles FILE as a node would, and refuses a file
that does not with file:line:column (FILE as given here) and what is wrong; nothing
changes then. It holds one file: include is refused (put the included files' contents
in its place), and so are listen blocks (a node listens where its own --listen-addr
and --udp-addr say).

show: the rules in effect for the fleet, or with --group NAME for that group, after a
comment line that says whose they are (with --json: "from", and the text).

diff: what "rules set" with the same scope and FILE would change for those nodes: a
unified diff of the rules in effect against FILE. Exit status as diff(1): 0 no
change, 1 changes, 2 trouble (usage, a refused call); 3 the control plane could not
be reached.

options:
  -f, --file FILE          the relay.conf to set or compare
  --expected-version N     change only if the state is at version N
${WAIT_HELP}

${COMMON_HELP}`;

const OPTIONS = {
  all: { type: "boolean" },
  group: { type: "string" },
  file: { type: "string", short: "f" },
  "expected-version": { type: "string" },
  ...WAIT_OPTION,
} as const;

/** Whose rules are in effect for a scope. */
interface InEffect {
  /** "group": the group's own; "fleet": the fleet's (for a group: inherited); "none". */
  from: "group" | "fleet" | "none";
  rules: Rules | undefined;
}

function inEffect(r: GetRulesResponse, group: string | undefined): InEffect {
  const own =
    group === undefined
      ? undefined
      : r.rules.find((x) => x.scope?.target.case === "group" && x.scope.target.value === group);
  if (own !== undefined) return { from: "group", rules: own.rules };
  const fleet = r.rules.find((x) => x.scope?.target.case === "all");
  return fleet === undefined
    ? { from: "none", rules: undefined }
    : { from: "fleet", rules: fleet.rules };
}

/** Groups with rules of their own, by name. */
function ownGroups(r: GetRulesResponse): string[] {
  return r.rules.flatMap((x) => (x.scope?.target.case === "group" ? [x.scope.target.value] : []));
}

/** "the fleet" or "group NAME", for sentences. */
function whereText(group: string | undefined): string {
  return group === undefined ? "the fleet" : `group ${group}`;
}

/** Whose rules a scope runs, in words: "group web's own", "the fleet's (group web inherits them)". */
function whoseText(e: InEffect, group: string | undefined): string {
  if (e.from === "group") return `group ${group}'s own`;
  return group === undefined ? "the fleet's (--all)" : `the fleet's (group ${group} inherits them)`;
}

/** The file's bytes, as a latin1 string (one char per byte). */
function readRulesFile(path: string | undefined): { path: string; bytes: Buffer } {
  if (path === undefined || path === "") throw new UsageError("say which file: -f relay.conf");
  try {
    return { path, bytes: readFileSync(path) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`-f ${path}: ${e.code === "ENOENT" ? "no such file" : e.message}`);
  }
}

const bytesOf = (r: Rules | undefined): Buffer =>
  r === undefined
    ? Buffer.alloc(0)
    : Buffer.from(r.content.buffer, r.content.byteOffset, r.content.byteLength);

function noArgs(args: readonly string[]): void {
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
}

async function set(io: CommandIO, conn: Conn, values: Values, scope: ScopeArg): Promise<number> {
  const file = readRulesFile(values.file);
  const e = expectedVersion(values["expected-version"]);
  const r = await conn.client(ControlService).setRules({
    scope: { target: scope },
    rules: { content: file.bytes, fileName: file.path },
    ...(e === undefined ? {} : { expectedVersion: e }),
  });
  if (!conn.settings.json) {
    const where = scope.case === "all" ? "all nodes" : `group ${scope.value}`;
    io.stdout.write(`rules ${file.path} set for ${where} (state version ${r.version})\n`);
  }
  return finishChange(
    "rules set",
    io,
    conn,
    {
      version: r.version,
      group: scope.case === "group" ? scope.value : undefined,
      json: { version: r.version, scope: scopeJson({ target: scope }), file: file.path },
    },
    waitTimeoutMs(values.wait),
  );
}

async function unset(io: CommandIO, conn: Conn, values: Values, scope: ScopeArg): Promise<number> {
  const e = expectedVersion(values["expected-version"]);
  const r = await conn.client(ControlService).unsetRules({
    scope: { target: scope },
    ...(e === undefined ? {} : { expectedVersion: e }),
  });
  if (!conn.settings.json) {
    io.stdout.write(
      scope.case === "all"
        ? `the fleet has no rules now: groups without their own route by destinations and routing policy (state version ${r.version})\n`
        : `group ${scope.value} now follows the fleet's rules, if any (state version ${r.version})\n`,
    );
  }
  return finishChange(
    "rules unset",
    io,
    conn,
    {
      version: r.version,
      group: scope.case === "group" ? scope.value : undefined,
      json: { version: r.version, scope: scopeJson({ target: scope }), unset: true },
    },
    waitTimeoutMs(values.wait),
  );
}

async function show(io: CommandIO, conn: Conn, group: string | undefined): Promise<number> {
  const r = await conn.client(ControlService).getRules({});
  const e = inEffect(r, group);
  const groups = group === undefined ? ownGroups(r) : [];
  const text = bytesOf(e.rules);
  if (conn.settings.json) {
    printJson(io, {
      version: r.version,
      ...(group === undefined ? { scope: { all: true } } : { scope: { group } }),
      from: e.from,
      ...(e.rules === undefined ? {} : { fileName: e.rules.fileName, text: text.toString("utf8") }),
      ...(group === undefined ? { groups } : {}),
    });
    return EXIT.ok;
  }
  const others =
    groups.length === 0 ? "" : `; groups with rules of their own: ${groups.join(", ")}`;
  if (e.rules === undefined) {
    io.stdout.write(
      `no rules for ${whereText(group)}${group === undefined ? "" : " (nor the fleet)"}: its nodes route by destinations and routing policy${others} (state version ${r.version})\n`,
    );
    return EXIT.ok;
  }
  io.stdout.write(
    `# rules of ${whereText(group)}: ${whoseText(e, group)}, file ${e.rules.fileName}${others} (state version ${r.version})\n`,
  );
  io.stdout.write(text);
  if (text.length > 0 && text[text.length - 1] !== 0x0a) io.stdout.write("\n");
  return EXIT.ok;
}

async function diff(io: CommandIO, conn: Conn, values: Values, group: string | undefined) {
  const file = readRulesFile(values.file);
  const r = await conn.client(ControlService).getRules({});
  const e = inEffect(r, group);
  const old = bytesOf(e.rules).toString("latin1");
  const label =
    e.rules === undefined
      ? `${whereText(group)}: no rules (state version ${r.version})`
      : `${whereText(group)}: ${whoseText(e, group)}, file ${e.rules.fileName} (state version ${r.version})`;
  const d = unifiedDiff(old, file.bytes.toString("latin1"), label, file.path);
  if (conn.settings.json) {
    printJson(io, {
      version: r.version,
      ...(group === undefined ? { scope: { all: true } } : { scope: { group } }),
      from: e.from,
      file: file.path,
      changed: d !== "",
      diff: Buffer.from(d, "latin1").toString("utf8"),
    });
  } else {
    io.stdout.write(Buffer.from(d, "latin1"));
  }
  return d === "" ? 0 : 1;
}

type Conn = CtlConnection;
type Values = { file?: string; "expected-version"?: string; wait?: string };

export const rulesCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("rules", usage, normalizeWait(argv), OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub, ...args] = positionals;
    const name = `rules ${sub ?? ""}`.trim();
    /** diff's answer (0 or 1), once it has one: a refused call is then told apart from "changes". */
    let answered = false;
    const status = await runWithConnection(name, values, io, async (conn) => {
      noArgs(args);
      // Checked before any change is made.
      if (waitTimeoutMs(values.wait) !== undefined && sub !== "set" && sub !== "unset") {
        throw new UsageError(
          `--wait is for changes (rules set, rules unset), not rules ${sub ?? ""}`,
        );
      }
      switch (sub) {
        case "set":
          return set(io, conn, values, scopeArg(values, true)!);
        case "unset":
          if (values.file !== undefined) throw new UsageError("rules unset takes no file");
          return unset(io, conn, values, scopeArg(values, true)!);
        case "show":
        case "ls":
          if (values.all === true) {
            throw new UsageError("rules show shows the fleet's rules; --group NAME for a group's");
          }
          if (values.file !== undefined) throw new UsageError("rules show takes no file");
          return show(io, conn, values.group);
        case "diff": {
          const scope = scopeArg(values, false);
          const changed = await diff(
            io,
            conn,
            values,
            scope?.case === "group" ? scope.value : undefined,
          );
          answered = true;
          return changed;
        }
        default:
          throw new UsageError(
            sub === undefined
              ? "rules needs set, unset, show or diff (see --help)"
              : `unknown rules command "${sub}" (set, unset, show, diff)`,
          );
      }
    });
    // diff(1)'s statuses: 1 is "changes", so a refused call is trouble (2).
    if (sub === "diff" && !answered && status === EXIT.refused) return EXIT.usage;
    return status;
  },
};
