import { describe, expect, it, vi } from "vitest";
import { LineBatcher } from "../../../../../dataplane/link/proxy/line-batcher.ts";

function linesOf(n: number, width = 20): Buffer {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`m${i} ${i} 1700000000`.padEnd(width - 1, "x") + "\n");
  return Buffer.from(out.join(""));
}

describe("LineBatcher", () => {
  it("cuts by size at line boundaries, never above the limit, whatever the run sizes", () => {
    const all = linesOf(1000, 40); // 40 000 bytes
    for (const runSize of [1, 7, 40, 41, 333, 4096, 40_000]) {
      const batches: Array<[Buffer, number]> = [];
      const b = new LineBatcher((raw, lines) => batches.push([Buffer.from(raw), lines]), {
        maxBytes: 4096,
        maxDelayMs: 10_000,
      });
      // Runs of whole lines, as the framer hands them over.
      let start = 0;
      while (start < all.length) {
        let end = Math.min(all.length, start + runSize);
        const nl = all.lastIndexOf(0x0a, end - 1);
        end = nl >= start ? nl + 1 : all.indexOf(0x0a, start) + 1;
        b.push(all.subarray(start, end));
        start = end;
      }
      b.flush();
      b.close();
      expect(Buffer.concat(batches.map(([r]) => r)).equals(all), `run ${runSize}`).toBe(true);
      for (const [raw, lines] of batches) {
        expect(raw.length).toBeLessThanOrEqual(4096);
        expect(raw[raw.length - 1]).toBe(0x0a);
        expect(lines).toBe(raw.toString().split("\n").length - 1);
      }
      // Full batches except the last: 4096 / 40 = 102 lines each.
      expect(batches.slice(0, -1).every(([r]) => r.length === 4080)).toBe(true);
    }
  });

  it("cuts by time: a lone line waits at most maxDelayMs", () => {
    vi.useFakeTimers();
    try {
      const batches: number[] = [];
      const b = new LineBatcher((_raw, lines) => batches.push(lines), {
        maxBytes: 1 << 20,
        maxDelayMs: 200,
      });
      b.push(Buffer.from("a 1 1\n"));
      vi.advanceTimersByTime(150);
      b.push(Buffer.from("b 1 1\nc 1 1\n"));
      expect(batches).toEqual([]);
      vi.advanceTimersByTime(60); // 210 ms after the first line
      expect(batches).toEqual([3]);
      vi.advanceTimersByTime(1000);
      expect(batches).toEqual([3]);
      b.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it("copies small batches out, so they do not pin a batch-sized buffer", () => {
    let got: Buffer | null = null;
    const b = new LineBatcher(
      (raw) => {
        got = raw;
      },
      { maxBytes: 256 * 1024 },
    );
    b.push(Buffer.from("a 1 1\n"));
    b.flush();
    b.close();
    expect(got!.buffer.byteLength).toBeLessThan(8192);
  });

  it("close() hands over what is waiting (nothing is dropped) and leaves no timer behind", () => {
    vi.useFakeTimers();
    try {
      const batches: Array<[string, number]> = [];
      const b = new LineBatcher((raw, lines) => batches.push([raw.toString(), lines]), {
        maxBytes: 4096,
        maxDelayMs: 60_000,
      });
      b.push(linesOf(3));
      expect(batches).toEqual([]);
      b.close();
      expect(batches).toEqual([[linesOf(3).toString(), 3]]);
      expect(b.pendingBytes).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
      b.close(); // again: nothing more
      expect(batches).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
