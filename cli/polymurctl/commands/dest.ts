import { UsageError } from "../../../common/errors.ts";
import { parseDestination } from "../../../dataplane/forward/destination-spec.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  expectedVersion,
  fail,
  finishChange,
  normalizeWait,
  printJson,
  runWithConnection,
  scopeArg,
  scopeJson,
  scopeText,
  table,
  WAIT_HELP,
  WAIT_OPTION,
  waitTimeoutMs,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";

const usage = `usage: polymurctl dest add DEST... (--all | --group NAME) [--expected-version N] [--wait [TIMEOUT]]
       polymurctl dest rm DEST [--all | --group NAME] [--expected-version N] [--wait [TIMEOUT]]
       polymurctl dest ls [--all | --group NAME]

Destinations of the fleet (--all: every node) or of one group of nodes. DEST is
host:port, host:port:instance or host:port=instance, optionally after tls://,
pickle:// or pickle+tls:// (TLS and pickle destinations: the nodes' own
--destination-tls-* options apply). Nodes apply a change within a second. --expected-version N makes the change only if the state is still at version N
(several DESTs: the first at N, the next at N+1, …).

options:
  --expected-version N     change only if the state is at version N
${WAIT_HELP}

${COMMON_HELP}`;

const OPTIONS = {
  all: { type: "boolean" },
  group: { type: "string" },
  "expected-version": { type: "string" },
  ...WAIT_OPTION,
} as const;

export const destCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("dest", usage, normalizeWait(argv), OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub, ...args] = positionals;
    const name = `dest ${sub ?? ""}`.trim();
    return runWithConnection(name, values, io, async (conn) => {
      const json = conn.settings.json;
      const waitMs = waitTimeoutMs(values.wait);
      if (waitMs !== undefined && sub !== "add" && sub !== "rm") {
        throw new UsageError(`--wait is for changes (dest add, dest rm), not dest ${sub ?? ""}`);
      }
      const groupOf = (s: { case: string; value: unknown }): string | undefined =>
        s.case === "group" ? String(s.value) : undefined;
      switch (sub) {
        case "add": {
          const scope = scopeArg(values, true)!;
          if (args.length === 0) throw new UsageError("no destination given: dest add HOST:PORT …");
          for (const a of args) parseDestination(a); // all or nothing: check every spec first
          const client = conn.client(ControlService);
          let expected = expectedVersion(values["expected-version"]);
          let version = 0n;
          for (const spec of args) {
            const r = await client.addDestination({
              destination: { spec, scope: { target: scope } },
              ...(expected === undefined ? {} : { expectedVersion: expected }),
            });
            version = r.version;
            if (expected !== undefined) expected = version;
            if (!json) {
              io.stdout.write(
                `added ${spec} for ${scope.case === "all" ? "all nodes" : `group ${scope.value}`} (state version ${version})\n`,
              );
            }
          }
          return finishChange(
            name,
            io,
            conn,
            {
              version,
              group: groupOf(scope),
              json: { version, added: args, scope: scopeJson({ target: scope }) },
            },
            waitMs,
          );
        }
        case "rm": {
          if (args.length !== 1) throw new UsageError("dest rm takes one destination");
          const spec = args[0]!;
          const id = parseDestination(spec).id;
          const client = conn.client(ControlService);
          let scope = scopeArg(values, false);
          if (scope === undefined) {
            // No scope given: find it, if the destination is in exactly one.
            const list = await client.listDestinations({});
            const found = list.destinations.filter((d) => parseDestination(d.spec).id === id);
            if (found.length === 0) {
              return fail(
                name,
                io,
                {
                  exit: EXIT.refused,
                  message: `no destination ${spec} (polymurctl dest ls lists them)`,
                  code: "not_found",
                },
                json,
              );
            }
            if (found.length > 1) {
              throw new UsageError(
                `${spec} is in ${found.map((d) => scopeText(d.scope)).join(", ")}: say which with --all or --group NAME`,
              );
            }
            scope = found[0]!.scope!.target as NonNullable<typeof scope>;
          }
          const r = await client.removeDestination({
            destination: { spec, scope: { target: scope } },
            ...optionalExpected(values["expected-version"]),
          });
          if (!json) {
            io.stdout.write(
              `removed ${spec} from ${scope.case === "all" ? "all nodes" : `group ${scope.value}`} (state version ${r.version})\n`,
            );
          }
          return finishChange(
            name,
            io,
            conn,
            {
              version: r.version,
              group: groupOf(scope),
              json: { version: r.version, removed: spec, scope: scopeJson({ target: scope }) },
            },
            waitMs,
          );
        }
        case "ls":
        case "list": {
          if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
          const filter = scopeArg(values, false);
          const r = await conn.client(ControlService).listDestinations({});
          const ds = r.destinations.filter(
            (d) =>
              filter === undefined ||
              (filter.case === "all"
                ? d.scope?.target.case === "all"
                : d.scope?.target.case === "all" || d.scope?.target.value === filter.value),
          );
          if (json) {
            printJson(io, {
              version: r.version,
              destinations: ds.map((d) => ({ spec: d.spec, scope: scopeJson(d.scope) })),
            });
          } else if (ds.length === 0) {
            io.stdout.write(`no destinations (state version ${r.version})\n`);
          } else {
            io.stdout.write(
              table(
                ["DESTINATION", "SCOPE"],
                ds.map((d) => [d.spec, scopeText(d.scope)]),
              ),
            );
            io.stdout.write(`(state version ${r.version})\n`);
          }
          return EXIT.ok;
        }
        default:
          throw new UsageError(
            sub === undefined
              ? "dest needs add, rm or ls (see --help)"
              : `unknown dest command "${sub}" (add, rm, ls)`,
          );
      }
    });
  },
};

function optionalExpected(v: string | undefined): { expectedVersion?: bigint } {
  const e = expectedVersion(v);
  return e === undefined ? {} : { expectedVersion: e };
}
