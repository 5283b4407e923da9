import { describe, expect, it } from "vitest";
import {
  mergeProxyStats,
  type ProxyStats,
  proxyPrometheus,
} from "../../../../../dataplane/link/proxy/proxy-stats.ts";
import { parseExposition } from "../../../../fixtures/prometheus-exposition.ts";

function stats(over: Partial<ProxyStats> = {}): ProxyStats {
  return {
    link: {
      state: "open",
      gateway: "https://gw.example:8443",
      connects: 3,
      failures: 2,
      batchesSent: 40,
      batchesResent: 5,
      batchesAcked: 38,
      linesAcked: 3800,
      batchesRejected: 1,
      linesRejected: 100,
      lastError: undefined,
    },
    batches: 41,
    rawBytes: 123_456,
    payloadBytes: 30_000,
    pendingBatches: 2,
    pendingLines: 200,
    memoryBytes: 4096,
    spoolBytes: 8192,
    held: false,
    proxyId: "site-a-1",
    lost: {
      spool_corrupt: 120,
      spool_unreadable: 7,
      exit_without_spool: 0,
      exit_spool_append_failed: 3,
      worker_died: 0,
    },
    lostUncounted: {
      spool_corrupt: 2,
      spool_unreadable: 1,
      exit_without_spool: 0,
      exit_spool_append_failed: 0,
      worker_died: 0,
    },
    spoolAppendFailures: 4,
    unspooledLines: 900,
    linksOpen: 1,
    processes: [
      {
        index: 0,
        pid: 1234,
        proxyId: "site-a-1",
        link: "open",
        pendingBatches: 2,
        pendingLines: 200,
        batches: 41,
        linesAcked: 3800,
        held: false,
        draining: [],
        alive: true,
      },
    ],
    ...over,
  };
}

/** The single unlabelled sample of a family, or the labelled ones by their `where`. */
function value(text: string, name: string, where?: string): number | undefined {
  const f = parseExposition(text).get(name);
  return f?.samples.find((s) => (where === undefined ? true : s.labels["where"] === where))?.value;
}

/** A family's samples by their `reason` label. */
function byReason(text: string, name: string): Record<string, number> {
  const f = parseExposition(text).get(name);
  return Object.fromEntries((f?.samples ?? []).map((s) => [s.labels["reason"], s.value]));
}

describe("proxyPrometheus", () => {
  it("is a well-formed exposition with each counter and gauge of the proxy", () => {
    const text = proxyPrometheus(stats());
    const families = parseExposition(text);
    for (const [name, f] of families) {
      expect(name.startsWith("polymur_proxy_")).toBe(true);
      expect(f.type === "counter").toBe(name.endsWith("_total"));
    }
    expect(value(text, "polymur_proxy_batches_total")).toBe(41);
    expect(value(text, "polymur_proxy_raw_bytes_total")).toBe(123_456);
    expect(value(text, "polymur_proxy_payload_bytes_total")).toBe(30_000);
    expect(value(text, "polymur_proxy_batches_sent_total")).toBe(40);
    expect(value(text, "polymur_proxy_batches_resent_total")).toBe(5);
    expect(value(text, "polymur_proxy_batches_acked_total")).toBe(38);
    expect(value(text, "polymur_proxy_lines_acked_total")).toBe(3800);
    expect(value(text, "polymur_proxy_batches_rejected_total")).toBe(1);
    expect(value(text, "polymur_proxy_lines_rejected_total")).toBe(100);
    expect(value(text, "polymur_proxy_pending_batches")).toBe(2);
    expect(value(text, "polymur_proxy_pending_datapoints")).toBe(200);
    expect(value(text, "polymur_proxy_buffer_bytes", "memory")).toBe(4096);
    expect(value(text, "polymur_proxy_buffer_bytes", "spool")).toBe(8192);
    expect(value(text, "polymur_proxy_link_connects_total")).toBe(3);
    expect(value(text, "polymur_proxy_link_failures_total")).toBe(2);
    expect(value(text, "polymur_proxy_spool_append_failures_total")).toBe(4);
    expect(value(text, "polymur_proxy_unspooled_datapoints")).toBe(900);
  });

  it("shows every loss reason, counted and uncounted, zeros included", () => {
    const text = proxyPrometheus(stats());
    expect(byReason(text, "polymur_proxy_lost_datapoints_total")).toEqual({
      spool_corrupt: 120,
      spool_unreadable: 7,
      exit_without_spool: 0,
      exit_spool_append_failed: 3,
      worker_died: 0,
    });
    expect(byReason(text, "polymur_proxy_lost_uncounted_total")).toEqual({
      spool_corrupt: 2,
      spool_unreadable: 1,
      exit_without_spool: 0,
      exit_spool_append_failed: 0,
      worker_died: 0,
    });
  });

  it("shows the link up only while a stream is open, and ingest held while the buffer is full", () => {
    expect(value(proxyPrometheus(stats()), "polymur_proxy_link_up")).toBe(1);
    expect(value(proxyPrometheus(stats()), "polymur_proxy_ingest_held")).toBe(0);
    const down = stats({ held: true });
    down.link.state = "backoff";
    expect(value(proxyPrometheus(down), "polymur_proxy_link_up")).toBe(0);
    expect(value(proxyPrometheus(down), "polymur_proxy_ingest_held")).toBe(1);
  });
});

describe("mergeProxyStats", () => {
  /** Process `index` of a proxy, its counters all `k` (k differs per process, so sums tell them apart). */
  function process(index: number, k: number, state: "open" | "backoff" = "open"): ProxyStats {
    const s = stats({
      batches: k,
      rawBytes: k,
      payloadBytes: k,
      pendingBatches: k,
      pendingLines: k,
      memoryBytes: k,
      spoolBytes: k,
      spoolAppendFailures: k,
      unspooledLines: k,
      proxyId: index === 0 ? "site-a-1" : `site-a-1.w${index}`,
      linksOpen: state === "open" ? 1 : 0,
      lost: {
        spool_corrupt: k,
        spool_unreadable: k,
        exit_without_spool: k,
        exit_spool_append_failed: k,
        worker_died: k,
      },
      lostUncounted: {
        spool_corrupt: k,
        spool_unreadable: 0,
        exit_without_spool: 0,
        exit_spool_append_failed: 0,
        worker_died: 0,
      },
    });
    s.link = { ...s.link, state, gateway: `gw${index}`, connects: k, linesAcked: k * 10 };
    s.processes = [{ ...s.processes[0]!, index, proxyId: s.proxyId, link: state }];
    return s;
  }

  it("sums every counter and gauge over the processes, and keeps each one's row", () => {
    const m = mergeProxyStats([process(0, 1), process(1, 2), process(2, 4)]);
    for (const f of [
      "batches",
      "rawBytes",
      "payloadBytes",
      "pendingBatches",
      "pendingLines",
      "memoryBytes",
      "spoolBytes",
      "spoolAppendFailures",
      "unspooledLines",
    ] as const) {
      expect(m[f], f).toBe(7);
    }
    expect(m.linksOpen).toBe(3);
    expect(m.lost).toEqual({
      spool_corrupt: 7,
      spool_unreadable: 7,
      exit_without_spool: 7,
      exit_spool_append_failed: 7,
      worker_died: 7,
    });
    expect(m.lostUncounted.spool_corrupt).toBe(7);
    expect(m.link).toMatchObject({ state: "open", gateway: "gw0", connects: 7, linesAcked: 70 });
    expect(m.proxyId).toBe("site-a-1");
    expect(m.processes.map((p) => p.proxyId)).toEqual(["site-a-1", "site-a-1.w1", "site-a-1.w2"]);
    const text = proxyPrometheus(m);
    expect(value(text, "polymur_proxy_links_open")).toBe(3);
    expect(value(text, "polymur_proxy_processes")).toBe(3);
    expect(value(text, "polymur_proxy_lines_acked_total")).toBe(70);
  });

  it("shows the link down while any live process's link is down, not a dead one's", () => {
    const down = mergeProxyStats([process(0, 1), process(1, 1, "backoff")]);
    expect(down.link).toMatchObject({ state: "backoff", gateway: "gw1" });
    expect(value(proxyPrometheus(down), "polymur_proxy_link_up")).toBe(0);
    const dead = process(1, 1, "backoff");
    dead.processes[0]!.alive = false;
    const m = mergeProxyStats([process(0, 1), dead]);
    expect(m.link.state).toBe("open");
    expect(value(proxyPrometheus(m), "polymur_proxy_processes")).toBe(1);
  });

  it("leaves its inputs as they were", () => {
    const a = process(0, 1);
    const before = JSON.stringify(a);
    mergeProxyStats([a, process(1, 2)]);
    expect(JSON.stringify(a)).toBe(before);
  });
});
