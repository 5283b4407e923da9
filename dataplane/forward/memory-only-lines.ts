/** A run of whole lines waiting in memory, with how many lines it holds. */
export interface LineRun {
  chunk: Buffer;
  lines: number;
}

/**
 * Of the lines waiting in memory (`runs`, oldest first), the ones that are
 * not also on disk: what a destination with a disk queue must append before
 * it lets its memory go (at a shutdown's deadline).
 *
 * The first `skip` lines are left out (owed resends: forwarded once already,
 * and counted so). The next line is line number `first` of the lines ever
 * queued in memory; `onDisk` lists the ranges of those numbers (start
 * exclusive, end inclusive, ascending) that were read back from disk and are
 * still there. Runs are split at line boundaries where a range starts or ends.
 */
export function memoryOnlyLines(
  runs: readonly LineRun[],
  skip: number,
  first: number,
  onDisk: ReadonlyArray<readonly [start: number, end: number]>,
): LineRun[] {
  const out: LineRun[] = [];
  let line = first; // number of the next line after the skipped ones
  let toSkip = skip;
  let r = 0; // the first range that may still hold `line`
  for (const run of runs) {
    let at = 0; // byte offset in run.chunk
    let left = run.lines;
    if (toSkip > 0) {
      const n = Math.min(toSkip, left);
      at = afterLines(run.chunk, at, n);
      left -= n;
      toSkip -= n;
    }
    while (left > 0) {
      // Past ranges, and empty ones (a record whose lines were lost), split nothing.
      while (r < onDisk.length && (onDisk[r]![1] < line || onDisk[r]![0] >= onDisk[r]![1])) r++;
      const range = onDisk[r];
      if (range !== undefined && range[0] < line) {
        // On disk: skip to the range's end (or the run's).
        const n = Math.min(left, range[1] - line + 1);
        at = afterLines(run.chunk, at, n);
        line += n;
        left -= n;
        continue;
      }
      // In memory only: up to the next range's start (or the run's end).
      const n = range === undefined ? left : Math.min(left, range[0] - line + 1);
      const end = n === left ? run.chunk.length : afterLines(run.chunk, at, n);
      out.push({ chunk: run.chunk.subarray(at, end), lines: n });
      at = end;
      line += n;
      left -= n;
    }
  }
  return out;
}

/** The offset just after the `n`th newline at or after `from`. */
function afterLines(buf: Buffer, from: number, n: number): number {
  let at = from;
  for (let i = 0; i < n; i++) {
    const nl = buf.indexOf(10, at);
    if (nl < 0) return buf.length;
    at = nl + 1;
  }
  return at;
}
