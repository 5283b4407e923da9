import dgram from "node:dgram";
import { once } from "node:events";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import { LineListener, type ListenerConfig } from "../../../../dataplane/ingest/line-listener.ts";
import type { LineSink } from "../../../../dataplane/ingest/line-sink.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { sendLines } from "../../../fixtures/line-sink.ts";
import { until } from "../../../fixtures/until.ts";

/** Keeps every line the listener passes on, and how many runs it was given. */
class Recorder implements LineSink {
  readonly lines: string[] = [];
  runs = 0;

  write(buf: Buffer, start: number, end: number, lines: number): void {
    this.runs++;
    const got = buf.toString("utf8", start, end).split("\n").slice(0, -1);
    if (got.length !== lines) throw new Error(`run of ${got.length} lines announced as ${lines}`);
    this.lines.push(...got);
  }
}

const log = createLogger({ level: "silent" });
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function config(over: Partial<ListenerConfig> = {}): ListenerConfig {
  return {
    listen: { host: "127.0.0.1", port: 0 },
    udp: { host: "127.0.0.1", port: 0 },
    maxLineLength: 16384,
    maxConnections: 0,
    idleTimeoutMs: 0,
    ...over,
  };
}

async function start(
  over: Partial<ListenerConfig> = {},
  logger = log,
): Promise<{ l: LineListener; sink: Recorder; port: number; udpPort: number }> {
  const sink = new Recorder();
  const l = new LineListener(config(over), sink, logger);
  cleanup.push(() => l.close(0));
  const { port, udpPort } = await l.listen();
  return { l, sink, port, udpPort: udpPort ?? -1 };
}

/** A sender connection, Nagle off so that every write goes out at once. */
async function connect(port: number): Promise<net.Socket> {
  const s = net.connect({ port, host: "127.0.0.1", noDelay: true });
  s.on("error", () => {});
  cleanup.push(() => {
    s.destroy();
  });
  await once(s, "connect");
  return s;
}

/** Resolves once the bytes are handed to the kernel (on loopback: in the listener's receive buffer). */
function write(s: net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => s.write(text, (err) => (err ? reject(err) : resolve())));
}

async function datagram(port: number, text: string): Promise<void> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) =>
    s.send(text, port, "127.0.0.1", (err) => (err ? reject(err) : resolve())),
  );
  s.close();
}

describe("LineListener", () => {
  it("frames and validates each connection's lines, passes valid runs on and counts the rest", async () => {
    const { l, sink, port } = await start();
    const text = "a.b 1 1700000000\nbad\nc.d 2 1700000000\n";
    await sendLines(port, text);
    expect(sink.lines).toEqual(["a.b 1 1700000000", "c.d 2 1700000000"]);
    await until(() => l.stats().connections === 0);
    expect(l.stats()).toMatchObject({
      // Every line read: the two valid ones and the rejected one.
      received: 3,
      accepted: 2,
      connections: 0,
      connectionsTotal: 1,
      bytesIn: text.length,
      droppedPaused: 0,
      paused: false,
    });
    expect(l.stats().rejected.field_count).toBe(1);
    expect(l.recentRejects()).toMatchObject([{ reason: "field_count", line: "bad" }]);
  });

  it("frames a datagram on its own: the lines it holds are passed on", async () => {
    const { l, sink, udpPort } = await start();
    await datagram(udpPort, "u.a 1 1700000000\nu.b 2 1700000000\n");
    await until(() => sink.lines.length === 2);
    expect(sink.lines).toEqual(["u.a 1 1700000000", "u.b 2 1700000000"]);
    expect(l.stats()).toMatchObject({ received: 2, accepted: 2 });
  });

  it("pause stops reading from TCP senders, resume delivers; datagrams meanwhile are dropped and counted", async () => {
    const { l, sink, port, udpPort } = await start();
    const early = await connect(port);
    await write(early, "before 1 1700000000\n");
    await until(() => sink.lines.length === 1);

    l.pause(true);
    expect(l.paused).toBe(true);
    expect(l.stats().paused).toBe(true);
    await write(early, "held.early 2 1700000000\n");
    // A sender that connects while paused is not read either.
    const late = await connect(port);
    await until(() => l.stats().connections === 2);
    await write(late, "held.late 3 1700000000\n");
    // The datagram is a barrier: it is sent after the TCP bytes are in the
    // listener's receive buffers, so once the listener has handled it, it
    // would have read those bytes too, had it been reading.
    await datagram(udpPort, "u.a 1 1700000000\nu.b 2 1700000000\n");
    await until(() => l.stats().droppedPaused === 2);
    expect(sink.lines).toEqual(["before 1 1700000000"]);
    // The dropped datagram's lines were received, not accepted.
    expect(l.stats()).toMatchObject({ received: 3, accepted: 1 });

    l.pause(false);
    expect(l.stats().paused).toBe(false);
    await until(() => sink.lines.length === 3);
    expect(sink.lines.slice(1).sort()).toEqual([
      "held.early 2 1700000000",
      "held.late 3 1700000000",
    ]);
    // Reading goes on, and datagrams are taken again.
    await datagram(udpPort, "u.c 3 1700000000\n");
    await write(early, "after 4 1700000000\n");
    await until(() => sink.lines.length === 5);
    expect(l.stats().droppedPaused).toBe(2);
    expect(l.stats()).toMatchObject({ received: 7, accepted: 5 });
  });

  it("refuses connections beyond maxConnections and counts them", async () => {
    const { l, port } = await start({ maxConnections: 1 });
    const first = await connect(port);
    await until(() => l.stats().connections === 1);
    const second = net.connect({ port, host: "127.0.0.1" });
    second.on("error", () => {});
    cleanup.push(() => {
      second.destroy();
    });
    await once(second, "close");
    expect(l.stats()).toMatchObject({ connections: 1, connectionsTotal: 1, connectionsRefused: 1 });
    expect(first.destroyed).toBe(false);
  });

  it("logs refused connections once per interval, with how many were refused since and in all", async () => {
    const { log: captured, lines } = captureLog();
    const { l, port } = await start({ maxConnections: 1 }, captured);
    await connect(port);
    await until(() => l.stats().connections === 1);
    for (let i = 0; i < 5; i++) {
      const over = net.connect({ port, host: "127.0.0.1" });
      over.on("error", () => {});
      cleanup.push(() => {
        over.destroy();
      });
      await once(over, "close");
    }
    expect(l.stats().connectionsRefused).toBe(5);
    const warnings = lines.filter((x) => x.msg.startsWith("sender connections refused"));
    expect(warnings).toEqual([
      expect.objectContaining({
        level: 40,
        msg: "sender connections refused: at --max-connections",
        maxConnections: 1,
        count: 1,
        total: 1,
        remote: "127.0.0.1",
      }),
    ]);
  });

  it("closes a slow-drip sender that goes silent for the idle timeout, frames its unfinished line and counts it", async () => {
    const { l, sink, port } = await start({ idleTimeoutMs: 200 });
    const s = await connect(port);
    await write(s, "whole 1 1700000000\n");
    // Then a byte of the next line, and nothing more.
    await write(s, "d");
    await once(s, "close");
    await until(() => l.stats().connections === 0);
    expect(sink.lines).toEqual(["whole 1 1700000000"]);
    expect(l.stats()).toMatchObject({
      received: 2,
      accepted: 1,
      connectionsTotal: 1,
      connectionsIdleClosed: 1,
    });
    // The dribbled byte, framed as a line when the connection was closed.
    expect(l.stats().rejected.field_count).toBe(1);
  });

  it("keeps a sender that sends more often than the idle timeout, whole lines or not", async () => {
    const { l, sink, port } = await start({ idleTimeoutMs: 1_000 });
    const s = await connect(port);
    // One byte every 50 ms (a twentieth of the timeout) for 2.5 s: 2.5 timeouts.
    const line = "drip.a 1 1700000000\n";
    for (let i = 0; i < 50; i++) {
      await write(s, line[i % line.length]!);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(s.destroyed).toBe(false);
    expect(l.stats()).toMatchObject({ connections: 1, connectionsIdleClosed: 0 });
    expect(sink.lines).toEqual(["drip.a 1 1700000000", "drip.a 1 1700000000"]);
  });

  it("does not close senders while it does not read from them (paused), and their lines are kept", async () => {
    const { l, sink, port } = await start({ idleTimeoutMs: 200 });
    const s = await connect(port);
    await until(() => l.stats().connections === 1);
    l.pause(true);
    await write(s, "held 1 1700000000\n");
    // Four timeouts of silence from where the listener stands.
    await new Promise((r) => setTimeout(r, 800));
    expect(s.destroyed).toBe(false);
    expect(l.stats()).toMatchObject({ connections: 1, connectionsIdleClosed: 0 });
    l.pause(false);
    await until(() => sink.lines.length === 1);
    expect(sink.lines).toEqual(["held 1 1700000000"]);
    // Reading again, the timeout counts again.
    await once(s, "close");
    await until(() => l.stats().connections === 0);
    expect(l.stats().connectionsIdleClosed).toBe(1);
  });

  it("close() stops listening and ends sender connections once they close their side", async () => {
    const { l, sink, port } = await start();
    const s = await connect(port);
    s.on("end", () => s.end()); // a well-behaved sender closes when the relay does
    await write(s, "last 1 1700000000\n");
    await until(() => sink.lines.length === 1);
    await l.close(5_000);
    expect(s.readableEnded).toBe(true);
    expect(l.stats().connections).toBe(0);
    const refused = net.connect({ port, host: "127.0.0.1" });
    const [err] = (await once(refused, "error")) as [NodeJS.ErrnoException];
    expect(err.code).toBe("ECONNREFUSED");
  });
});
