import { type ParseArgsConfig, parseArgs } from "node:util";
import { UsageError } from "../../../common/errors.ts";
import type { CommandIO } from "../command.ts";
import { EXIT } from "./exit.ts";
import { fail } from "./output.ts";
import { DEFAULT_SERVER, DEFAULT_TIMEOUT_SEC } from "./settings.ts";

/** The options every command that talks to the control plane takes, besides its own. */
export const COMMON_OPTIONS = {
  server: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

/** The --help text of COMMON_OPTIONS, the config file and the exit statuses. */
export const COMMON_HELP = `common options:
  --server URL      control plane, http://host:port (cleartext HTTP/2) or https://host:port
                    (POLYMUR_SERVER; default ${DEFAULT_SERVER})
  --ca FILE         PEM CA certificate that signed an https control plane's certificate (POLYMUR_CA)
  --timeout SECS    give up on a call after this long (POLYMUR_TIMEOUT; default ${DEFAULT_TIMEOUT_SEC})
  --json            machine-readable output on stdout
  --token TOKEN     admin credential; visible to other users in ps: prefer POLYMUR_ADMIN_TOKEN
                    or "token = …" in the config file
  -h, --help        this help

The config file (POLYMURCTL_CONFIG, default ~/.config/polymur/polymurctl.conf) holds
"server = URL", "token = TOKEN", "ca = FILE" and "timeout = SECS" lines; keep it chmod 600.
Exit status: 0 ok, 1 the control plane refused, 2 usage or configuration, 3 unreachable.`;

/** Parses a command's argv (its own options plus the common ones); UsageError on trouble. */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  argv: readonly string[],
  options: O,
) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: { ...COMMON_OPTIONS, ...options },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split("\n")[0]} (see --help)`);
  }
}

/**
 * Parses a command's argv and answers --help. Returns the parsed arguments,
 * or the exit status when the command is already done (a usage error, printed
 * on stderr, or --help, printed on stdout).
 */
export function commandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  name: string,
  usage: string,
  argv: readonly string[],
  options: O,
  io: CommandIO,
): ReturnType<typeof parseCommandArgs<O>> | number {
  let parsed: ReturnType<typeof parseCommandArgs<O>>;
  try {
    parsed = parseCommandArgs(argv, options);
  } catch (err) {
    return fail(name, io, { exit: EXIT.usage, message: (err as Error).message }, false);
  }
  if ((parsed.values as Record<string, unknown>)["help"] === true) {
    io.stdout.write(`${usage}\n`);
    return EXIT.ok;
  }
  return parsed;
}

/** `--expected-version N`, or undefined. */
export function expectedVersion(value: string | undefined): bigint | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`--expected-version must be a whole number; got "${value}"`);
  }
  return BigInt(value);
}
