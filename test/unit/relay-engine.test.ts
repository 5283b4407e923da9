import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../common/logger.ts";
import { parseDestinationList } from "../../dataplane/destination-spec.ts";
import type { RelayConfig } from "../../dataplane/relay-config.ts";
import { RelayEngine } from "../../dataplane/relay-engine.ts";
import { LineSink } from "../fixtures/line-sink.ts";

const log = createLogger({ level: "silent" });
const engines: RelayEngine[] = [];
const sinks: LineSink[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.shutdown(1_000, 0);
  for (const s of sinks.splice(0)) await s.close();
});

function config(destinations: string, over: Partial<RelayConfig> = {}): RelayConfig {
  return {
    listen: { host: "127.0.0.1", port: 0 },
    udp: null,
    destinations: parseDestinationList(destinations),
    distribution: "broadcast",
    hash: {},
    queueBytes: 1 << 20,
    overflow: "drop-oldest",
    queueBytesFor: {},
    overflowFor: {},
    resendBytes: 0,
    backoffMinMs: 20,
    backoffMaxMs: 100,
    maxLineLength: 16384,
    maxConnections: 0,
    idleTimeoutMs: 0,
    ...over,
  };
}

describe("RelayEngine.ingest (batches from outside TCP, e.g. a gateway)", () => {
  it("queues every valid line before returning, and counts the rest", async () => {
    const sink = await LineSink.start();
    sinks.push(sink);
    const e = new RelayEngine(config(sink.address), log);
    engines.push(e);
    const r = e.ingest(Buffer.from("a.b 1 1700000000\nbad\nc.d 2 1700000000"), "test");
    expect(r).toEqual({ accepted: 2, rejected: 1 });
    expect(e.stats().destinations[0]!.queuedLines).toBe(2);
    await sink.waitForLines(2);
    expect(sink.lines).toEqual(["a.b 1 1700000000", "c.d 2 1700000000"]);
  });

  it("prefixes the name part, before any tags, with --key-prefix", async () => {
    const sink = await LineSink.start();
    sinks.push(sink);
    const e = new RelayEngine(config(sink.address), log);
    engines.push(e);
    e.ingest(
      Buffer.from("web01.cpu 1 1700000000\nweb01.mem;dc=eu 2 1700000000\n"),
      "test",
      "product-A",
    );
    await sink.waitForLines(2);
    expect(sink.lines).toEqual([
      "product-A.web01.cpu 1 1700000000",
      "product-A.web01.mem;dc=eu 2 1700000000",
    ]);
  });

  it("holdIngest pauses and resumes, with events", () => {
    const e = new RelayEngine(config(""), log);
    engines.push(e);
    const events: string[] = [];
    e.on("paused", () => events.push("paused"));
    e.on("resumed", () => events.push("resumed"));
    e.holdIngest(true);
    expect(e.paused).toBe(true);
    e.holdIngest(false);
    expect(events).toEqual(["paused", "resumed"]);
  });
});
