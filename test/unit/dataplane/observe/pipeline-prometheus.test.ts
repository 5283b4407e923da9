import { describe, expect, it } from "vitest";
import { DROP_REASONS } from "../../../../dataplane/forward/destination-stats.ts";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import { REJECT_REASONS } from "../../../../dataplane/ingest/line-validator.ts";
import { pipelinePrometheus } from "../../../../dataplane/observe/pipeline-prometheus.ts";
import {
  datapointTotals,
  type PipelineStats,
  pipelineStats,
} from "../../../../dataplane/observe/pipeline-stats.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";
import { parseExposition } from "../../../fixtures/prometheus-exposition.ts";

const WEIRD = 'we"ird\\host\nname:2003';

/**
 * A relay's counters with every term non-zero and balanced: 1240 received =
 * 6 rejected + 34 unrouted + 1200 routed, broadcast to two destinations; the
 * first has a disk queue, which held 50 datapoints at start (10 of them lost
 * to damage).
 */
function sampleStats(): PipelineStats {
  const ingest = new IngestCounters();
  ingest.accepted = 1234;
  ingest.generated = 12;
  ingest.bytesIn = 56789;
  ingest.connectionsTotal = 9;
  ingest.connectionsRefused = 1;
  const reject = ingest.handler({ write() {} }, "10.0.0.1").reject;
  for (let i = 0; i < 6; i++) reject("bad_value", "value is not a number", Buffer.from("a x 1"));
  return pipelineStats(ingest.stats(2, true), {
    routed: 1200,
    noDestination: 34,
    noMatch: 0,
    blackhole: 0,
    validate: 0,
    aggregation: null,
    destinations: [
      destinationStats("127.0.0.1:2003:a", {
        routed: 1200,
        recovered: 50,
        forwarded: 1000,
        resent: 2,
        droppedBy: { queue_full: 5, disk_corrupt: 10 },
        undelivered: 3,
        unconfirmed: 8,
        rerouted: 185,
        queuedLines: 47,
        disk: {
          lines: 40,
          bytes: 4096,
          spilled: 300,
          replayed: 260,
          failures: 2,
          oldestAgeMs: 12_500,
        },
      }),
      destinationStats(WEIRD, {
        state: "backoff",
        routed: 1200,
        failures: 4,
        droppedBy: { worker_died: 50 },
        queuedLines: 1150,
        queuedBytes: 99,
      }),
    ],
  });
}

const FAMILIES: Record<string, string> = {
  polymur_received_total: "counter",
  polymur_generated_total: "counter",
  polymur_rejected_total: "counter",
  polymur_unrouted_total: "counter",
  polymur_routed_total: "counter",
  polymur_recovered_total: "counter",
  polymur_forwarded_total: "counter",
  polymur_queued_datapoints: "gauge",
  polymur_dropped_total: "counter",
  polymur_undelivered_total: "counter",
  polymur_unconfirmed_total: "counter",
  polymur_resent_total: "counter",
  polymur_rerouted_total: "counter",
  polymur_aggregate_points_total: "counter",
  polymur_aggregate_dropped_total: "counter",
  polymur_aggregate_produced_total: "counter",
  polymur_aggregate_open_series: "gauge",
  polymur_received_bytes_total: "counter",
  polymur_connections: "gauge",
  polymur_connections_total: "counter",
  polymur_connections_refused_total: "counter",
  polymur_connections_idle_closed_total: "counter",
  polymur_listener_accepted_total: "counter",
  polymur_listener_rejected_total: "counter",
  polymur_listener_received_bytes_total: "counter",
  polymur_listener_reads_total: "counter",
  polymur_listener_connections: "gauge",
  polymur_listener_connections_total: "counter",
  polymur_listener_tls_rejected_total: "counter",
  polymur_ingest_paused: "gauge",
  polymur_destination_routed_total: "counter",
  polymur_destination_recovered_total: "counter",
  polymur_destination_forwarded_total: "counter",
  polymur_destination_resent_total: "counter",
  polymur_destination_dropped_total: "counter",
  polymur_destination_undelivered_total: "counter",
  polymur_destination_unconfirmed_total: "counter",
  polymur_destination_rerouted_total: "counter",
  polymur_destination_queued_datapoints: "gauge",
  polymur_destination_queued_bytes: "gauge",
  polymur_destination_disk_datapoints: "gauge",
  polymur_destination_disk_bytes: "gauge",
  polymur_destination_disk_spilled_total: "counter",
  polymur_destination_disk_replayed_total: "counter",
  polymur_destination_disk_failures_total: "counter",
  polymur_destination_oldest_queued_seconds: "gauge",
  polymur_destination_up: "gauge",
  polymur_destination_connection_failures_total: "counter",
};

describe("pipelinePrometheus(PipelineStats)", () => {
  it("every family has HELP and TYPE, in a fixed order", () => {
    const f = parseExposition(pipelinePrometheus(sampleStats()));
    expect([...f].map(([n, x]) => [n, x.type])).toEqual(Object.entries(FAMILIES));
    for (const x of f.values()) expect(x.help.length).toBeGreaterThan(0);
  });

  it("the node's families are the terms of /stats's datapoints", () => {
    const s = sampleStats();
    const t = datapointTotals(s);
    const f = parseExposition(pipelinePrometheus(s));
    const one = (n: string): number | undefined => {
      const samples = f.get(n)?.samples ?? [];
      expect(samples).toHaveLength(1);
      return samples[0]?.value;
    };
    expect(one("polymur_received_total")).toBe(t.received);
    expect(t.received).toBe(1240);
    expect(one("polymur_generated_total")).toBe(12);
    expect(one("polymur_routed_total")).toBe(1200);
    expect(one("polymur_recovered_total")).toBe(50);
    expect(one("polymur_forwarded_total")).toBe(1000);
    expect(one("polymur_queued_datapoints")).toBe(1197);
    expect(one("polymur_undelivered_total")).toBe(3);
    expect(one("polymur_unconfirmed_total")).toBe(8);
    expect(one("polymur_received_bytes_total")).toBe(56789);
    expect(one("polymur_connections")).toBe(2);
    expect(one("polymur_connections_total")).toBe(9);
    expect(one("polymur_connections_refused_total")).toBe(1);
    expect(one("polymur_ingest_paused")).toBe(1);
    expect(f.get("polymur_rejected_total")?.samples).toEqual(
      REJECT_REASONS.map((r) => ({ labels: { reason: r }, value: r === "bad_value" ? 6 : 0 })),
    );
    expect(f.get("polymur_unrouted_total")?.samples).toEqual([
      { labels: { reason: "no_destination" }, value: 34 },
      { labels: { reason: "ingest_paused" }, value: 0 },
      { labels: { reason: "no_match" }, value: 0 },
      { labels: { reason: "blackhole" }, value: 0 },
      { labels: { reason: "validate" }, value: 0 },
    ]);
    expect(f.get("polymur_dropped_total")?.samples).toEqual(
      DROP_REASONS.map((r) => ({ labels: { reason: r }, value: t.droppedBy[r] })),
    );
    expect(t.droppedBy).toEqual({
      queue_full: 5,
      closed: 0,
      worker_died: 50,
      send_failed: 0,
      disk_corrupt: 10,
      disk_unreadable: 0,
    });
    // received = rejected + unrouted + routed, as exposed.
    const sum = (n: string): number => (f.get(n)?.samples ?? []).reduce((a, x) => a + x.value, 0);
    expect(sum("polymur_received_total")).toBe(
      sum("polymur_rejected_total") + sum("polymur_unrouted_total") + sum("polymur_routed_total"),
    );
  });

  it("each destination's families, balanced: routed + recovered = forwarded + queued + dropped + undelivered + rerouted", () => {
    const f = parseExposition(pipelinePrometheus(sampleStats()));
    const byDest = (n: string): Array<[string, number]> =>
      (f.get(n)?.samples ?? []).map((x) => [x.labels["destination"]!, x.value]);
    const a = "127.0.0.1:2003:a";
    expect(byDest("polymur_destination_routed_total")).toEqual([
      [a, 1200],
      [WEIRD, 1200],
    ]);
    expect(byDest("polymur_destination_recovered_total")).toEqual([
      [a, 50],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_forwarded_total")).toEqual([
      [a, 1000],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_resent_total")).toEqual([
      [a, 2],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_undelivered_total")).toEqual([
      [a, 3],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_unconfirmed_total")).toEqual([
      [a, 8],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_rerouted_total")).toEqual([
      [a, 185],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_queued_datapoints")).toEqual([
      [a, 47],
      [WEIRD, 1150],
    ]);
    expect(byDest("polymur_destination_queued_bytes")).toEqual([
      [a, 0],
      [WEIRD, 99],
    ]);
    expect(byDest("polymur_destination_up")).toEqual([
      [a, 1],
      [WEIRD, 0],
    ]);
    expect(byDest("polymur_destination_connection_failures_total")).toEqual([
      [a, 0],
      [WEIRD, 4],
    ]);
    // Dropped: one sample per destination and reason.
    expect(
      f
        .get("polymur_destination_dropped_total")
        ?.samples.map((x) => [x.labels["destination"], x.labels["reason"], x.value]),
    ).toEqual([
      [a, "queue_full", 5],
      [a, "closed", 0],
      [a, "worker_died", 0],
      [a, "send_failed", 0],
      [a, "disk_corrupt", 10],
      [a, "disk_unreadable", 0],
      [WEIRD, "queue_full", 0],
      [WEIRD, "closed", 0],
      [WEIRD, "worker_died", 50],
      [WEIRD, "send_failed", 0],
      [WEIRD, "disk_corrupt", 0],
      [WEIRD, "disk_unreadable", 0],
    ]);
    for (const d of [a, WEIRD]) {
      const v = (n: string): number =>
        (f.get(n)?.samples ?? [])
          .filter((x) => x.labels["destination"] === d)
          .reduce((s, x) => s + x.value, 0);
      expect(v("polymur_destination_routed_total") + v("polymur_destination_recovered_total")).toBe(
        v("polymur_destination_forwarded_total") +
          v("polymur_destination_queued_datapoints") +
          v("polymur_destination_dropped_total") +
          v("polymur_destination_undelivered_total") +
          v("polymur_destination_rerouted_total"),
      );
    }
  });

  it("the disk queue's families: a sample only for a destination that has one", () => {
    const f = parseExposition(pipelinePrometheus(sampleStats()));
    const samples = (n: string) => f.get(n)?.samples;
    const a = { destination: "127.0.0.1:2003:a" };
    expect(samples("polymur_destination_disk_datapoints")).toEqual([{ labels: a, value: 40 }]);
    expect(samples("polymur_destination_disk_bytes")).toEqual([{ labels: a, value: 4096 }]);
    expect(samples("polymur_destination_disk_spilled_total")).toEqual([{ labels: a, value: 300 }]);
    expect(samples("polymur_destination_disk_replayed_total")).toEqual([{ labels: a, value: 260 }]);
    expect(samples("polymur_destination_disk_failures_total")).toEqual([{ labels: a, value: 2 }]);
    // In seconds, as Prometheus names say.
    expect(samples("polymur_destination_oldest_queued_seconds")).toEqual([
      { labels: a, value: 12.5 },
    ]);
  });

  it("escapes destination labels (backslash, quote, newline)", () => {
    const text = pipelinePrometheus(sampleStats());
    expect(text).toContain(
      'polymur_destination_connection_failures_total{destination="we\\"ird\\\\host\\nname:2003"} 4\n',
    );
    expect(text).toContain(
      'polymur_destination_dropped_total{destination="we\\"ird\\\\host\\nname:2003",reason="worker_died"} 50\n',
    );
  });

  it("without destinations: the destination families are there, empty", () => {
    const s = pipelineStats(new IngestCounters().stats(0, false), null);
    const f = parseExposition(pipelinePrometheus(s));
    expect(f.size).toBe(Object.keys(FAMILIES).length);
    expect(f.get("polymur_destination_up")?.samples).toEqual([]);
    expect(f.get("polymur_destination_dropped_total")?.samples).toEqual([]);
    expect(f.get("polymur_destination_disk_datapoints")?.samples).toEqual([]);
    expect(f.get("polymur_recovered_total")?.samples[0]?.value).toBe(0);
    expect(f.get("polymur_ingest_paused")?.samples[0]?.value).toBe(0);
    expect(f.get("polymur_routed_total")?.samples[0]?.value).toBe(0);
  });
});
