import { countLines } from "./line-framer.ts";

/**
 * Where the ingest stage sends valid lines: a relay's or gateway's router, a
 * proxy's batcher. Called once per run of consecutive valid lines, not per
 * line.
 */
export interface LineSink {
  /**
   * Whole, valid, newline-terminated lines in buf[start, end). `buf` is never
   * modified afterwards, so the sink may keep views of it (zero copy).
   */
  write(buf: Buffer, start: number, end: number, lines: number): void;
}

/** Writes lines made by polymur itself (self-metrics) to a sink; the ingest counters do not see them. */
export function writeText(sink: LineSink, text: string): void {
  const b = Buffer.from(text);
  if (b.length > 0) sink.write(b, 0, b.length, countLines(b));
}
