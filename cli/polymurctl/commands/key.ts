import { UsageError } from "../../../common/errors.ts";
import { type ApiKey, ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  expectedVersion,
  finishChange,
  isoTime,
  normalizeWait,
  printJson,
  runWithConnection,
  table,
  WAIT_HELP,
  WAIT_OPTION,
  waitTimeoutMs,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";

const usage = `usage: polymurctl key create NAME [--expected-version N] [--wait [TIMEOUT]]
       polymurctl key rotate NAME [--expected-version N] [--wait [TIMEOUT]]
       polymurctl key rm NAME [--expected-version N] [--wait [TIMEOUT]]
       polymurctl key ls

API keys that proxies present to gateways. create and rotate print the secret once:
the control plane keeps only its SHA-256 digest, so it cannot be shown again. After
rotate, the old secret stops working as soon as the gateways apply the new state
(--wait: once every connected node has).

options:
  --expected-version N     change only if the state is at version N
${WAIT_HELP}

${COMMON_HELP}`;

const OPTIONS = { "expected-version": { type: "string" }, ...WAIT_OPTION } as const;

function keyJson(k: ApiKey | undefined) {
  return {
    name: k?.name ?? "",
    digest: k?.digest ?? "",
    createdAt: isoTime(k?.createdAt),
    rotatedAt: isoTime(k?.rotatedAt) || null,
  };
}

export const keyCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("key", usage, normalizeWait(argv), OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub, ...args] = positionals;
    return runWithConnection(`key ${sub ?? ""}`.trim(), values, io, async (conn) => {
      const json = conn.settings.json;
      const waitMs = waitTimeoutMs(values.wait);
      if (waitMs !== undefined && (sub === "ls" || sub === "list")) {
        throw new UsageError("--wait is for changes (key create, rotate, rm), not key ls");
      }
      const e = expectedVersion(values["expected-version"]);
      const expected = e === undefined ? {} : { expectedVersion: e };
      const oneName = (): string => {
        if (args.length !== 1) throw new UsageError(`key ${sub} takes one key name`);
        return args[0]!;
      };
      switch (sub) {
        case "create":
        case "rotate": {
          const name = oneName();
          const client = conn.client(ControlService);
          const r =
            sub === "create"
              ? await client.createKey({ name, ...expected })
              : await client.rotateKey({ name, ...expected });
          if (!json) {
            io.stdout.write(
              `${sub === "create" ? "created" : "rotated"} API key ${name} (state version ${r.version})\n` +
                `secret: ${r.secret}\n` +
                "This secret is shown once and cannot be shown again: store it now (the control plane keeps only its digest).\n",
            );
          }
          // API keys go to every node (gateways check them).
          return finishChange(
            `key ${sub}`,
            io,
            conn,
            {
              version: r.version,
              group: undefined,
              json: { ...keyJson(r.key), secret: r.secret, version: r.version },
            },
            waitMs,
          );
        }
        case "rm":
        case "delete": {
          const name = oneName();
          const r = await conn.client(ControlService).deleteKey({ name, ...expected });
          if (!json) io.stdout.write(`removed API key ${name} (state version ${r.version})\n`);
          return finishChange(
            `key ${sub}`,
            io,
            conn,
            { version: r.version, group: undefined, json: { version: r.version, removed: name } },
            waitMs,
          );
        }
        case "ls":
        case "list": {
          if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
          const r = await conn.client(ControlService).listKeys({});
          if (json) printJson(io, { version: r.version, keys: r.keys.map(keyJson) });
          else if (r.keys.length === 0)
            io.stdout.write(`no API keys (state version ${r.version})\n`);
          else {
            io.stdout.write(
              table(
                ["NAME", "DIGEST", "CREATED", "ROTATED"],
                r.keys.map((k) => [
                  k.name,
                  `${k.digest.slice(0, 7 + 16)}…`,
                  isoTime(k.createdAt),
                  isoTime(k.rotatedAt) || "-",
                ]),
              ),
            );
            io.stdout.write(`(state version ${r.version})\n`);
          }
          return EXIT.ok;
        }
        default:
          throw new UsageError(
            sub === undefined
              ? "key needs create, rotate, rm or ls (see --help)"
              : `unknown key command "${sub}" (create, rotate, rm, ls)`,
          );
      }
    });
  },
};
