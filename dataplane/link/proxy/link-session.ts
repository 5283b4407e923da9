import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { CLIENT_SESSION_MEMORY_MB } from "../../../common/http2-limits.ts";

/** Every LinkSessionOptions default, in one place: the session falls back to these. */
export const LINK_SESSION_DEFAULTS = {
  connectTimeoutMs: 10_000,
  windowBytes: 1024 * 1024,
} as const satisfies Partial<LinkSessionOptions>;

export interface LinkSessionOptions {
  /** PEM CA certificate(s) for https. Default: the system's CAs. */
  ca?: string;
  /** PING when nothing was read for this long. Equivalent to GRPC_ARG_KEEPALIVE_TIME_MS. */
  pingIntervalMs: number;
  /** An unanswered PING kills the connection after this long (GRPC_ARG_KEEPALIVE_TIMEOUT_MS). */
  pingTimeoutMs: number;
  /** Connecting (TCP + TLS + SETTINGS) may take this long. Default 10 s. */
  connectTimeoutMs?: number;
  /** HTTP/2 receive window (per stream and connection). Default 1 MiB. */
  windowBytes?: number;
}

/**
 * The HTTP/2 connection under one proxy stream, given to connect-node as its
 * session manager (NodeHttp2ClientSessionManager). One connection per stream
 * attempt: a reconnect always opens a fresh TCP connection (so a load
 * balancer can send it to another gateway), and destroy() after the attempt
 * leaves nothing half-open behind.
 *
 * Why not connect-node's Http2SessionManager: its keepalive destroys the
 * session on a PING timeout after it has removed its own 'error' listener, so
 * the session's 'error' event is unhandled and the process dies (seen here on
 * a black-holed path; related: connectrpc/connect-es#1795, #1143). The proxy
 * exists to survive exactly that, so this keeps an 'error' listener for the
 * session's whole life and guards every ping.
 */
export class LinkSession {
  readonly authority: string;
  readonly #o: LinkSessionOptions;
  #session: http2.ClientHttp2Session | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #pongTimer: NodeJS.Timeout | null = null;
  #connectTimer: NodeJS.Timeout | null = null;
  #lastRead = 0;
  #sessionError: Error | null = null;

  constructor(url: string, options: LinkSessionOptions) {
    this.authority = new URL(url).origin;
    this.#o = options;
  }

  request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, "signal">,
  ): Promise<http2.ClientHttp2Stream> {
    try {
      const s = this.#connect();
      const stream = s.request({ ...headers, ":method": method, ":path": path }, options);
      return Promise.resolve(stream);
    } catch (err) {
      return Promise.reject(ConnectError.from(err, Code.Unavailable));
    }
  }

  /**
   * The last error of the HTTP/2 session itself (TLS, socket), which the
   * failed stream may report only as "The pending stream has been canceled".
   */
  get sessionError(): Error | null {
    return this.#sessionError;
  }

  notifyResponseByteRead(): void {
    this.#lastRead = Date.now();
  }

  /** Closes the connection (and any stream on it) at once. */
  destroy(reason?: Error): void {
    this.#stopTimers();
    const s = this.#session;
    this.#session = null;
    if (s !== null && !s.destroyed) s.destroy(reason, http2.constants.NGHTTP2_CANCEL);
  }

  #connect(): http2.ClientHttp2Session {
    const cur = this.#session;
    if (cur !== null && !cur.closed && !cur.destroyed) return cur;
    const window = this.#o.windowBytes ?? LINK_SESSION_DEFAULTS.windowBytes;
    const s = http2.connect(this.authority, {
      ...(this.#o.ca === undefined ? {} : { ca: this.#o.ca }),
      settings: { initialWindowSize: window, enablePush: false },
      maxSessionMemory: CLIENT_SESSION_MEMORY_MB,
    });
    this.#session = s;
    // For the session's whole life: errors reach the stream through
    // connect-node; an unhandled one would kill the process.
    s.on("error", (err: Error) => {
      this.#sessionError = err;
    });
    s.on("close", () => {
      if (this.#session === s) {
        this.#stopTimers();
        this.#session = null;
      }
    });
    this.#connectTimer = setTimeout(() => {
      if (!s.connecting) return;
      s.destroy(new ConnectError("connect timed out", Code.Unavailable));
    }, this.#o.connectTimeoutMs ?? LINK_SESSION_DEFAULTS.connectTimeoutMs);
    s.once("connect", () => {
      if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
      this.#connectTimer = null;
      try {
        s.setLocalWindowSize(window);
      } catch {}
      this.#lastRead = Date.now();
      this.#schedulePing(s);
    });
    return s;
  }

  #schedulePing(s: http2.ClientHttp2Session): void {
    const interval = this.#o.pingIntervalMs;
    const wait = Math.max(10, this.#lastRead + interval - Date.now());
    this.#pingTimer = setTimeout(() => {
      this.#pingTimer = null;
      if (s !== this.#session || s.destroyed || s.closed) return;
      if (Date.now() - this.#lastRead < interval) {
        this.#schedulePing(s); // data arrived meanwhile: the path is alive
        return;
      }
      this.#pongTimer = setTimeout(() => {
        s.destroy(new ConnectError("PING timed out", Code.Unavailable));
      }, this.#o.pingTimeoutMs);
      try {
        s.ping((err) => {
          if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
          this.#pongTimer = null;
          if (err !== null || s.destroyed) return;
          this.#lastRead = Date.now();
          this.#schedulePing(s);
        });
      } catch {
        // Destroyed between the check and the ping: its close handler cleans up.
      }
    }, wait);
  }

  #stopTimers(): void {
    for (const t of [this.#pingTimer, this.#pongTimer, this.#connectTimer]) {
      if (t !== null) clearTimeout(t);
    }
    this.#pingTimer = null;
    this.#pongTimer = null;
    this.#connectTimer = null;
  }
}
