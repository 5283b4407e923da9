import { type ParseArgsConfig, parseArgs } from "node:util";
import { UsageError } from "../../../common/errors.ts";
import { unknownOptionText } from "../../../common/option-suggest.ts";
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

type OptionTable = NonNullable<ParseArgsConfig["options"]>;

/** What a command's option table cannot say to node:util's parseArgs: old names, allowed values. */
export interface ArgsExtras {
  /** An old spelling → the option's name now; each use is a one-line deprecation note. */
  readonly aliases?: Readonly<Record<string, string>>;
  /** The values a string option takes; anything else is a usage error naming them. */
  readonly choices?: Readonly<Record<string, readonly string[]>>;
}

/**
 * Checks argv against a command's options before parseArgs sees it, so that
 * every mistake is told in our words (parseArgs' own are not): an unknown
 * option (with the closest name when one is close), an option without its
 * value, a value for a switch, a value not among the choices. Old spellings
 * are rewritten to the current names, with a note for each. `command` is
 * `polymurctl route`, for "(see polymurctl route --help)".
 */
export function checkArgv(
  command: string,
  argv: readonly string[],
  options: OptionTable,
  extras: ArgsExtras = {},
): { argv: string[]; notes: string[] } {
  const out: string[] = [];
  const notes: string[] = [];
  const shorts = new Map(
    Object.entries(options).flatMap(([name, o]) =>
      o.short === undefined ? [] : [[o.short, name]],
    ),
  );
  const unknown = (flag: string, name: string): never => {
    throw new UsageError(
      unknownOptionText(flag, name, Object.keys(options), `${command} --help`, extras.aliases),
    );
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      out.push(arg);
      continue;
    }
    const short = arg.length === 2 ? shorts.get(arg[1]!) : undefined;
    if (!arg.startsWith("--") && short === undefined) {
      // Switches together (`-hj`) are each a short option; `-group` is a long one mistyped.
      const letters = arg.slice(1);
      if ([...letters].some((c) => options[shorts.get(c) ?? ""]?.type !== "boolean")) {
        unknown(arg.split("=")[0]!, letters.split("=")[0]!);
      }
      out.push(arg);
      continue;
    }
    const eq = short === undefined ? arg.indexOf("=") : -1;
    let name = short ?? arg.slice(2, eq < 0 ? undefined : eq);
    const flag = short === undefined ? `--${name}` : arg;
    const canonical = extras.aliases?.[name];
    if (canonical !== undefined) {
      notes.push(`${flag} is deprecated: use --${canonical}`);
      name = canonical;
    }
    const spec = Object.hasOwn(options, name) ? options[name] : undefined;
    if (spec === undefined) return unknown(flag, name);
    if (spec.type === "boolean") {
      if (eq >= 0) throw new UsageError(`option ${flag} takes no value (see ${command} --help)`);
      out.push(`--${name}`);
      continue;
    }
    let value: string;
    if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("-") && next !== "-")) {
        throw new UsageError(`option ${flag} needs a value (see ${command} --help)`);
      }
      value = next;
      i++;
    }
    const allowed = extras.choices?.[name];
    if (allowed !== undefined && !allowed.includes(value)) {
      throw new UsageError(`${flag} must be one of ${allowed.join(", ")}; got "${value}"`);
    }
    out.push(`--${name}=${value}`);
  }
  return { argv: out, notes };
}

/**
 * Parses a command's argv (its own options plus the common ones); UsageError
 * on trouble. Notes (old spellings used) are appended to `notes` when given.
 */
export function parseCommandArgs<O extends OptionTable>(
  argv: readonly string[],
  options: O,
  command = "polymurctl",
  extras: ArgsExtras = {},
  notes: string[] = [],
) {
  const all = { ...COMMON_OPTIONS, ...options };
  const checked = checkArgv(command, argv, all, extras);
  notes.push(...checked.notes);
  try {
    return parseArgs({ args: checked.argv, allowPositionals: true, strict: true, options: all });
  } catch (err) {
    // checkArgv has caught what parseArgs refuses; this is a safety net.
    throw new UsageError(`${(err as Error).message.split("\n")[0]} (see ${command} --help)`);
  }
}

/**
 * Parses a command's argv and answers --help. Returns the parsed arguments,
 * or the exit status when the command is already done (a usage error, printed
 * on stderr, or --help, printed on stdout). Deprecation notes go to stderr.
 */
export function commandArgs<O extends OptionTable>(
  name: string,
  usage: string,
  argv: readonly string[],
  options: O,
  io: CommandIO,
  extras: ArgsExtras = {},
): ReturnType<typeof parseCommandArgs<O>> | number {
  let parsed: ReturnType<typeof parseCommandArgs<O>>;
  const notes: string[] = [];
  try {
    parsed = parseCommandArgs(argv, options, `polymurctl ${name}`, extras, notes);
  } catch (err) {
    return fail(name, io, { exit: EXIT.usage, message: (err as Error).message }, false);
  }
  for (const note of notes) io.stderr.write(`polymurctl ${name}: ${note}\n`);
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
