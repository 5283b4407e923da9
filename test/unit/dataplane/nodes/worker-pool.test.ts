import { readdirSync, readFileSync } from "node:fs";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { DestinationStats } from "../../../../dataplane/forward/destination-stats.ts";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import type { RelayConfig } from "../../../../dataplane/nodes/relay-config.ts";
import { RelayProcess } from "../../../../dataplane/nodes/relay-process.ts";
import {
  inheritDisk,
  leftOnDisk,
  retireStats,
  WorkerPool,
} from "../../../../dataplane/nodes/worker-pool.ts";
import {
  datapointTotals,
  mergeStats,
  type PipelineStats,
  pipelineStats,
} from "../../../../dataplane/observe/pipeline-stats.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import { destinationStats } from "../../../fixtures/destination-stats.ts";
import { datapoints, freePort, LineSink, sendLines } from "../../../fixtures/line-sink.ts";
import { relayConfig } from "../../../fixtures/relay-config.ts";
import { until } from "../../../fixtures/until.ts";

// The pool forks dataplane/nodes/relay-worker.ts itself (worker-pool.ts picks
// the extension of its own module): Node 24 runs it by stripping the types,
// outside vitest's transform, so this also checks that the worker's import
// graph uses erasable TypeScript only.

const cleanup: Array<() => unknown> = [];
beforeEach(() => {
  // The workers log to our stdout (inherited); keep the test output clean.
  vi.stubEnv("POLYMUR_LOG_LEVEL", "silent");
});
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
  vi.unstubAllEnvs();
});

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  cleanup.push(() => s.close());
  return s;
}

/** Pools not shut down yet (a second shutdown would wait for exits that already happened). */
const running = new Set<WorkerPool>();

/** Shuts the pool's workers down (once). */
function shutdown(p: WorkerPool, deadlineMs: number): Promise<Array<Record<string, number>>> {
  running.delete(p);
  return p.shutdown(deadlineMs);
}

/**
 * A pool of one worker on the port of a primary RelayProcess listening with
 * reusePort, as RelayNode does. The primary then stops listening, so that
 * every connection reaches the worker (with both listening, the kernel
 * spreads connections between them).
 */
async function pool(
  c: RelayConfig,
): Promise<{ pool: WorkerPool; port: number; logs: CapturedLine[] }> {
  const { log, lines: logs } = captureLog();
  const primary = new RelayProcess(c, log, { share: 0.5, reusePort: true });
  const { port } = await primary.listen();
  const p = new WorkerPool(1, c, 0.5, log);
  running.add(p);
  cleanup.push(async () => {
    if (running.has(p)) await shutdown(p, 0);
  });
  await p.start(port);
  await primary.shutdown(0, 0);
  return { pool: p, port, logs };
}

function only(p: WorkerPool): PipelineStats | undefined {
  const all = p.stats();
  return all.length === 1 ? all[0] : undefined;
}

/** Destinations of a worker's stats that are not removed. */
function live(s: PipelineStats | undefined): number {
  return (s?.destinations ?? []).filter((d) => !d.removed).length;
}

/** Ids of this process's child processes (the pool's workers), from /proc. */
function childPids(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // pid (comm) state ppid …: comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The one worker process of a pool (this test process starts no other child). */
async function workerPid(): Promise<number> {
  let pid = 0;
  await until("one worker process", () => {
    const pids = childPids();
    if (pids.length === 1) pid = pids[0]!;
    return pids.length === 1;
  });
  return pid;
}

describe("WorkerPool", () => {
  it("starts a worker that takes lines on the shared port and reports its counters", async () => {
    const a = await sink();
    const { pool: p, port } = await pool(relayConfig(a.address));
    // Counters come every second; none yet.
    expect(p.stats()).toEqual([]);
    const lines = datapoints("worker", 200);
    await sendLines(port, `${lines.join("\n")}\n`);
    await a.waitForLines(200, 5_000);
    expect(a.lines).toEqual(lines);
    await until("the worker's counters", () => only(p)?.received === 200);
    expect(only(p)?.destinations).toMatchObject([
      { spec: a.address, state: "connected", forwarded: 200, dropped: 0 },
    ]);
  });

  it("apply() reaches the worker: a new destination gets its lines", async () => {
    const a = await sink();
    const b = await sink();
    const { pool: p, port } = await pool(relayConfig(a.address));
    p.apply(relayConfig(`${a.address},${b.address}`));
    // The worker applies the message when its event loop reads it, which may
    // come after it has accepted (and routed) a connection opened now: wait
    // until its counters show the new destination.
    await until("b in the worker's stats", () => live(only(p)) === 2);
    await sendLines(port, `${datapoints("applied", 50).join("\n")}\n`);
    await b.waitForLines(50, 5_000);
    await a.waitForLines(50, 5_000);
    expect(b.lines).toEqual(a.lines);

    p.apply(relayConfig(b.address));
    await until("a gone from the worker", () => live(only(p)) === 1);
    await sendLines(port, "only.b 1 1700000000\n");
    await b.waitForLines(51, 5_000);
    expect(b.lines.at(-1)).toBe("only.b 1 1700000000");
    expect(a.lines).toHaveLength(50);
  });

  it("shutdown() asks the worker to drain and resolves with what it could not deliver", async () => {
    const a = await sink();
    const dead = `127.0.0.1:${await freePort()}`;
    const { pool: p, port } = await pool(relayConfig(`${a.address},${dead}`));
    await sendLines(port, `${datapoints("left", 120).join("\n")}\n`);
    await a.waitForLines(120, 5_000);
    await until("the dead destination's queue in the stats", () =>
      (only(p)?.destinations ?? []).some((d) => d.spec === dead && d.queuedLines === 120),
    );
    const undelivered = await shutdown(p, 100);
    expect(undelivered).toEqual([{ [a.address]: 0, [dead]: 120 }]);
    // The last counters stay, for the final report.
    const last = only(p)!;
    expect(last.received).toBe(120);
    expect(last.destinations.find((d) => d.spec === dead)).toMatchObject({
      undelivered: 120,
      queuedLines: 0,
    });
  });

  it("a worker that dies keeps its last counters, its queue dropped (worker_died); another takes its place", async () => {
    const a = await sink();
    const dead = `127.0.0.1:${await freePort()}`;
    const { pool: p, port, logs } = await pool(relayConfig(`${a.address},${dead}`));
    await sendLines(port, `${datapoints("died", 120).join("\n")}\n`);
    await a.waitForLines(120, 5_000);
    await until("the dead destination's queue in the stats", () =>
      (only(p)?.destinations ?? []).some((d) => d.spec === dead && d.queuedLines === 120),
    );
    const pid = await workerPid();
    process.kill(pid, "SIGKILL");
    await until("the worker's death is accounted for", () =>
      logs.some((l) => l.reason === "worker_died"),
    );
    expect(logs.find((l) => l.reason === "worker_died")).toMatchObject({
      level: 50,
      lost: { [dead]: 120 },
    });
    // Its counters stay in the totals: nothing received goes missing.
    const retired = p.stats();
    expect(retired).toHaveLength(1);
    expect(retired[0]).toMatchObject({ received: 120, routed: 120, connections: 0 });
    expect(retired[0]!.destinations.find((d) => d.spec === dead)).toMatchObject({
      state: "closed",
      removed: true,
      routed: 120,
      queuedLines: 0,
      queuedBytes: 0,
      dropped: 120,
      droppedBy: { queue_full: 0, closed: 0, worker_died: 120 },
    });
    expect(retired[0]!.destinations.find((d) => d.spec === a.address)).toMatchObject({
      removed: true,
      forwarded: 120,
    });
    // Restarted: the new worker reports beside the dead one's last counters.
    await until("a new worker reports", () => p.stats().length === 2, 10_000);
    await sendLines(port, "after.restart 1 1700000000\n");
    await a.waitForLines(121, 5_000);
  });

  it("a worker that exits without its shutdown report: its last queue is undelivered, and it is not restarted", async () => {
    const a = await sink();
    const dead = `127.0.0.1:${await freePort()}`;
    const { pool: p, port } = await pool(relayConfig(`${a.address},${dead}`));
    await sendLines(port, `${datapoints("killed", 80).join("\n")}\n`);
    await a.waitForLines(80, 5_000);
    await until("the dead destination's queue in the stats", () =>
      (only(p)?.destinations ?? []).some((d) => d.spec === dead && d.queuedLines === 80),
    );
    const pid = await workerPid();
    // A long deadline: the worker would still be draining when it is killed.
    const stopping = shutdown(p, 30_000);
    process.kill(pid, "SIGKILL");
    expect(await stopping).toEqual([{ [dead]: 80 }]);
    const last = only(p)!;
    expect(last.destinations.find((d) => d.spec === dead)).toMatchObject({
      state: "closed",
      removed: true,
      queuedLines: 0,
      undelivered: 80,
      dropped: 0,
    });
    expect(datapointTotals(last)).toMatchObject({ received: 80, routed: 80, undelivered: 80 });
    // No worker is started during a shutdown (the restart delay is 500 ms).
    await new Promise((r) => setTimeout(r, 800));
    expect(childPids()).toEqual([]);
    expect(p.stats()).toHaveLength(1);
  });
});

describe("retireStats", () => {
  function workerStats(): PipelineStats {
    return workerReport(100, 4, true, [
      destinationStats("a:1", {
        routed: 100,
        forwarded: 60,
        queuedLines: 30,
        queuedBytes: 900,
        droppedBy: { queue_full: 10 },
      }),
      destinationStats("b:1", { state: "backoff", routed: 100, forwarded: 100 }),
    ]);
  }

  const balanced = (s: PipelineStats): boolean =>
    s.destinations.every(
      (d) =>
        d.routed + d.recovered ===
        d.forwarded + d.queuedLines + d.dropped + d.undelivered + d.rerouted,
    );

  it('"worker_died": the queue is dropped for that reason, every row removed and closed', () => {
    const s = workerStats();
    expect(balanced(s)).toBe(true);
    expect(retireStats(s, "worker_died")).toEqual({ "a:1": 30 });
    expect(s).toMatchObject({ connections: 0, paused: false, received: 100, routed: 100 });
    expect(s.destinations[0]).toMatchObject({
      state: "closed",
      removed: true,
      queuedLines: 0,
      queuedBytes: 0,
      dropped: 40,
      droppedBy: { queue_full: 10, closed: 0, worker_died: 30 },
      undelivered: 0,
      forwarded: 60,
    });
    expect(s.destinations[1]).toMatchObject({ state: "closed", removed: true, dropped: 0 });
    expect(balanced(s)).toBe(true);
  });

  it('"undelivered": the queue is undelivered, nothing more dropped', () => {
    const s = workerStats();
    expect(retireStats(s, "undelivered")).toEqual({ "a:1": 30 });
    expect(s.destinations[0]).toMatchObject({
      state: "closed",
      removed: true,
      queuedLines: 0,
      queuedBytes: 0,
      dropped: 10,
      droppedBy: { queue_full: 10, closed: 0, worker_died: 0 },
      undelivered: 30,
    });
    expect(balanced(s)).toBe(true);
  });

  it("of a worker with nothing queued loses nothing", () => {
    const c = new IngestCounters();
    const s = pipelineStats(c.stats(0, false), null);
    expect(retireStats(s, "worker_died")).toEqual({});
  });

  it("a disk queue's datapoints are not lost: they stay queued (on disk), only memory's are moved", () => {
    for (const reason of ["worker_died", "undelivered"] as const) {
      const s = diskWorker();
      expect(retireStats(s, reason)).toEqual({ "a:1": 10 });
      expect(s.destinations[0]).toMatchObject({
        state: "closed",
        removed: true,
        queuedLines: 20,
        queuedBytes: 0,
        dropped: reason === "worker_died" ? 10 : 0,
        undelivered: reason === "undelivered" ? 10 : 0,
        disk: { lines: 20 },
      });
      expect(balanced(s)).toBe(true);
      expect([...leftOnDisk(s).keys()]).toEqual(["a:1"]);
    }
  });
});

/**
 * The report of a worker that took `accepted` datapoints in, on
 * `connections` connections (ingest `paused` or not), and routed them all;
 * its destinations' rows are `destinations`.
 */
function workerReport(
  accepted: number,
  connections: number,
  paused: boolean,
  destinations: DestinationStats[],
): PipelineStats {
  const c = new IngestCounters();
  c.accepted = accepted;
  return pipelineStats(c.stats(connections, paused), {
    routed: accepted,
    noDestination: 0,
    noMatch: 0,
    blackhole: 0,
    validate: 0,
    aggregation: null,
    destinations,
  });
}

/**
 * A worker whose destination a:1 has a disk queue: 100 routed, 70
 * forwarded, 30 queued of which 20 on disk.
 */
function diskWorker(over: Partial<DestinationStats> = {}): PipelineStats {
  return workerReport(100, 1, false, [
    destinationStats("a:1", {
      routed: 100,
      forwarded: 70,
      queuedLines: 30,
      queuedBytes: 300,
      disk: { lines: 20, bytes: 8192, spilled: 25, replayed: 5, failures: 0, oldestAgeMs: 900 },
      ...over,
    }),
  ]);
}

/** The report of the worker that replaced it: it found `recovered` on disk, and routed 5 more. */
function successor(recovered: number, disk = true): PipelineStats {
  const onDisk = {
    lines: 0,
    bytes: 4096,
    spilled: 0,
    replayed: recovered,
    failures: 0,
    oldestAgeMs: 0,
  };
  return workerReport(5, 1, false, [
    destinationStats("a:1", {
      routed: 5,
      recovered,
      forwarded: recovered,
      queuedLines: 5,
      ...(disk ? { disk: onDisk } : {}),
    }),
  ]);
}

/**
 * `dead` dies (retireStats, worker_died) and the worker that replaces it
 * finds `found` datapoints on disk: returns its first report, after
 * inheritDisk.
 */
function replaced(dead: PipelineStats, found: number): PipelineStats {
  retireStats(dead, "worker_died");
  const next = successor(found);
  inheritDisk(leftOnDisk(dead), new Map(), next);
  return next;
}

/** routed + recovered = forwarded + queued + dropped + undelivered + rerouted, for the group's merged row. */
function groupBalanced(all: PipelineStats[]): boolean {
  const t = datapointTotals(mergeStats(all));
  return t.routed + t.recovered === t.forwarded + t.queued + t.dropped + t.undelivered + t.rerouted;
}

describe("inheritDisk", () => {
  it("the worker that replaces a dead one counts once what it left on disk", () => {
    const dead = diskWorker();
    retireStats(dead, "worker_died");
    const left = leftOnDisk(dead);
    // Until the new worker reports, the dead one's disk datapoints are queued.
    expect(datapointTotals(mergeStats([dead]))).toMatchObject({ queued: 20, dropped: 10 });
    expect(groupBalanced([dead])).toBe(true);
    const inherited = new Map<string, number>();
    const first = successor(20);
    inheritDisk(left, inherited, first);
    expect(left.size).toBe(0);
    expect(dead.destinations[0]).toMatchObject({
      queuedLines: 0,
      dropped: 10,
      disk: { lines: 0, bytes: 0, oldestAgeMs: 0, spilled: 25, replayed: 5 },
    });
    // For the node, they were routed once (to the dead worker): not recovered.
    expect(first.destinations[0]!.recovered).toBe(0);
    expect(groupBalanced([dead, first])).toBe(true);
    const t = datapointTotals(mergeStats([dead, first]));
    expect(t).toMatchObject({ routed: 105, recovered: 0, forwarded: 90, queued: 5, dropped: 10 });
    // Every later report of the new worker too, and the dead row is let go of once.
    const later = successor(20);
    inheritDisk(left, inherited, later);
    expect(later.destinations[0]!.recovered).toBe(0);
    expect(dead.destinations[0]!.dropped).toBe(10);
    expect(groupBalanced([dead, later])).toBe(true);
  });

  it("what the dead worker recovered itself stays recovered, once", () => {
    // It found 8 on its own start: routed 100 + recovered 8 = 70 + 38 queued (28 on disk).
    const dead = diskWorker({
      recovered: 8,
      queuedLines: 38,
      disk: { lines: 28, bytes: 1, spilled: 0, replayed: 0, failures: 0, oldestAgeMs: 1 },
    });
    const next = replaced(dead, 28);
    expect(next.destinations[0]!.recovered).toBe(0);
    expect(datapointTotals(mergeStats([dead, next])).recovered).toBe(8);
    expect(groupBalanced([dead, next])).toBe(true);
  });

  it("found fewer than were left (gone in the dead worker's last moments): the rest is dropped, worker_died", () => {
    const dead = diskWorker();
    const next = replaced(dead, 15);
    expect(dead.destinations[0]).toMatchObject({
      queuedLines: 0,
      dropped: 15,
      droppedBy: { worker_died: 15 },
    });
    expect(next.destinations[0]!.recovered).toBe(0);
    expect(groupBalanced([dead, next])).toBe(true);
  });

  it("found more (spilled after the dead worker's last report): the extra is recovered", () => {
    const dead = diskWorker();
    const next = replaced(dead, 26);
    expect(next.destinations[0]!.recovered).toBe(6);
    expect(groupBalanced([dead, next])).toBe(true);
  });

  it("waits while the new worker has not opened that destination's disk queue", () => {
    const dead = diskWorker();
    retireStats(dead, "worker_died");
    const left = leftOnDisk(dead);
    const inherited = new Map<string, number>();
    inheritDisk(left, inherited, successor(0, false));
    const other = successor(0);
    other.destinations[0]!.id = "b:1";
    inheritDisk(left, inherited, other);
    expect(left.size).toBe(1);
    expect(inherited.size).toBe(0);
    expect(dead.destinations[0]!.queuedLines).toBe(20);
  });
});
