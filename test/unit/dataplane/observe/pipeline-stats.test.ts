import { describe, expect, it } from "vitest";
import { IngestCounters, type IngestStats } from "../../../../dataplane/ingest/ingest-counters.ts";
import {
  mergeStats,
  type PipelineStats,
  pipelineStats,
} from "../../../../dataplane/observe/pipeline-stats.ts";
import type { RouterStats } from "../../../../dataplane/route/router.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";

function ingest(over: Partial<IngestStats> = {}): IngestStats {
  return { ...new IngestCounters().stats(0, false), ...over };
}

describe("pipelineStats", () => {
  it("takes ingest's counters and the router's destinations; undelivered adds datagrams dropped while paused", () => {
    const i = ingest({
      received: 10,
      connections: 2,
      connectionsTotal: 3,
      connectionsRefused: 1,
      bytesIn: 400,
      droppedPaused: 4,
      paused: true,
    });
    i.rejected.field_count = 2;
    const r: RouterStats = {
      undelivered: 7,
      destinations: [destinationStats("a:1")],
    };
    expect(pipelineStats(i, r)).toEqual({
      received: 10,
      rejected: i.rejected,
      connections: 2,
      connectionsTotal: 3,
      connectionsRefused: 1,
      bytesIn: 400,
      undelivered: 11,
      destinations: [destinationStats("a:1")],
      paused: true,
    });
  });

  it("without a router (a proxy): no destinations, undelivered is what ingest dropped", () => {
    const s = pipelineStats(ingest({ droppedPaused: 3 }), null);
    expect(s.destinations).toEqual([]);
    expect(s.undelivered).toBe(3);
    expect(s.paused).toBe(false);
  });
});

describe("mergeStats", () => {
  function pipeline(over: Partial<PipelineStats>): PipelineStats {
    return { ...pipelineStats(ingest(), null), ...over };
  }

  it("sums the counters of a process group", () => {
    const a = pipeline({
      received: 1,
      connections: 1,
      connectionsTotal: 2,
      connectionsRefused: 3,
      bytesIn: 4,
      undelivered: 5,
    });
    a.rejected.bad_value = 1;
    const b = pipeline({
      received: 10,
      connections: 20,
      connectionsTotal: 30,
      connectionsRefused: 40,
      bytesIn: 50,
      undelivered: 60,
    });
    b.rejected.bad_value = 2;
    b.rejected.empty_line = 7;
    const m = mergeStats([a, b]);
    expect(m).toMatchObject({
      received: 11,
      connections: 21,
      connectionsTotal: 32,
      connectionsRefused: 43,
      bytesIn: 54,
      undelivered: 65,
      paused: false,
    });
    expect(m.rejected).toMatchObject({ bad_value: 3, empty_line: 7, field_count: 0 });
    // The inputs are left alone.
    expect(a.rejected.bad_value).toBe(1);
    expect(a.received).toBe(1);
  });

  it("is paused when any process is", () => {
    expect(mergeStats([pipeline({}), pipeline({ paused: true })]).paused).toBe(true);
    expect(mergeStats([pipeline({ paused: true }), pipeline({})]).paused).toBe(true);
  });

  it("sums each destination over the processes and keeps its worst state and an error", () => {
    const a = pipeline({
      destinations: [
        destinationStats("x", {
          forwarded: 1,
          resent: 2,
          dropped: 3,
          queuedLines: 4,
          queuedBytes: 5,
        }),
        destinationStats("y", { state: "connected", connects: 1 }),
      ],
    });
    const b = pipeline({
      destinations: [
        destinationStats("x", {
          forwarded: 10,
          resent: 20,
          dropped: 30,
          queuedLines: 40,
          queuedBytes: 50,
        }),
        destinationStats("y", { state: "backoff", failures: 2, lastError: "ECONNREFUSED" }),
        destinationStats("z", { state: "draining" }),
      ],
    });
    const c = pipeline({
      destinations: [
        destinationStats("y", { state: "connecting", connects: 1, lastError: "later" }),
      ],
    });
    const m = mergeStats([a, b, c]);
    expect(m.destinations.map((d) => d.id)).toEqual(["x", "y", "z"]);
    expect(m.destinations[0]).toMatchObject({
      forwarded: 11,
      resent: 22,
      dropped: 33,
      queuedLines: 44,
      queuedBytes: 55,
      state: "connected",
    });
    expect(m.destinations[1]).toMatchObject({
      state: "backoff",
      connects: 2,
      failures: 2,
      lastError: "ECONNREFUSED",
    });
    expect(m.destinations[2]).toMatchObject({ state: "draining" });
    // The inputs are left alone.
    expect(a.destinations[1]!.state).toBe("connected");
    expect(a.destinations[0]!.forwarded).toBe(1);
  });

  it("orders states from least healthy: closed, backoff, connecting, draining, connected", () => {
    const order = ["closed", "backoff", "connecting", "draining", "connected"] as const;
    for (const [i, worse] of order.entries()) {
      for (const better of order.slice(i)) {
        const one = pipeline({ destinations: [destinationStats("x", { state: better })] });
        const other = pipeline({ destinations: [destinationStats("x", { state: worse })] });
        expect(mergeStats([one, other]).destinations[0]!.state).toBe(worse);
        expect(mergeStats([other, one]).destinations[0]!.state).toBe(worse);
      }
    }
  });

  it("of one pipeline is that pipeline", () => {
    const a = pipeline({ received: 3, destinations: [destinationStats("x", { forwarded: 2 })] });
    expect(mergeStats([a])).toEqual(a);
  });

  it("needs at least one pipeline", () => {
    expect(() => mergeStats([])).toThrow(/at least one/);
  });
});
