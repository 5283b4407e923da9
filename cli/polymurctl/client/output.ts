import type { CommandIO } from "../command.ts";
import type { Failure } from "./failure.ts";

/**
 * Prints a failure: one line on stderr, and with --json an error object on stdout.
 * Returns its exit status.
 */
export function fail(name: string, io: CommandIO, f: Failure, json: boolean): number {
  f = { ...f, message: f.message.replace(/\s*\n\s*/g, " ").trim() }; // one line, always
  io.stderr.write(`polymurctl ${name}: ${f.message}\n`);
  if (json) {
    const error = {
      message: f.message,
      exit: f.exit,
      ...(f.code === undefined ? {} : { code: f.code }),
      ...(f.polymurCode === undefined ? {} : { polymurCode: f.polymurCode }),
    };
    io.stdout.write(`${JSON.stringify({ error })}\n`);
  }
  return f.exit;
}

/** Left-aligned columns, two spaces apart, header in capitals. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

/** One line of JSON on stdout; bigints (protobuf int64) as numbers. */
export function printJson(io: CommandIO, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}\n`);
}

/** A protobuf Timestamp as ISO 8601 (UTC, seconds), or "" when unset. */
export function isoTime(t: { seconds: bigint; nanos: number } | undefined): string {
  if (t === undefined || (t.seconds === 0n && t.nanos === 0)) return "";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6))
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z");
}
