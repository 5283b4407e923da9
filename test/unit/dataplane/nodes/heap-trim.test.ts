import { describe, expect, it } from "vitest";
import { HeapTrim } from "../../../../dataplane/nodes/heap-trim.ts";

describe("HeapTrim", () => {
  it("collects once per idle spell, after idleTicks idle ticks in a row", () => {
    let collected = 0;
    const t = new HeapTrim({ idleLoad: 0.02, idleTicks: 3 }, () => collected++);
    t.observe(0.01);
    t.observe(0.01);
    t.observe(0.5); // the spell is broken
    t.observe(0.01);
    t.observe(0.01);
    expect(collected).toBe(0);
    // It says when it collected: its own CPU must not count as load.
    expect(t.observe(0.01)).toBe(true);
    expect(collected).toBe(1);
    // Still idle: nothing more to give back.
    for (let i = 0; i < 20; i++) t.observe(0);
    expect(collected).toBe(1);
    // The load rose and fell: the next spell collects again.
    t.observe(0.3);
    for (let i = 0; i < 3; i++) t.observe(0.001);
    expect(collected).toBe(2);
    expect(t.trims).toBe(2);
  });

  it("a process that never goes idle never collects", () => {
    let collected = 0;
    const t = new HeapTrim({ idleLoad: 0.02, idleTicks: 2 }, () => collected++);
    for (let i = 0; i < 50; i++) t.observe(i % 2 === 0 ? 0.01 : 0.05);
    expect(collected).toBe(0);
  });

  it("the real collection runs in this process (the collector is reachable)", () => {
    const t = new HeapTrim({ idleTicks: 1 });
    t.observe(0);
    expect(t.trims).toBe(1);
    // Exposed for that call only.
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });
});
