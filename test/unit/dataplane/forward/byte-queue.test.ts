import { describe, expect, it } from "vitest";
import { ByteQueue } from "../../../../dataplane/forward/byte-queue.ts";

const chunk = (s: string): Buffer => Buffer.from(s);

describe("ByteQueue", () => {
  it("keeps order, bytes and line counts through push, shift and drop", () => {
    const q = new ByteQueue();
    q.push(chunk("a 1 1\n"), 1);
    q.push(chunk("b 1 1\nc 1 1\n"), 2);
    q.push(chunk("d 1 1\n"), 1);
    expect([q.bytes, q.lines, q.length]).toEqual([24, 4, 3]);
    expect(q.dropOldest()).toBe(1);
    expect([q.bytes, q.lines]).toEqual([18, 3]);
    const out: Buffer[] = [];
    const lines: number[] = [];
    expect(q.shiftInto(out, lines, 1)).toBe(2); // at least one chunk even over the limit
    expect(out.map(String)).toEqual(["b 1 1\nc 1 1\n"]);
    q.unshiftAll(out, lines);
    out.length = 0;
    lines.length = 0;
    expect(q.shiftInto(out, lines, 1 << 20)).toBe(3);
    expect(out.map(String)).toEqual(["b 1 1\nc 1 1\n", "d 1 1\n"]);
    expect([q.bytes, q.lines, q.length, q.dropOldest()]).toEqual([0, 0, 0, -1]);
  });

  it("stays correct across many pushes and shifts (compaction)", () => {
    const q = new ByteQueue();
    let expectNext = 0;
    let pushed = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 700; i++) q.push(chunk(`${pushed++}\n`), 1);
      const out: Buffer[] = [];
      q.shiftInto(out, [], 2000);
      for (const c of out) expect(Number(String(c))).toBe(expectNext++);
    }
    expect(q.lines).toBe(pushed - expectNext);
    expect(q.clear()).toBe(pushed - expectNext);
    expect(q.bytes).toBe(0);
  });
});
