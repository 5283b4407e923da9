import net from "node:net";
import { describe, expect, it } from "vitest";
import {
  DESTINATION_DEFAULTS,
  Destination,
  resendWindowBytes,
} from "../../../../dataplane/forward/destination.ts";
import { parseDestination } from "../../../../dataplane/forward/destination-spec.ts";
import type { DestinationState } from "../../../../dataplane/forward/destination-stats.ts";
import { kernelResendBytes } from "../../../../dataplane/forward/kernel-buffers.ts";
import {
  destinationHarness,
  fixedWidthLines as lines,
} from "../../../fixtures/destination-harness.ts";
import { freePort, LineSink } from "../../../fixtures/line-sink.ts";
import { closeServer, listenLocal } from "../../../fixtures/local-server.ts";
import { until } from "../../../fixtures/until.ts";

const { dest, closeAfter } = destinationHarness();

/** The state names a destination emits from now on. */
function states(d: Destination): DestinationState[] {
  const seen: DestinationState[] = [];
  d.on("state", (state) => seen.push(state));
  return seen;
}

describe("Destination", () => {
  it("delivers in order and counts forwarded datapoints", async () => {
    const sink = closeAfter(await LineSink.start());
    const d = dest(sink.port);
    for (let i = 0; i < 100; i++) d.enqueue(lines(i * 10, 10), 10);
    await sink.waitForLines(1000);
    expect(sink.lines).toEqual(String(lines(0, 1000)).trimEnd().split("\n"));
    await until(() => d.stats().forwarded === 1000);
    expect(d.state).toBe("connected");
  });

  it("queues while the destination is down and delivers when it comes up, with backoff", async () => {
    const port = await freePort();
    const d = dest(port);
    d.enqueue(lines(0, 50), 50);
    await until(() => d.stats().failures >= 2);
    expect(d.state === "backoff" || d.state === "connecting").toBe(true);
    expect(d.stats().queuedLines).toBe(50);
    const sink = closeAfter(await LineSink.start(port));
    await sink.waitForLines(50);
    expect(d.stats()).toMatchObject({ forwarded: 50, dropped: 0, queuedLines: 0 });
  });

  it("drop-oldest bounds the queue by bytes and counts what it dropped", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 3, overflow: "drop-oldest" });
    for (let i = 0; i < 10; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.stats()).toMatchObject({ queuedLines: 300, dropped: 700 });
    const sink = closeAfter(await LineSink.start(port));
    await sink.waitForLines(300);
    expect(sink.lines[0]).toBe("m.000700 1 1700000000");
  });

  it("drop-newest keeps what is queued and refuses the rest", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 3, overflow: "drop-newest" });
    for (let i = 0; i < 10; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.stats()).toMatchObject({ queuedLines: 300, dropped: 700 });
    const sink = closeAfter(await LineSink.start(port));
    await sink.waitForLines(300);
    expect(sink.lines[0]).toBe("m.000000 1 1700000000");
    expect(sink.lines.at(-1)).toBe("m.000299 1 1700000000");
  });

  it("block reports blocking when full and unblocked below half", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 3, overflow: "block" });
    const events: string[] = [];
    d.on("blocked", () => events.push("blocked"));
    d.on("unblocked", () => events.push("unblocked"));
    for (let i = 0; i < 5; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.blocking).toBe(true);
    expect(d.stats().dropped).toBe(0);
    const sink = closeAfter(await LineSink.start(port));
    await sink.waitForLines(500);
    await until(() => !d.blocking);
    expect(events).toEqual(["blocked", "unblocked"]);
  });

  it("resends the recent window after the peer dies, counting resends apart", async () => {
    const sink = closeAfter(await LineSink.start());
    const d = dest(sink.port, { resendBytes: 1 << 20 });
    d.enqueue(lines(0, 100), 100);
    await sink.waitForLines(100);
    await until(() => d.stats().forwarded === 100);
    const port = sink.port;
    await sink.crash();
    await until(() => d.stats().failures >= 1);
    const again = closeAfter(await LineSink.start(port));
    d.enqueue(lines(100, 10), 10);
    await again.waitForLines(110);
    expect(again.lines.slice(0, 100)).toEqual(sink.lines.slice(0, 100));
    await until(() => d.stats().resent === 100);
    expect(d.stats().forwarded).toBe(110);
  });

  it("drain delivers what is queued and reports what it could not", async () => {
    const port = await freePort();
    const d = dest(port);
    d.enqueue(lines(0, 42), 42);
    expect(await d.drain(200)).toBe(42);
    expect(d.state).toBe("closed");
    const sink = closeAfter(await LineSink.start());
    const e = dest(sink.port);
    e.enqueue(lines(0, 42), 42);
    expect(await e.drain(5_000)).toBe(0);
    await sink.waitForLines(42);
  });

  it("drain of a connected destination goes draining, then closed", async () => {
    const sink = closeAfter(await LineSink.start());
    const d = dest(sink.port);
    await until(() => d.state === "connected");
    const seen = states(d);
    d.enqueue(lines(0, 10), 10);
    expect(await d.drain(5_000)).toBe(0);
    await sink.waitForLines(10);
    expect(seen).toEqual(["draining", "closed"]);
    expect(d.state).toBe("closed");
    d.enqueue(lines(10, 5), 5);
    expect(d.stats()).toMatchObject({ forwarded: 10, dropped: 5, queuedLines: 0 });
  });

  it("drain in backoff is draining at once and keeps retrying until the deadline", async () => {
    const port = await freePort();
    const d = dest(port);
    d.enqueue(lines(0, 20), 20);
    await until(() => d.state === "backoff");
    const seen = states(d);
    const left = d.drain(300);
    expect(d.state).toBe("draining");
    const failures = d.stats().failures;
    await until(() => d.stats().failures > failures);
    // Failed attempts while draining stay draining: no "backoff"/"connecting" in between.
    expect(d.state).toBe("draining");
    expect(await left).toBe(20);
    expect(seen).toEqual(["draining", "closed"]);
  });

  it("drain in backoff delivers once the peer comes up", async () => {
    const port = await freePort();
    const d = dest(port);
    d.enqueue(lines(0, 20), 20);
    await until(() => d.state === "backoff");
    const left = d.drain(5_000);
    const sink = closeAfter(await LineSink.start(port));
    expect(await left).toBe(0);
    await sink.waitForLines(20);
    expect(d.state).toBe("closed");
  });

  it("close in backoff stops reconnecting", async () => {
    const port = await freePort();
    const d = dest(port);
    await until(() => d.state === "backoff");
    const seen = states(d);
    await d.close();
    const failures = d.stats().failures;
    // Longer than the longest backoff (100 ms here): a pending reconnect would have run.
    await new Promise((r) => setTimeout(r, 300));
    expect(d.stats().failures).toBe(failures);
    expect(d.state).toBe("closed");
    expect(seen).toEqual(["closed"]);
  });

  it("close while connecting stays closed when the socket connects", async () => {
    const sink = closeAfter(await LineSink.start());
    const d = new Destination(parseDestination(`127.0.0.1:${sink.port}`));
    const seen = states(d);
    d.start();
    expect(d.state).toBe("connecting");
    await d.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(d.state).toBe("closed");
    expect(seen).toEqual(["connecting", "closed"]);
  });

  it("block → unblock follows the queue, and a reconfigure to another policy unblocks", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 3, overflow: "block" });
    const events: string[] = [];
    d.on("blocked", () => events.push("blocked"));
    d.on("unblocked", () => events.push("unblocked"));
    for (let i = 0; i < 4; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.blocking).toBe(true);
    d.enqueue(lines(400, 100), 100);
    expect(events).toEqual(["blocked"]);
    d.reconfigure({ overflow: "drop-oldest" });
    expect(d.blocking).toBe(false);
    expect(events).toEqual(["blocked", "unblocked"]);
    // drop-oldest then bounds what was queued beyond the limit.
    expect(d.stats()).toMatchObject({ queuedLines: 300, dropped: 200 });
  });

  it("close ends a block without resuming ingest", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 2, overflow: "block" });
    const events: string[] = [];
    d.on("blocked", () => events.push("blocked"));
    d.on("unblocked", () => events.push("unblocked"));
    for (let i = 0; i < 3; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.blocking).toBe(true);
    await d.close();
    expect(d.blocking).toBe(false);
    expect(events).toEqual(["blocked"]);
  });

  it("writes at most writeBytes per socket write", async () => {
    const sink = closeAfter(await LineSink.start());
    const one = lines(0, 100).length;
    const d = dest(sink.port, { writeBytes: one, flushDelayMs: 0 });
    await until(() => d.state === "connected");
    sink.pause();
    for (let i = 0; i < 10; i++) d.enqueue(lines(i * 100, 100), 100);
    sink.resume();
    await sink.waitForLines(1000);
    expect(sink.lines).toEqual(String(lines(0, 1000)).trimEnd().split("\n"));
  });

  it("defaults are the documented ones", () => {
    expect(DESTINATION_DEFAULTS).toEqual({
      queueBytes: 128 * 1024 * 1024,
      overflow: "drop-oldest",
      resendBytes: "auto",
      backoffMinMs: 100,
      backoffMaxMs: 10_000,
      connectTimeoutMs: 5_000,
      writeBytes: 256 * 1024,
      flushDelayMs: 5,
    });
  });

  it('resend window "auto" is what the kernels\' socket buffers hold; a number is taken as it is', () => {
    expect(kernelResendBytes()).toBeGreaterThan(0);
    expect(resendWindowBytes("auto")).toBe(kernelResendBytes());
    expect(resendWindowBytes(0)).toBe(0);
    expect(resendWindowBytes(4096)).toBe(4096);
  });

  it("reads and discards whatever a destination sends back", async () => {
    // A peer that talks back must neither stall the connection nor grow our memory.
    let written = false;
    const peers = new Set<net.Socket>();
    const server = net.createServer((s) => {
      peers.add(s);
      s.on("error", () => {});
      s.write(Buffer.alloc(8 << 20), () => {
        written = true;
      });
    });
    const port = await listenLocal(server);
    closeAfter({
      close: () => {
        for (const p of peers) p.destroy();
        return closeServer(server);
      },
    });
    const d = dest(port);
    d.enqueue(lines(0, 1), 1);
    await until(() => d.stats().forwarded === 1 && written);
  });
});
