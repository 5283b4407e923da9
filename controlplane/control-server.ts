import http2 from "node:http2";
import type { Socket } from "node:net";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { HealthRegistry } from "../common/health-registry.ts";
import { MAX_CONCURRENT_STREAMS } from "../common/http2-limits.ts";
import type { Logger } from "../common/logger.ts";
import { ControlService, NodeService } from "../gen/polymur/control/v1/control_pb.ts";
import {
  type AuthDenial,
  CredentialCheck,
  type CredentialKind,
  type Credentials,
  createAuthInterceptor,
} from "./auth.ts";
import { createControlHandler } from "./control-handler.ts";
import { createControlService } from "./control-service.ts";
import type { ControlStore } from "./control-store.ts";
import { withSpecGrpcMessage } from "./grpc-message.ts";
import { createNodeService } from "./node-service.ts";

export interface ControlRoutesOptions {
  store: ControlStore;
  credentials: Credentials | CredentialCheck;
  health: HealthRegistry;
  /** This replica's id (for node statuses). */
  replica: string;
  log?: Logger;
  /** Subscription heartbeat into the store. Default 5000 ms. */
  heartbeatMs?: number;
  now?: () => number;
}

/** The credential each service needs; health is open. */
export const REQUIRED_CREDENTIAL: ReadonlyMap<string, CredentialKind> = new Map([
  [ControlService.typeName, "admin"],
  [NodeService.typeName, "node"],
]);

/**
 * The largest request message the control plane reads, in bytes (Connect's
 * `readMaxBytes`; past it a call is answered RESOURCE_EXHAUSTED, without
 * reading the message when its length is declared). Its largest legitimate
 * request is a node's ReportStatus, one DestinationStatus (spec, state and
 * five counters: 300 bytes at most) per destination: 4 MiB is well over ten
 * thousand destinations. Snapshots are written, not read. Health checks have
 * their own, smaller limit (HEALTH_READ_MAX_BYTES).
 */
export const CONTROL_READ_MAX_BYTES = 4 * 1024 * 1024;

/** Logs each refused call (never its credential). */
function deniedLogger(log: Logger): (d: AuthDenial) => void {
  return (d) => log.warn({ service: d.service, method: d.method, code: Code[d.code] }, d.reason);
}

/** Health (open), ControlService (admin credential), NodeService (node credential). */
export function controlRoutes(o: ControlRoutesOptions): (router: ConnectRouter) => void {
  const onDenied = o.log ? deniedLogger(o.log) : undefined;
  const control = createControlService({
    store: o.store,
    ...(o.log ? { log: o.log } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  const node = createNodeService({
    store: o.store,
    replica: o.replica,
    ...(o.log ? { log: o.log } : {}),
    ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}),
    ...(o.now ? { now: o.now } : {}),
  });
  const check =
    o.credentials instanceof CredentialCheck ? o.credentials : new CredentialCheck(o.credentials);
  const auth = (service: string) => [
    createAuthInterceptor(REQUIRED_CREDENTIAL.get(service)!, check, onDenied),
  ];
  return (router) => {
    o.health.register(router);
    router.service(ControlService, control, { interceptors: auth(ControlService.typeName) });
    router.service(NodeService, node, { interceptors: auth(NodeService.typeName) });
  };
}

export const SERVICE_NAMES = [ControlService.typeName, NodeService.typeName] as const;

export interface ControlServerOptions {
  store: ControlStore;
  credentials: Credentials;
  host: string;
  /** 0 picks a free port (see `port` once started). */
  port: number;
  /** PEM certificate chain and key: TLS with ALPN h2 (and HTTP/1.1 for Connect and gRPC-Web). */
  tls?: { cert: Buffer; key: Buffer };
  replica: string;
  log: Logger;
  heartbeatMs?: number;
  /**
   * HTTP/2 PING interval on every connection: a node that vanished without
   * closing its connection (power loss, partition) is dropped after one
   * unanswered ping, so its stream ends and it stops counting as connected.
   * Default 15000 ms; 0 disables.
   */
  pingIntervalMs?: number;
  /** On shutdown, how long open connections get to finish before they are destroyed. Default 2000 ms. */
  closeGraceMs?: number;
  /** The largest request message read. Default CONTROL_READ_MAX_BYTES. */
  readMaxBytes?: number;
}

/**
 * The control plane's server: Connect, gRPC and gRPC-Web over HTTP/2 (cleartext
 * with prior knowledge, or TLS with ALPN h2), plus gRPC health checking. A
 * call's credential is checked before its body is read (createControlHandler);
 * no request message over CONTROL_READ_MAX_BYTES (health: HEALTH_READ_MAX_BYTES)
 * is read.
 */
export class ControlServer {
  readonly health: HealthRegistry;
  readonly #server: http2.Http2Server | http2.Http2SecureServer;
  readonly #shutdown = new AbortController();
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #options: ControlServerOptions;
  #port = 0;
  #closing: Promise<void> | undefined;

  private constructor(o: ControlServerOptions) {
    this.#options = o;
    this.health = new HealthRegistry(SERVICE_NAMES);
    const check = new CredentialCheck(o.credentials);
    const handler = withSpecGrpcMessage(
      createControlHandler({
        routes: controlRoutes({
          store: o.store,
          credentials: check,
          health: this.health,
          replica: o.replica,
          log: o.log,
          ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}),
        }),
        required: REQUIRED_CREDENTIAL,
        check,
        onDenied: deniedLogger(o.log),
        log: o.log,
        readMaxBytes: o.readMaxBytes ?? CONTROL_READ_MAX_BYTES,
        shutdownSignal: this.#shutdown.signal,
      }),
    );
    const settings: http2.Settings = { maxConcurrentStreams: MAX_CONCURRENT_STREAMS };
    this.#server =
      o.tls === undefined
        ? http2.createServer({ settings }, handler)
        : http2.createSecureServer(
            { cert: o.tls.cert, key: o.tls.key, allowHTTP1: true, settings },
            handler,
          );
    this.#server.on("connection", (s: Socket) => {
      this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(s));
    });
    this.#server.on("session", (session: http2.ServerHttp2Session) => this.#track(session));
  }

  static async start(o: ControlServerOptions): Promise<ControlServer> {
    const s = new ControlServer(o);
    await new Promise<void>((resolve, reject) => {
      s.#server.once("error", reject);
      s.#server.listen(o.port, o.host, () => {
        s.#server.off("error", reject);
        resolve();
      });
    });
    const addr = s.#server.address();
    s.#port = typeof addr === "object" && addr !== null ? addr.port : o.port;
    return s;
  }

  get port(): number {
    return this.#port;
  }

  /**
   * Health NOT_SERVING first (load balancers and watchers see it), then every
   * handler's signal is aborted (streams end with UNAVAILABLE), then
   * connections are closed: GOAWAY, and destroyed after the grace period.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.health.shutdown();
    this.#shutdown.abort(new ConnectError("control plane shutting down", Code.Unavailable));
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const session of this.#sessions) session.close();
    const grace = setTimeout(() => {
      for (const s of this.#sockets) s.destroy();
    }, this.#options.closeGraceMs ?? 2000);
    await closed;
    clearTimeout(grace);
  }

  #track(session: http2.ServerHttp2Session): void {
    this.#sessions.add(session);
    const every = this.#options.pingIntervalMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    if (every > 0) {
      let unanswered = false;
      timer = setInterval(() => {
        if (session.closed || session.destroyed) return;
        // The previous ping is still unanswered after a whole interval: the peer is gone.
        if (unanswered) return session.destroy();
        unanswered = true;
        const sent = session.ping((err) => {
          if (err) return;
          unanswered = false;
        });
        if (!sent) session.destroy();
      }, every);
      timer.unref();
    }
    session.once("close", () => {
      this.#sessions.delete(session);
      if (timer) clearInterval(timer);
    });
    session.on("error", () => {}); // a peer that resets is not our error; its streams end
  }
}
