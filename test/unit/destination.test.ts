import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Destination, type DestinationOptions } from "../../dataplane/destination.ts";
import { parseDestination } from "../../dataplane/destination-spec.ts";
import { freePort, LineSink } from "../fixtures/line-sink.ts";

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

function dest(port: number, options: DestinationOptions = {}): Destination {
  const d = new Destination(parseDestination(`127.0.0.1:${port}`), {
    backoffMinMs: 20,
    backoffMaxMs: 100,
    ...options,
  });
  open.push(d);
  d.start();
  return d;
}

async function until(pred: () => boolean, ms = 5_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error("condition not met");
    await new Promise((r) => setTimeout(r, 10));
  }
}

// Fixed-width names, so that every chunk of 100 lines has the same size.
const lines = (from: number, n: number): Buffer =>
  Buffer.from(
    Array.from(
      { length: n },
      (_, i) => `m.${String(from + i).padStart(6, "0")} 1 1700000000\n`,
    ).join(""),
  );

describe("Destination", () => {
  it("delivers in order and counts forwarded datapoints", async () => {
    const sink = await LineSink.start();
    open.push(sink);
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
    const sink = await LineSink.start(port);
    open.push(sink);
    await sink.waitForLines(50);
    expect(d.stats()).toMatchObject({ forwarded: 50, dropped: 0, queuedLines: 0 });
  });

  it("drop-oldest bounds the queue by bytes and counts what it dropped", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 3, overflow: "drop-oldest" });
    for (let i = 0; i < 10; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.stats()).toMatchObject({ queuedLines: 300, dropped: 700 });
    const sink = await LineSink.start(port);
    open.push(sink);
    await sink.waitForLines(300);
    expect(sink.lines[0]).toBe("m.000700 1 1700000000");
  });

  it("drop-newest keeps what is queued and refuses the rest", async () => {
    const port = await freePort();
    const one = lines(0, 100).length;
    const d = dest(port, { queueBytes: one * 3, overflow: "drop-newest" });
    for (let i = 0; i < 10; i++) d.enqueue(lines(i * 100, 100), 100);
    expect(d.stats()).toMatchObject({ queuedLines: 300, dropped: 700 });
    const sink = await LineSink.start(port);
    open.push(sink);
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
    const sink = await LineSink.start(port);
    open.push(sink);
    await sink.waitForLines(500);
    await until(() => !d.blocking);
    expect(events).toEqual(["blocked", "unblocked"]);
  });

  it("resends the recent window after the peer dies, counting resends apart", async () => {
    const sink = await LineSink.start();
    open.push(sink);
    const d = dest(sink.port, { resendBytes: 1 << 20 });
    d.enqueue(lines(0, 100), 100);
    await sink.waitForLines(100);
    await until(() => d.stats().forwarded === 100);
    const port = sink.port;
    await sink.crash();
    await until(() => d.stats().failures >= 1);
    const again = await LineSink.start(port);
    open.push(again);
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
    const sink = await LineSink.start();
    open.push(sink);
    const e = dest(sink.port);
    e.enqueue(lines(0, 42), 42);
    expect(await e.drain(5_000)).toBe(0);
    await sink.waitForLines(42);
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
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    open.push({
      close: () =>
        new Promise<void>((r) => {
          for (const p of peers) p.destroy();
          server.close(() => r());
        }),
    });
    const d = dest((server.address() as net.AddressInfo).port);
    d.enqueue(lines(0, 1), 1);
    await until(() => d.stats().forwarded === 1 && written);
  });
});
