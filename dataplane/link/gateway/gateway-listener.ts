import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import { drainWhenAnswered } from "../../../common/drain-when-answered.ts";
import { createSniffingServer } from "../../../common/h2c-sniff.ts";
import { MAX_CONCURRENT_STREAMS } from "../../../common/http2-limits.ts";

/** A request handler for both http and http2 (what connectNodeAdapter returns). */
export type RequestHandler = ReturnType<typeof connectNodeAdapter>;
export type ServerRequest = Parameters<RequestHandler>[0];
export type ServerResponse = Parameters<RequestHandler>[1];

export interface GatewayListenerOptions {
  host: string;
  port: number;
  /** PEM certificate chain and key: HTTPS (ALPN h2, and HTTP/1.1). Null: cleartext. */
  tls: { cert: string; key: string } | null;
  handler: RequestHandler;
  /** Per-stream and per-connection HTTP/2 receive window. Default 1 MiB. */
  windowBytes?: number;
  /** How long a new cleartext connection may take to send its first bytes. Default 10 s. */
  sniffTimeoutMs?: number;
  /** Listen with SO_REUSEPORT, so that several gateway processes share the port. Default false. */
  reusePort?: boolean;
}

/** Every connection's peer, including connections wrapped for cleartext HTTP/2. */
const peers = new WeakMap<object, string>();

/**
 * The gateway's one listener, serving gRPC/Connect over HTTP/2 (proxy
 * streams) and HTTP/1.1 (the Go polymur-proxy) on the same port:
 *
 * - TLS: `http2.createSecureServer({ allowHTTP1: true })`; ALPN picks h2 or
 *   http/1.1.
 * - Cleartext (TLS terminated by a load balancer in front): the first bytes
 *   of each connection say which (createSniffingServer, common/h2c-sniff.ts).
 */
export class GatewayListener {
  readonly #o: GatewayListenerOptions;
  #server: net.Server | null = null;
  #h1: http.Server | null = null;
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #sockets = new Set<net.Socket>();
  port = 0;

  constructor(options: GatewayListenerOptions) {
    this.#o = options;
  }

  /** The peer address of the connection a request came on. */
  static peer(req: ServerRequest): string {
    const fromStream = "stream" in req ? peers.get(req.stream.session as object) : undefined;
    return fromStream ?? req.socket?.remoteAddress ?? "unknown";
  }

  async listen(): Promise<number> {
    const o = this.#o;
    const window = o.windowBytes ?? 1024 * 1024;
    const settings: http2.Settings = {
      initialWindowSize: window,
      maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
    };
    const onSession = (session: http2.ServerHttp2Session): void => {
      this.#sessions.add(session);
      session.once("close", () => this.#sessions.delete(session));
      // The connection-level window starts at 64 KiB whatever SETTINGS say.
      session.once("localSettings", () => {
        try {
          session.setLocalWindowSize(window);
        } catch {}
      });
      const sock = session.socket as net.Socket | undefined;
      if (!peers.has(session) && sock?.remoteAddress !== undefined) {
        peers.set(session, sock.remoteAddress);
      }
    };
    // A caller refused early (an unknown key, a message over the read limit)
    // may still be sending: see drainWhenAnswered.
    const serve = answerUnservable(o.handler);
    const handler: RequestHandler = (req, res) => {
      drainWhenAnswered(req);
      serve(req, res);
    };
    let server: net.Server;
    if (o.tls !== null) {
      const h2 = http2.createSecureServer(
        { cert: o.tls.cert, key: o.tls.key, allowHTTP1: true, settings },
        handler,
      );
      h2.on("session", onSession);
      // Tracked from the TCP connection, not the end of the TLS handshake:
      // destroy() must also close one still in (or never starting) its handshake.
      h2.on("connection", (s: net.Socket) => this.#track(s));
      server = h2;
    } else {
      const h2 = http2.createServer({ settings }, handler);
      h2.on("session", onSession);
      const h1 = http.createServer(handler);
      h1.keepAliveTimeout = 30_000;
      this.#h1 = h1;
      server = createSniffingServer({
        h2,
        h1,
        ...(o.sniffTimeoutMs === undefined ? {} : { sniffTimeoutMs: o.sniffTimeoutMs }),
        onConnection: (socket) => this.#track(socket),
        onH2Session: (session, peer) => peers.set(session, peer),
      });
    }
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(
        { host: o.host, port: o.port, backlog: 1024, reusePort: o.reusePort ?? false },
        () => {
          server.off("error", reject);
          resolve();
        },
      );
    });
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  #track(s: net.Socket): void {
    this.#sockets.add(s);
    s.once("close", () => this.#sockets.delete(s));
  }

  /**
   * Stops accepting connections; asks HTTP/2 clients to go away (GOAWAY, the
   * streams in progress may finish) and closes idle HTTP/1.1 connections.
   */
  close(): void {
    this.#server?.close();
    for (const s of this.#sessions) s.close();
    // Closes idle HTTP/1.1 connections, and stops the timeout checks.
    this.#h1?.close();
  }

  /** Destroys whatever is still connected. */
  destroy(): void {
    for (const s of this.#sessions) s.destroy();
    this.#h1?.closeAllConnections();
    for (const s of this.#sockets) s.destroy();
  }
}

/**
 * Answers 400 to a request the handler throws on instead of serving: thrown
 * from a request listener, the error would end the process. connect-node
 * throws on a request with no authority (an HTTP/1.0 request without Host),
 * which it cannot make a URL of: one such request, with no API key, stopped
 * the gateway.
 */
export function answerUnservable(handler: RequestHandler): RequestHandler {
  return (req, res) => {
    try {
      handler(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(400);
      res.end();
    }
  };
}
