import { afterEach, describe, expect, it, vi } from "vitest";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import {
  HEARTBEAT_MS,
  IDLE_HEARTBEAT_MS,
  NodeRuntime,
  type NodeRuntimeOptions,
} from "../../../../dataplane/nodes/node-runtime.ts";
import {
  datapointTotals,
  type PipelineStats,
  pipelineStats,
} from "../../../../dataplane/observe/pipeline-stats.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";
import { until } from "../../../fixtures/until.ts";

const runtimes: NodeRuntime[] = [];
afterEach(() => {
  for (const r of runtimes.splice(0)) r.close();
});

/** A pipeline that received (and accepted) `received` datapoints and has no destinations. */
function stats(received: number): PipelineStats {
  const c = new IngestCounters();
  c.accepted = received;
  return pipelineStats(c.stats(0, false), null);
}

/** A runtime whose log lines are kept in `logs`. */
function runtime(over: Partial<NodeRuntimeOptions> = {}): {
  rt: NodeRuntime;
  logs: CapturedLine[];
} {
  const { log, lines: logs } = captureLog();
  const rt = new NodeRuntime({
    log,
    statAddr: { host: "127.0.0.1", port: 0 },
    stats: () => stats(5),
    rejects: () => [],
    ...over,
  });
  runtimes.push(rt);
  return { rt, logs };
}

async function get(rt: NodeRuntime, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${rt.statsPort}${path}`);
  return { status: res.status, body: await res.text() };
}

describe("NodeRuntime stats endpoint", () => {
  it("serves /readyz: 503 before ready(), 200 after, 503 again after stop()", async () => {
    const { rt } = runtime();
    await rt.start();
    expect(rt.statsPort).toBeGreaterThan(0);
    expect(rt.isReady).toBe(false);
    expect(await get(rt, "/readyz")).toEqual({ status: 503, body: "not ready\n" });
    rt.ready();
    expect(rt.isReady).toBe(true);
    expect(await get(rt, "/readyz")).toEqual({ status: 200, body: "ready\n" });
    rt.stop();
    expect(await get(rt, "/readyz")).toEqual({ status: 503, body: "not ready\n" });
    // Stopped, the endpoint still answers (it is closed last).
    expect((await get(rt, "/healthz")).status).toBe(200);
  });

  it("serves /stats and /metrics from the node's counters and the role's extra fields", async () => {
    const { rt } = runtime({
      extra: () => ({ prometheus: "polymur_test_extra 3\n", json: { role: "test" } }),
    });
    await rt.start();
    const s = await get(rt, "/stats");
    expect(s.status).toBe(200);
    expect(JSON.parse(s.body)).toEqual({
      datapoints: datapointTotals(stats(5)),
      ...stats(5),
      role: "test",
    });
    const m = await get(rt, "/metrics");
    expect(m.body).toContain("\npolymur_received_total 5\n");
    expect(m.body.endsWith("polymur_test_extra 3\n")).toBe(true);
  });

  it("has no endpoint when statAddr is null", async () => {
    const { rt } = runtime({ statAddr: null });
    await rt.start();
    expect(rt.statsPort).toBeNull();
    rt.ready();
    rt.close();
  });

  it("close() stops the endpoint", async () => {
    const { rt } = runtime();
    await rt.start();
    expect((await get(rt, "/healthz")).status).toBe(200);
    rt.close();
    await expect(get(rt, "/healthz")).rejects.toThrow();
  });
});

describe("NodeRuntime chores", () => {
  it("sends self-metrics through inject every flushSec once ready; flushSec 0 sends none", async () => {
    const sent: string[] = [];
    const off: string[] = [];
    // Fractions of a second keep the test short; the timer is the same.
    const { rt } = runtime({
      statAddr: null,
      selfMetrics: { flushSec: 0.02, prefix: "polymur.test", inject: (t) => sent.push(t) },
    });
    const { rt: quiet } = runtime({
      statAddr: null,
      selfMetrics: { flushSec: 0, prefix: "polymur.quiet", inject: (t) => off.push(t) },
    });
    await rt.start();
    await quiet.start();
    quiet.ready();
    rt.ready();
    await until(() => sent.length >= 2);
    // Counters are the increase since the previous flush, gauges the value.
    expect(sent[0]).toMatch(/^polymur\.test\.received 5 \d+\n/);
    expect(sent[0]).toMatch(/\npolymur\.test\.connections 0 \d+\n/);
    expect(sent[0]!.endsWith("\n")).toBe(true);
    expect(sent[1]).toMatch(/^polymur\.test\.received 0 \d+\n/);
    expect(off).toEqual([]);
  });

  it("every() runs a chore until stop()", async () => {
    const { rt } = runtime({ statAddr: null });
    let n = 0;
    rt.every(5, () => n++);
    await until(() => n >= 2);
    rt.stop();
    const at = n;
    await new Promise((r) => setTimeout(r, 30));
    expect(n).toBe(at);
  });

  it("logUndelivered returns the total and says what was lost", () => {
    const { rt, logs } = runtime({ statAddr: null });
    expect(rt.logUndelivered({ "10.0.0.1:2003": 2, "10.0.0.2:2003": 3 })).toBe(5);
    // With the node's whole account, for the record.
    const datapoints = JSON.parse(JSON.stringify(datapointTotals(stats(5))));
    expect(logs.at(-1)).toMatchObject({
      level: 40,
      total: 5,
      undelivered: { "10.0.0.1:2003": 2, "10.0.0.2:2003": 3 },
      datapoints,
      msg: "shutdown complete: 5 datapoints left undelivered",
    });
    expect(rt.logUndelivered({ "10.0.0.1:2003": 0 })).toBe(0);
    expect(logs.at(-1)).toMatchObject({
      level: 30,
      received: 5,
      datapoints,
      msg: "shutdown complete: every queued datapoint was written",
    });
    expect(rt.logUndelivered({})).toBe(0);
  });

  it("logUndelivered says how much waits in the disk queues for the next start", () => {
    const c = new IngestCounters();
    c.accepted = 7;
    const onDisk = destinationStats("10.0.0.1:2003", {
      routed: 7,
      queuedLines: 7,
      disk: { lines: 7, bytes: 300, spilled: 7, replayed: 0, failures: 0, oldestAgeMs: 5 },
    });
    const withDisk = pipelineStats(c.stats(0, false), {
      routed: 7,
      noDestination: 0,
      noMatch: 0,
      blackhole: 0,
      validate: 0,
      aggregation: null,
      destinations: [onDisk],
    });
    const { rt, logs } = runtime({ statAddr: null, stats: () => withDisk });
    expect(rt.logUndelivered({ "10.0.0.1:2003": 0 })).toBe(0);
    expect(logs.at(-1)).toMatchObject({
      level: 30,
      onDisk: 7,
      msg: "shutdown complete: nothing undelivered; 7 datapoints wait in the disk queues for the next start",
    });
  });
});

describe("NodeRuntime heartbeat", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("logs every 5 s while lines arrive, at most once a minute while none do; its own lines are not news", () => {
    vi.useFakeTimers();
    let received = 0;
    let generated = 0;
    const { rt, logs } = runtime({
      statAddr: null,
      stats: () => ({ ...stats(received), received, generated }),
    });
    rt.ready();
    const beats = (): number[] =>
      logs.filter((l) => l.msg.startsWith("Last 5s: Received")).map((l) => l["received"] as number);
    vi.advanceTimersByTime(HEARTBEAT_MS);
    expect(beats()).toEqual([0]); // the first one says it is up
    vi.advanceTimersByTime(IDLE_HEARTBEAT_MS - HEARTBEAT_MS);
    expect(beats()).toEqual([0]);
    vi.advanceTimersByTime(HEARTBEAT_MS);
    expect(beats()).toEqual([0, 0]);
    received = 10;
    vi.advanceTimersByTime(HEARTBEAT_MS);
    received = 25;
    vi.advanceTimersByTime(HEARTBEAT_MS);
    expect(beats()).toEqual([0, 0, 10, 15]);
    // Self-metrics alone: nothing moved.
    received = 35;
    generated = 10;
    vi.advanceTimersByTime(HEARTBEAT_MS);
    expect(beats()).toEqual([0, 0, 10, 15]);
    rt.stop();
  });
});
