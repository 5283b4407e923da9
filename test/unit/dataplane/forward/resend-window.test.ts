import { describe, expect, it } from "vitest";
import { ResendWindow, type Write } from "../../../../dataplane/forward/resend-window.ts";

/** A write of `count` lines named `${name}.<i>`, in one chunk. */
function write(name: string, count: number): Write {
  let text = "";
  for (let i = 0; i < count; i++) text += `${name}.${i} 1 1\n`;
  const chunk = Buffer.from(text);
  return { chunks: [chunk], lines: [count], bytes: chunk.length, count };
}

const text = (writes: readonly Write[]): string => writes.map((w) => w.chunks.join("")).join("");

describe("ResendWindow", () => {
  it("keeps the most recent writes up to its bound in bytes", () => {
    const a = write("a", 2);
    const b = write("b", 2);
    const c = write("c", 2);
    const window = new ResendWindow(a.bytes + b.bytes);
    window.written(a);
    window.written(b);
    expect(window.bytes).toBe(a.bytes + b.bytes);
    window.written(c);
    expect(window.bytes).toBe(b.bytes + c.bytes);
    expect(window.takeBack()).toEqual({ writes: [b, c], beyond: 0 });
  });

  it("always keeps the last write, even one larger than the bound", () => {
    const small = write("s", 1);
    const big = write("big", 100);
    const window = new ResendWindow(small.bytes);
    window.written(small);
    window.written(big);
    expect(window.bytes).toBe(big.bytes);
    expect(window.takeBack()).toEqual({ writes: [big], beyond: 0 });
  });

  it("keeps nothing with a bound of 0, and applies a new bound from the next write", () => {
    const window = new ResendWindow(0);
    window.written(write("a", 3));
    expect(window.bytes).toBe(0);
    expect(window.takeBack()).toEqual({ writes: [], beyond: 0 });
    expect(window.pending).toBe(0);
    const a = write("a", 3);
    const b = write("b", 3);
    window.limitBytes = 1 << 20;
    window.written(a);
    window.written(b);
    // Lowering the bound trims nothing by itself; the next write kept does.
    window.limitBytes = b.bytes;
    expect(window.bytes).toBe(a.bytes + b.bytes);
    const c = write("c", 3);
    window.written(c);
    expect(window.takeBack().writes).toEqual([c]);
  });

  it("gives back its writes in order, empties, and owes their lines as resends", () => {
    const window = new ResendWindow(1 << 20);
    const writes = [write("a", 1), write("b", 2), write("c", 3)];
    for (const w of writes) expect(window.written(w)).toBe(0);
    const { writes: back, beyond } = window.takeBack();
    expect(beyond).toBe(0);
    expect(text(back)).toBe(text(writes));
    expect(back.map((w) => w.count)).toEqual([1, 2, 3]);
    expect([window.bytes, window.pending]).toEqual([0, 6]);
    expect(window.takeBack()).toEqual({ writes: [], beyond: 0 });
    expect(window.pending).toBe(6);
  });

  it("counts owed lines as resent when written again, the rest as new", () => {
    const window = new ResendWindow(1 << 20);
    window.written(write("a", 4));
    window.takeBack(); // 4 owed
    expect(window.written(write("r", 3))).toBe(3);
    expect(window.pending).toBe(1);
    expect(window.written(write("m", 5))).toBe(1); // the last owed line, then 4 new
    expect(window.pending).toBe(0);
    expect(window.written(write("n", 2))).toBe(0);
  });

  it("forgets owed lines dropped from the queue front, or a queue taken away", () => {
    const window = new ResendWindow(1 << 20);
    window.written(write("a", 5));
    window.takeBack();
    // dropped() says how many of the dropped lines were owed (already forwarded once).
    expect(window.dropped(2)).toBe(2);
    expect(window.pending).toBe(3);
    expect(window.dropped(10)).toBe(3);
    expect(window.pending).toBe(0);
    expect(window.dropped(1)).toBe(0);
    expect(window.pending).toBe(0);
    window.written(write("b", 5));
    window.takeBack();
    window.clearPending();
    expect(window.pending).toBe(0);
    expect(window.written(write("c", 5))).toBe(0);
  });

  it("resets with clear(): nothing kept, nothing owed", () => {
    const window = new ResendWindow(1 << 20);
    window.written(write("a", 2));
    window.takeBack();
    window.written(write("b", 3)); // 2 owed lines written again
    window.written(write("c", 3));
    expect([window.pending, window.bytes > 0]).toEqual([0, true]);
    window.takeBack();
    expect(window.pending).toBe(6);
    window.written(write("d", 1));
    window.clear();
    expect([window.bytes, window.pending]).toEqual([0, 0]);
    expect(window.takeBack()).toEqual({ writes: [], beyond: 0 });
    expect(window.written(write("e", 2))).toBe(0);
    expect(window.takeBack().writes.map((w) => w.count)).toEqual([2]);
  });

  it("dropped() returns 0 when nothing is owed", () => {
    const window = new ResendWindow(1 << 20);
    window.written(write("a", 5));
    expect(window.dropped(5)).toBe(0);
    expect(window.takeBack().writes.map((w) => w.count)).toEqual([5]);
    expect(window.dropped(3)).toBe(3);
    window.clearPending();
    expect(window.dropped(2)).toBe(0);
  });

  it("beyond: lines let go of within capacityBytes of the newest, below a smaller limit", () => {
    // Six writes of the same size; the window keeps two, the kernels may hold four.
    const ws = ["a", "b", "c", "d", "e", "f"].map((n) => write(n, 3));
    const size = ws[0]!.bytes;
    expect(ws.every((w) => w.bytes === size)).toBe(true);
    const window = new ResendWindow(2 * size, 4 * size);
    for (const w of ws) window.written(w);
    // e, f kept; c, d let go of but within capacity (6 lines); a, b beyond it.
    const taken = window.takeBack();
    expect(taken.writes).toEqual([ws[4], ws[5]]);
    expect(taken.beyond).toBe(6);
    // The lines beyond are not owed as resends: only those given back are.
    expect(window.pending).toBe(6);
    // Forgotten once taken back.
    window.written(write("g", 3));
    expect(window.takeBack()).toMatchObject({ beyond: 0 });
  });

  it("beyond counts only writes actually let go of", () => {
    const ws = ["a", "b", "c"].map((n) => write(n, 2));
    const size = ws[0]!.bytes;
    const window = new ResendWindow(2 * size, 10 * size);
    window.written(ws[0]!);
    window.written(ws[1]!);
    expect(window.takeBack().beyond).toBe(0);
    window.clear();
    for (const w of ws) window.written(w);
    expect(window.takeBack().beyond).toBe(2);
  });

  it("beyond is 0 when the limit covers the capacity", () => {
    const ws = ["a", "b", "c", "d"].map((n) => write(n, 3));
    const size = ws[0]!.bytes;
    for (const window of [
      new ResendWindow(2 * size),
      new ResendWindow(2 * size, 2 * size),
      new ResendWindow(2 * size, size),
    ]) {
      for (const w of ws) window.written(w);
      const taken = window.takeBack();
      expect(taken.writes).toEqual([ws[2], ws[3]]);
      expect(taken.beyond).toBe(0);
    }
  });

  it("with a limit of 0 keeps nothing, and counts what it let go of within capacity as beyond", () => {
    const ws = ["a", "b", "c"].map((n) => write(n, 4));
    const size = ws[0]!.bytes;
    const window = new ResendWindow(0, 2 * size);
    for (const w of ws) expect(window.written(w)).toBe(0);
    expect(window.bytes).toBe(0);
    const taken = window.takeBack();
    expect(taken.writes).toEqual([]);
    expect(taken.beyond).toBe(8);
    expect(window.pending).toBe(0);
  });
});
