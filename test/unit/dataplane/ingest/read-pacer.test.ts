import { once } from "node:events";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import { LineListener, type ListenerConfig } from "../../../../dataplane/ingest/line-listener.ts";
import type { LineSink } from "../../../../dataplane/ingest/line-sink.ts";
import { until } from "../../../fixtures/until.ts";

// --read-wait through a real listener and real TCP senders: a slow sender's
// writes are taken in fewer reads, every line arrives in order, a fast
// sender is read at once, and a paused or closing listener reads everything.

class Recorder implements LineSink {
  readonly lines: string[] = [];
  write(buf: Buffer, start: number, end: number): void {
    this.lines.push(...buf.toString("utf8", start, end).split("\n").slice(0, -1));
  }
}

const log = createLogger({ level: "silent" });
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function start(readWaitMs: number) {
  const sink = new Recorder();
  const config: ListenerConfig = {
    listen: { host: "127.0.0.1", port: 0 },
    udp: null,
    maxLineLength: 16384,
    maxConnections: 0,
    idleTimeoutMs: 0,
    readWaitMs,
  };
  const l = new LineListener(config, sink, log);
  cleanup.push(() => l.close(0));
  const { port } = await l.listen();
  return { l, sink, port };
}

async function connect(port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: "127.0.0.1", noDelay: true });
  s.on("error", () => {});
  cleanup.push(() => {
    s.destroy();
  });
  await once(s, "connect");
  return s;
}

/** Writes `n` lines, one write each, `everyMs` apart; resolves after the last. */
async function trickle(s: net.Socket, tag: string, n: number, everyMs: number): Promise<string[]> {
  const sent: string[] = [];
  for (let i = 0; i < n; i++) {
    const line = `${tag}.m${i} ${i} 1700000000`;
    s.write(`${line}\n`);
    sent.push(line);
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return sent;
}

const reads = (l: LineListener): number => l.stats().listeners[0]!.reads;

describe("read pacing (--read-wait)", () => {
  it("takes a slow sender's writes in a few reads, every line in order", async () => {
    const { l, sink, port } = await start(1_000);
    const s = await connect(port);
    const sent = await trickle(s, "slow", 100, 5);
    await until("every line", () => sink.lines.length === sent.length, 5_000);
    expect(sink.lines).toEqual(sent);
    // 100 writes; read about every half second instead of every write.
    expect(reads(l)).toBeLessThan(40);
  });

  it("with --read-wait 0, reads as the writes come", async () => {
    const { l, sink, port } = await start(0);
    const s = await connect(port);
    const sent = await trickle(s, "eager", 100, 5);
    await until("every line", () => sink.lines.length === sent.length, 5_000);
    expect(sink.lines).toEqual(sent);
    expect(reads(l)).toBeGreaterThan(60);
  });

  it("a fast sender is never parked: 4 MB arrive at once, in order", async () => {
    const { sink, port } = await start(1_000);
    const s = await connect(port);
    const lines = Array.from({ length: 60_000 }, (_, i) => `fast.m${i % 100} ${i} 1700000000`);
    s.write(`${lines.join("\n")}\n`);
    await until("every line", () => sink.lines.length === lines.length, 5_000);
    expect(sink.lines).toEqual(lines);
  });

  it("a paused listener pauses parked senders too, and reads them all once resumed", async () => {
    const { l, sink, port } = await start(1_000);
    const s = await connect(port);
    const first = await trickle(s, "before", 10, 5);
    l.pause(true);
    const during = await trickle(s, "during", 10, 5);
    // Longer than a parking period: nothing may come in while paused.
    await new Promise((r) => setTimeout(r, 700));
    const seen = sink.lines.length;
    expect(sink.lines.some((x) => x.startsWith("during"))).toBe(false);
    l.pause(false);
    await until("every line", () => sink.lines.length === first.length + during.length, 5_000);
    expect(seen).toBeLessThanOrEqual(first.length);
    expect(sink.lines).toEqual([...first, ...during]);
  });

  it("closing reads what parked senders sent before it, up to the grace period", async () => {
    const { l, sink, port } = await start(1_000);
    const s = await connect(port);
    const sent = await trickle(s, "closing", 20, 5);
    s.on("data", () => {});
    s.on("end", () => s.end());
    await l.close(2_000);
    expect(sink.lines).toEqual(sent);
  });
});
