import http from "node:http";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import type { RejectSample } from "../../../../dataplane/ingest/reject-log.ts";
import { pipelinePrometheus } from "../../../../dataplane/observe/pipeline-prometheus.ts";
import {
  datapointTotals,
  type PipelineStats,
  pipelineStats,
} from "../../../../dataplane/observe/pipeline-stats.ts";
import {
  DEFAULT_STAT_ADDR,
  isDefaultAddress,
  type StatsSource,
  startAuxiliary,
  startStatsEndpoint,
  startStatsServer,
} from "../../../../dataplane/observe/stats-server.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";
import { closeServer, listenLocal } from "../../../fixtures/local-server.ts";
import { parseExposition } from "../../../fixtures/prometheus-exposition.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function sampleStats(): PipelineStats {
  const ingest = new IngestCounters();
  ingest.accepted = 1234;
  ingest.bytesIn = 56789;
  ingest.connectionsTotal = 9;
  ingest.connectionsRefused = 1;
  const reject = ingest.handler({ write() {} }, "10.0.0.1").reject;
  for (let i = 0; i < 6; i++) reject("bad_value", "value is not a number", Buffer.from("a x 1"));
  return pipelineStats(ingest.stats(2, true), {
    routed: 1230,
    noDestination: 4,
    noMatch: 0,
    blackhole: 0,
    validate: 0,
    aggregation: null,
    destinations: [
      destinationStats("127.0.0.1:2003:a", {
        routed: 1230,
        forwarded: 1000,
        resent: 2,
        droppedBy: { queue_full: 5 },
        undelivered: 3,
        queuedLines: 222,
      }),
      destinationStats('we"ird\\host\nname:2003', {
        state: "backoff",
        failures: 4,
        queuedBytes: 99,
      }),
    ],
  });
}

const REJECTS: RejectSample[] = [
  {
    at: 1,
    reason: "bad_value",
    detail: "value is not a number",
    source: "10.0.0.1",
    line: "a x 1",
  },
];

/** A stats server on 127.0.0.1:0 over a fixed source. */
async function serve(source: Partial<StatsSource> = {}): Promise<number> {
  const full: StatsSource = {
    stats: sampleStats,
    rejects: () => REJECTS,
    ready: () => true,
    ...source,
  };
  const server = await startStatsServer(full, "127.0.0.1", 0);
  cleanups.push(() => {
    server.closeAllConnections();
    return closeServer(server);
  });
  return (server.address() as net.AddressInfo).port;
}

function get(
  port: number,
  path: string,
  method = "GET",
): Promise<{ status: number; type: string; cache: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers["content-type"]),
          cache: String(res.headers["cache-control"]),
          text: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe("startStatsServer", () => {
  it("/metrics: Prometheus text, then the role's extra text", async () => {
    const extra =
      "# HELP polymur_extra_total x\n# TYPE polymur_extra_total counter\npolymur_extra_total 1\n";
    const port = await serve({ extra: () => ({ prometheus: extra, json: {} }) });
    const r = await get(port, "/metrics?ignored=1");
    expect(r.status).toBe(200);
    expect(r.type).toBe("text/plain; version=0.0.4");
    expect(r.cache).toBe("no-store");
    expect(r.text).toBe(pipelinePrometheus(sampleStats()) + extra);
    expect(parseExposition(r.text).get("polymur_extra_total")?.samples[0]?.value).toBe(1);
  });

  it("/metrics without extra", async () => {
    const port = await serve();
    const r = await get(port, "/metrics");
    expect(r.text).toBe(pipelinePrometheus(sampleStats()));
  });

  it("/stats: the datapoint totals, then the pipeline's counters as JSON, with the role's fields merged in", async () => {
    const port = await serve({
      extra: () => ({ prometheus: "", json: { gateway: { streams: 2 }, received: 1 } }),
    });
    const r = await get(port, "/stats");
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/json");
    expect(r.cache).toBe("no-store");
    const s = sampleStats();
    const want = JSON.parse(
      JSON.stringify({
        datapoints: datapointTotals(s),
        ...s,
        gateway: { streams: 2 },
        received: 1,
      }),
    );
    expect(JSON.parse(r.text)).toEqual(want);
    // Pretty-printed, two spaces, the totals first.
    expect(r.text.startsWith('{\n  "datapoints": {\n    "received": 1240,')).toBe(true);
  });

  it("/stats without extra: datapoints is the node's account", async () => {
    const port = await serve();
    const r = await get(port, "/stats");
    const s = sampleStats();
    const got = JSON.parse(r.text);
    expect(got).toEqual(JSON.parse(JSON.stringify({ datapoints: datapointTotals(s), ...s })));
    const t = got.datapoints;
    // received = rejected + unrouted + routed, and with one destination
    // received = rejected + unrouted + forwarded + queued + dropped + undelivered.
    expect(t).toMatchObject({ received: 1240, rejected: 6, unrouted: 4, routed: 1230 });
    expect(t.received).toBe(t.rejected + t.unrouted + t.routed);
    expect(t.received).toBe(
      t.rejected + t.unrouted + t.forwarded + t.queued + t.dropped + t.undelivered,
    );
  });

  it("/debug/rejects: the recent rejected lines as JSON", async () => {
    const port = await serve();
    const r = await get(port, "/debug/rejects");
    expect(r.status).toBe(200);
    expect(r.type).toBe("application/json");
    expect(JSON.parse(r.text)).toEqual(REJECTS);
  });

  it("/healthz and /readyz", async () => {
    let ready = false;
    const port = await serve({ ready: () => ready });
    expect(await get(port, "/healthz")).toMatchObject({ status: 200, text: "ok\n" });
    expect(await get(port, "/readyz")).toMatchObject({ status: 503, text: "not ready\n" });
    ready = true;
    expect(await get(port, "/readyz")).toMatchObject({ status: 200, text: "ready\n" });
  });

  it("404 with the list of endpoints", async () => {
    const port = await serve();
    for (const path of ["/", "/metrics/", "/stat", "/debug"]) {
      const r = await get(port, path);
      expect(r).toMatchObject({
        status: 404,
        type: "text/plain",
        text: "not found: try /metrics, /stats, /debug/rejects, /healthz, /readyz\n",
      });
    }
  });

  it("405 to POST and other methods, on any path; HEAD is allowed", async () => {
    const port = await serve();
    for (const [method, path] of [
      ["POST", "/metrics"],
      ["PUT", "/stats"],
      ["DELETE", "/nowhere"],
    ] as const) {
      expect(await get(port, path, method)).toMatchObject({
        status: 405,
        text: "method not allowed\n",
      });
    }
    expect(await get(port, "/metrics", "HEAD")).toMatchObject({ status: 200, text: "" });
  });

  it("rejects when its address is taken", async () => {
    const taken = await occupy();
    const source: StatsSource = { stats: sampleStats, rejects: () => [], ready: () => true };
    await expect(startStatsServer(source, "127.0.0.1", taken)).rejects.toMatchObject({
      code: "EADDRINUSE",
    });
  });
});

/** A port held by another listener on 127.0.0.1 for the rest of the test. */
async function occupy(): Promise<number> {
  const s = net.createServer();
  const port = await listenLocal(s);
  cleanups.push(() => closeServer(s));
  return port;
}

describe("startAuxiliary", () => {
  const listenOn = (port: number) => async (): Promise<net.Server> => {
    const s = net.createServer();
    await listenLocal(s, port);
    cleanups.push(() => closeServer(s));
    return s;
  };

  it("on its default address, a port in use → null and a warning naming the option", async () => {
    const port = await occupy();
    const { log, lines } = captureLog();
    const r = await startAuxiliary(listenOn(port), true, "stats endpoint", "stat-addr", log);
    expect(r).toBeNull();
    const warn = lines.filter((l) => l.level === 40);
    expect(warn).toHaveLength(1);
    expect(warn[0]?.["option"]).toBe("stat-addr");
    expect(warn[0]?.msg).toBe(
      "stats endpoint not started: its default address is in use (another polymur on this host?); set --stat-addr to run it elsewhere",
    );
  });

  it("on an address asked for explicitly, a port in use throws", async () => {
    const port = await occupy();
    const { log, lines } = captureLog();
    await expect(
      startAuxiliary(listenOn(port), false, "stats endpoint", "stat-addr", log),
    ).rejects.toMatchObject({ code: "EADDRINUSE" });
    expect(lines).toEqual([]);
  });

  it("on its default address, any other error still throws", async () => {
    const { log } = captureLog();
    const boom = Object.assign(new Error("denied"), { code: "EACCES" });
    await expect(
      startAuxiliary(() => Promise.reject(boom), true, "line API", "api-addr", log),
    ).rejects.toBe(boom);
  });

  it("returns what start() gives when it binds", async () => {
    const { log, lines } = captureLog();
    const s = await startAuxiliary(listenOn(0), true, "stats endpoint", "stat-addr", log);
    expect(s).not.toBeNull();
    expect((s!.address() as net.AddressInfo).port).toBeGreaterThan(0);
    expect(lines).toEqual([]);
  });
});

describe("startStatsEndpoint", () => {
  const source: StatsSource = { stats: sampleStats, rejects: () => [], ready: () => true };

  it("is off with a null address", async () => {
    const { log } = captureLog();
    expect(await startStatsEndpoint(source, null, log)).toBeNull();
  });

  it("binds an explicit address and reports the bound port", async () => {
    const { log } = captureLog();
    const r = await startStatsEndpoint(source, { host: "127.0.0.1", port: 0 }, log);
    expect(r).not.toBeNull();
    cleanups.push(() => closeServer(r!.server));
    expect(r!.port).toBe((r!.server.address() as net.AddressInfo).port);
    expect((await get(r!.port, "/healthz")).status).toBe(200);
  });

  it("throws when an explicit address is taken", async () => {
    const port = await occupy();
    const { log } = captureLog();
    await expect(
      startStatsEndpoint(source, { host: "127.0.0.1", port }, log),
    ).rejects.toMatchObject({ code: "EADDRINUSE" });
  });

  it("the default address is 127.0.0.1:2020; isDefaultAddress compares host and port", () => {
    expect(DEFAULT_STAT_ADDR).toEqual({ host: "127.0.0.1", port: 2020 });
    expect(isDefaultAddress({ host: "127.0.0.1", port: 2020 }, DEFAULT_STAT_ADDR)).toBe(true);
    expect(isDefaultAddress({ host: "0.0.0.0", port: 2020 }, DEFAULT_STAT_ADDR)).toBe(false);
    expect(isDefaultAddress({ host: "127.0.0.1", port: 2021 }, DEFAULT_STAT_ADDR)).toBe(false);
  });
});
