import { PolymurError, UsageError } from "../../common/errors.ts";
import {
  type LegacyFlag,
  type OptionSpec,
  parseArgv,
  type RawOptions,
} from "../../common/options.ts";

/**
 * A role's command line: its flags, with the notes the parser has (a
 * deprecated spelling, a Go polymur flag ignored) printed on stderr as
 * `polymur <role>: note`. A positional argument is a usage error: no role
 * takes one.
 */
export function parseRoleArgv(
  role: string,
  specs: readonly OptionSpec[],
  argv: readonly string[],
  legacy: readonly LegacyFlag[] = [],
): RawOptions {
  const command = `polymur ${role}`;
  const { flags, positional, notes } = parseArgv(specs, argv, { command, legacy });
  for (const note of notes) process.stderr.write(`${command}: ${note}\n`);
  if (positional.length > 0) {
    throw new UsageError(`unexpected argument "${positional[0]}" (see ${command} --help)`);
  }
  return flags;
}

/**
 * How a role that cannot start says why, on one line: `polymur relay:
 * POLYMUR_ERR_RULES: relay.conf:3:5: ...` for an error with a code (see
 * docs/errors.md), `polymur relay: unknown option --hsah; did you mean
 * --hash?` for a usage error. Anything else is not ours to word: null.
 */
export function startupErrorText(command: string, err: unknown): string | null {
  if (err instanceof PolymurError) return `${command}: ${err.code}: ${oneLine(err.message)}`;
  if (err instanceof UsageError) return `${command}: ${oneLine(err.message)}`;
  return null;
}

function oneLine(message: string): string {
  return message.replaceAll("\n", " ");
}
