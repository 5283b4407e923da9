import { once } from "node:events";
import net from "node:net";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { RelayConfig } from "../../../../dataplane/nodes/relay-config.ts";
import {
  RelayProcess,
  type RelayProcessOptions,
} from "../../../../dataplane/nodes/relay-process.ts";
import { datapointTotals } from "../../../../dataplane/observe/pipeline-stats.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import { datapoints, freePort, LineSink, sendLines } from "../../../fixtures/line-sink.ts";
import { relayConfig } from "../../../fixtures/relay-config.ts";
import { until } from "../../../fixtures/until.ts";

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function relay(
  c: RelayConfig,
  options: RelayProcessOptions = {},
): Promise<{ p: RelayProcess; port: number; logs: CapturedLine[] }> {
  const { log, lines } = captureLog();
  const p = new RelayProcess(c, log, options);
  cleanup.push(() => p.shutdown(0, 0));
  const { port } = await p.listen();
  return { p, port, logs: lines };
}

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  cleanup.push(() => s.close());
  return s;
}

/** A sender connection; destroyed at the end of the test. */
async function sender(port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: "127.0.0.1" });
  s.on("error", () => {});
  cleanup.push(() => {
    s.destroy();
  });
  await once(s, "connect");
  return s;
}

/**
 * Writes `chunk` (whole lines) again and again until `stop()` holds, waiting
 * for "drain" whenever the socket pushes back. Returns the lines written.
 */
async function flood(
  s: net.Socket,
  chunk: Buffer,
  linesPerChunk: number,
  stop: () => boolean,
  maxBytes = 256 << 20,
): Promise<number> {
  let lines = 0;
  let bytes = 0;
  while (!stop()) {
    if (bytes > maxBytes) throw new Error(`still not stopped after ${bytes} bytes`);
    bytes += chunk.length;
    lines += linesPerChunk;
    if (!s.write(chunk)) {
      let drained = false;
      s.once("drain", () => {
        drained = true;
      });
      await until("drain or stop", () => drained || stop(), 20_000);
    }
  }
  return lines;
}

const PAUSED = "queue full under block policy: ingest paused";
const RESUMED = "ingest resumed";

describe("RelayProcess", () => {
  it("delivers every line a sender sends to each destination (broadcast), counted once", async () => {
    const a = await sink();
    const b = await sink();
    const { p, port } = await relay(relayConfig(`${a.address},${b.address}`));
    const lines = datapoints("relay.process", 500);
    await sendLines(port, `${lines.join("\n")}\n`);
    await a.waitForLines(500, 5_000);
    await b.waitForLines(500, 5_000);
    expect(a.lines).toEqual(lines);
    expect(b.lines).toEqual(lines);
    const s = p.stats();
    expect(s.received).toBe(500);
    // Routed once, whatever the number of destinations; each destination routed all.
    expect(s.routed).toBe(500);
    expect(s.connectionsTotal).toBe(1);
    await until("forwarded counted", () =>
      p.stats().destinations.every((d) => d.forwarded === 500),
    );
    expect(p.stats().destinations.map((d) => [d.spec, d.routed])).toEqual([
      [a.address, 500],
      [b.address, 500],
    ]);
  });

  it("passes bad lines over (counted as rejected) and delivers the rest", async () => {
    const a = await sink();
    const { p, port } = await relay(relayConfig(a.address));
    await sendLines(port, "good.one 1 1700000000\nbad line\ngood.two 2 1700000000\n");
    await a.waitForLines(2, 5_000);
    expect(a.lines).toEqual(["good.one 1 1700000000", "good.two 2 1700000000"]);
    const s = p.stats();
    // Received counts every line: received = rejected + unrouted + routed.
    expect(s.received).toBe(3);
    expect(s.routed).toBe(2);
    expect(Object.values(s.rejected).reduce((x, y) => x + y, 0)).toBe(1);
    expect(p.recentRejects()).toHaveLength(1);
  });

  it("received = rejected + unrouted + routed: with no destination, valid lines are unrouted", async () => {
    const { p, port } = await relay(relayConfig(""));
    await sendLines(port, "a.one 1 1700000000\nbad\na.two 2 1700000000\na.three 3 1700000000\n");
    await until("read", () => p.stats().received === 4);
    p.inject("polymur.self 1 1700000000\n");
    const t = datapointTotals(p.stats());
    expect(t).toMatchObject({
      received: 5,
      generated: 1,
      rejected: 1,
      unrouted: 4,
      unroutedBy: { no_destination: 4, ingest_paused: 0, no_match: 0, blackhole: 0, validate: 0 },
      routed: 0,
    });
    expect(t.received).toBe(t.rejected + t.unrouted + t.routed);
  });

  it("block policy, dead destination: pauses ingest when the queue is full, resumes once it drains, loses nothing", async () => {
    const port0 = await freePort();
    const { p, port, logs } = await relay(
      relayConfig(`127.0.0.1:${port0}`, { overflow: "block", queueBytes: 64 * 1024 }),
    );
    const s = await sender(port);
    // About 4 queue bounds' worth: more than the queue takes.
    const lines = datapoints("blocked", 10_000);
    s.write(`${lines.join("\n")}\n`);
    await until("ingest paused", () => p.listener.paused);
    expect(p.router.blocking).toBe(true);
    expect(p.stats().paused).toBe(true);
    const paused = logs.find((l) => l.msg === PAUSED);
    expect(paused).toMatchObject({ level: 40, paused: true });
    // More from the sender while paused: it waits in the socket buffers.
    const more = datapoints("more", 100);
    s.write(`${more.join("\n")}\n`);

    // The destination comes up: its queue drains and ingest resumes.
    const d = await sink(port0);
    await until("ingest resumed", () => !p.listener.paused);
    expect(logs.find((l) => l.msg === RESUMED)).toMatchObject({ level: 40, paused: false });
    expect(logs.findIndex((l) => l.msg === RESUMED)).toBeGreaterThan(
      logs.findIndex((l) => l.msg === PAUSED),
    );
    await d.waitForLines(10_100, 8_000);
    expect(d.lines).toEqual([...lines, ...more]);
    expect(p.stats().received).toBe(10_100);
    expect(p.stats().destinations[0]?.dropped).toBe(0);
    expect(p.stats().paused).toBe(false);
  });

  it("block policy, slow destination (stops reading): pauses ingest, resumes when it reads again", async () => {
    const d = await sink();
    d.pause();
    const { p, port, logs } = await relay(
      relayConfig(d.address, { overflow: "block", queueBytes: 64 * 1024 }),
    );
    const s = await sender(port);
    const per = 1_000;
    const chunk = Buffer.from(`${datapoints("slow", per).join("\n")}\n`);
    // Until the destination's kernel buffers are full, each write that
    // drains lets the queue fall to half its bound and ingest resume: the
    // listener may pause and resume many times (each logged) before it
    // stays paused. Flood until the first pause.
    const sent = await flood(s, chunk, per, () => p.listener.paused && p.router.blocking);
    expect(logs.find((l) => l.msg === PAUSED)).toMatchObject({ level: 40, paused: true });

    d.resume();
    await d.waitForLines(sent, 8_000);
    await until("ingest resumed", () => !p.listener.paused);
    expect(d.lines).toHaveLength(sent);
    expect(new Set(d.lines).size).toBe(per);
    expect(p.stats().received).toBe(sent);
    expect(p.stats().destinations[0]?.dropped).toBe(0);
    // Every pause was followed by a resume.
    const holds = logs.filter((l) => l.msg === PAUSED || l.msg === RESUMED).map((l) => l.paused);
    expect(holds.length).toBeGreaterThanOrEqual(2);
    expect(holds).toEqual(holds.map((_, i) => i % 2 === 0));
  });

  it("inject() routes polymur's own lines, counted as received and generated (not as sender bytes)", async () => {
    const a = await sink();
    const b = await sink();
    const { p } = await relay(relayConfig(`${a.address},${b.address}`));
    p.inject("polymur.self.received 0 1700000000\npolymur.self.forwarded 0 1700000000\n");
    await a.waitForLines(2, 5_000);
    await b.waitForLines(2, 5_000);
    expect(a.lines).toEqual([
      "polymur.self.received 0 1700000000",
      "polymur.self.forwarded 0 1700000000",
    ]);
    expect(p.stats()).toMatchObject({ received: 2, generated: 2, routed: 2, bytesIn: 0 });
    p.inject("");
    expect(p.stats()).toMatchObject({ received: 2, generated: 2, routed: 2 });
  });

  it("with `console`, writes each routed run to the stream as well (valid lines only)", async () => {
    const a = await sink();
    const out = new PassThrough();
    let written = "";
    const writes: string[] = [];
    out.on("data", (d: Buffer) => {
      written += d.toString();
      writes.push(d.toString());
    });
    const { p, port } = await relay(relayConfig(a.address), { console: out });
    await sendLines(
      port,
      "c.one 1 1700000000\nc.two 2 1700000000\nnot valid\nc.three 3 1700000000\n",
    );
    await a.waitForLines(3, 5_000);
    await until("console has the lines", () => written.split("\n").length > 3);
    expect(written).toBe("c.one 1 1700000000\nc.two 2 1700000000\nc.three 3 1700000000\n");
    // One write per run: the bad line splits the two runs.
    expect(writes).toEqual(["c.one 1 1700000000\nc.two 2 1700000000\n", "c.three 3 1700000000\n"]);
    // Injected lines go through the console too.
    p.inject("polymur.self 1 1700000000\n");
    await a.waitForLines(4, 5_000);
    await until("console has the injected line", () =>
      written.endsWith("polymur.self 1 1700000000\n"),
    );
    expect(a.lines).toEqual([
      "c.one 1 1700000000",
      "c.two 2 1700000000",
      "c.three 3 1700000000",
      "polymur.self 1 1700000000",
    ]);
  });

  it("shutdown() resolves with what each destination could not deliver", async () => {
    const live = await sink();
    const deadPort = await freePort();
    const dead = `127.0.0.1:${deadPort}`;
    const { p, port } = await relay(relayConfig(`${live.address},${dead}`));
    await sendLines(port, `${datapoints("shutdown", 300).join("\n")}\n`);
    await live.waitForLines(300, 5_000);
    await until("the dead destination holds all 300", () =>
      p.stats().destinations.some((d) => d.spec === dead && d.queuedLines === 300),
    );
    const undelivered = await p.shutdown(200, 50);
    expect(undelivered).toEqual({ [live.address]: 0, [dead]: 300 });
    const s = p.stats();
    expect(s.destinations.map((d) => [d.spec, d.undelivered])).toEqual([
      [live.address, 0],
      [dead, 300],
    ]);
    expect(datapointTotals(s)).toMatchObject({
      received: 300,
      routed: 300,
      forwarded: 300,
      queued: 0,
      undelivered: 300,
    });
    // Closed: no new senders.
    await expect(sendLines(port, "late 1 1700000000\n")).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
  });

  it("apply() changes the destinations in place", async () => {
    const a = await sink();
    const b = await sink();
    const { p, port } = await relay(relayConfig(a.address));
    await sendLines(port, "before 1 1700000000\n");
    await a.waitForLines(1, 5_000);
    p.apply(relayConfig(b.address));
    await sendLines(port, "after 2 1700000000\n");
    await b.waitForLines(1, 5_000);
    expect(b.lines).toEqual(["after 2 1700000000"]);
    expect(a.lines).toEqual(["before 1 1700000000"]);
    expect(() =>
      p.apply(relayConfig(b.address, { distribution: "hash-route", hash: { replication: 0 } })),
    ).toThrow();
    expect(p.router.config.destinations.map((d) => d.id)).toEqual([b.address]);
  });

  it("apply() gives new connections the new line limit (a reloaded --max-line-length)", async () => {
    const a = await sink();
    const { p, port } = await relay(relayConfig(a.address, { maxLineLength: 100 }));
    const long = `long.${"x".repeat(150)} 1 1700000000`;
    await sendLines(port, `${long}\n`);
    await until("the long line rejected", () => p.stats().rejected.line_too_long === 1);
    p.apply(relayConfig(a.address, { maxLineLength: 1000 }));
    await sendLines(port, `${long}\n`);
    await a.waitForLines(1, 5_000);
    expect(a.lines).toEqual([long]);
    expect(p.stats().rejected.line_too_long).toBe(1);
  });
});
