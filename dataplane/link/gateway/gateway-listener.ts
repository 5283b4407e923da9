import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";
import type { connectNodeAdapter } from "@connectrpc/connect-node";
import { drainWhenAnswered } from "../../../common/drain-when-answered.ts";
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
}

/** The magic that opens every HTTP/2 connection (RFC 9113 §3.4). */
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** How long a new cleartext connection may take to send its first bytes (sniffTimeoutMs). */
const SNIFF_TIMEOUT_MS = 10_000;

/** Every connection's peer, including connections wrapped for cleartext HTTP/2. */
const peers = new WeakMap<object, string>();

/**
 * The gateway's one listener, serving gRPC/Connect over HTTP/2 (proxy
 * streams) and HTTP/1.1 (the Go polymur-proxy) on the same port:
 *
 * - TLS: `http2.createSecureServer({ allowHTTP1: true })`; ALPN picks h2 or
 *   http/1.1.
 * - Cleartext (TLS terminated by a load balancer in front): Node's cleartext
 *   http2 server only speaks prior-knowledge h2 (`allowHTTP1` is TLS-only),
 *   so the first bytes of each connection are read here: the HTTP/2 preface
 *   goes to an http2 server, anything else to an http/1.1 server. The bytes
 *   read cannot be pushed back for http2 (nghttp2 reads the socket handle
 *   directly, so `socket.unshift()` is lost: verified, GOAWAY PROTOCOL_ERROR),
 *   so an h2c connection is handed over as a Duplex that replays them; an
 *   HTTP/1.1 one gets them back through `unshift`, which its parser does read.
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
      // Node tracks an http.Server's connections (closeIdleConnections, and
      // the headersTimeout / requestTimeout checks on slow senders) from its
      // 'listening' event. This one never listens: the sniffer hands it its
      // connections. So it is told it does.
      h1.emit("listening");
      this.#h1 = h1;
      server = net.createServer({ noDelay: true }, (socket) => this.#sniff(socket, h2, h1));
    }
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: o.host, port: o.port, backlog: 1024 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.port = (server.address() as net.AddressInfo).port;
    return this.port;
  }

  #track(s: net.Socket): void {
    this.#sockets.add(s);
    s.once("close", () => this.#sockets.delete(s));
  }

  #sniff(socket: net.Socket, h2: http2.Http2Server, h1: http.Server): void {
    this.#track(socket);
    socket.on("error", () => {});
    // A connection that never says anything must not hold a socket forever.
    socket.setTimeout(this.#o.sniffTimeoutMs ?? SNIFF_TIMEOUT_MS, () => socket.destroy());
    let head: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, PREFACE.length);
      const isH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && head.length < PREFACE.length) return; // wait for the whole preface
      socket.off("data", onData);
      socket.setTimeout(0);
      socket.pause();
      if (!isH2) {
        socket.unshift(head);
        h1.emit("connection", socket);
        socket.resume();
        return;
      }
      const duplex = replayDuplex(socket, head);
      // 'session' fires synchronously inside emit('connection'): name its peer now.
      const addr = socket.remoteAddress ?? "unknown";
      const onSession = (session: http2.ServerHttp2Session): void => {
        peers.set(session, addr);
      };
      h2.once("session", onSession);
      h2.emit("connection", duplex);
      h2.off("session", onSession);
    };
    socket.on("data", onData);
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

/** A Duplex over `socket` whose readable side starts with `head`. */
function replayDuplex(socket: net.Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(head);
  socket.on("data", (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on("end", () => d.push(null));
  socket.on("close", () => d.destroy());
  socket.setNoDelay(true);
  return d;
}
