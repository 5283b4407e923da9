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
