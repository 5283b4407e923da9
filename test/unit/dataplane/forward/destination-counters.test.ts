import { describe, expect, it } from "vitest";
import { DestinationCounters } from "../../../../dataplane/forward/destination-counters.ts";

describe("DestinationCounters", () => {
  it("reports its counters with the queue and state given, drops summed over reasons", () => {
    const c = new DestinationCounters();
    c.routed = 10;
    c.forwarded = 4;
    c.drop("queue_full", 2);
    c.drop("send_failed", 1);
    c.lastError = "ECONNREFUSED";
    const s = c.stats({ id: "h:1", spec: "h:1" }, "backoff", { lines: 3, bytes: 30 });
    expect(s).toMatchObject({
      id: "h:1",
      state: "backoff",
      routed: 10,
      forwarded: 4,
      dropped: 3,
      droppedBy: { queue_full: 2, closed: 0, worker_died: 0, send_failed: 1 },
      queuedLines: 3,
      queuedBytes: 30,
      lastError: "ECONNREFUSED",
    });
    // A copy: later drops do not change a row already taken.
    c.drop("closed", 5);
    expect(s.droppedBy.closed).toBe(0);
  });
});
