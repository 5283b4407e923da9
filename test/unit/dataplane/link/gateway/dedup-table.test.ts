import { describe, expect, it } from "vitest";
import { DedupTable } from "../../../../../dataplane/link/gateway/dedup-table.ts";

describe("DedupTable", () => {
  it("remembers the highest queued seq per key and proxy id", () => {
    const t = new DedupTable();
    expect(t.highest("a", "p1")).toBe(0);
    t.record("a", "p1", 5);
    t.record("a", "p1", 3); // an older one never lowers it
    expect(t.highest("a", "p1")).toBe(5);
    // Another key claiming the same proxy id does not share its memory.
    expect(t.highest("b", "p1")).toBe(0);
  });

  it("forgets the least recently seen proxy first, and only beyond its bound", () => {
    const t = new DedupTable(3);
    t.record("k", "p1", 1);
    t.record("k", "p2", 1);
    t.record("k", "p3", 1);
    expect(t.highest("k", "p1")).toBe(1); // p1 is now the most recent
    t.record("k", "p4", 1);
    expect([t.size, t.evicted]).toEqual([3, 1]);
    expect(t.highest("k", "p2")).toBe(0);
    expect(t.highest("k", "p1")).toBe(1);
  });
});
