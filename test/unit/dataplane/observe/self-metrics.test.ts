import { describe, expect, it } from "vitest";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import { LineFramer } from "../../../../dataplane/ingest/line-framer.ts";
import type { LineSink } from "../../../../dataplane/ingest/line-sink.ts";
import { REJECT_REASONS } from "../../../../dataplane/ingest/line-validator.ts";
import {
  type PipelineStats,
  pipelineStats,
  UNROUTED_REASONS,
} from "../../../../dataplane/observe/pipeline-stats.ts";
import { pathElement, SelfMetrics } from "../../../../dataplane/observe/self-metrics.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";

function stats(over: Partial<PipelineStats> = {}): PipelineStats {
  return { ...pipelineStats(new IngestCounters().stats(0, false), null), ...over };
}

/** The lines as a map name → value, checking every line is `<name> <value> <now>`. */
function parse(text: string, now: number): Map<string, number> {
  expect(text.endsWith("\n")).toBe(true);
  const out = new Map<string, number>();
  for (const line of text.slice(0, -1).split("\n")) {
    const [name, value, ts, ...rest] = line.split(" ");
    expect(rest).toEqual([]);
    expect(ts).toBe(String(now));
    expect(out.has(name!)).toBe(false);
    out.set(name!, Number(value));
  }
  return out;
}

describe("pathElement", () => {
  it.each([
    ["127.0.0.1:2003", "127_0_0_1_2003"],
    ["host.example:2004:a", "host_example_2004_a"],
    ["[::1]:2003", "___1__2003"],
    ["a b/c;d=e", "a_b_c_d_e"],
    ["ok-name_1", "ok-name_1"],
    ["", ""],
    ["é", "_"],
  ])("%j → %j", (input, want) => {
    expect(pathElement(input)).toBe(want);
  });
});

describe("SelfMetrics.lines", () => {
  it("first call: counters as their value so far, gauges as their value, under the prefix", () => {
    const m = new SelfMetrics("polymur.relay.host1");
    const s = stats({
      received: 100,
      connections: 3,
      unrouted: { no_destination: 6, ingest_paused: 8, no_match: 0, blackhole: 0, validate: 0 },
      destinations: [
        destinationStats("127.0.0.1:2003:a", {
          forwarded: 90,
          resent: 4,
          droppedBy: { queue_full: 1 },
          undelivered: 2,
          unconfirmed: 12,
          queuedLines: 7,
        }),
        destinationStats("other.host:2004", { state: "backoff", queuedLines: 11, undelivered: 3 }),
      ],
    });
    s.rejected.field_count = 5;
    const text = m.lines(s, 1_700_000_000);
    const got = parse(text, 1_700_000_000);
    const p = "polymur.relay.host1";
    expect(got.get(`${p}.received`)).toBe(100);
    expect(got.get(`${p}.generated`)).toBe(0);
    expect(got.get(`${p}.connections`)).toBe(3);
    // Undelivered: the node's, summed over destinations.
    expect(got.get(`${p}.undelivered`)).toBe(5);
    for (const r of REJECT_REASONS) {
      expect(got.get(`${p}.rejected.${r}`)).toBe(r === "field_count" ? 5 : 0);
    }
    expect(got.get(`${p}.unrouted.no_destination`)).toBe(6);
    expect(got.get(`${p}.unrouted.ingest_paused`)).toBe(8);
    const a = `${p}.destinations.127_0_0_1_2003_a`;
    expect(got.get(`${a}.forwarded`)).toBe(90);
    expect(got.get(`${a}.resent`)).toBe(4);
    expect(got.get(`${a}.dropped`)).toBe(1);
    expect(got.get(`${a}.undelivered`)).toBe(2);
    expect(got.get(`${a}.unconfirmed`)).toBe(12);
    expect(got.get(`${a}.queued`)).toBe(7);
    expect(got.get(`${a}.up`)).toBe(1);
    const b = `${p}.destinations.other_host_2004`;
    expect(got.get(`${b}.queued`)).toBe(11);
    expect(got.get(`${b}.undelivered`)).toBe(3);
    expect(got.get(`${b}.up`)).toBe(0);
    expect(got.size).toBe(4 + REJECT_REASONS.length + UNROUTED_REASONS.length + 2 * 7);
  });

  it("then counters as the increase since the previous call, gauges still as values", () => {
    const m = new SelfMetrics("p");
    const s1 = stats({
      received: 100,
      connections: 3,
      destinations: [destinationStats("d:1", { forwarded: 50, queuedLines: 9 })],
    });
    m.lines(s1, 10);
    const s2 = stats({
      received: 130,
      connections: 3,
      destinations: [destinationStats("d:1", { forwarded: 75, queuedLines: 9 })],
    });
    s2.rejected.bad_value = 2;
    const got = parse(m.lines(s2, 20), 20);
    expect(got.get("p.received")).toBe(30);
    expect(got.get("p.rejected.bad_value")).toBe(2);
    expect(got.get("p.destinations.d_1.forwarded")).toBe(25);
    expect(got.get("p.connections")).toBe(3);
    expect(got.get("p.destinations.d_1.queued")).toBe(9);
    // Nothing happened: counters are 0, gauges unchanged.
    const got3 = parse(m.lines(s2, 30), 30);
    expect(got3.get("p.received")).toBe(0);
    expect(got3.get("p.destinations.d_1.forwarded")).toBe(0);
    expect(got3.get("p.connections")).toBe(3);
  });

  it("a counter is the exact difference from the previous call: nothing hides one that went back", () => {
    // Totals never go back (a dead worker's counters are kept, see WorkerPool),
    // so no clamp is needed, and one would hide a counter that did.
    const m = new SelfMetrics("p");
    m.lines(stats({ received: 100 }), 1);
    expect(parse(m.lines(stats({ received: 40 }), 2), 2).get("p.received")).toBe(-60);
    expect(parse(m.lines(stats({ received: 45 }), 3), 3).get("p.received")).toBe(5);
  });

  it("unrouted and per-destination undelivered and unconfirmed are counters too", () => {
    const m = new SelfMetrics("p");
    const s = (n: number) =>
      stats({
        unrouted: {
          no_destination: n,
          ingest_paused: 2 * n,
          no_match: 0,
          blackhole: 0,
          validate: 0,
        },
        destinations: [destinationStats("d:1", { undelivered: 3 * n, unconfirmed: 4 * n })],
      });
    m.lines(s(1), 1);
    const got = parse(m.lines(s(5), 2), 2);
    expect(got.get("p.unrouted.no_destination")).toBe(4);
    expect(got.get("p.unrouted.ingest_paused")).toBe(8);
    expect(got.get("p.undelivered")).toBe(12);
    expect(got.get("p.destinations.d_1.undelivered")).toBe(12);
    expect(got.get("p.destinations.d_1.unconfirmed")).toBe(16);
  });

  it("a destination with a disk queue: recovered, disk.* and oldest_queued_seconds; none without one", () => {
    const m = new SelfMetrics("p");
    const s = (n: number) =>
      stats({
        destinations: [
          destinationStats("d:1", {
            recovered: 7,
            queuedLines: 30,
            disk: {
              lines: 20 * n,
              bytes: 4096 * n,
              spilled: 100 * n,
              replayed: 80 * n,
              failures: n,
              oldestAgeMs: 1500 * n,
            },
          }),
          destinationStats("e:1", { queuedLines: 2 }),
        ],
      });
    const first = parse(m.lines(s(1), 1), 1);
    const d = "p.destinations.d_1";
    expect(first.get(`${d}.recovered`)).toBe(7);
    expect(first.get(`${d}.disk.spilled`)).toBe(100);
    const got = parse(m.lines(s(3), 2), 2);
    // Counters: the increase; gauges: the value (the age in seconds).
    expect(got.get(`${d}.recovered`)).toBe(0);
    expect(got.get(`${d}.disk.spilled`)).toBe(200);
    expect(got.get(`${d}.disk.replayed`)).toBe(160);
    expect(got.get(`${d}.disk.failures`)).toBe(2);
    expect(got.get(`${d}.disk.datapoints`)).toBe(60);
    expect(got.get(`${d}.disk.bytes`)).toBe(12_288);
    expect(got.get(`${d}.oldest_queued_seconds`)).toBe(4.5);
    expect(got.get(`${d}.queued`)).toBe(30);
    const names = [...got.keys()];
    expect(names.filter((n) => n.startsWith("p.destinations.e_1."))).toEqual(
      ["forwarded", "resent", "dropped", "undelivered", "unconfirmed", "queued", "up"].map(
        (x) => `p.destinations.e_1.${x}`,
      ),
    );
  });

  it("a destination that appears later reports its counters in full", () => {
    const m = new SelfMetrics("p");
    m.lines(stats({ destinations: [destinationStats("a:1", { forwarded: 5 })] }), 1);
    const got = parse(
      m.lines(
        stats({
          destinations: [
            destinationStats("a:1", { forwarded: 6 }),
            destinationStats("b:1", { forwarded: 8 }),
          ],
        }),
        2,
      ),
      2,
    );
    expect(got.get("p.destinations.a_1.forwarded")).toBe(1);
    expect(got.get("p.destinations.b_1.forwarded")).toBe(8);
  });

  it("writes lines a polymur listener accepts as valid Graphite plaintext", () => {
    const m = new SelfMetrics("polymur.gw-1");
    const s = stats({
      received: 1,
      destinations: [destinationStats("[::1]:2003"), destinationStats("h x;y:1")],
    });
    const text = m.lines(s, 1_700_000_000);
    const counters = new IngestCounters();
    let accepted = 0;
    const sink: LineSink = {
      write(_b, _s, _e, lines) {
        accepted += lines;
      },
    };
    const framer = new LineFramer(counters.handler(sink, "self"));
    framer.push(Buffer.from(text));
    framer.end();
    expect(counters.rejects.total).toBe(0);
    expect(accepted).toBe(text.split("\n").length - 1);
  });
});
