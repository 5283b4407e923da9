import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import { parseKeysFile } from "../../../../../dataplane/link/gateway/api-keys.ts";
import type { RouterConfig } from "../../../../../dataplane/route/router.ts";
import { Compression } from "../../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { datapoints, freePort, LineSink } from "../../../../fixtures/line-sink.ts";
import {
  ackedSeq as ackOf,
  batchRequest as batch,
  helloRequest as hello,
  LinkServiceHarness,
  type LinkStream,
} from "../../../../fixtures/link-service-harness.ts";
import { refusal } from "../../../../fixtures/refusal.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { stillPending } from "../../../../fixtures/still-pending.ts";
import { until } from "../../../../fixtures/until.ts";

const log = createLogger({ level: "silent" });

let cleanup: Array<() => Promise<void> | void> = [];
beforeEach(() => {
  cleanup = [];
});
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
});

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  cleanup.push(() => s.close());
  return s;
}

/** The link service in memory, with two keys (tenant-a, tenant-b); every client is 192.0.2.7. */
function gateway(config: RouterConfig): LinkServiceHarness {
  const g = new LinkServiceHarness({
    config,
    log,
    keysFile: "tenant-a secret-a\ntenant-b secret-b\n",
    clientOf: () => "192.0.2.7",
  });
  cleanup.push(() => g.close());
  return g;
}

/** Opens a stream with the key `secret` and reads its Welcome. */
async function connected(
  g: LinkServiceHarness,
  secret: string,
  proxyId: string,
): Promise<LinkStream> {
  return (await g.connect({ authorization: `Bearer ${secret}` }, proxyId)).stream;
}

describe("link service (polymur.ingest.v1.IngestService)", () => {
  it.each([
    ["no authorization header", undefined],
    ["an unknown key", "Bearer not-a-key"],
    ["another scheme", "Basic secret-a"],
  ])("refuses a stream with %s: Unauthenticated", async (_, header) => {
    const g = gateway(relayConfig(""));
    const s = g.open({ authorization: header });
    s.requests.push(hello("p1"));
    const e = await refusal(s.next());
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.rawMessage).toBe("unknown API key");
    expect(g.counters.authFailures.stream).toBe(1);
    expect(g.counters.openStreams()).toBe(0);
  });

  it("answers Hello with Welcome: the key's name and the highest seq it has for the proxy", async () => {
    // A destination (down): with none, the stream would wait for one before
    // reading past the Hello, and not see the requests end.
    const g = gateway(relayConfig(`127.0.0.1:${await freePort()}`));
    g.dedup.record("tenant-a", "p1", 7);
    const s = g.open({ authorization: "Bearer secret-a" });
    s.requests.push(hello("p1"));
    expect(await s.next()).toMatchObject({
      msg: { case: "welcome", value: { keyName: "tenant-a", ackedSeq: 7n } },
    });
    expect(g.counters.openStreams()).toBe(1);
    s.requests.end();
    expect(await s.next()).toBe("end");
    expect(g.counters.openStreams()).toBe(0);
    // The same proxy id under another key is another proxy.
    const other = g.open({ authorization: "Bearer secret-b" });
    other.requests.push(hello("p1"));
    expect(await other.next()).toMatchObject({
      msg: { case: "welcome", value: { keyName: "tenant-b", ackedSeq: 0n } },
    });
  });

  it("acks each batch once its lines are queued; a resent one is acked, not queued again", async () => {
    const out = await sink();
    const g = gateway(relayConfig(out.address));
    const s = await connected(g, "secret-a", "p1");
    s.requests.push(batch(1, "l.a 1 1700000000\nl.b 2 1700000000\n"));
    expect(ackOf(await s.next())).toBe(1n);
    s.requests.push(batch(2, "l.c 3 1700000000\n"));
    expect(ackOf(await s.next())).toBe(2n);
    s.requests.push(batch(1, "l.a 1 1700000000\nl.b 2 1700000000\n"));
    expect(ackOf(await s.next())).toBe(1n);
    s.requests.push({
      msg: { case: "batch", value: { seq: 3n, compression: Compression.UNSPECIFIED } },
    });
    expect(await s.next()).toMatchObject({
      msg: {
        case: "reject",
        value: { seq: 3n, reason: "bad_compression: compression is not set" },
      },
    });
    await out.waitForLines(3);
    expect(out.lines).toEqual(["l.a 1 1700000000", "l.b 2 1700000000", "l.c 3 1700000000"]);
    expect(g.dedup.highest("tenant-a", "p1")).toBe(2);
    expect(g.counters.rejected.bad_compression).toBe(1);
    s.requests.end();
    expect(await s.next()).toBe("end");
  });

  it.each([
    ["a Batch before Hello", [batch(1, "x 1 1\n")], "the first message must be Hello"],
    ["an empty proxy id", [hello("")], "Hello.proxy_id must be 1 to 256 characters"],
    [
      "a proxy id over 256 characters",
      [hello("p".repeat(257))],
      "Hello.proxy_id must be 1 to 256 characters",
    ],
    ["a second Hello", [hello("p1"), hello("p1")], "expected a Batch after Hello"],
  ])("ends a stream that sends %s: InvalidArgument", async (_, requests, message) => {
    // A destination (down): with none, the stream would not read past the Hello.
    const g = gateway(relayConfig(`127.0.0.1:${await freePort()}`));
    const s = g.open({ authorization: "Bearer secret-a" });
    for (const r of requests) s.requests.push(r);
    let e: ConnectError | undefined;
    for (;;) {
      try {
        if ((await s.next()) === "end") break;
      } catch (err) {
        e = ConnectError.from(err);
        break;
      }
    }
    expect(e?.code).toBe(Code.InvalidArgument);
    expect(e?.rawMessage).toBe(message);
    await until(() => g.counters.openStreams() === 0);
  });

  it("holds a batch unacknowledged while the gateway has no destinations, and acks it once some come", async () => {
    const g = gateway(relayConfig(""));
    const s = await connected(g, "secret-a", "p1");
    s.requests.push(batch(1, "nd.a 1 1700000000\nnd.b 2 1700000000\n"));
    const first = s.next();
    // The handler waits for the router's "routable" before it reads the batch.
    await until(() => g.router.listenerCount("routable") === 1);
    expect(await stillPending(first)).toBe(true);
    // A configuration still without destinations changes nothing.
    g.router.apply(relayConfig(""));
    expect(await stillPending(first)).toBe(true);
    expect(g.router.listenerCount("routable")).toBe(1);
    expect(g.ingest.accepted).toBe(0);
    expect(g.router.stats()).toMatchObject({ routed: 0, noDestination: 0 });
    expect(g.dedup.highest("tenant-a", "p1")).toBe(0);
    const out = await sink();
    g.router.apply(relayConfig(out.address));
    expect(ackOf(await first)).toBe(1n);
    await out.waitForLines(2);
    expect(out.lines).toEqual(["nd.a 1 1700000000", "nd.b 2 1700000000"]);
    expect(g.dedup.highest("tenant-a", "p1")).toBe(1);
    expect(g.router.listenerCount("routable")).toBe(0);
  });

  it("cuts the streams of a key that is rotated or deleted (Unauthenticated), not the others", async () => {
    // A destination (down): with none, the gateway acknowledges nothing.
    const g = gateway(relayConfig(`127.0.0.1:${await freePort()}`));
    const a = await connected(g, "secret-a", "pa");
    const b = await connected(g, "secret-b", "pb");
    expect(g.counters.openStreams()).toBe(2);
    // tenant-a gets a new secret: its old one no longer holds.
    g.keys.replace(parseKeysFile("tenant-a new-secret-a\ntenant-b secret-b\n", "keys"));
    const e = await refusal(a.next());
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.rawMessage).toBe("API key revoked");
    expect(g.counters.streamsCut.key_revoked).toBe(1);
    b.requests.push(batch(1, "b.x 1 1700000000\n"));
    expect(ackOf(await b.next())).toBe(1n);
    // A new stream needs the new secret.
    const again = g.open({ authorization: "Bearer secret-a" });
    again.requests.push(hello("pa"));
    expect((await refusal(again.next())).code).toBe(Code.Unauthenticated);
    await connected(g, "new-secret-a", "pa");
    // tenant-b is deleted.
    g.keys.replace(parseKeysFile("tenant-a new-secret-a\n", "keys"));
    expect((await refusal(b.next())).code).toBe(Code.Unauthenticated);
    expect(g.counters.streamsCut.key_revoked).toBe(2);
  });

  it("ends every stream with Unavailable when the gateway shuts down", async () => {
    const g = gateway(relayConfig(""));
    const s = await connected(g, "secret-a", "p1");
    g.shutdown.abort();
    const e = await refusal(s.next());
    expect(e.code).toBe(Code.Unavailable);
    expect(e.rawMessage).toBe("gateway shutting down");
    expect(g.counters.streamsCut.shutdown).toBe(1);
    await until(() => g.counters.openStreams() === 0);
  });

  it("stops reading the stream while the router is blocked, and goes on once it unblocks", async () => {
    const port = await freePort();
    // The only destination is down, under the block policy, with the smallest bound (64 KiB).
    const g = gateway(
      relayConfig(`127.0.0.1:${port}`, { overflow: "block", queueBytes: 64 * 1024 }),
    );
    const s = await connected(g, "secret-a", "p1");
    const lines = datapoints("blk.padding.padding.padding", 2_000); // about 90 KiB
    s.requests.push(batch(1, lines.join("\n") + "\n"));
    expect(ackOf(await s.next())).toBe(1n);
    expect(g.router.blocking).toBe(true);
    s.requests.push(batch(2, "blk.after 1 1700000000\n"));
    // Asking for the next response resumes the handler after its last yield
    // (in memory, responses are produced on demand); it then waits for
    // "unblocked" before it reads the next request.
    const second = s.next();
    await until(() => g.router.listenerCount("unblocked") === 1);
    expect(g.ingest.accepted).toBe(lines.length);
    expect(g.dedup.highest("tenant-a", "p1")).toBe(1);
    const out = await sink(port);
    expect(ackOf(await second)).toBe(2n);
    await out.waitForLines(lines.length + 1);
    expect(out.lines.at(-1)).toBe("blk.after 1 1700000000");
  });
});
