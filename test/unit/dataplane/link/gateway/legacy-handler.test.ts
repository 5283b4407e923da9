import { randomBytes } from "node:crypto";
import { once } from "node:events";
import http from "node:http";
import zlib from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import type { IngestCounters } from "../../../../../dataplane/ingest/ingest-counters.ts";
import { ApiKeyRing, sha256 } from "../../../../../dataplane/link/gateway/api-keys.ts";
import type { GatewayCounters } from "../../../../../dataplane/link/gateway/gateway-counters.ts";
import { GatewayListener } from "../../../../../dataplane/link/gateway/gateway-listener.ts";
import { createLegacyHandler } from "../../../../../dataplane/link/gateway/legacy-handler.ts";
import type { Router, RouterConfig } from "../../../../../dataplane/route/router.ts";
import { type CapturedLine, captureLog } from "../../../../fixtures/capture-log.ts";
import { gatewayIntake } from "../../../../fixtures/gateway-intake.ts";
import { datapoints, freePort, LineSink } from "../../../../fixtures/line-sink.ts";
import { closeServer, listenLocal } from "../../../../fixtures/local-server.ts";
import { relayConfig } from "../../../../fixtures/relay-config.ts";
import { until } from "../../../../fixtures/until.ts";

const SECRET = "secret-a";
const KEY_NAME = "tenant-a";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Gateway {
  port: number;
  server: http.Server;
  router: Router;
  ingest: IngestCounters;
  counters: GatewayCounters;
  shutdown: AbortController;
  logs: CapturedLine[];
}

/** A real HTTP/1.1 server with the legacy handler, over a BatchIntake and a real Router. */
async function gateway(
  destinations: string,
  over: { router?: Partial<RouterConfig>; maxBatchBytes?: number } = {},
): Promise<Gateway> {
  const { log, lines: logs } = captureLog();
  const maxBatchBytes = over.maxBatchBytes ?? 1 << 20;
  const { intake, router, ingest, counters } = gatewayIntake(
    relayConfig(destinations, over.router),
    log,
    { maxBatchBytes },
  );
  cleanups.push(async () => {
    await router.drain(0);
  });
  const keys = new ApiKeyRing();
  keys.replace([{ name: KEY_NAME, digest: sha256(SECRET) }]);
  const shutdown = new AbortController();
  const handler = createLegacyHandler({
    intake,
    keys,
    counters,
    log,
    maxBatchBytes,
    clientOf: (req) => GatewayListener.peer(req),
    shutdown: shutdown.signal,
  });
  const server = http.createServer(handler);
  const port = await listenLocal(server);
  cleanups.push(async () => {
    server.closeAllConnections();
    await closeServer(server);
  });
  return { port, server, router, ingest, counters, shutdown, logs };
}

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  cleanups.push(() => s.close());
  return s;
}

interface Reply {
  status: number;
  text: string;
  headers: http.IncomingHttpHeaders;
}

function request(
  port: number,
  path: string,
  o: { method?: string; key?: string; body?: Buffer } = {},
): Promise<Reply> {
  return new Promise<Reply>((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {};
    if (o.key !== undefined) headers["x-polymur-key"] = o.key;
    if (o.body !== undefined) headers["content-length"] = o.body.length;
    const req = http.request(
      { host: "127.0.0.1", port, path, method: o.method ?? "POST", headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString(),
            headers: res.headers,
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(o.body);
  });
}

const gz = (text: string): Buffer => zlib.gzipSync(text);
const queuedLines = (r: Router): number =>
  r.stats().destinations.reduce((n, d) => n + d.queuedLines, 0);
const legacyRequests = (c: GatewayCounters): Record<string, number> =>
  c.json()["legacyRequests"] as Record<string, number>;

describe("legacy handler: POST /ingest", () => {
  it("takes a gzip body with a valid key: 200 once queued, lines reach the destination", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    const text = "a.b 1 1700000000\nbad\nc.d;dc=eu 2 1700000000\n";
    const r = await request(g.port, "/ingest", { key: SECRET, body: gz(text) });
    expect(r.status).toBe(200);
    expect(r.text).toBe("Batch Received\n");
    expect(r.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect(r.headers["content-length"]).toBe(String("Batch Received\n".length));
    await s.waitForLines(2, 8_000);
    expect(s.lines).toEqual(["a.b 1 1700000000", "c.d;dc=eu 2 1700000000"]);
    expect(g.ingest.accepted).toBe(2);
    expect(g.ingest.rejects.counts.field_count).toBe(1);
    expect(legacyRequests(g.counters)).toEqual({ "200": 1 });
    const keys = g.counters.json()["keys"] as Record<string, Record<string, number>>;
    expect(keys[KEY_NAME]).toMatchObject({ batches: 1, lines: 2, rejectedLines: 1 });
    // The client is the connection's peer (GatewayListener.peer on HTTP/1.1).
    const clients = g.counters.json()["clients"] as Record<string, { key: string }>;
    expect(Object.keys(clients)).toEqual(["127.0.0.1"]);
    expect(clients["127.0.0.1"]?.key).toBe(KEY_NAME);
  });

  it("ignores a query string", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    const r = await request(g.port, "/ingest?x=1", { key: SECRET, body: gz("q.a 1 1700000000\n") });
    expect(r.status).toBe(200);
    await s.waitForLines(1, 8_000);
    expect(s.lines).toEqual(["q.a 1 1700000000"]);
  });

  it("answers 401 'invalid key' to a wrong or missing key (never 403), counts it, queues nothing", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    const body = gz("w.a 1 1700000000\n");
    const wrong = await request(g.port, "/ingest", { key: "not-the-secret", body });
    expect(wrong).toMatchObject({ status: 401, text: "invalid key" });
    const missing = await request(g.port, "/ingest", { body });
    expect(missing).toMatchObject({ status: 401, text: "invalid key" });
    const empty = await request(g.port, "/ingest", { key: "", body });
    expect(empty).toMatchObject({ status: 401, text: "invalid key" });
    expect(g.counters.authFailures).toEqual({ stream: 0, legacy: 3 });
    expect(legacyRequests(g.counters)).toEqual({ "401": 3 });
    expect(queuedLines(g.router)).toBe(0);
    expect(g.ingest.accepted).toBe(0);
    const warns = g.logs.filter((l) => l.msg === "polymur-proxy /ingest: invalid key");
    expect(warns).toHaveLength(3);
    expect(warns[0]?.["client"]).toBe("127.0.0.1");
    // The secret never reaches a log line.
    expect(JSON.stringify(g.logs)).not.toContain("not-the-secret");
  });

  it("answers 405 to another method on /ingest, before looking at the key", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    for (const method of ["GET", "PUT"]) {
      const r = await request(g.port, "/ingest", { method, key: "wrong" });
      expect(r).toMatchObject({ status: 405, text: "method not allowed\n" });
    }
    expect(legacyRequests(g.counters)).toEqual({ "405": 2 });
    expect(g.counters.authFailures.legacy).toBe(0);
  });

  it("answers 400 'Batch Malformed' to a body that is not gzip", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    const r = await request(g.port, "/ingest", {
      key: SECRET,
      body: Buffer.from("m.a 1 1700000000\n"),
    });
    expect(r).toMatchObject({ status: 400, text: "Batch Malformed\n" });
    expect(legacyRequests(g.counters)).toEqual({ "400": 1 });
    expect(queuedLines(g.router)).toBe(0);
  });

  it("bounds the body: 413 'Batch Too Large' over --max-batch-bytes, compressed or inflated", async () => {
    const s = await sink();
    const g = await gateway(s.address, { maxBatchBytes: 4096 });
    // Over the bound as sent (random bytes do not compress).
    const big = await request(g.port, "/ingest", { key: SECRET, body: randomBytes(64 * 1024) });
    expect(big).toMatchObject({ status: 413, text: "Batch Too Large\n" });
    // Exactly the bound as sent is read (and then found not to be gzip).
    const edge = await request(g.port, "/ingest", { key: SECRET, body: randomBytes(4096) });
    expect(edge).toMatchObject({ status: 400, text: "Batch Malformed\n" });
    // Small as sent, beyond the bound once inflated.
    const bomb = zlib.gzipSync(Buffer.alloc(1 << 20, "a"));
    expect(bomb.length).toBeLessThan(4096);
    const inflated = await request(g.port, "/ingest", { key: SECRET, body: bomb });
    expect(inflated).toMatchObject({ status: 413, text: "Batch Too Large\n" });
    expect(legacyRequests(g.counters)).toEqual({ "413": 2, "400": 1 });
    expect(queuedLines(g.router)).toBe(0);
    expect(g.ingest.accepted).toBe(0);
  });

  it("survives a client that goes away mid-body: nothing queued, the next request is served", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    const req = http.request({
      host: "127.0.0.1",
      port: g.port,
      path: "/ingest",
      method: "POST",
      agent: false,
      headers: { "x-polymur-key": SECRET, "content-length": 100_000 },
    });
    req.on("error", () => {});
    const seen = once(g.server, "request") as Promise<[http.IncomingMessage]>;
    req.write(Buffer.alloc(1000, 1));
    const [serverReq] = await seen;
    // Not events.once: it would reject on the socket's own 'error' (the aborted body).
    const closed = new Promise((resolve) => serverReq.socket.once("close", resolve));
    req.destroy();
    await closed;
    expect(queuedLines(g.router)).toBe(0);
    expect(legacyRequests(g.counters)).toEqual({});
    const r = await request(g.port, "/ingest", { key: SECRET, body: gz("n.a 1 1700000000\n") });
    expect(r.status).toBe(200);
    await s.waitForLines(1, 8_000);
  });
});

describe("legacy handler: /ping", () => {
  it("answers 200 'key is valid' to a valid key, whatever the method", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    for (const method of ["POST", "GET"]) {
      const r = await request(g.port, "/ping", { method, key: SECRET });
      expect(r).toMatchObject({ status: 200, text: "key is valid\n" });
    }
    const infos = g.logs.filter((l) => l.msg === "polymur-proxy /ping: key is valid");
    expect(infos).toHaveLength(2);
    expect(infos[0]?.["key"]).toBe(KEY_NAME);
    // /ping is not an ingest request.
    expect(legacyRequests(g.counters)).toEqual({});
  });

  it("answers 401 'invalid key' to a wrong or missing key, and counts the failure", async () => {
    const s = await sink();
    const g = await gateway(s.address);
    const wrong = await request(g.port, "/ping", { key: "nope", body: Buffer.from("ignored") });
    expect(wrong).toMatchObject({ status: 401, text: "invalid key" });
    const missing = await request(g.port, "/ping", {});
    expect(missing).toMatchObject({ status: 401, text: "invalid key" });
    expect(g.counters.authFailures).toEqual({ stream: 0, legacy: 2 });
    expect(legacyRequests(g.counters)).toEqual({});
    expect(g.logs.filter((l) => l.msg === "polymur-proxy /ping: invalid key")).toHaveLength(2);
  });
});

describe("legacy handler: other paths", () => {
  it.each(["/", "/ingest/", "/pingx", "/metrics", "/v1/ingest"])(
    "answers 404 'not found' to %s and counts nothing",
    async (path) => {
      const s = await sink();
      const g = await gateway(s.address);
      const r = await request(g.port, path, { key: SECRET, body: gz("x 1 1\n") });
      expect(r).toMatchObject({ status: 404, text: "not found\n" });
      expect(legacyRequests(g.counters)).toEqual({});
      expect(g.counters.authFailures.legacy).toBe(0);
      expect(queuedLines(g.router)).toBe(0);
    },
  );
});

describe("legacy handler: no destinations", () => {
  // A gateway with no destination (a managed one before its first
  // configuration) takes nothing: the Go proxy never resends, so the request
  // is held, unanswered, until there are destinations.
  it("holds a request while the gateway has no destinations and answers 200 once some come", async () => {
    const g = await gateway("");
    let reply: Reply | null = null;
    const p = request(g.port, "/ingest", { key: SECRET, body: gz("nd.a 1 1700000000\n") }).then(
      (r) => {
        reply = r;
        return r;
      },
    );
    await until(() => g.router.listenerCount("routable") === 1);
    expect(reply).toBeNull();
    expect(g.ingest.accepted).toBe(0);
    expect(g.router.stats()).toMatchObject({ routed: 0, noDestination: 0 });
    expect(legacyRequests(g.counters)).toEqual({});
    expect(g.logs.some((l) => /^no destinations: holding/.test(l.msg))).toBe(true);
    const s = await sink();
    g.router.apply(relayConfig(s.address));
    expect(await p).toMatchObject({ status: 200, text: "Batch Received\n" });
    await s.waitForLines(1, 8_000);
    expect(s.lines).toEqual(["nd.a 1 1700000000"]);
    expect(legacyRequests(g.counters)).toEqual({ "200": 1 });
    expect(g.router.listenerCount("routable")).toBe(0);
  });

  it("answers 503 'Shutting Down' to a request held for destinations when the shutdown signal aborts", async () => {
    const g = await gateway("");
    const p = request(g.port, "/ingest", { key: SECRET, body: gz("nd.b 1 1700000000\n") });
    await until(() => g.router.listenerCount("routable") === 1);
    g.shutdown.abort();
    expect(await p).toMatchObject({ status: 503, text: "Shutting Down\n" });
    expect(g.router.listenerCount("routable")).toBe(0);
    expect(g.ingest.accepted).toBe(0);
    expect(g.router.stats()).toMatchObject({ routed: 0, noDestination: 0 });
    expect(legacyRequests(g.counters)).toEqual({ "503": 1 });
  });
});

describe("legacy handler: a blocked router and the shutdown signal", () => {
  /** A gateway whose only destination is down, under the block policy, made to block by one request. */
  async function blocked(): Promise<{ g: Gateway; port: number; first: string[] }> {
    const port = await freePort();
    const g = await gateway(`127.0.0.1:${port}`, {
      router: { overflow: "block", queueBytes: 64 * 1024 },
    });
    const first = datapoints("legacy.padding.padding.padding", 2_000); // about 90 KiB
    const r = await request(g.port, "/ingest", {
      key: SECRET,
      body: gz(first.join("\n") + "\n"),
    });
    expect(r.status).toBe(200);
    expect(g.router.blocking).toBe(true);
    return { g, port, first };
  }

  it("holds a request while the router is blocked and answers 200 once it takes lines again", async () => {
    const { g, port, first } = await blocked();
    let reply: Reply | null = null;
    const p = request(g.port, "/ingest", { key: SECRET, body: gz("held.a 1 1700000000\n") }).then(
      (r) => {
        reply = r;
        return r;
      },
    );
    // The request is waiting for the router's "unblocked".
    await until(() => g.router.listenerCount("unblocked") === 1);
    expect(reply).toBeNull();
    const s = await sink(port);
    const r = await p;
    expect(r).toMatchObject({ status: 200, text: "Batch Received\n" });
    await s.waitForLines(first.length + 1, 8_000);
    expect(s.lines.at(-1)).toBe("held.a 1 1700000000");
    expect(legacyRequests(g.counters)).toEqual({ "200": 2 });
  });

  it("answers 503 'Shutting Down' to a held request when the shutdown signal aborts", async () => {
    const { g } = await blocked();
    const p = request(g.port, "/ingest", { key: SECRET, body: gz("held.b 1 1700000000\n") });
    await until(() => g.router.listenerCount("unblocked") === 1);
    const queued = queuedLines(g.router);
    g.shutdown.abort();
    expect(await p).toMatchObject({ status: 503, text: "Shutting Down\n" });
    expect(queuedLines(g.router)).toBe(queued);
    expect(g.router.listenerCount("unblocked")).toBe(0);
    expect(legacyRequests(g.counters)).toEqual({ "200": 1, "503": 1 });
    // After shutdown, while still blocked, a new request is refused at once.
    const again = await request(g.port, "/ingest", {
      key: SECRET,
      body: gz("late.a 1 1700000000\n"),
    });
    expect(again).toMatchObject({ status: 503, text: "Shutting Down\n" });
  });
});
