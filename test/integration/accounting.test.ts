// Every datapoint accounted for: real relay processes with the default
// worker count (one per core), under the faults that used to lose datapoints
// silently. In each, the node's accounting balances (test/fixtures/accounting.ts)
// and the log names what was lost.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { expectBalanced } from "../fixtures/accounting.ts";
import {
  adminClient,
  ControlPlaneProcess,
  NODE_TOKEN,
  retrying,
} from "../fixtures/control-plane.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { type LogLine, PolymurProcess, type StatsJson, waitForStats } from "../fixtures/polymur.ts";
import { startGateway, startProxy } from "../fixtures/proxy-gateway.ts";
import { StallingReceiver } from "../fixtures/stalling-receiver.ts";

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

async function relay(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  cleanup.push(() => p.stop());
  return p;
}

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  cleanup.push(() => s.close());
  return s;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "polymur-accounting-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Unique lines `<tag>.m<i % 97> <i> <t0 + i>`, i = from..from+n-1. */
function lines(tag: string, n: number, from = 0): string[] {
  return Array.from(
    { length: n },
    (_, k) => `${tag}.m${(from + k) % 97} ${from + k} ${1_700_000_000 + from + k}`,
  );
}

/**
 * Sends `all` over `connections` connections at once (the kernel spreads
 * connections over the worker processes). A connection that fails (a worker
 * killed under it) is tolerated: the caller counts on the relay's figures.
 */
async function send(port: number, all: readonly string[], connections: number): Promise<void> {
  const per = Math.ceil(all.length / connections);
  await Promise.all(
    Array.from({ length: connections }, (_, c) =>
      sendLines(port, all.slice(c * per, (c + 1) * per).join("\n") + "\n").catch(() => {}),
    ),
  );
}

/** The relay's worker processes (its children). */
function workerPids(p: PolymurProcess): number[] {
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(p.child.pid)], {
    encoding: "utf8",
  });
  return out
    .split("\n")
    .map((l) => Number(l.trim()))
    .filter((n) => n > 0);
}

function shutdownLine(p: PolymurProcess): LogLine {
  const l = p.logs.find((x) => x.msg.startsWith("shutdown complete"));
  if (l === undefined) throw new Error(`no shutdown line:\n${p.stdout.slice(-3000)}`);
  return l;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Longer than a worker's report interval (1 s): every process's counters are in /stats. */
const REPORT_MS = 1_500;

describe("every datapoint accounted for (default worker count)", () => {
  it("a relay with no destinations counts every line as unrouted and says so", async () => {
    const r = await relay([]);
    await send(r.port, [...lines("none", 5_000), "bad line here x"], 8);
    const s = await waitForStats(r, (x) => x.datapoints.received === 5_001);
    expect(s.datapoints.unroutedBy["no_destination"]).toBe(5_000);
    expect(s.datapoints.rejected).toBe(1);
    expect(s.datapoints.routed).toBe(0);
    expectBalanced(s.datapoints, s.destinations);
    await r.waitForLog(
      (l) => l["reason"] === "no_destination" && /no destination/.test(l.msg),
      15_000,
    );
  });

  it("kill -9 of a worker under load: its queue is counted dropped (worker_died), counters never go back", async () => {
    // A destination that is down: every process holds its whole share queued.
    const port = await freePort();
    // Every process from the start (--workers-min): the subject is a worker.
    const r = await relay([
      "--destinations",
      `127.0.0.1:${port}`,
      "--backoff-max",
      "0.2",
      "--workers-min",
      "99",
    ]);
    const workers = workerPids(r);
    expect(workers.length).toBeGreaterThan(0);
    // Over 16 connections, which the primary deals over the processes.
    await send(r.port, lines("kill", 400_000), 16);
    const before = await waitForStats(
      r,
      (x) => x.datapoints.queued > 0 && x.datapoints.received >= 300_000,
    );
    await sleep(REPORT_MS);
    const reported = await r.stats();
    process.kill(workers[0]!, "SIGKILL");
    const died = await r.waitForLog((l) => /^relay worker \d+ exited/.test(l.msg), 10_000);
    expect(died["reason"]).toBe("worker_died");
    const after = await r.stats();
    expect(after.datapoints.received).toBeGreaterThanOrEqual(reported.datapoints.received);
    expect(after.datapoints.received).toBeGreaterThanOrEqual(before.datapoints.received);
    expect(after.datapoints.droppedBy["worker_died"]).toBeGreaterThan(0);
    expect(died.msg).toContain(`${after.datapoints.droppedBy["worker_died"]} datapoints`);
    const dest = await sink(port);
    await waitForStats(r, (x) => x.datapoints.queued === 0, 60_000);
    await sleep(REPORT_MS);
    const end = await r.stats();
    expectBalanced(end.datapoints, end.destinations);
    // The destination has at least what the relay says it forwarded (more:
    // the dead worker may have forwarded lines after its last report).
    await dest.waitForLines(end.datapoints.forwarded);
  }, 120_000);

  it("a destination that stops reading and is then killed: nothing is lost (resend window sized to the kernels)", async () => {
    const dir = await tempDir();
    // A 4 MiB receive buffer on the destination, which reads 20,000 lines, then stalls.
    const stalled = await StallingReceiver.start(join(dir, "read.txt"), 20_000, 4 * 1024 * 1024);
    cleanup.push(() => stalled.kill());
    const r = await relay(["--destinations", `127.0.0.1:${stalled.port}`, "--backoff-max", "0.2"]);
    const all = lines("stall", 300_000);
    await send(r.port, all, 8);
    await waitForStats(r, (x) => x.datapoints.received === all.length);
    await sleep(1_000); // let the writes fill the kernel buffers
    await stalled.kill();
    const after = await sink(stalled.port);
    const s = await waitForStats(
      r,
      (x) => x.datapoints.queued === 0 && x.destinations[0]!.state === "connected",
      60_000,
    );
    await sleep(REPORT_MS);
    const have = new Set([...stalled.lines(), ...after.lines]);
    const missing = all.filter((l) => !have.has(l));
    expect(missing.length, `missing e.g. ${missing.slice(0, 3).join(" | ")}`).toBe(0);
    const end = await r.stats();
    expectBalanced(end.datapoints, end.destinations);
    expect(end.datapoints.unconfirmed).toBe(0);
    expect(s.datapoints.forwarded).toBe(all.length);
  }, 120_000);

  it("with a resend window too small for the kernels' buffers, what may have been lost is counted as unconfirmed", async () => {
    const dir = await tempDir();
    const stalled = await StallingReceiver.start(join(dir, "read.txt"), 20_000, 4 * 1024 * 1024);
    cleanup.push(() => stalled.kill());
    const r = await relay([
      "--destinations",
      `127.0.0.1:${stalled.port}`,
      "--backoff-max",
      "0.2",
      "--resend-window",
      "64KiB",
    ]);
    const all = lines("small", 300_000);
    await send(r.port, all, 8);
    await waitForStats(r, (x) => x.datapoints.received === all.length);
    await sleep(1_000);
    await stalled.kill();
    const after = await sink(stalled.port);
    await waitForStats(r, (x) => x.datapoints.queued === 0 && x.datapoints.unconfirmed > 0, 60_000);
    await sleep(REPORT_MS);
    const have = new Set([...stalled.lines(), ...after.lines]);
    const missing = all.filter((l) => !have.has(l)).length;
    expect(missing).toBeGreaterThan(0);
    // The count covers what was really lost.
    const end = await r.stats();
    expect(end.datapoints.unconfirmed).toBeGreaterThanOrEqual(missing);
    expectBalanced(end.datapoints, end.destinations);
    await r.waitForLog((l) => /may not have reached it \(counted as unconfirmed/.test(l.msg));
  }, 120_000);

  it("SIGTERM with a dead destination: lines already written count as unconfirmed, not undelivered", async () => {
    const dest = await sink();
    const r = await relay(["--destinations", dest.address, "--shutdown-timeout", "1"]);
    const all = lines("dead", 20_000);
    await send(r.port, all, 4);
    await dest.waitForLines(all.length);
    await dest.crash();
    await waitForStats(r, (x) => x.destinations[0]!.state !== "connected");
    await r.stop();
    const l = shutdownLine(r);
    const d = l["datapoints"] as StatsJson["datapoints"];
    expect(d.undelivered).toBe(0);
    expect(d.forwarded).toBe(all.length);
    expect(l.msg).toMatch(
      /^shutdown complete: every queued datapoint was written; \d+ datapoints written before a connection failed may not have reached their destination \(unconfirmed\)$/,
    );
    expect(d.unconfirmed).toBeGreaterThan(0);
    expectBalanced(d);
  });

  it("SIGTERM with a hung worker: its last known queue is counted undelivered and the log says so", async () => {
    // A destination that is down: every process holds its whole share queued.
    const down = `127.0.0.1:${await freePort()}`;
    // Every process from the start (--workers-min): the subject is a worker.
    const r = await relay([
      "--destinations",
      down,
      "--shutdown-timeout",
      "1",
      "--workers-min",
      "99",
    ]);
    const workers = workerPids(r);
    await send(r.port, lines("hung", 300_000), 16);
    await waitForStats(r, (x) => x.datapoints.received === 300_000);
    await sleep(REPORT_MS); // every worker has reported its queue
    process.kill(workers[0]!, "SIGSTOP");
    cleanup.push(async () => {
      try {
        process.kill(workers[0]!, "SIGKILL");
      } catch {}
    });
    await r.stop(60_000);
    const hung = r.logs.find((x) => /exited without its shutdown report/.test(x.msg));
    expect(hung, r.stdout.slice(-3000)).toBeDefined();
    const l = shutdownLine(r);
    const d = l["datapoints"] as StatsJson["datapoints"];
    expect(l.msg).not.toContain("every queued datapoint was written");
    // Nothing could be written: every line is undelivered, the hung worker's included.
    expect(d.undelivered).toBe(300_000);
    expect(hung!["undelivered"]).toEqual({ [down]: expect.any(Number) });
    expect(d.queued).toBe(0);
    expect(d.received).toBe(300_000);
    expectBalanced(d);
  }, 60_000);

  it("a destination removed, then SIGTERM within its drain: the shutdown report includes it", async () => {
    const kept = await sink();
    // Down: it holds everything routed to it when it is removed.
    const removed = { address: `127.0.0.1:${await freePort()}` };
    const r = await relay([
      "--destinations",
      `${kept.address},${removed.address}`,
      "--shutdown-timeout",
      "1",
    ]);
    await send(r.port, lines("rm", 300_000), 8);
    await waitForStats(r, (x) => x.datapoints.received === 300_000);
    expect(await r.api(`deldest ${removed.address}\n`)).toContain("removed");
    await r.stop();
    const l = shutdownLine(r);
    const undelivered = l["undelivered"] as Record<string, number>;
    expect(undelivered[removed.address]).toBe(300_000);
    const d = l["datapoints"] as StatsJson["datapoints"];
    expect(d.undelivered).toBe(l["total"]);
    expect(d.received).toBe(d.rejected + d.unrouted + d.routed);
    // Broadcast to two: each destination's terms add up to what was routed.
    expect(d.forwarded + d.queued + d.dropped + d.undelivered).toBe(2 * d.routed);
  }, 60_000);

  it("SIGHUP after a line-API change keeps the destination added through the line API, and says so", async () => {
    const dir = await tempDir();
    const a = await sink();
    const b = await sink();
    const config = join(dir, "relay.conf");
    await writeFile(config, `destinations = ${a.address}\n`);
    const r = await relay(["--config", config]);
    expect(await r.api(`putdest ${b.address}\n`)).toContain("added");
    r.kill("SIGHUP");
    await r.waitForLog((l) => l.msg === "SIGHUP: configuration reloaded");
    const kept = r.logs.find((l) => /kept destinations added through the line API/.test(l.msg));
    expect(kept?.["kept"]).toEqual([b.address]);
    expect(await r.api("getdest\n")).toContain(b.address);
    await send(r.port, lines("hup", 1_000), 2);
    await b.waitForLines(1_000);
    await a.waitForLines(1_000);
  });

  it("a managed gateway with no destinations acknowledges nothing; the proxy keeps every batch until there is one", async () => {
    const cp = await ControlPlaneProcess.start(["--state-dir", await tempDir()]);
    cleanup.push(() => cp.stop());
    const admin = adminClient(cp.url);
    const { secret } = await retrying(() => admin.createKey({ name: "site-a" }), 10_000);
    const gw = await startGateway(["--control-plane", cp.url, "--group", "gw"], {
      POLYMUR_NODE_TOKEN: NODE_TOKEN,
    });
    cleanup.push(() => gw.stop());
    const px = await startProxy(`http://127.0.0.1:${gw.port}`, secret);
    cleanup.push(() => px.stop());
    const all = lines("held", 5_000);
    await send(px.port, all, 2);
    await gw.waitForLog((l) => /^no destinations: /.test(l.msg), 15_000);
    await sleep(1_000);
    const held = await gw.stats();
    expect(held.datapoints.received).toBe(0);
    expect(held.datapoints.unrouted).toBe(0);
    const dest = await sink();
    await admin.addDestination({
      destination: { spec: dest.address, scope: { target: { case: "all", value: true } } },
    });
    await dest.waitForLines(all.length, 30_000);
    expect(new Set(dest.lines)).toEqual(new Set(all));
    const s = await waitForStats(
      gw,
      (x) => x.datapoints.queued === 0 && x.datapoints.forwarded >= all.length,
    );
    expect(s.datapoints.unrouted).toBe(0);
    expectBalanced(s.datapoints, s.destinations);
  }, 60_000);
});
