import { UsageError } from "../../../common/errors.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import { fleetText, historyEntryJson, versionLabel } from "../client/fleet-text.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  isoTime,
  printJson,
  runWithConnection,
  table,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";

const usage = `usage: polymurctl history [--group NAME]
       polymurctl history show VERSION

The versions of the state the control plane keeps (the last 100 unless its
--history-versions says otherwise), newest first: when, what changed (in
polymurctl's words), who asked (the user@host polymurctl sent, or POLYMUR_ACTOR;
not verified: every admin shares one credential) and the replica that wrote it.
--group NAME lists only the changes that concern that group's nodes: its own
settings, fleet-wide ones, API keys and rollbacks that changed either.

show: one kept version's whole configuration, as polymurctl diff compares them.

polymurctl diff V1 [V2] shows what changed between two versions; polymurctl
rollback V restores one.

${COMMON_HELP}`;

const OPTIONS = { group: { type: "string" } } as const;

/** A whole number, as a version argument. */
export function versionArg(value: string | undefined, what: string): bigint {
  if (value === undefined) throw new UsageError(`${what}: which version? (polymurctl history)`);
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`${what}: a version is a whole number; got "${value}"`);
  }
  return BigInt(value);
}

export const historyCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("history", usage, argv, OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub = "ls", ...args] = positionals;
    const name = `history ${sub}`;
    return runWithConnection(name, values, io, async (conn) => {
      const client = conn.client(ControlService);
      if (sub === "show") {
        if (values.group !== undefined) throw new UsageError("history show takes no --group");
        if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`);
        const version = versionArg(args[0], "history show");
        const r = await client.getVersion({ version });
        const text = fleetText(r.config!);
        if (conn.settings.json) {
          printJson(io, {
            version,
            currentVersion: r.currentVersion,
            entry: r.entry === undefined ? null : historyEntryJson(r.entry),
            text: Buffer.from(text, "latin1").toString("utf8"),
          });
        } else {
          io.stdout.write(`# ${versionLabel(r.entry, version)}\n`);
          io.stdout.write(Buffer.from(text, "latin1"));
        }
        return EXIT.ok;
      }
      if (sub !== "ls" && sub !== "list") {
        throw new UsageError(`unknown history command "${sub}" (ls, show)`);
      }
      if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
      const r = await client.listHistory({ group: values.group ?? "" });
      if (conn.settings.json) {
        printJson(io, {
          version: r.version,
          keptVersions: r.keptVersions,
          ...(values.group === undefined ? {} : { group: values.group }),
          entries: r.entries.map(historyEntryJson),
        });
        return EXIT.ok;
      }
      const kept = `the last ${r.keptVersions} versions are kept`;
      if (r.entries.length === 0) {
        io.stdout.write(
          `no changes${values.group === undefined ? "" : ` concerning group ${values.group}`} in the history (state version ${r.version}; ${kept})\n`,
        );
        return EXIT.ok;
      }
      io.stdout.write(
        table(
          ["VERSION", "TIME", "CHANGE", "BY", "REPLICA"],
          r.entries.map((e) => [
            String(e.version),
            isoTime(e.time),
            e.summary,
            e.actor || "-",
            e.replica || "-",
          ]),
        ),
      );
      io.stdout.write(`(state version ${r.version}; ${kept})\n`);
      return EXIT.ok;
    });
  },
};
