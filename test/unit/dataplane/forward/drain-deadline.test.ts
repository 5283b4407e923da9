import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DrainDeadline } from "../../../../dataplane/forward/drain-deadline.ts";

describe("DrainDeadline", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const reachedAfter = async (d: DrainDeadline): Promise<boolean> => {
    let reached = false;
    void d.reached.then(() => {
      reached = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    return reached;
  };

  it("is reached at its deadline, not before", async () => {
    const d = new DrainDeadline(100);
    await vi.advanceTimersByTimeAsync(99);
    expect(await reachedAfter(d)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await reachedAfter(d)).toBe(true);
  });

  it("cutAt brings it earlier, never later", async () => {
    const d = new DrainDeadline(100);
    d.cutAt(500);
    d.cutAt(10);
    await vi.advanceTimersByTimeAsync(10);
    expect(await reachedAfter(d)).toBe(true);
  });

  it("stop() keeps it from being reached", async () => {
    const d = new DrainDeadline(100);
    d.stop();
    await vi.advanceTimersByTimeAsync(1000);
    expect(await reachedAfter(d)).toBe(false);
  });
});
