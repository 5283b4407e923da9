import { afterEach, describe, expect, it } from "vitest";
import { datapoints, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";

// What an operator reads: a destination's outage is logged once for the
// relay's process group (not once per worker process and retry), its
// recovery once, and the exit status says whether datapoints were lost.

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  cleanups.push(() => s.close());
  return s;
}

async function relay(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  cleanups.push(() => p.stop());
  return p;
}

describe("relay: destination state in the log, for the process group", () => {
  it("a destination down for a few seconds gives one down line and one recovery line, whatever the worker count", async () => {
    const a = await sink();
    const dest = a.address;
    // The default worker count (one process per core); fast retries, so
    // every process retries many times during the outage.
    const p = await relay(["--destinations", dest, "--backoff-min", "0.1", "--backoff-max", "0.3"]);
    const workers = Number((await p.waitForLog((l) => l.msg === "listening"))["workers"]);
    await p.waitForLog((l) => l.msg === `destination ${dest} connected`);
    await a.crash();
    await p.waitForLog((l) => l["destination"] === dest && l["state"] === "down");
    // Several connections, so that (SO_REUSEPORT) every process has some to queue.
    const lines = datapoints("outage", 400);
    for (let i = 0; i < 4; i++) {
      await sendLines(p.port, lines.slice(i * 100, (i + 1) * 100).join("\n") + "\n");
    }
    await waitForStats(p, (x) => x.datapoints.received === 400);
    // Many retries in every process: at 0.1-0.3 s backoff, well over one per process.
    await waitForStats(
      p,
      (x) => x.destinations.some((d) => d.spec === dest && d.failures >= 4 * workers),
      20_000,
    );
    await a.listen();
    const up = await p.waitForLog((l) =>
      String(l.msg).startsWith(`destination ${dest} connected again after`),
    );
    await a.waitForLines(400);
    const about = p.logs.filter((l) => l["destination"] === dest && l["state"] !== undefined);
    expect(about.map((l) => l["state"])).toEqual(["connected", "down", "connected"]);
    expect(about[1]!.level).toBe("warn");
    expect(String(about[1]!.msg)).toMatch(new RegExp(`^destination ${dest} down: `));
    expect(up.msg).toMatch(/connected again after \d+ s, \d+ datapoints queued meanwhile$/);
    expect(up["queued"]).toBe(400);
    expect(p.logs.filter((l) => String(l.msg).includes("still unreachable"))).toEqual([]);
    p.kill("SIGTERM");
    // Every datapoint delivered: exit status 0.
    expect(await p.exited()).toBe(0);
  });
});
