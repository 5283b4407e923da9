// The link service and proxy instances: two processes claiming one proxy id
// (a copied spool directory) are refused while one is connected, and never
// have one's batches acknowledged or dropped for the other's seqs.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { compressBatch, countNewlines } from "../../../../../dataplane/link/batch-codec.ts";
import { ApiKeyRing, parseKeysFile } from "../../../../../dataplane/link/gateway/api-keys.ts";
import { createLinkService } from "../../../../../dataplane/link/gateway/link-service.ts";
import {
  Compression,
  IngestService,
  type StreamRequestSchema,
  type StreamResponse,
} from "../../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { type CapturedLine, captureLog } from "../../../../fixtures/capture-log.ts";
import { gatewayIntake } from "../../../../fixtures/gateway-intake.ts";
import { LineSink } from "../../../../fixtures/line-sink.ts";
import { refusal } from "../../../../fixtures/refusal.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { until } from "../../../../fixtures/until.ts";

type Request = MessageInitShape<typeof StreamRequestSchema>;

/** The request side of one stream: messages pushed by the test. */
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

function hello(proxyId: string, instanceId?: string): Request {
  return {
    msg: { case: "hello", value: { proxyId, ...(instanceId === undefined ? {} : { instanceId }) } },
  };
}

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

interface Stream {
  requests: Requests;
  next(): Promise<StreamResponse | "end">;
}

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/**
 * A gateway's link service in memory (createRouterTransport), with a real
 * destination, a captured log, and `alive` answering what the test says
 * for each stream (by its proxy's instance id).
 */
async function gateway(): Promise<{
  out: LineSink;
  counters: ReturnType<typeof gatewayIntake>["counters"];
  lines: CapturedLine[];
  dead: Set<string>;
  probes: string[];
  open(instanceHeader: string): Stream;
}> {
  const out = await LineSink.start();
  cleanup.push(() => out.close());
  const { log, lines } = captureLog();
  const { intake, router, counters, dedup } = gatewayIntake(relayConfig(out.address), log);
  cleanup.push(async () => {
    await router.drain(0);
  });
  const keys = new ApiKeyRing();
  keys.replace(parseKeysFile("tenant-a secret-a\n", "keys"));
  const shutdown = new AbortController();
  cleanup.push(() => shutdown.abort());
  const dead = new Set<string>();
  const probes: string[] = [];
  const service = createLinkService({
    intake,
    keys,
    dedup,
    counters,
    log,
    shutdown: shutdown.signal,
    clientOf: (ctx) => ctx.requestHeader.get("x-test-client") ?? "?",
    alive: async (ctx) => {
      const who = ctx.requestHeader.get("x-test-client") ?? "?";
      probes.push(who);
      return !dead.has(who);
    },
    probeTimeoutMs: 50,
  });
  const open = (client: string): Stream => {
    const transport = createRouterTransport((r) => r.service(IngestService, service), {
      transport: {
        interceptors: [
          (next) => async (req) => {
            req.header.set("authorization", "Bearer secret-a");
            req.header.set("x-test-client", client);
            return next(req);
          },
        ],
      },
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
  return { out, counters, lines, dead, probes, open };
}

type Gateway = Awaited<ReturnType<typeof gateway>>;

/** Opens a stream as `client` and returns it with its Welcome's acked seq. */
async function connect(
  g: Gateway,
  client: string,
  proxyId: string,
  instance?: string,
): Promise<{ s: Stream; acked: bigint }> {
  const s = g.open(client);
  s.requests.push(hello(proxyId, instance));
  const w = await s.next();
  if (w === "end" || w.msg.case !== "welcome") throw new Error(`expected a Welcome, got ${w}`);
  return { s, acked: w.msg.value.ackedSeq };
}

async function ack(s: Stream): Promise<bigint> {
  const r = await s.next();
  if (r === "end" || r.msg.case !== "ack")
    throw new Error(`expected an Ack, got ${JSON.stringify(r)}`);
  return r.msg.value.seq;
}

async function closed(s: Stream): Promise<void> {
  s.requests.end();
  expect(await s.next()).toBe("end");
}

describe("link service: one proxy id, one instance at a time", () => {
  it("refuses a second instance while the first is connected (AlreadyExists), counted and logged; the first carries on", async () => {
    const g = await gateway();
    const a = await connect(g, "10.0.0.1", "p1", "inst-A");
    const b = g.open("10.0.0.2");
    b.requests.push(hello("p1", "inst-B"));
    const e: ConnectError = await refusal(b.next());
    expect(e.code).toBe(Code.AlreadyExists);
    expect(e.rawMessage).toMatch(
      /^proxy id "p1" is in use by another connected proxy \(instance inst-A from 10\.0\.0\.1, since .*\): two proxies share one proxy id/,
    );
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(1);
    const warn = g.lines.find((l) => String(l.msg).startsWith("proxy stream refused"));
    expect(warn).toMatchObject({
      level: 40,
      proxyId: "p1",
      instance: "inst-B",
      client: "10.0.0.2",
      connected: { instance: "inst-A", client: "10.0.0.1" },
    });
    // The refused stream is not left open; the connected one still works.
    await until(() => g.counters.openStreams() === 1);
    a.s.requests.push(batch(1, "a.x 1 1700000000\n"));
    expect(await ack(a.s)).toBe(1n);
    // Once the first is gone, the second is taken.
    await closed(a.s);
    const b2 = await connect(g, "10.0.0.2", "p1", "inst-B");
    expect(b2.acked).toBe(0n);
  });

  it("the same instance may open a second stream (a reconnect racing a half-dead one)", async () => {
    const g = await gateway();
    const a = await connect(g, "10.0.0.1", "p1", "inst-A");
    a.s.requests.push(batch(1, "a.x 1 1700000000\n"));
    expect(await ack(a.s)).toBe(1n);
    const again = await connect(g, "10.0.0.1", "p1", "inst-A");
    expect(again.acked).toBe(1n);
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(0);
  });

  it("other keys' and other ids' streams are not in the way", async () => {
    const g = await gateway();
    await connect(g, "10.0.0.1", "p1", "inst-A");
    await connect(g, "10.0.0.2", "p2", "inst-B");
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(0);
  });

  it("asks the connected stream for a PING; cuts it if none comes back, and the waiting instance gets in", async () => {
    const g = await gateway();
    const a = await connect(g, "10.0.0.1", "p1", "inst-A");
    // Alive: refused, and the connected stream stays.
    const b = g.open("10.0.0.2");
    b.requests.push(hello("p1", "inst-B"));
    expect((await refusal(b.next())).code).toBe(Code.AlreadyExists);
    await until(() => g.probes.length === 1);
    expect(g.probes).toEqual(["10.0.0.1"]);
    expect(g.counters.streamsCut.unresponsive).toBe(0);
    // Its proxy died without closing the connection: the next attempt's probe cuts it.
    g.dead.add("10.0.0.1");
    const b2 = g.open("10.0.0.2");
    b2.requests.push(hello("p1", "inst-B"));
    expect((await refusal(b2.next())).code).toBe(Code.AlreadyExists);
    const cut = await refusal(a.s.next());
    expect(cut.code).toBe(Code.Unavailable);
    expect(cut.rawMessage).toMatch(/did not answer a PING/);
    expect(g.counters.streamsCut.unresponsive).toBe(1);
    expect(
      g.lines.some((l) => l.msg.startsWith("proxy stream cut: its connection did not answer")),
    ).toBe(true);
    await until(() => g.counters.openStreams() === 0);
    const b3 = await connect(g, "10.0.0.2", "p1", "inst-B");
    expect(b3.acked).toBe(0n);
  });
});

describe("link service: each instance's batches are its own", () => {
  it("a copy behind the other: its batches at seqs the other already sent are queued, not dropped as duplicates", async () => {
    const g = await gateway();
    const a = await connect(g, "10.0.0.1", "p1", "inst-A");
    for (let seq = 1; seq <= 3; seq++) {
      a.s.requests.push(batch(seq, `a.m ${seq} 1700000000\n`));
      expect(await ack(a.s)).toBe(BigInt(seq));
    }
    await closed(a.s);
    // B, a copy of A's spool, made batches 1 and 2 of its own.
    const b = await connect(g, "10.0.0.2", "p1", "inst-B");
    expect(b.acked).toBe(0n); // nothing of B's is freed by A's seqs
    expect(g.counters.proxyInstances.new).toBe(1);
    expect(g.lines.find((l) => String(l.msg).startsWith("proxy id taken over"))).toMatchObject({
      instance: "inst-B",
      previous: "inst-A",
    });
    b.s.requests.push(batch(1, "b.m 1 1700000000\n"));
    b.s.requests.push(batch(2, "b.m 2 1700000000\n"));
    expect(await ack(b.s)).toBe(1n);
    expect(await ack(b.s)).toBe(2n);
    await g.out.waitForLines(5);
    expect(g.out.lines).toEqual([
      "a.m 1 1700000000",
      "a.m 2 1700000000",
      "a.m 3 1700000000",
      "b.m 1 1700000000",
      "b.m 2 1700000000",
    ]);
    expect(g.counters.json()["keys"]).toMatchObject({ "tenant-a": { duplicates: 0 } });
  });

  it("a copy ahead of the other: the other's later Welcome does not acknowledge what it never sent", async () => {
    const g = await gateway();
    const b = await connect(g, "10.0.0.2", "p1", "inst-B");
    for (let seq = 1; seq <= 5; seq++) {
      b.s.requests.push(batch(seq, `b.m ${seq} 1700000000\n`));
      expect(await ack(b.s)).toBe(BigInt(seq));
    }
    await closed(b.s);
    // A holds its own unsent batches 1..3: a Welcome saying 5 would free them.
    const a = await connect(g, "10.0.0.1", "p1", "inst-A");
    expect(a.acked).toBe(0n);
    a.s.requests.push(batch(1, "a.m 1 1700000000\n"));
    expect(await ack(a.s)).toBe(1n);
    await g.out.waitForLines(6);
    expect(g.out.lines.filter((l) => l.startsWith("a.m"))).toEqual(["a.m 1 1700000000"]);
  });

  it("two instances taking turns: 'returning' is logged and counted, and each keeps its own de-duplication", async () => {
    const g = await gateway();
    const a = await connect(g, "10.0.0.1", "p1", "inst-A");
    a.s.requests.push(batch(1, "a.m 1 1700000000\n"));
    a.s.requests.push(batch(2, "a.m 2 1700000000\n"));
    expect(await ack(a.s)).toBe(1n);
    expect(await ack(a.s)).toBe(2n);
    await closed(a.s);
    const b = await connect(g, "10.0.0.2", "p1", "inst-B");
    b.s.requests.push(batch(1, "b.m 1 1700000000\n"));
    expect(await ack(b.s)).toBe(1n);
    await closed(b.s);
    const a2 = await connect(g, "10.0.0.1", "p1", "inst-A");
    expect(a2.acked).toBe(2n);
    expect(g.counters.proxyInstances).toEqual({ new: 1, returning: 1 });
    const warn = g.lines.find((l) => String(l.msg).startsWith("two live proxy instances"));
    expect(warn).toMatchObject({ level: 40, instance: "inst-A", previous: "inst-B" });
    // A's resend of 2 (its Ack lost) is a duplicate of its own; 3 is new.
    a2.s.requests.push(batch(2, "a.m 2 1700000000\n"));
    a2.s.requests.push(batch(3, "a.m 3 1700000000\n"));
    expect(await ack(a2.s)).toBe(2n);
    expect(await ack(a2.s)).toBe(3n);
    await g.out.waitForLines(4);
    expect(g.out.lines).toEqual([
      "a.m 1 1700000000",
      "a.m 2 1700000000",
      "b.m 1 1700000000",
      "a.m 3 1700000000",
    ]);
    expect(g.counters.json()["keys"]).toMatchObject({ "tenant-a": { duplicates: 1 } });
  });

  it("proxies that send no instance id are one instance, as before", async () => {
    const g = await gateway();
    const a = await connect(g, "10.0.0.1", "p1");
    a.s.requests.push(batch(1, "a.m 1 1700000000\n"));
    expect(await ack(a.s)).toBe(1n);
    const again = await connect(g, "10.0.0.2", "p1");
    expect(again.acked).toBe(1n);
    expect(g.counters.streamsRefused.proxy_id_in_use).toBe(0);
    expect(g.counters.proxyInstances).toEqual({ new: 0, returning: 0 });
  });

  it("an instance id over 256 characters ends the stream: InvalidArgument", async () => {
    const g = await gateway();
    const s = g.open("10.0.0.1");
    s.requests.push(hello("p1", "i".repeat(257)));
    const e = await refusal(s.next());
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toBe("Hello.instance_id must be at most 256 characters");
  });
});
