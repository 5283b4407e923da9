import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import type { Logger } from "../../../../../common/logger.ts";
import { BatchBuffer } from "../../../../../dataplane/link/proxy/batch-buffer.ts";
import {
  GatewayLink,
  type GatewayLinkOptions,
  type LinkState,
} from "../../../../../dataplane/link/proxy/gateway-link.ts";
import { SegmentSpool } from "../../../../../dataplane/spool/segment-spool.ts";
import {
  Compression,
  IngestService,
  type StreamRequest,
  type StreamResponseSchema,
} from "../../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { type CapturedLine, captureLog } from "../../../../fixtures/capture-log.ts";
import { freePort } from "../../../../fixtures/line-sink.ts";
import { closeServer, listenLocal } from "../../../../fixtures/local-server.ts";
import { until } from "../../../../fixtures/until.ts";

type Response = MessageInitShape<typeof StreamResponseSchema>;

const KEY = "good-key";
const KEY_NAME = "tenant-a";

/** What the test gateway does with one batch. */
type BatchAction = "ack" | "reject" | "hold" | "end";

/** One message for a stream's handler: a request, a scripted answer, or the end of requests. */
type Event =
  | { kind: "request"; req: StreamRequest }
  | { kind: "ack"; seq: number }
  | { kind: "end" }
  | { kind: "eof" };

/** An unbounded queue read by one async consumer; a read ends (undefined) when `signal` aborts. */
class Channel<T> {
  readonly #items: T[] = [];
  #wake: (() => void) | null = null;

  push(v: T): void {
    this.#items.push(v);
    this.#wake?.();
  }

  async take(signal: AbortSignal): Promise<T | undefined> {
    for (;;) {
      const v = this.#items.shift();
      if (v !== undefined) return v;
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.#wake = null;
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.#wake = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
  }
}

/** One stream as the test gateway saw it. */
class GatewayStream {
  proxyId = "";
  readonly batches: Array<{ seq: number; lines: number; payload: string }> = [];
  readonly events = new Channel<Event>();

  /** Acknowledges every batch up to `seq` on this stream. */
  ack(seq: number): void {
    this.events.push({ kind: "ack", seq });
  }

  /** Ends this stream (status OK) without answering anything else. */
  end(): void {
    this.events.push({ kind: "end" });
  }
}

/**
 * A scripted gateway speaking polymur.ingest.v1.IngestService over cleartext
 * HTTP/2 on 127.0.0.1, answering as the real link service does (see
 * dataplane/link/gateway/link-service.ts): Unauthenticated for an unknown
 * key before reading anything, Welcome with the highest seq it has for the
 * proxy id, then Ack/Reject per batch. `onBatch` scripts the answers.
 */
class TestGateway {
  readonly streams: GatewayStream[] = [];
  /** Per proxy id, the highest seq acknowledged (the real gateway's dedup table). */
  readonly highest = new Map<string, number>();
  onBatch: (seq: number, stream: GatewayStream) => BatchAction = () => "ack";
  /** Overrides Welcome.acked_seq (to claim seqs the proxy never made). */
  welcomeAcked: ((proxyId: string) => number | undefined) | null = null;
  /** This many streams from now get no Welcome (the stream stays open, silent). */
  silentStreams = 0;
  /** Refuses every stream with this (as for a wrong key) whatever the key. */
  refusal: ConnectError | null = null;
  readonly #server: http2.Http2Server;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  port = 0;

  private constructor() {
    const handler = connectNodeAdapter({
      routes: (router) => {
        router.service(IngestService, { stream: (reqs, ctx) => this.#stream(reqs, ctx) });
      },
    });
    this.#server = http2.createServer(handler);
    this.#server.on("session", (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s);
      s.on("error", () => {}); // a client that cancels is not an error here
      s.once("close", () => this.#sessions.delete(s));
    });
  }

  static async start(): Promise<TestGateway> {
    const g = new TestGateway();
    g.port = await listenLocal(g.#server);
    return g;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** HTTP/2 connections currently open on the server. */
  get sessions(): number {
    return this.#sessions.size;
  }

  connections(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.#server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
  }

  /** Every seq received, in arrival order, over all streams. */
  received(): number[] {
    return this.streams.flatMap((s) => s.batches.map((b) => b.seq));
  }

  last(): GatewayStream {
    const s = this.streams.at(-1);
    if (s === undefined) throw new Error("no stream yet");
    return s;
  }

  /** Kills every connection at once (a gateway that crashed). */
  kill(): void {
    for (const s of this.#sessions) s.destroy();
  }

  async close(): Promise<void> {
    const closed = closeServer(this.#server);
    for (const s of this.#sessions) s.destroy();
    await closed;
  }

  async *#stream(
    requests: AsyncIterable<StreamRequest>,
    ctx: HandlerContext,
  ): AsyncGenerator<Response> {
    const s = new GatewayStream();
    this.streams.push(s);
    const m = /^Bearer\s+(.+)$/i.exec(ctx.requestHeader.get("authorization") ?? "");
    if (this.refusal !== null) throw this.refusal;
    if (m?.[1] !== KEY) throw new ConnectError("unknown API key", Code.Unauthenticated);
    void (async () => {
      try {
        for await (const req of requests) s.events.push({ kind: "request", req });
      } catch {
        // the client went away
      }
      s.events.push({ kind: "eof" });
    })();
    const ackTo = (seq: number): Response => {
      this.highest.set(s.proxyId, Math.max(seq, this.highest.get(s.proxyId) ?? 0));
      return { msg: { case: "ack", value: { seq: BigInt(seq) } } };
    };
    for (;;) {
      const ev = await s.events.take(ctx.signal);
      if (ev === undefined || ev.kind === "eof" || ev.kind === "end") return;
      if (ev.kind === "ack") {
        yield ackTo(ev.seq);
        continue;
      }
      const msg = ev.req.msg;
      if (msg.case === "hello") {
        s.proxyId = msg.value.proxyId;
        if (this.silentStreams > 0) {
          this.silentStreams--;
          continue;
        }
        const acked = this.welcomeAcked?.(s.proxyId) ?? this.highest.get(s.proxyId) ?? 0;
        yield { msg: { case: "welcome", value: { keyName: KEY_NAME, ackedSeq: BigInt(acked) } } };
        continue;
      }
      if (msg.case !== "batch") throw new ConnectError("expected a Batch", Code.InvalidArgument);
      const seq = Number(msg.value.seq);
      s.batches.push({
        seq,
        lines: msg.value.lines,
        payload: Buffer.from(msg.value.payload).toString(),
      });
      const action = this.onBatch(seq, s);
      if (action === "end") return;
      if (action === "ack") yield ackTo(seq);
      if (action === "reject") {
        yield { msg: { case: "reject", value: { seq: BigInt(seq), reason: "too_long: test" } } };
      }
    }
  }
}

const gateways: TestGateway[] = [];
const links: GatewayLink[] = [];

afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  // The link destroys its connection after every stream: nothing may stay open.
  for (const g of gateways) {
    await until("server connections closed", () => g.sessions === 0, 5_000);
    expect(await g.connections()).toBe(0);
  }
  for (const g of gateways.splice(0)) await g.close();
});

async function gateway(): Promise<TestGateway> {
  const g = await TestGateway.start();
  gateways.push(g);
  return g;
}

interface Setup {
  link: GatewayLink;
  buffer: BatchBuffer;
  states: LinkState[];
  logs: CapturedLine[];
  authFailures: Array<{ err: ConnectError; gateway: string }>;
  idConflicts: Array<[number, number]>;
}

function setup(
  urls: string[],
  options: Partial<GatewayLinkOptions> = {},
  makeBuffer: (log: Logger) => BatchBuffer = (log) =>
    new BatchBuffer({ memoryBytes: 1024 * 1024, spool: null, spoolBytes: 0, log }),
): Setup {
  const { log, lines } = captureLog();
  const buffer = makeBuffer(log);
  const authFailures: Setup["authFailures"] = [];
  const idConflicts: Setup["idConflicts"] = [];
  const link = new GatewayLink({
    gateways: urls,
    apiKey: KEY,
    proxyId: () => "proxy-1",
    buffer,
    log,
    backoffMinMs: 5,
    backoffMaxMs: 20,
    onAuthFailure: (err, gw) => authFailures.push({ err, gateway: gw }),
    onIdConflict: (acked, next) => idConflicts.push([acked, next]),
    ...options,
  });
  const states: LinkState[] = [];
  link.on("state", (s: LinkState) => states.push(s));
  links.push(link);
  return { link, buffer, states, logs: lines, authFailures, idConflicts };
}

/** Adds batch `i` (payload "batch-i\n" repeated `lines` times). */
function addBatch(buffer: BatchBuffer, i: number, lines = i): void {
  const payload = Buffer.from(`batch-${i}\n`.repeat(lines));
  buffer.add(Compression.NONE, payload, lines, payload.length);
}

describe("GatewayLink", () => {
  it("sends Hello with the API key, then every batch in seq order, and frees each once acked", async () => {
    const gw = await gateway();
    const { link, buffer, states } = setup([gw.url]);
    for (let i = 1; i <= 3; i++) addBatch(buffer, i);
    link.start();
    await until("open", () => link.state === "open");
    for (let i = 4; i <= 6; i++) addBatch(buffer, i); // new batches on the open stream
    await until("all acked", () => buffer.size === 0);

    expect(gw.streams).toHaveLength(1);
    expect(gw.last().proxyId).toBe("proxy-1");
    expect(gw.last().batches).toEqual(
      [1, 2, 3, 4, 5, 6].map((i) => ({ seq: i, lines: i, payload: `batch-${i}\n`.repeat(i) })),
    );
    expect(link.stats()).toEqual({
      state: "open",
      gateway: gw.url,
      connects: 1,
      failures: 0,
      batchesSent: 6,
      batchesResent: 0,
      batchesAcked: 6,
      linesAcked: 21,
      batchesRejected: 0,
      linesRejected: 0,
      lastError: undefined,
    });
    expect(buffer.pendingLines).toBe(0);
    expect(states).toEqual(["connecting", "open"]);
    await link.stop();
    expect(link.state).toBe("closed");
    expect(states.at(-1)).toBe("closed");
  });

  it("holds batches until acked; one ack frees every batch up to its seq", async () => {
    const gw = await gateway();
    gw.onBatch = () => "hold";
    const { link, buffer } = setup([gw.url]);
    for (let i = 1; i <= 4; i++) addBatch(buffer, i);
    link.start();
    await until("4 batches received", () => gw.received().length === 4);
    expect([buffer.size, buffer.pendingLines]).toEqual([4, 10]);
    expect(link.stats().batchesAcked).toBe(0);

    gw.last().ack(3); // cumulative: 1, 2 and 3
    await until("3 freed", () => buffer.size === 1);
    expect(buffer.after(0)?.seq).toBe(4);
    expect(link.stats()).toMatchObject({ batchesSent: 4, batchesAcked: 3, linesAcked: 6 });

    gw.last().ack(2); // an older ack frees nothing more
    gw.last().ack(4);
    await until("all freed", () => buffer.size === 0);
    expect(link.stats()).toMatchObject({ batchesAcked: 4, linesAcked: 10, failures: 0 });
  });

  it("resends unacknowledged batches on the next stream after the gateway ended one", async () => {
    const gw = await gateway();
    gw.onBatch = (_seq, s) => (gw.streams.indexOf(s) === 0 ? "hold" : "ack");
    const { link, buffer, states, logs } = setup([gw.url]);
    for (let i = 1; i <= 3; i++) addBatch(buffer, i);
    link.start();
    await until("3 received", () => gw.received().length === 3);
    gw.last().ack(1); // the gateway queued 1 and remembers it (its Welcome says so next time)
    await until("1 freed", () => buffer.size === 2);
    gw.last().end();

    await until("all acked on the second stream", () => buffer.size === 0);
    expect(gw.streams).toHaveLength(2);
    expect(gw.streams[1]!.batches.map((b) => b.seq)).toEqual([2, 3]);
    expect(gw.streams[1]!.batches[1]!.payload).toBe("batch-3\n".repeat(3));
    expect(link.stats()).toMatchObject({
      state: "open",
      connects: 2,
      failures: 1,
      batchesSent: 3,
      batchesResent: 2,
      batchesAcked: 3,
      linesAcked: 6,
      lastError: "the gateway ended the stream",
    });
    expect(states).toEqual(["connecting", "open", "backoff", "connecting", "open"]);
    const warn = logs.find((l) => l.msg.startsWith("link to gateway"));
    expect(warn).toMatchObject({ gateway: gw.url, pending: 2, pendingLines: 5 });
  });

  it("resends on a fresh connection after the gateway's connection died, and counts the failure", async () => {
    const gw = await gateway();
    gw.onBatch = (_seq, s) => (gw.streams.indexOf(s) === 0 ? "hold" : "ack");
    const { link, buffer } = setup([gw.url]);
    for (let i = 1; i <= 2; i++) addBatch(buffer, i);
    link.start();
    await until("2 received", () => gw.received().length === 2);
    gw.kill();
    await until("all acked", () => buffer.size === 0);
    expect(gw.received()).toEqual([1, 2, 1, 2]);
    expect(link.stats()).toMatchObject({
      connects: 2,
      failures: 1,
      batchesSent: 2,
      batchesResent: 2,
      batchesAcked: 2,
    });
    expect(link.stats().lastError).toMatch(/^[A-Za-z]+: /); // "<Code>: <message>"
  });

  it("counts rejected batches and frees them; a later ack skips them", async () => {
    const gw = await gateway();
    gw.onBatch = (seq) => (seq === 2 ? "reject" : seq === 1 ? "hold" : "ack");
    const { link, buffer, logs } = setup([gw.url]);
    for (let i = 1; i <= 3; i++) addBatch(buffer, i);
    link.start();
    await until("all answered", () => buffer.size === 0);
    expect(link.stats()).toMatchObject({
      batchesSent: 3,
      batchesAcked: 2, // 1 and 3, freed by the ack of 3
      linesAcked: 4,
      batchesRejected: 1,
      linesRejected: 2,
      failures: 0,
    });
    const err = logs.find((l) => l.msg.startsWith("gateway rejected batch 2"));
    expect(err).toMatchObject({ seq: 2, lines: 2, reason: "too_long: test" });
  });

  it.each([
    ["Unauthenticated (a wrong API key)", Code.Unauthenticated],
    ["PermissionDenied", Code.PermissionDenied],
  ])("stops for good on %s and calls onAuthFailure", async (_name, code) => {
    const gw = await gateway();
    const { link, authFailures, states } = setup([gw.url], {
      apiKey: code === Code.Unauthenticated ? "wrong-key" : KEY,
    });
    // The real gateway answers Unauthenticated; PermissionDenied is handled alike.
    if (code === Code.PermissionDenied) gw.refusal = new ConnectError("forbidden", code);
    link.start();
    await until("failed", () => link.state === "failed");
    expect(authFailures).toHaveLength(1);
    expect(authFailures[0]!.err.code).toBe(code);
    expect(authFailures[0]!.gateway).toBe(gw.url);
    await link.stop(); // the loop has ended: stop() only waits for it
    expect(link.state).toBe("failed");
    expect(link.stats()).toMatchObject({ connects: 1, failures: 0, state: "failed" });
    expect(link.stats().lastError).toBe(
      code === Code.Unauthenticated ? "unknown API key" : "forbidden",
    );
    expect(gw.streams).toHaveLength(1);
    expect(states).toEqual(["connecting", "failed"]);
  });

  it("rotates to the next gateway when one is down, and back round the list", async () => {
    const down = `http://127.0.0.1:${await freePort()}`;
    const gw = await gateway();
    const { link, buffer, states } = setup([down, gw.url]);
    addBatch(buffer, 1);
    link.start();
    await until("acked on the second gateway", () => buffer.size === 0);
    expect(link.gateway).toBe(gw.url);
    expect(link.stats()).toMatchObject({
      gateway: gw.url,
      connects: 2,
      failures: 1,
      batchesSent: 1,
      batchesAcked: 1,
    });
    expect(link.stats().lastError).toMatch(/^Unavailable: /);
    expect(states).toEqual(["connecting", "backoff", "connecting", "open"]);

    // The live gateway ends the stream: the next attempt goes round to the dead one, then back.
    gw.last().end();
    await until("open again", () => gw.streams.length === 2 && link.state === "open");
    expect(link.stats()).toMatchObject({ gateway: gw.url, connects: 4, failures: 3 });
  });

  it("rotates to another gateway when one dies and resends what it had not acked there", async () => {
    const a = await gateway();
    const b = await gateway();
    a.onBatch = () => "hold";
    const { link, buffer } = setup([a.url, b.url]);
    for (let i = 1; i <= 3; i++) addBatch(buffer, i);
    link.start();
    await until("received by a", () => a.received().length === 3);
    a.last().ack(1);
    await until("1 freed", () => buffer.size === 2);
    a.kill();
    await until("all acked by b", () => buffer.size === 0);
    expect(link.gateway).toBe(b.url);
    expect(b.received()).toEqual([2, 3]);
    expect(link.stats()).toMatchObject({ batchesSent: 3, batchesResent: 2, batchesAcked: 3 });
  });

  it("on a proxy id conflict asks for a new id and reconnects to the same gateway at once", async () => {
    const a = await gateway();
    const b = await gateway();
    a.welcomeAcked = (id) => (id === "proxy-1" ? 100 : undefined);
    let id = "proxy-1";
    const { link, buffer, idConflicts, logs } = setup([a.url, b.url], {
      proxyId: () => id,
      onIdConflict: (acked, next) => {
        idConflicts.push([acked, next]);
        id = "proxy-2";
      },
    });
    addBatch(buffer, 1);
    addBatch(buffer, 2);
    link.start();
    await until("acked under the new id", () => buffer.size === 0);
    expect(idConflicts).toEqual([[100, 3]]);
    expect(a.streams.map((s) => s.proxyId)).toEqual(["proxy-1", "proxy-2"]);
    expect(a.streams[0]!.batches).toEqual([]); // nothing sent under the conflicting id
    expect(b.streams).toEqual([]);
    expect(link.stats()).toMatchObject({
      gateway: a.url,
      connects: 2,
      failures: 0,
      batchesSent: 2,
      batchesResent: 0,
      batchesAcked: 2,
    });
    expect(logs.some((l) => l.msg.includes("another proxy uses the same id"))).toBe(true);
  });

  it("fails a stream whose Welcome does not come in time, then retries", async () => {
    const gw = await gateway();
    gw.silentStreams = 1;
    const { link, buffer, logs } = setup([gw.url], { welcomeTimeoutMs: 200 });
    addBatch(buffer, 1);
    link.start();
    await until("acked on a later stream", () => buffer.size === 0);
    const failed = logs.filter((l) => l.msg.startsWith("link to gateway"));
    expect(failed[0]?.err).toBe("DeadlineExceeded: no Welcome from the gateway");
    // (A loaded machine may miss the deadline on a later stream too: those are retried alike.)
    const { connects, failures, batchesSent, batchesAcked } = link.stats();
    expect([failures, batchesSent, batchesAcked]).toEqual([connects - 1, 1, 1]);
    expect(gw.streams[0]!.batches).toEqual([]); // nothing is sent before Welcome
  });

  it("stop() during backoff ends the loop; reconnect() drops the stream and opens a new one", async () => {
    const gw = await gateway();
    const { link, buffer } = setup([gw.url]);
    link.start();
    await until("open", () => link.state === "open");
    link.reconnect();
    await until("second stream", () => gw.streams.length === 2 && link.state === "open");
    addBatch(buffer, 1);
    await until("acked", () => buffer.size === 0);
    expect(gw.streams[1]!.batches.map((b) => b.seq)).toEqual([1]);

    const dead = setup([`http://127.0.0.1:${await freePort()}`], {
      backoffMinMs: 60_000,
      backoffMaxMs: 60_000,
    });
    dead.link.start();
    await until("backoff", () => dead.link.state === "backoff");
    await dead.link.stop(); // would hang for a minute if the sleep were not aborted
    expect(dead.link.state).toBe("closed");
    expect(dead.link.stats()).toMatchObject({ connects: 1, failures: 1 });
  });

  it("a batch that cannot be read back from the spool is counted lost, not freed as delivered by a later ack", async () => {
    const gw = await gateway();
    gw.onBatch = () => "hold";
    const dir = mkdtempSync(path.join(tmpdir(), "polymur-link-"));
    const { spool } = SegmentSpool.open(dir, { log: captureLog().log });
    try {
      // No payload cached in memory: every batch is read back from the spool.
      const { link, buffer, logs } = setup([gw.url], {}, (log) => {
        return new BatchBuffer({ memoryBytes: 0, spool, spoolBytes: 1 << 30, log });
      });
      for (let i = 1; i <= 3; i++) addBatch(buffer, i);
      const second = buffer.after(1)!;
      const seg = path.join(dir, `seg-${String(second.loc!.segment).padStart(16, "0")}.spool`);
      const fd = openSync(seg, "r+");
      writeSync(fd, Buffer.from("X"), 0, 1, second.loc!.offset + 33 + 2); // its payload
      closeSync(fd);
      link.start();
      await until("1 and 3 received", () => gw.received().length === 2);
      expect(gw.received()).toEqual([1, 3]);
      gw.last().ack(3); // cumulative: covers 2, which never left the proxy
      await until("all settled", () => buffer.size === 0);
      expect(link.stats()).toMatchObject({ batchesSent: 2, batchesAcked: 2, linesAcked: 1 + 3 });
      expect(buffer.stats().lost).toMatchObject({ spool_corrupt: 2 });
      const err = logs.find((l) => l.level === 50 && l.msg.includes("cannot be read back"));
      expect(err).toMatchObject({ seq: 2, lines: 2, file: seg, offset: second.loc!.offset });
    } finally {
      spool.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
