import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import type tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { MAX_CONCURRENT_STREAMS } from "../../../../../common/http2-limits.ts";
import {
  GatewayListener,
  type GatewayListenerOptions,
  type ServerRequest,
  type ServerResponse,
} from "../../../../../dataplane/link/gateway/gateway-listener.ts";
import { createTestPki, type TestPki } from "../../../../fixtures/tls.ts";
import { until } from "../../../../fixtures/until.ts";

/** What the handler saw of one request. */
interface Seen {
  httpVersion: string;
  method: string;
  url: string;
  peer: string;
  body: string;
}

let pki: TestPki;
let tlsFiles: { cert: string; key: string };
beforeAll(() => {
  pki = createTestPki();
  tlsFiles = { cert: readFileSync(pki.certFile, "utf8"), key: readFileSync(pki.keyFile, "utf8") };
});
afterAll(() => pki.close());

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A listener on 127.0.0.1:0 whose handler records each request and answers
 * `ok <httpVersion>`; a request to /hold waits until `release()`.
 */
async function start(
  over: Partial<GatewayListenerOptions> = {},
): Promise<{ listener: GatewayListener; seen: Seen[]; release: () => void; held: () => number }> {
  const seen: Seen[] = [];
  const waiting: Array<() => void> = [];
  const handler = (req: ServerRequest, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        httpVersion: req.httpVersion,
        method: req.method ?? "",
        url: req.url ?? "",
        peer: GatewayListener.peer(req),
        body: Buffer.concat(chunks).toString(),
      });
      const answer = (): void => {
        (res as http.ServerResponse).writeHead(200, { "content-type": "text/plain" });
        res.end(`ok ${req.httpVersion}`);
      };
      if (req.url === "/hold") waiting.push(answer);
      else answer();
    });
  };
  const listener = new GatewayListener({
    host: "127.0.0.1",
    port: 0,
    tls: null,
    handler,
    ...over,
  });
  await listener.listen();
  cleanups.push(() => {
    listener.close();
    listener.destroy();
  });
  return {
    listener,
    seen,
    release: () => {
      for (const w of waiting.splice(0)) w();
    },
    held: () => waiting.length,
  };
}

function h2connect(url: string, options: http2.SecureClientSessionOptions = {}) {
  const session = http2.connect(url, options);
  session.on("error", () => {});
  cleanups.push(() => {
    session.destroy();
  });
  return session;
}

/** One request on an HTTP/2 session: status and body. */
function h2request(
  session: http2.ClientHttp2Session,
  path: string,
  body?: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ":method": "POST", ":path": path });
    let status = 0;
    const chunks: Buffer[] = [];
    s.on("response", (h) => {
      status = Number(h[":status"]);
    });
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("end", () => resolve({ status, text: Buffer.concat(chunks).toString() }));
    s.on("error", reject);
    s.end(body);
  });
}

/** Request options for http or https, with the ALPN list that https passes on to tls.connect. */
type ClientOptions = https.RequestOptions & Pick<tls.ConnectionOptions, "ALPNProtocols">;

/** One HTTP/1.1 request (http or https): status, body and the client socket. */
function h1request(
  mod: typeof http | typeof https,
  options: ClientOptions,
  body?: string,
): Promise<{ status: number; text: string; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const req = mod.request({ method: "POST", ...options }, (res) => {
      // Taken now: a keep-alive socket is detached from the response once it ends.
      const socket = res.socket;
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          text: Buffer.concat(chunks).toString(),
          socket,
        }),
      );
    });
    req.on("error", reject);
    req.end(body);
  });
}

const closed = (s: net.Socket): Promise<void> =>
  new Promise((resolve) => {
    if (s.destroyed) resolve();
    else s.once("close", () => resolve());
  });

/** Resolves with the error code of a connection attempt that fails, or "connected". */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
  });
}

describe("GatewayListener: cleartext, one port", () => {
  it("answers prior-knowledge HTTP/2 (h2c)", async () => {
    const { listener, seen } = await start();
    const session = h2connect(`http://127.0.0.1:${listener.port}`);
    const r = await h2request(session, "/polymur.ingest.v1.IngestService/Stream", "hello");
    expect(r).toEqual({ status: 200, text: "ok 2.0" });
    expect(seen).toEqual([
      {
        httpVersion: "2.0",
        method: "POST",
        url: "/polymur.ingest.v1.IngestService/Stream",
        peer: "127.0.0.1",
        body: "hello",
      },
    ]);
    // Several streams on one connection.
    const rs = await Promise.all([h2request(session, "/a"), h2request(session, "/b")]);
    expect(rs.map((x) => x.status)).toEqual([200, 200]);
  });

  it("answers HTTP/1.1 on the same port, with the body intact", async () => {
    const { listener, seen } = await start();
    const r = await h1request(
      http,
      { host: "127.0.0.1", port: listener.port, path: "/ingest", agent: false },
      "x".repeat(100_000),
    );
    expect(r.status).toBe(200);
    expect(r.text).toBe("ok 1.1");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ httpVersion: "1.1", url: "/ingest", peer: "127.0.0.1" });
    expect(seen[0]?.body).toHaveLength(100_000);
  });

  it("tells HTTP/1.1 from h2 even when the first bytes look like the preface ('P' of POST)", async () => {
    const { listener, seen } = await start();
    const s = net.connect(listener.port, "127.0.0.1");
    s.setNoDelay(true);
    cleanups.push(() => {
      s.destroy();
    });
    await new Promise<void>((resolve) => s.once("connect", () => resolve()));
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    const request =
      "POST /split HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi";
    // Byte by byte: however the bytes arrive, the outcome is the same.
    for (const b of Buffer.from(request)) {
      await new Promise<void>((resolve) => s.write(Buffer.of(b), () => resolve()));
    }
    await closed(s);
    const reply = Buffer.concat(chunks).toString();
    expect(reply.startsWith("HTTP/1.1 200 OK\r\n")).toBe(true);
    expect(reply).toContain("ok 1.1");
    expect(seen).toEqual([
      { httpVersion: "1.1", method: "POST", url: "/split", peer: "127.0.0.1", body: "hi" },
    ]);
  });

  it("takes an h2 preface split over several writes", async () => {
    const { listener, seen } = await start();
    // A client connection whose first write is cut in three.
    const session = h2connect(`http://127.0.0.1:${listener.port}`, {
      createConnection: () => {
        const sock = net.connect(listener.port, "127.0.0.1");
        sock.setNoDelay(true);
        const write = sock.write.bind(sock) as (...a: unknown[]) => boolean;
        let first = true;
        sock.write = ((chunk: Buffer, ...rest: unknown[]) => {
          if (!first || !Buffer.isBuffer(chunk) || chunk.length < 20) return write(chunk, ...rest);
          first = false;
          write(chunk.subarray(0, 3));
          write(chunk.subarray(3, 20));
          return write(chunk.subarray(20), ...rest);
        }) as typeof sock.write;
        return sock;
      },
    });
    const r = await h2request(session, "/split-h2");
    expect(r).toEqual({ status: 200, text: "ok 2.0" });
    expect(seen[0]).toMatchObject({ httpVersion: "2.0", url: "/split-h2", peer: "127.0.0.1" });
  });

  it("advertises the receive window: 1 MiB by default, windowBytes when set", async () => {
    for (const [windowBytes, want] of [
      [undefined, 1024 * 1024],
      [256 * 1024, 256 * 1024],
    ] as const) {
      const { listener } = await start(windowBytes === undefined ? {} : { windowBytes });
      const session = h2connect(`http://127.0.0.1:${listener.port}`);
      const settings = await new Promise<http2.Settings>((resolve) =>
        session.once("remoteSettings", resolve),
      );
      expect(settings.initialWindowSize).toBe(want);
    }
  });

  it("rejects listen() when the port is taken", async () => {
    const { listener } = await start();
    const other = new GatewayListener({
      host: "127.0.0.1",
      port: listener.port,
      tls: null,
      handler: () => {},
    });
    await expect(other.listen()).rejects.toMatchObject({ code: "EADDRINUSE" });
  });
});

describe("GatewayListener: TLS, ALPN", () => {
  it("answers h2 over TLS", async () => {
    const { listener, seen } = await start({ tls: tlsFiles });
    const session = h2connect(`https://localhost:${listener.port}`, { ca: pki.ca });
    const r = await h2request(session, "/tls-h2", "b");
    expect(r).toEqual({ status: 200, text: "ok 2.0" });
    expect((session.socket as tls.TLSSocket).alpnProtocol).toBe("h2");
    expect(seen).toEqual([
      { httpVersion: "2.0", method: "POST", url: "/tls-h2", peer: "127.0.0.1", body: "b" },
    ]);
  });

  it("answers HTTP/1.1 over TLS when the client offers only http/1.1", async () => {
    const { listener, seen } = await start({ tls: tlsFiles });
    const r = await h1request(
      https,
      {
        host: "127.0.0.1",
        servername: "localhost",
        port: listener.port,
        path: "/tls-h1",
        ca: pki.ca,
        agent: false,
        ALPNProtocols: ["http/1.1"],
      },
      "body",
    );
    expect(r.status).toBe(200);
    expect(r.text).toBe("ok 1.1");
    expect((r.socket as tls.TLSSocket).alpnProtocol).toBe("http/1.1");
    expect(seen).toEqual([
      { httpVersion: "1.1", method: "POST", url: "/tls-h1", peer: "127.0.0.1", body: "body" },
    ]);
  });

  it("refuses a client that does not trust the certificate", async () => {
    const { listener, seen } = await start({ tls: tlsFiles });
    const session = h2connect(`https://localhost:${listener.port}`, {
      ca: readFileSync(pki.otherCaFile, "utf8"),
    });
    const err = await new Promise<NodeJS.ErrnoException>((resolve) =>
      session.once("error", resolve),
    );
    expect(err.code).toMatch(/CERT|SIGNATURE|ISSUER/);
    expect(seen).toEqual([]);
  });
});

describe("GatewayListener.peer", () => {
  it("falls back to the request's socket, then to 'unknown'", () => {
    const withSocket = { socket: { remoteAddress: "192.0.2.1" } } as unknown as ServerRequest;
    expect(GatewayListener.peer(withSocket)).toBe("192.0.2.1");
    const none = { socket: { remoteAddress: undefined } } as unknown as ServerRequest;
    expect(GatewayListener.peer(none)).toBe("unknown");
  });
});

/**
 * Starts a listener while spying on the server it creates, so that the test
 * sees the server side of every connection (the net.Server of cleartext
 * mode, the http2 secure server of TLS mode).
 */
async function startWatched(
  mode: "cleartext" | "tls",
): Promise<Awaited<ReturnType<typeof start>> & { raw: net.Socket[]; url: string }> {
  const spy =
    mode === "tls" ? vi.spyOn(http2, "createSecureServer") : vi.spyOn(net, "createServer");
  cleanups.push(() => spy.mockRestore());
  const started = await start(mode === "tls" ? { tls: tlsFiles } : {});
  const server = spy.mock.results[0]?.value as net.Server;
  const raw: net.Socket[] = [];
  server.on("connection", (s: net.Socket) => raw.push(s));
  const url =
    mode === "tls"
      ? `https://localhost:${started.listener.port}`
      : `http://127.0.0.1:${started.listener.port}`;
  return { ...started, raw, url };
}

describe("GatewayListener: close() and destroy()", () => {
  for (const mode of ["cleartext", "tls"] as const) {
    it(`${mode}: close() stops accepting, sends GOAWAY, lets a stream in progress finish`, async () => {
      const { listener, release, held, url } = await startWatched(mode);
      const session = h2connect(url, { ca: pki.ca });
      const goaway = new Promise<void>((resolve) => session.once("goaway", () => resolve()));
      const sessionClosed = new Promise<void>((resolve) => session.once("close", () => resolve()));
      const p = h2request(session, "/hold");
      await until(() => held() === 1);
      listener.close();
      await goaway;
      expect(await tryConnect(listener.port)).toBe("ECONNREFUSED");
      release();
      expect(await p).toEqual({ status: 200, text: "ok 2.0" });
      // Once its last stream is done, the session goes away.
      await sessionClosed;
    });

    it(`${mode}: destroy() cuts h2 and HTTP/1.1 requests in progress`, async () => {
      const { listener, held, url, raw } = await startWatched(mode);
      const session = h2connect(url, { ca: pki.ca });
      // A stream cut by the server ends without a response (status 0) or with an error.
      const h2 = h2request(session, "/hold").then(
        (r) => (r.status === 0 ? "reset" : "answered"),
        () => "reset",
      );
      let h1socket: net.Socket | null = null;
      const h1 = new Promise<string>((resolve) => {
        const options: ClientOptions = {
          method: "POST",
          host: "127.0.0.1",
          servername: "localhost",
          port: listener.port,
          path: "/hold",
          ca: pki.ca,
          agent: false,
          ALPNProtocols: ["http/1.1"],
        };
        const req = (mode === "tls" ? https : http).request(options, () => resolve("answered"));
        req.on("socket", (s) => {
          h1socket = s;
        });
        req.on("error", () => resolve("reset"));
        req.end();
      });
      await until(() => held() === 2);
      expect(raw).toHaveLength(2);
      listener.close();
      listener.destroy();
      expect(await h2).toBe("reset");
      expect(await h1).toBe("reset");
      await new Promise<void>((resolve) => {
        if (session.destroyed) resolve();
        else session.once("close", () => resolve());
      });
      await closed(h1socket!);
      await until(() => raw.every((s) => s.destroyed));
      expect(await tryConnect(listener.port)).toBe("ECONNREFUSED");
    });
  }

  // In cleartext mode the http.Server that takes HTTP/1.1 connections never
  // listens (the sniffer emits connections into it), and Node tracks
  // connections only from an http.Server's 'listening' event: the listener
  // emits it, or close() would leave an idle keep-alive connection open.
  it("cleartext: close() closes idle HTTP/1.1 keep-alive connections", async () => {
    await idleKeepAliveClosed("cleartext");
  });
  it("tls: close() closes idle HTTP/1.1 keep-alive connections", async () => {
    await idleKeepAliveClosed("tls");
  });

  it("cleartext: destroy() closes a connection that has sent nothing yet", async () => {
    await silentDestroyed("cleartext");
  });
  // In TLS mode a connection is tracked from its TCP connection, not once its
  // handshake is done: destroy() also closes one still in (or never
  // starting) its handshake, which would otherwise wait for Node's 120 s
  // TLS handshakeTimeout.
  it("tls: destroy() closes a connection that has sent nothing yet", async () => {
    await silentDestroyed("tls");
  });
});

/** An HTTP/1.1 keep-alive connection, idle after one request: close() must close it. */
async function idleKeepAliveClosed(mode: "cleartext" | "tls"): Promise<void> {
  const { listener, raw } = await startWatched(mode);
  const agent =
    mode === "tls"
      ? new https.Agent({ keepAlive: true, ca: pki.ca, ALPNProtocols: ["http/1.1"] })
      : new http.Agent({ keepAlive: true });
  cleanups.push(() => agent.destroy());
  const r = await h1request(mode === "tls" ? https : http, {
    host: "127.0.0.1",
    servername: "localhost",
    port: listener.port,
    path: "/idle",
    agent,
  });
  expect(r.status).toBe(200);
  // The response is read; the connection stays open (keep-alive) until close().
  await until(() => Object.keys(agent.freeSockets).length === 1);
  expect(raw).toHaveLength(1);
  expect(raw[0]?.destroyed).toBe(false);
  listener.close();
  // Closing an idle connection is synchronous on the server side.
  expect(raw[0]?.destroyed).toBe(true);
  await closed(r.socket);
}

/** A connection that never sends a byte (cleartext: being sniffed; TLS: in its handshake). */
async function silentDestroyed(mode: "cleartext" | "tls"): Promise<void> {
  const { listener, raw } = await startWatched(mode);
  const silent = net.connect(listener.port, "127.0.0.1");
  silent.on("error", () => {});
  silent.resume(); // reads, so that the server's FIN is seen
  cleanups.push(() => {
    silent.destroy();
  });
  await until(() => raw.length === 1);
  listener.close();
  listener.destroy();
  // destroy() destroys what it tracks synchronously.
  expect(raw[0]?.destroyed).toBe(true);
  await closed(silent);
}

describe("GatewayListener: bounds on connections", () => {
  for (const mode of ["cleartext", "tls"] as const) {
    it(`${mode}: tells HTTP/2 clients they may open at most ${MAX_CONCURRENT_STREAMS} streams at once`, async () => {
      const { listener } = await start(mode === "tls" ? { tls: tlsFiles } : {});
      const url =
        mode === "tls" ? `https://localhost:${listener.port}` : `http://127.0.0.1:${listener.port}`;
      const session = h2connect(url, { ca: pki.ca });
      const settings = await new Promise<http2.Settings>((resolve) =>
        session.once("remoteSettings", resolve),
      );
      expect(settings.maxConcurrentStreams).toBe(MAX_CONCURRENT_STREAMS);
    });
  }

  it("cleartext: closes a connection that sends nothing for the sniff timeout", async () => {
    const { listener } = await start({ sniffTimeoutMs: 200 });
    const silent = net.connect(listener.port, "127.0.0.1");
    silent.on("error", () => {});
    silent.resume();
    cleanups.push(() => {
      silent.destroy();
    });
    await new Promise((resolve) => silent.once("close", resolve));
    expect(silent.destroyed).toBe(true);
  });
});
