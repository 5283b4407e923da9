import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import { parseDestinationList } from "../../../../dataplane/forward/destination-spec.ts";
import { createHashRouter } from "../../../../dataplane/route/hash/hash-router.ts";
import type { RelayConfig } from "../../../../dataplane/nodes/relay-config.ts";
import { RelayEngine } from "../../../../dataplane/nodes/relay-engine.ts";
import { freePort, LineSink } from "../../../fixtures/line-sink.ts";

async function until(pred: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

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
    ejectAfter: 0,
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

describe("RelayEngine hash-route with --eject-after", () => {
  it("takes a dead destination out of the ring, re-routes its queue, and takes it back", async () => {
    const [a, b] = [await LineSink.start(), await LineSink.start()];
    sinks.push(a, b);
    const deadPort = await freePort();
    const dests = `${a.address}:a,${b.address}:b,127.0.0.1:${deadPort}:c`;
    const e = new RelayEngine(config(dests, { distribution: "hash-route", ejectAfter: 2 }), log);
    engines.push(e);
    const names = Array.from({ length: 300 }, (_, i) => `eject.m${i} 1 1700000000`);
    e.ingest(Buffer.from(names.join("\n") + "\n"), "test");
    await until(() => a.lines.length + b.lines.length === names.length);
    expect([...a.lines, ...b.lines].sort()).toEqual([...names].sort());
    const s = e.stats();
    expect(s.destinations.find((d) => d.spec.endsWith(":c"))).toMatchObject({
      ejected: true,
      queuedLines: 0,
    });
    // The ring without c is carbon's: a and b keep exactly the names they had.
    const router = createHashRouter(parseDestinationList(dests), {});
    const home = (n: string) => router.routeName(n.split(" ")[0]!)[0]!;
    for (const l of a.lines) expect(home(l)).not.toBe(1);
    for (const l of b.lines) expect(home(l)).not.toBe(0);
    // c comes back: it rejoins, and its names go to it again.
    const c = await LineSink.start(deadPort);
    sinks.push(c);
    await until(() => e.stats().destinations.find((d) => d.spec.endsWith(":c"))!.ejected === false);
    e.ingest(Buffer.from(names.join("\n") + "\n"), "test");
    const forC = names.filter((n) => home(n) === 2);
    await c.waitForLines(forC.length);
    expect([...c.lines].sort()).toEqual([...forC].sort());
  });
});

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
