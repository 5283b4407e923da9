import type { CommandIO } from "../command.ts";
import { type CtlConnection, connect } from "./connection.ts";
import { EXIT } from "./exit.ts";
import { describeFailure } from "./failure.ts";
import { fail } from "./output.ts";
import { type CtlSettings, resolveSettings } from "./settings.ts";

/**
 * Runs a command body with a connection; prints failures (one line on
 * stderr, and with --json an error object on stdout) and returns the exit status.
 */
export async function runWithConnection(
  name: string,
  values: Record<string, unknown>,
  io: CommandIO,
  body: (conn: CtlConnection) => Promise<number | undefined>,
): Promise<number> {
  let settings: CtlSettings;
  try {
    settings = resolveSettings(values, process.env, io);
  } catch (err) {
    return fail(name, io, describeFailure(err, ""), values["json"] === true);
  }
  const conn = connect(settings);
  try {
    return (await body(conn)) ?? EXIT.ok;
  } catch (err) {
    return fail(name, io, describeFailure(err, settings.server), settings.json);
  } finally {
    conn.close();
  }
}
