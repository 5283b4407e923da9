import type http from "node:http";
import type http2 from "node:http2";
import net from "node:net";
import { Duplex } from "node:stream";

/** The magic that opens every HTTP/2 connection (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** How long a new cleartext connection may take to send its first bytes, by default. */
export const SNIFF_TIMEOUT_MS = 10_000;

export interface SniffingServerOptions {
  /** Serves connections that open with the HTTP/2 preface (h2c with prior knowledge). */
  h2: http2.Http2Server;
  /** Serves every other connection (HTTP/1.1, HTTP/1.0). */
  h1: http.Server;
  /** How long a new connection may take to send its first bytes. Default SNIFF_TIMEOUT_MS. */
  sniffTimeoutMs?: number;
  /** Every TCP connection as it is accepted, before its first byte is read (for tracking). */
  onConnection?: (socket: net.Socket) => void;
  /** An HTTP/2 session made from a connection, with the address that connection came from. */
  onH2Session?: (session: http2.ServerHttp2Session, peer: string) => void;
}

/**
 * One cleartext port that answers both prior-knowledge HTTP/2 (h2c: gRPC and
 * Connect clients) and HTTP/1.1 (browsers, curl, the Go polymur-proxy).
 * Node's cleartext http2 server only speaks prior-knowledge h2 (`allowHTTP1`
 * is TLS-only), so the first bytes of each connection are read here: the
 * HTTP/2 preface goes to `h2`, anything else to `h1`. The bytes read cannot be
 * pushed back for http2 (nghttp2 reads the socket handle directly, so
 * `socket.unshift()` is lost: verified, GOAWAY PROTOCOL_ERROR), so an h2c
 * connection is handed over as a Duplex that replays them; an HTTP/1.1 one
 * gets them back through `unshift`, which its parser does read. Neither `h2`
 * nor `h1` listens itself: the returned server (not yet listening) hands them
 * their connections.
 */
export function createSniffingServer(o: SniffingServerOptions): net.Server {
  // Node tracks an http.Server's connections (closeIdleConnections, and the
  // headersTimeout / requestTimeout checks on slow senders) from its
  // 'listening' event. This one never listens: the sniffer hands it its
  // connections. So it is told it does.
  o.h1.emit("listening");
  return net.createServer({ noDelay: true }, (socket) => {
    o.onConnection?.(socket);
    sniffConnection(socket, o);
  });
}

/** Reads a new connection's first bytes and hands it to `o.h2` or `o.h1` (createSniffingServer). */
export function sniffConnection(socket: net.Socket, o: SniffingServerOptions): void {
  socket.on("error", () => {});
  // A connection that never says anything must not hold a socket forever.
  socket.setTimeout(o.sniffTimeoutMs ?? SNIFF_TIMEOUT_MS, () => socket.destroy());
  let head: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const n = Math.min(head.length, HTTP2_PREFACE.length);
    const isH2 = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
    if (isH2 && head.length < HTTP2_PREFACE.length) return; // wait for the whole preface
    socket.off("data", onData);
    socket.setTimeout(0);
    socket.pause();
    if (!isH2) {
      socket.unshift(head);
      o.h1.emit("connection", socket);
      socket.resume();
      return;
    }
    const duplex = replayDuplex(socket, head);
    // 'session' fires synchronously inside emit('connection'): name its peer now.
    const peer = socket.remoteAddress ?? "unknown";
    const onSession = (session: http2.ServerHttp2Session): void => o.onH2Session?.(session, peer);
    o.h2.once("session", onSession);
    o.h2.emit("connection", duplex);
    o.h2.off("session", onSession);
  };
  socket.on("data", onData);
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
