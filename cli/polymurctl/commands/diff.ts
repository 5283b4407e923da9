import { UsageError } from "../../../common/errors.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import { fleetText, versionLabel } from "../client/fleet-text.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  printJson,
  runWithConnection,
} from "../client/index.ts";
import { unifiedDiff } from "../client/unified-diff.ts";
import type { Command, CommandIO } from "../command.ts";
import { versionArg } from "./history.ts";

const usage = `usage: polymurctl diff V1 [V2]

What changed from state version V1 to V2 (default: the current version): a
unified diff of the two whole configurations as polymurctl history show prints
them (destinations, routing policies, API keys, rules files). Both must be kept
in the history (polymurctl history lists them). Exit status as diff(1): 0 no
change, 1 changes, 2 trouble (usage, a refused call); 3 the control plane could
not be reached.

${COMMON_HELP}`;

export const diffCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("diff", usage, argv, {}, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    /** The diff's answer (0 or 1), once it has one: a refused call is then told apart from "changes". */
    let answered = false;
    const status = await runWithConnection("diff", values, io, async (conn) => {
      if (positionals.length > 2) throw new UsageError(`unexpected argument "${positionals[2]}"`);
      const from = versionArg(positionals[0], "diff");
      const client = conn.client(ControlService);
      const a = await client.getVersion({ version: from });
      const to =
        positionals[1] === undefined ? a.currentVersion : versionArg(positionals[1], "diff");
      const b = to === from ? a : await client.getVersion({ version: to });
      const d = unifiedDiff(
        fleetText(a.config!),
        fleetText(b.config!),
        versionLabel(a.entry, from),
        versionLabel(b.entry, to),
      );
      if (conn.settings.json) {
        printJson(io, {
          from,
          to,
          changed: d !== "",
          diff: Buffer.from(d, "latin1").toString("utf8"),
        });
      } else {
        io.stdout.write(Buffer.from(d, "latin1"));
      }
      answered = true;
      return d === "" ? 0 : 1;
    });
    // diff(1)'s statuses: 1 is "changes", so a refused call is trouble (2).
    if (!answered && status === EXIT.refused) return EXIT.usage;
    return status;
  },
};
