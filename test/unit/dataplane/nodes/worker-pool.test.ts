import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { RelayConfig } from "../../../../dataplane/nodes/relay-config.ts";
import { RelayProcess } from "../../../../dataplane/nodes/relay-process.ts";
import { WorkerPool } from "../../../../dataplane/nodes/worker-pool.ts";
import type { PipelineStats } from "../../../../dataplane/observe/pipeline-stats.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
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
async function pool(c: RelayConfig): Promise<{ pool: WorkerPool; port: number }> {
  const { log } = captureLog();
  const primary = new RelayProcess(c, log, { share: 0.5, reusePort: true });
  const { port } = await primary.listen();
  const p = new WorkerPool(1, c, 0.5, log);
  running.add(p);
  cleanup.push(async () => {
    if (running.has(p)) await shutdown(p, 0);
  });
  await p.start(port);
  await primary.shutdown(0, 0);
  return { pool: p, port };
}

function only(p: WorkerPool): PipelineStats | undefined {
  const all = p.stats();
  return all.length === 1 ? all[0] : undefined;
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
    await until("b in the worker's stats", () => (only(p)?.destinations.length ?? 0) === 2);
    await sendLines(port, `${datapoints("applied", 50).join("\n")}\n`);
    await b.waitForLines(50, 5_000);
    await a.waitForLines(50, 5_000);
    expect(b.lines).toEqual(a.lines);

    p.apply(relayConfig(b.address));
    await until("a gone from the worker", () => (only(p)?.destinations.length ?? 0) === 1);
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
    expect(only(p)).toMatchObject({ received: 120, undelivered: 120 });
  });
});
