/**
 * What a polymurctl subcommand is, and the streams it works with. Its own module so
 * the dispatcher (main.ts) imports the commands and nothing imports the dispatcher.
 */
import type { Readable, Writable } from "node:stream";
import type { ParseArgsConfig } from "node:util";

/** Where a command reads and writes; the process's streams, or a test's. */
export interface CommandIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
}

/** An option table, as node:util's parseArgs takes it. */
export type CommandOptions = NonNullable<ParseArgsConfig["options"]>;

/** A subcommand module: `run` resolves to the process exit status. */
export interface Command {
  /** The --help text; its `polymurctl <command> <subcommand>` lines name the subcommands. */
  readonly usage: string;
  /**
   * Every option `run` accepts: the very table it parses (with the common
   * options, for a command that takes them). Shell completion offers these.
   */
  readonly options: CommandOptions;
  /** The values a string option takes, where the command checks them (completion offers them). */
  readonly choices?: Readonly<Record<string, readonly string[]>>;
  run(argv: readonly string[], io: CommandIO): Promise<number>;
}

/** A command as the dispatcher (main.ts) lists it: a one-line summary, and its module's loader. */
export interface CommandEntry {
  readonly summary: string;
  readonly load: () => Promise<Command>;
}
