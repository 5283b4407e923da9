/**
 * What a polymurctl subcommand is, and the streams it works with. Its own module so
 * the dispatcher (main.ts) imports the commands and nothing imports the dispatcher.
 */
import type { Readable, Writable } from "node:stream";

/** Where a command reads and writes; the process's streams, or a test's. */
export interface CommandIO {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
}

/** A subcommand module: `run` resolves to the process exit status. */
export interface Command {
  readonly usage: string;
  run(argv: readonly string[], io: CommandIO): Promise<number>;
}
