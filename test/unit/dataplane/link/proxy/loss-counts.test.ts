import { describe, expect, it } from "vitest";
import { LOSS_REASONS, LossCounts } from "../../../../../dataplane/link/proxy/loss-counts.ts";

describe("LossCounts", () => {
  it("counts datapoints by reason, and losses that cannot be counted apart", () => {
    const c = new LossCounts();
    const zero = {
      spool_corrupt: 0,
      spool_unreadable: 0,
      exit_without_spool: 0,
      exit_spool_append_failed: 0,
      worker_died: 0,
    };
    expect([c.lost(), c.lostUncounted()]).toEqual([zero, zero]);
    c.add("spool_corrupt", 12);
    c.add("spool_corrupt", 3);
    c.add("spool_corrupt", null);
    c.add("exit_spool_append_failed", 0);
    c.add("spool_unreadable", null);
    expect(c.lost()).toEqual({ ...zero, spool_corrupt: 15 });
    expect(c.lostUncounted()).toEqual({ ...zero, spool_corrupt: 1, spool_unreadable: 1 });
    // Snapshots: changing one changes nothing counted.
    c.lost().spool_corrupt = 99;
    expect(c.lost().spool_corrupt).toBe(15);
  });

  it("names every reason once, in the order the metrics list them", () => {
    expect(LOSS_REASONS).toEqual([
      "spool_corrupt",
      "spool_unreadable",
      "exit_without_spool",
      "exit_spool_append_failed",
      "worker_died",
    ]);
  });
});
