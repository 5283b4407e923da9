import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import type { IngestCounters } from "../../../../../dataplane/ingest/ingest-counters.ts";
import { compressBatch, countNewlines } from "../../../../../dataplane/link/batch-codec.ts";
import { ApiKeyRing, parseKeysFile } from "../../../../../dataplane/link/gateway/api-keys.ts";
import type { DedupTable } from "../../../../../dataplane/link/gateway/dedup-table.ts";
import type { GatewayCounters } from "../../../../../dataplane/link/gateway/gateway-counters.ts";
import { createLinkService } from "../../../../../dataplane/link/gateway/link-service.ts";
import type { Router, RouterConfig } from "../../../../../dataplane/route/router.ts";
import {
  Compression,
  IngestService,
  type StreamRequestSchema,
  type StreamResponse,
} from "../../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { gatewayIntake } from "../../../../fixtures/gateway-intake.ts";
import { datapoints, freePort, LineSink } from "../../../../fixtures/line-sink.ts";
import { refusal } from "../../../../fixtures/refusal.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { until } from "../../../../fixtures/until.ts";

type Request = MessageInitShape<typeof StreamRequestSchema>;

/** The request side of one stream: messages pushed by the test, sent as they come. */
class Requests implements AsyncIterable<Request> {
  readonly #items: Request[] = [];
  #wake: (() => void) | null = null;
  #ended = false;

  push(m: Request): void {
    this.#items.push(m);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Request> {
    for (;;) {
      const m = this.#items.shift();
      if (m !== undefined) {
        yield m;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = null;
    }
  }
}

const hello = (proxyId: string): Request => ({ msg: { case: "hello", value: { proxyId } } });

function batch(seq: number, text: string): Request {
  const raw = Buffer.from(text);
  return {
    msg: {
      case: "batch",
      value: {
        seq: BigInt(seq),
        compression: Compression.ZSTD,
        payload: compressBatch(raw, "zstd"),
        lines: countNewlines(raw),
        rawBytes: raw.length,
      },
    },
  };
}

/** Sets the authorization header as given (undefined: none). */
function authorization(value: string | undefined): Interceptor {
  return (next) => async (req) => {
    if (value !== undefined) req.header.set("authorization", value);
    return next(req);
  };
}

const log = createLogger({ level: "silent" });

interface Gateway {
  router: Router;
  ingest: IngestCounters;
  counters: GatewayCounters;
  dedup: DedupTable;
  keys: ApiKeyRing;
  shutdown: AbortController;
  /** A stream authenticated with `authorization` (a whole header value). */
  open(header: string | undefined): Stream;
}

/** One open stream: push requests, read responses one at a time. */
interface Stream {
  requests: Requests;
  next(): Promise<StreamResponse | "end">;
}

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

/**
 * The link service over createRouterTransport: in memory, but every message
 * is serialized and parsed as on the wire, and headers pass through
 * interceptors as they would over HTTP/2.
 */
function gateway(config: RouterConfig): Gateway {
  const { intake, router, ingest, counters, dedup } = gatewayIntake(config, log);
  cleanup.push(async () => {
    await router.drain(0);
  });
  const keys = new ApiKeyRing();
  keys.replace(parseKeysFile("tenant-a secret-a\ntenant-b secret-b\n", "keys"));
  const shutdown = new AbortController();
  const service = createLinkService({
    intake,
    keys,
    dedup,
    counters,
    log,
    shutdown: shutdown.signal,
    clientOf: () => "192.0.2.7",
  });
  const open = (header: string | undefined): Stream => {
    const transport = createRouterTransport((r) => r.service(IngestService, service), {
      transport: { interceptors: [authorization(header)] },
    });
    const requests = new Requests();
    const ac = new AbortController();
    cleanup.push(() => {
      requests.end();
      ac.abort();
    });
    const it = createClient(IngestService, transport)
      .stream(requests, { signal: ac.signal })
      [Symbol.asyncIterator]();
    return {
      requests,
      next: async () => {
        const r = await it.next();
        return r.done === true ? "end" : r.value;
      },
    };
  };
  return { router, ingest, counters, dedup, keys, shutdown, open };
}

function ackOf(r: StreamResponse | "end"): bigint {
  if (r === "end" || r.msg.case !== "ack")
    throw new Error(`expected an Ack, got ${JSON.stringify(r)}`);
  return r.msg.value.seq;
}

/** Opens a stream and reads its Welcome. */
async function connected(g: Gateway, secret: string, proxyId: string): Promise<Stream> {
  const s = g.open(`Bearer ${secret}`);
  s.requests.push(hello(proxyId));
  const w = await s.next();
  if (w === "end" || w.msg.case !== "welcome") throw new Error("expected a Welcome");
  return s;
}

describe("link service (polymur.ingest.v1.IngestService)", () => {
  it.each([
    ["no authorization header", undefined],
    ["an unknown key", "Bearer not-a-key"],
    ["another scheme", "Basic secret-a"],
  ])("refuses a stream with %s: Unauthenticated", async (_, header) => {
    const g = gateway(relayConfig(""));
    const s = g.open(header);
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
    const s = g.open("Bearer secret-a");
    s.requests.push(hello("p1"));
    expect(await s.next()).toMatchObject({
      msg: { case: "welcome", value: { keyName: "tenant-a", ackedSeq: 7n } },
    });
    expect(g.counters.openStreams()).toBe(1);
    s.requests.end();
    expect(await s.next()).toBe("end");
    expect(g.counters.openStreams()).toBe(0);
    // The same proxy id under another key is another proxy.
    const other = g.open("Bearer secret-b");
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
    const s = g.open("Bearer secret-a");
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
    let answered = false;
    const first = s.next().then((r) => {
      answered = true;
      return r;
    });
    // The handler waits for the router's "routable" before it reads the batch.
    await until(() => g.router.listenerCount("routable") === 1);
    expect(answered).toBe(false);
    // A configuration still without destinations changes nothing.
    g.router.apply(relayConfig(""));
    await new Promise((r) => setImmediate(r));
    expect(answered).toBe(false);
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
    const again = g.open("Bearer secret-a");
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
