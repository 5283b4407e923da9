import { describe, expect, it } from "vitest";
import type { DestinationState } from "../../../../dataplane/forward/destination-stats.ts";
import { IngestCounters, type IngestStats } from "../../../../dataplane/ingest/ingest-counters.ts";
import {
  datapointTotals,
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
  it("takes ingest's counters and the router's; unrouted: no destination, and datagrams dropped while paused", () => {
    const i = ingest({
      received: 30,
      accepted: 20,
      generated: 5,
      connections: 2,
      connectionsTotal: 3,
      connectionsRefused: 1,
      connectionsIdleClosed: 6,
      bytesIn: 400,
      droppedPaused: 4,
      paused: true,
    });
    i.rejected.field_count = 2;
    const r: RouterStats = {
      routed: 13,
      noDestination: 7,
      noMatch: 0,
      blackhole: 0,
      validate: 0,
      aggregation: null,
      destinations: [destinationStats("a:1", { routed: 13, forwarded: 13 })],
    };
    expect(pipelineStats(i, r)).toEqual({
      received: 30,
      generated: 5,
      rejected: i.rejected,
      unrouted: { no_destination: 7, ingest_paused: 4, no_match: 0, blackhole: 0, validate: 0 },
      routed: 13,
      connections: 2,
      connectionsTotal: 3,
      connectionsRefused: 1,
      connectionsIdleClosed: 6,
      bytesIn: 400,
      listeners: [],
      destinations: [destinationStats("a:1", { routed: 13, forwarded: 13 })],
      paused: true,
      aggregation: null,
    });
  });

  it("without a router (a proxy): nothing routed, no destinations, unrouted only what ingest dropped", () => {
    const s = pipelineStats(ingest({ droppedPaused: 3 }), null);
    expect(s.destinations).toEqual([]);
    expect(s.routed).toBe(0);
    expect(s.unrouted).toEqual({
      no_destination: 0,
      ingest_paused: 3,
      no_match: 0,
      blackhole: 0,
      validate: 0,
    });
    expect(s.paused).toBe(false);
  });
});

describe("datapointTotals", () => {
  it("takes the node's terms and sums the destinations' (all reasons, removed rows included)", () => {
    const i = ingest({ received: 100, generated: 6, droppedPaused: 4 });
    i.rejected.field_count = 3;
    i.rejected.bad_value = 2;
    const s = pipelineStats(i, {
      routed: 80,
      noDestination: 11,
      noMatch: 0,
      blackhole: 0,
      validate: 0,
      aggregation: null,
      destinations: [
        destinationStats("a:1", {
          routed: 80,
          recovered: 13,
          forwarded: 50,
          queuedLines: 20,
          droppedBy: { queue_full: 7, closed: 1, disk_corrupt: 3 },
          undelivered: 2,
          rerouted: 10,
          unconfirmed: 3,
          resent: 9,
        }),
        destinationStats("b:1", {
          routed: 10,
          forwarded: 4,
          queuedLines: 1,
          droppedBy: { worker_died: 2 },
          undelivered: 3,
          unconfirmed: 1,
          resent: 1,
          removed: true,
          state: "closed",
        }),
      ],
    });
    const t = datapointTotals(s);
    expect(t).toEqual({
      received: 100,
      rejected: 5,
      unrouted: 15,
      routed: 80,
      recovered: 13,
      forwarded: 54,
      queued: 21,
      dropped: 13,
      undelivered: 5,
      unconfirmed: 4,
      resent: 10,
      rerouted: 10,
      generated: 6,
      rejectedBy: { ...i.rejected },
      unroutedBy: { no_destination: 11, ingest_paused: 4, no_match: 0, blackhole: 0, validate: 0 },
      droppedBy: {
        queue_full: 7,
        closed: 1,
        worker_died: 2,
        send_failed: 0,
        disk_corrupt: 3,
        disk_unreadable: 0,
      },
    });
    // Its records are copies.
    t.rejectedBy.field_count = 99;
    t.unroutedBy.no_destination = 99;
    expect(s.rejected.field_count).toBe(3);
    expect(s.unrouted.no_destination).toBe(11);
  });

  it("of a pipeline with nothing: every term 0", () => {
    const t = datapointTotals(pipelineStats(ingest(), null));
    const { rejectedBy, unroutedBy, droppedBy, ...terms } = t;
    expect(Object.values(terms).every((v) => v === 0)).toBe(true);
    expect(Object.values(rejectedBy).every((v) => v === 0)).toBe(true);
    expect(unroutedBy).toEqual({
      no_destination: 0,
      ingest_paused: 0,
      no_match: 0,
      blackhole: 0,
      validate: 0,
    });
    expect(droppedBy).toEqual({
      queue_full: 0,
      closed: 0,
      worker_died: 0,
      send_failed: 0,
      disk_corrupt: 0,
      disk_unreadable: 0,
    });
  });
});

describe("mergeStats", () => {
  function pipeline(over: Partial<PipelineStats>): PipelineStats {
    return { ...pipelineStats(ingest(), null), ...over };
  }

  it("sums the counters of a process group", () => {
    const a = pipeline({
      received: 1,
      generated: 6,
      routed: 7,
      unrouted: { no_destination: 8, ingest_paused: 9, no_match: 0, blackhole: 0, validate: 0 },
      connections: 1,
      connectionsTotal: 2,
      connectionsRefused: 3,
      connectionsIdleClosed: 5,
      bytesIn: 4,
    });
    a.rejected.bad_value = 1;
    const b = pipeline({
      received: 10,
      generated: 60,
      routed: 70,
      unrouted: { no_destination: 80, ingest_paused: 90, no_match: 0, blackhole: 0, validate: 0 },
      connections: 20,
      connectionsTotal: 30,
      connectionsRefused: 40,
      connectionsIdleClosed: 50,
      bytesIn: 50,
    });
    b.rejected.bad_value = 2;
    b.rejected.empty_line = 7;
    const m = mergeStats([a, b]);
    expect(m).toMatchObject({
      received: 11,
      generated: 66,
      routed: 77,
      unrouted: { no_destination: 88, ingest_paused: 99, no_match: 0, blackhole: 0, validate: 0 },
      connections: 21,
      connectionsTotal: 32,
      connectionsRefused: 43,
      connectionsIdleClosed: 55,
      bytesIn: 54,
      paused: false,
    });
    expect(m.rejected).toMatchObject({ bad_value: 3, empty_line: 7, field_count: 0 });
    // The inputs are left alone.
    expect(a.rejected.bad_value).toBe(1);
    expect(a.unrouted.no_destination).toBe(8);
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
          routed: 100,
          forwarded: 1,
          resent: 2,
          droppedBy: { queue_full: 3 },
          undelivered: 6,
          unconfirmed: 7,
          rerouted: 8,
          queuedLines: 4,
          queuedBytes: 5,
        }),
        destinationStats("y", { state: "connected", connects: 1 }),
      ],
    });
    const b = pipeline({
      destinations: [
        destinationStats("x", {
          routed: 1000,
          forwarded: 10,
          resent: 20,
          droppedBy: { queue_full: 10, worker_died: 20 },
          undelivered: 60,
          unconfirmed: 70,
          rerouted: 80,
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
      routed: 1100,
      forwarded: 11,
      resent: 22,
      dropped: 33,
      droppedBy: { queue_full: 13, closed: 0, worker_died: 20 },
      undelivered: 66,
      unconfirmed: 77,
      rerouted: 88,
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
    expect(a.destinations[0]!.droppedBy.queue_full).toBe(3);
  });

  it("shows a destination's state from its live rows, not its removed ones", () => {
    const live = (state: DestinationState) => destinationStats("x", { state, forwarded: 1 });
    const gone = () =>
      destinationStats("x", { state: "closed", removed: true, forwarded: 10, undelivered: 2 });
    for (const order of [
      [gone(), live("connected")],
      [live("connected"), gone()],
    ]) {
      const m = mergeStats(order.map((d) => pipeline({ destinations: [d] })));
      // "closed" is the least healthy state, but the removed row's is only its last.
      expect(m.destinations).toHaveLength(1);
      expect(m.destinations[0]).toMatchObject({
        state: "connected",
        forwarded: 11,
        undelivered: 2,
      });
      expect(m.destinations[0]!.removed).toBeFalsy();
    }
    // Among live rows, the least healthy still wins.
    const m = mergeStats(
      [gone(), live("connected"), live("backoff")].map((d) => pipeline({ destinations: [d] })),
    );
    expect(m.destinations[0]).toMatchObject({ state: "backoff", forwarded: 12 });
  });

  it("a destination removed in every process stays removed, its counters summed", () => {
    const gone = (n: number) =>
      pipeline({
        destinations: [destinationStats("x", { state: "closed", removed: true, forwarded: n })],
      });
    const m = mergeStats([gone(1), gone(2)]);
    expect(m.destinations[0]).toMatchObject({ state: "closed", removed: true, forwarded: 3 });
  });

  it("ejected in any process shows ejected", () => {
    const m = mergeStats([
      pipeline({ destinations: [destinationStats("x")] }),
      pipeline({ destinations: [destinationStats("x", { ejected: true })] }),
    ]);
    expect(m.destinations[0]!.ejected).toBe(true);
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
