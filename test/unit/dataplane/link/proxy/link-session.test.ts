import { readFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  LINK_SESSION_DEFAULTS,
  LinkSession,
  type LinkSessionOptions,
} from "../../../../../dataplane/link/proxy/link-session.ts";
import { freePort } from "../../../../fixtures/line-sink.ts";
import { closeServer, listenLocal } from "../../../../fixtures/local-server.ts";
import { TcpProxy } from "../../../../fixtures/tcp-proxy.ts";
import { createTestPki, type TestPki } from "../../../../fixtures/tls.ts";
import { until } from "../../../../fixtures/until.ts";

let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.close());

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An HTTP/2 server on 127.0.0.1:0: "/ok" answers "ok", "/hold" answers headers and then nothing. */
interface TestServer {
  port: number;
  sessions: http2.ServerHttp2Session[];
  pings: number;
  paths: string[];
}

async function server(tls = false): Promise<TestServer> {
  const t: TestServer = { port: 0, sessions: [], pings: 0, paths: [] };
  const s = tls
    ? http2.createSecureServer({
        cert: readFileSync(pki.certFile, "utf8"),
        key: readFileSync(pki.keyFile, "utf8"),
      })
    : http2.createServer();
  s.on("session", (session) => {
    t.sessions.push(session);
    session.on("error", () => {});
    session.on("ping", () => {
      t.pings++;
    });
  });
  s.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    t.paths.push(String(headers[":path"]));
    stream.respond({ ":status": 200 });
    if (headers[":path"] === "/ok") stream.end("ok");
    else stream.write("held");
  });
  t.port = await listenLocal(s);
  cleanups.push(async () => {
    for (const x of t.sessions) x.destroy();
    await closeServer(s);
  });
  return t;
}

function session(url: string, over: Partial<LinkSessionOptions> = {}): LinkSession {
  const ls = new LinkSession(url, { pingIntervalMs: 60_000, pingTimeoutMs: 60_000, ...over });
  cleanups.push(() => ls.destroy());
  return ls;
}

/** Reads a stream to its end: the response status, its body, or the error that ended it. */
function read(
  stream: http2.ClientHttp2Stream,
): Promise<{ status: number; text: string; error: Error | null }> {
  return new Promise((resolve) => {
    let status = 0;
    let error: Error | null = null;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", (e: Error) => {
      error = e;
    });
    stream.on("close", () => resolve({ status, text: Buffer.concat(chunks).toString(), error }));
  });
}

/** A TCP listener that accepts connections and never says anything (TCP connects, TLS never does). */
async function muteServer(): Promise<{ port: number; sockets: Set<net.Socket> }> {
  const sockets = new Set<net.Socket>();
  const mute = net.createServer((s) => {
    sockets.add(s);
    s.on("error", () => {});
    s.resume(); // reads, so that the client's FIN is seen and the socket closes
  });
  const port = await listenLocal(mute);
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    await closeServer(mute);
  });
  return { port, sockets };
}

/** Resolves once `stream` has received its first data. */
function firstData(stream: http2.ClientHttp2Stream): Promise<void> {
  return new Promise((resolve) => stream.once("data", () => resolve()));
}

describe("LinkSession", () => {
  it("connects to an HTTP/2 server and runs requests on one connection", async () => {
    const srv = await server();
    const ls = session(`http://127.0.0.1:${srv.port}/some/base/path`);
    expect(ls.authority).toBe(`http://127.0.0.1:${srv.port}`);
    const a = await ls.request("POST", "/ok", {}, {});
    const ra = read(a);
    const b = await ls.request("POST", "/ok", {}, {});
    const rb = read(b);
    a.end();
    b.end();
    expect(await ra).toEqual({ status: 200, text: "ok", error: null });
    expect(await rb).toEqual({ status: 200, text: "ok", error: null });
    expect(srv.sessions).toHaveLength(1);
    expect(srv.paths).toEqual(["/ok", "/ok"]);
  });

  it("advertises its receive window (1 MiB by default) and no server push", async () => {
    for (const [windowBytes, want] of [
      [undefined, LINK_SESSION_DEFAULTS.windowBytes],
      [128 * 1024, 128 * 1024],
    ] as const) {
      const srv = await server();
      const ls = session(
        `http://127.0.0.1:${srv.port}`,
        windowBytes === undefined ? {} : { windowBytes },
      );
      const s = await ls.request("POST", "/ok", {}, {});
      s.end();
      await read(s);
      const remote = srv.sessions[0]!.remoteSettings;
      expect(remote.initialWindowSize).toBe(want);
      expect(remote.enablePush).toBe(false);
    }
    expect(LINK_SESSION_DEFAULTS.windowBytes).toBe(1024 * 1024);
  });

  it("speaks TLS with the given CA", async () => {
    const srv = await server(true);
    const ls = session(`https://localhost:${srv.port}`, { ca: pki.ca });
    const s = await ls.request("POST", "/ok", {}, {});
    s.end();
    expect(await read(s)).toEqual({ status: 200, text: "ok", error: null });
  });

  it("fails the stream, not the process, when the certificate is not trusted", async () => {
    const srv = await server(true);
    const ls = session(`https://localhost:${srv.port}`, {
      ca: readFileSync(pki.otherCaFile, "utf8"),
    });
    const s = await ls.request("POST", "/ok", {}, {});
    s.end();
    const r = await read(s);
    expect(r.status).toBe(0);
    expect(r.error).not.toBeNull();
  });

  it("fails the stream, not the process, when the connection is refused", async () => {
    const port = await freePort();
    const ls = session(`http://127.0.0.1:${port}`);
    const s = await ls.request("POST", "/ok", {}, {});
    // The session's 'error' is handled for its whole life (see LinkSession).
    expect(s.session?.listenerCount("error")).toBeGreaterThan(0);
    s.end();
    const r = await read(s);
    expect(r.status).toBe(0);
    // A stream that never started is cancelled, with the session's error as its cause.
    expect((r.error as NodeJS.ErrnoException | null)?.code).toBe("ERR_HTTP2_STREAM_CANCEL");
    expect(((r.error as Error).cause as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  it("rejects request() with Unavailable when a session cannot even be created", async () => {
    const ls = session("ftp://127.0.0.1:1");
    const err = await ls.request("POST", "/ok", {}, {}).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unavailable);
  });

  it("times out a connection that does not finish connecting (TLS handshake never answered)", async () => {
    const { port } = await muteServer();
    const ls = session(`https://localhost:${port}`, { ca: pki.ca, connectTimeoutMs: 50 });
    const s = await ls.request("POST", "/ok", {}, {});
    const h2session = s.session!;
    s.end();
    const r = await read(s);
    // The stream never started: it is cancelled, with the session's error as its cause.
    expect((r.error as NodeJS.ErrnoException | null)?.code).toBe("ERR_HTTP2_STREAM_CANCEL");
    const cause = (r.error as Error).cause;
    expect(cause).toBeInstanceOf(ConnectError);
    expect((cause as ConnectError).code).toBe(Code.Unavailable);
    expect((cause as ConnectError).rawMessage).toBe("connect timed out");
    expect(h2session.destroyed).toBe(true);
  });

  it("closes the TCP connection of an attempt that timed out connecting", async () => {
    const { port, sockets } = await muteServer();
    const ls = session(`https://localhost:${port}`, { ca: pki.ca, connectTimeoutMs: 50 });
    const s = await ls.request("POST", "/ok", {}, {});
    s.end();
    await read(s);
    // The server sees the connection go away.
    await until(() => sockets.size === 1 && [...sockets].every((x) => x.destroyed));
  });

  it("destroy() while still connecting closes the session and its TCP connection", async () => {
    const { port, sockets } = await muteServer();
    const ls = session(`https://localhost:${port}`, { ca: pki.ca, connectTimeoutMs: 60_000 });
    const s = await ls.request("POST", "/ok", {}, {});
    const done = read(s);
    const h2session = s.session!;
    const sessionClosed = new Promise<void>((resolve) => h2session.once("close", () => resolve()));
    await until(() => sockets.size === 1);
    ls.destroy();
    const r = await done;
    expect((r.error as NodeJS.ErrnoException | null)?.code).toBe("ERR_HTTP2_STREAM_CANCEL");
    await sessionClosed;
    expect(h2session.destroyed).toBe(true);
    await until(() => [...sockets].every((x) => x.destroyed));
  });

  it("keeps a healthy idle connection up across PINGs", async () => {
    const srv = await server();
    const ls = session(`http://127.0.0.1:${srv.port}`, {
      pingIntervalMs: 20,
      pingTimeoutMs: 5_000,
    });
    const s = await ls.request("POST", "/hold", {}, {});
    await firstData(s);
    await until(() => srv.pings >= 3);
    expect(s.destroyed).toBe(false);
    expect(s.session?.destroyed).toBe(false);
    expect(srv.sessions).toHaveLength(1);
  });

  it("kills a black-holed connection with an unanswered PING, then connects afresh", async () => {
    const srv = await server();
    const proxy = await TcpProxy.start(srv.port);
    cleanups.push(() => proxy.close());
    const ls = session(`http://127.0.0.1:${proxy.port}`, { pingIntervalMs: 20, pingTimeoutMs: 50 });
    const s = await ls.request("POST", "/hold", {}, {});
    const done = read(s);
    await firstData(s);
    const h2session = s.session!;
    proxy.blackhole();
    const r = await done;
    expect(r.error).toBeInstanceOf(ConnectError);
    expect((r.error as ConnectError).rawMessage).toBe("PING timed out");
    expect((r.error as ConnectError).code).toBe(Code.Unavailable);
    expect(h2session.destroyed).toBe(true);
    // The session's 'error' listener was there when it was destroyed with an error.
    expect(h2session.listenerCount("error")).toBeGreaterThan(0);
    // The next request opens a fresh TCP connection.
    proxy.restore();
    const again = await ls.request("POST", "/ok", {}, {});
    const ragain = read(again);
    again.end();
    expect(await ragain).toEqual({ status: 200, text: "ok", error: null });
    expect(proxy.connections).toBe(2);
  });

  it("destroy() after an attempt closes the connection; the next request opens a new one", async () => {
    const srv = await server();
    const ls = session(`http://127.0.0.1:${srv.port}`, { pingIntervalMs: 20, pingTimeoutMs: 50 });
    const s = await ls.request("POST", "/hold", {}, {});
    const closed = read(s);
    await firstData(s);
    const h2session = s.session!;
    ls.destroy();
    const r = await closed;
    expect(r.text).toBe("held");
    expect(h2session.destroyed).toBe(true);
    await until(() => srv.sessions[0]!.destroyed);
    // Destroying again, or with a reason, is harmless.
    ls.destroy(new Error("again"));
    const next = await ls.request("POST", "/ok", {}, {});
    const rnext = read(next);
    next.end();
    expect(await rnext).toEqual({ status: 200, text: "ok", error: null });
    expect(srv.sessions).toHaveLength(2);
    expect(srv.sessions[1]!.destroyed).toBe(false);
  });

  it("notifyResponseByteRead() can be called at any time", () => {
    const ls = session("http://127.0.0.1:1");
    expect(() => ls.notifyResponseByteRead()).not.toThrow();
  });
});
