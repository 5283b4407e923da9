import { UsageError } from "../../../common/errors.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  expectedVersion,
  finishChange,
  normalizeWait,
  runWithConnection,
  WAIT_HELP,
  WAIT_OPTION,
  waitTimeoutMs,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";
import { versionArg } from "./history.ts";

const usage = `usage: polymurctl rollback VERSION [--expected-version N] [--with-keys] [--wait [TIMEOUT]]

Makes a new state version whose destinations, routing policies and rules are
those of VERSION, which must be kept in the history (polymurctl history; polymurctl
diff VERSION shows what it would change back). Like every change it is
compare-and-set: with --expected-version N it is made only if the state is still
at version N.

API keys are left as they are, unless --with-keys: the control plane keeps each
key's digest, so restoring an older key set would make a key deleted or rotated
since (perhaps because its secret leaked) work again with its old secret, and
would revoke the keys created since. polymurctl says which keys differ.

options:
  --expected-version N     roll back only if the state is at version N
  --with-keys              restore API keys too (see above)
${WAIT_HELP}

${COMMON_HELP}`;

const OPTIONS = {
  "expected-version": { type: "string" },
  "with-keys": { type: "boolean" },
  ...WAIT_OPTION,
} as const;

export const rollbackCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("rollback", usage, normalizeWait(argv), OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    return runWithConnection("rollback", values, io, async (conn) => {
      if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
      const version = versionArg(positionals[0], "rollback");
      const waitMs = waitTimeoutMs(values.wait);
      const e = expectedVersion(values["expected-version"]);
      const withKeys = values["with-keys"] === true;
      const r = await conn.client(ControlService).rollback({
        version,
        withKeys,
        ...(e === undefined ? {} : { expectedVersion: e }),
      });
      if (!conn.settings.json) {
        io.stdout.write(
          `rolled back to version ${r.restored}: destinations, routing and rules as they were then${withKeys ? ", and API keys" : ""} (state version ${r.version})\n`,
        );
        const keys = r.keysDiffering.join(", ");
        if (r.keysDiffering.length > 0) {
          io.stdout.write(
            withKeys
              ? `API keys restored as at version ${r.restored}: ${keys} (a key deleted or rotated since works again with its old secret)\n`
              : `API keys left as they are: ${keys} differ${r.keysDiffering.length === 1 ? "s" : ""} from version ${r.restored}'s (--with-keys restores them too)\n`,
          );
        }
      }
      return finishChange(
        "rollback",
        io,
        conn,
        {
          version: r.version,
          group: undefined,
          json: {
            version: r.version,
            restored: r.restored,
            withKeys: r.withKeys,
            keysDiffering: r.keysDiffering,
          },
        },
        waitMs,
      );
    });
  },
};
