import fc from "fast-check";
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

describe("DedupTable: instances of one proxy id", () => {
  it("a reconnect of the same instance keeps what it queued", () => {
    const t = new DedupTable();
    expect(t.claim("k", "p", "i1")).toEqual({ change: "first", previous: "" });
    t.record("k", "p", 7);
    expect(t.claim("k", "p", "i1")).toEqual({ change: "same", previous: "i1" });
    expect(t.highest("k", "p")).toBe(7);
  });

  it("a new instance starts from nothing: another process's seqs neither acknowledge nor drop its batches", () => {
    const t = new DedupTable();
    t.claim("k", "p", "A");
    t.record("k", "p", 100);
    // B (a copied spool, or a restart: they cannot be told apart) has its own
    // batches 1..150: none of them is a duplicate of A's, whoever is ahead.
    expect(t.claim("k", "p", "B")).toEqual({ change: "new", previous: "A" });
    expect(t.highest("k", "p")).toBe(0);
    t.record("k", "p", 40);
    expect(t.highest("k", "p")).toBe(40);
  });

  it("an instance that comes back after another is 'returning', with its own memory intact", () => {
    const t = new DedupTable();
    t.claim("k", "p", "A");
    t.record("k", "p", 100);
    t.claim("k", "p", "B");
    t.record("k", "p", 30);
    expect(t.claim("k", "p", "A")).toEqual({ change: "returning", previous: "B" });
    expect(t.highest("k", "p")).toBe(100);
    t.record("k", "p", 101);
    expect(t.claim("k", "p", "B")).toEqual({ change: "returning", previous: "A" });
    expect(t.highest("k", "p")).toBe(30);
  });

  it("remembers a bounded number of instances per proxy, the least recently claimed forgotten first", () => {
    const t = new DedupTable(10, 2);
    t.claim("k", "p", "A");
    t.record("k", "p", 5);
    t.claim("k", "p", "B");
    t.claim("k", "p", "C"); // A forgotten
    expect(t.claim("k", "p", "A")).toEqual({ change: "new", previous: "C" });
    expect(t.highest("k", "p")).toBe(0); // resends: duplicates at worst, never a loss
    expect(t.size).toBe(1);
  });

  it("a proxy forgotten while streaming is remembered again under an unknown instance", () => {
    const t = new DedupTable(1);
    t.claim("k", "p1", "A");
    t.record("k", "p2", 1); // p1 evicted
    t.record("k", "p1", 9);
    expect(t.highest("k", "p1")).toBe(9);
    // A's next stream does not take the unknown instance's memory for its own.
    expect(t.claim("k", "p1", "A").change).toBe("new");
    expect(t.highest("k", "p1")).toBe(0);
  });

  it("property: a batch is only ever a duplicate of one its own instance recorded", () => {
    // Two instances take turns with one proxy id, each numbering its own
    // batches from 1; whatever the interleaving, highest() is exactly what
    // the instance streaming now recorded itself.
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("A", "B", "C"), fc.integer({ min: 0, max: 5 })), {
          maxLength: 40,
        }),
        (turns) => {
          const t = new DedupTable(10, 3);
          const own = new Map<string, number>();
          for (const [inst, n] of turns) {
            t.claim("k", "p", inst);
            expect(t.highest("k", "p")).toBe(own.get(inst) ?? 0);
            for (let i = 0; i < n; i++) {
              const seq = (own.get(inst) ?? 0) + 1;
              t.record("k", "p", seq);
              own.set(inst, seq);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("DedupTable: a worker process's table (claims and records across processes)", () => {
  it("a claim takes what the instance is known to have queued elsewhere, never less than it remembers", () => {
    const t = new DedupTable();
    t.claim("k", "p", "i1", 9);
    expect(t.highest("k", "p")).toBe(9);
    t.record("k", "p", 12);
    t.claim("k", "p", "i1", 10); // the primary lags: what this table saw stays
    expect(t.highest("k", "p")).toBe(12);
  });

  it("tells onRecord every record with the instance it is for; a record for a forgotten instance is dropped", () => {
    const t = new DedupTable(10, 1);
    const seen: unknown[] = [];
    t.onRecord = (...a) => seen.push(a);
    t.claim("k", "p", "A");
    t.record("k", "p", 3);
    t.claim("k", "p", "B"); // A is forgotten (one instance per proxy)
    t.record("k", "p", 5, "A");
    expect(t.highest("k", "p")).toBe(0);
    t.record("k", "p", 4, "B");
    expect(t.highest("k", "p")).toBe(4);
    expect(seen).toEqual([
      ["k", "p", "A", 3],
      ["k", "p", "B", 4],
    ]);
  });
});
