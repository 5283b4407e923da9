import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type LineRun, memoryOnlyLines } from "../../../../dataplane/forward/memory-only-lines.ts";

// Which waiting memory lines a destination appends to its disk queue at a
// drain's deadline (dataplane/forward/memory-only-lines.ts): not the owed
// resends (skipped), not the lines of records read back from disk that are
// still there (the ranges), and everything else, in order.

/** A run of the lines named `l<n>` for n in [from, from + count), in a buffer of its own (not the pool's). */
function run(from: number, count: number): LineRun {
  let s = "";
  for (let i = from; i < from + count; i++) s += `l${i} 1 1\n`;
  const chunk = Buffer.alloc(Buffer.byteLength(s));
  chunk.write(s);
  return { chunk, lines: count };
}

/** The line numbers in runs, and a check that each run's count matches its bytes. */
function names(runs: readonly LineRun[]): number[] {
  const out: number[] = [];
  for (const r of runs) {
    const ls = r.chunk.toString().split("\n");
    expect(ls.pop()).toBe("");
    expect(ls.length).toBe(r.lines);
    for (const l of ls) out.push(Number(l.slice(1, l.indexOf(" "))));
  }
  return out;
}

describe("memoryOnlyLines", () => {
  it("without ranges nor skip, is every run as it is (the same bytes, not copies)", () => {
    const runs = [run(1, 3), run(4, 1), run(5, 5)];
    const out = memoryOnlyLines(runs, 0, 1, []);
    expect(out).toHaveLength(3);
    for (let i = 0; i < 3; i++) {
      expect(out[i]!.lines).toBe(runs[i]!.lines);
      expect(out[i]!.chunk.buffer).toBe(runs[i]!.chunk.buffer);
      expect(out[i]!.chunk.equals(runs[i]!.chunk)).toBe(true);
    }
  });

  it("skips the owed resends first, across runs, mid-run included", () => {
    // Lines 1 to 4 are owed resends (they carry no number of their own:
    // the first line after them is number `first`).
    const runs = [run(100, 3), run(103, 4), run(107, 2)];
    const out = memoryOnlyLines(runs, 4, 1, []);
    expect(names(out)).toEqual([104, 105, 106, 107, 108]);
    expect(out.map((r) => r.lines)).toEqual([3, 2]);
  });

  it("leaves out ranges on disk, splitting runs where a range starts or ends", () => {
    // Numbers 11..30; on disk: (12, 15] and (20, 21] and (28, 40].
    const runs = [run(11, 5), run(16, 10), run(26, 5)];
    const out = memoryOnlyLines(runs, 0, 11, [
      [12, 15],
      [20, 21],
      [28, 40],
    ]);
    expect(names(out)).toEqual([11, 12, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 28]);
    // Split at range edges and at run edges, never across runs.
    expect(out.map((r) => r.lines)).toEqual([2, 5, 4, 3]);
  });

  it("numbers from `first` after the skipped lines", () => {
    const runs = [run(0, 6)];
    // 2 owed resends, then lines numbered 50.. : 50, 51, 52, 53; (50, 52] on disk.
    const out = memoryOnlyLines(runs, 2, 50, [[50, 52]]);
    expect(names(out)).toEqual([2, 5]);
  });

  it("is empty when every line is on disk (or skipped)", () => {
    const runs = [run(1, 4), run(5, 4)];
    expect(memoryOnlyLines(runs, 0, 1, [[0, 8]])).toEqual([]);
    expect(memoryOnlyLines(runs, 3, 1, [[0, 5]])).toEqual([]);
    expect(memoryOnlyLines(runs, 8, 1, [])).toEqual([]);
    expect(memoryOnlyLines([], 0, 1, [[0, 8]])).toEqual([]);
  });

  it("ignores ranges before the first line, and empty ones (a record whose lines were lost)", () => {
    const runs = [run(10, 4)];
    const out = memoryOnlyLines(runs, 0, 10, [
      [0, 5],
      [9, 9],
      [11, 11],
      [11, 12],
    ]);
    expect(names(out)).toEqual([10, 11, 13]);
  });

  it("keeps a run without its last newline whole where it is not split", () => {
    const runs: LineRun[] = [{ chunk: Buffer.from("a 1 1\nb 1 1"), lines: 2 }];
    expect(memoryOnlyLines(runs, 0, 1, []).map((r) => r.chunk.toString())).toEqual([
      "a 1 1\nb 1 1",
    ]);
    expect(memoryOnlyLines(runs, 0, 1, [[0, 1]]).map((r) => r.chunk.toString())).toEqual(["b 1 1"]);
  });

  it("property: exactly the lines after the skip whose numbers are in no range, in order", () => {
    const arb = fc
      .record({
        sizes: fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 8 }),
        skip: fc.integer({ min: 0, max: 10 }),
        first: fc.integer({ min: 1, max: 1000 }),
        // Gaps and lengths of ascending, disjoint ranges (start exclusive, end inclusive).
        ranges: fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 })), {
          maxLength: 6,
        }),
        rangesFrom: fc.integer({ min: -5, max: 5 }),
      })
      .map(({ sizes, skip, first, ranges, rangesFrom }) => {
        let at = first - 1 + rangesFrom;
        const onDisk: Array<[number, number]> = [];
        for (const [gap, len] of ranges) {
          const start = at + gap;
          onDisk.push([start, start + len]);
          at = start + len;
        }
        return { sizes, skip, first, onDisk };
      });
    fc.assert(
      fc.property(arb, ({ sizes, skip, first, onDisk }) => {
        // Runs of lines named by their position (0, 1, 2 ...).
        const runs: LineRun[] = [];
        let n = 0;
        for (const s of sizes) {
          runs.push(run(n, s));
          n += s;
        }
        const want: number[] = [];
        for (let i = Math.min(skip, n); i < n; i++) {
          const num = first + (i - skip);
          if (!onDisk.some(([a, b]) => a < num && num <= b)) want.push(i);
        }
        const out = memoryOnlyLines(runs, skip, first, onDisk);
        expect(names(out)).toEqual(want);
        // Every piece is a slice of one run (never a copy, never across runs).
        for (const r of out) {
          expect(runs.some((x) => x.chunk.buffer === r.chunk.buffer)).toBe(true);
        }
        // Pieces are as long as they can be: two pieces with no line left
        // out between them are of two runs.
        for (let i = 1; i < out.length; i++) {
          const prev = names([out[i - 1]!]).at(-1)!;
          const next = names([out[i]!])[0]!;
          if (next === prev + 1) expect(out[i]!.chunk.buffer).not.toBe(out[i - 1]!.chunk.buffer);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
