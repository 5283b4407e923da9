import http from "node:http";
import http2 from "node:http2";
import type { Server, Socket } from "node:net";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { createSniffingServer } from "../common/h2c-sniff.ts";
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
import { createConsoleHandler } from "./console/console-handler.ts";
import { createControlHandler } from "./control-handler.ts";
import { createControlService } from "./control-service.ts";
import type { ControlStore } from "./control-store.ts";
import { withSpecGrpcMessage } from "./grpc-message.ts";
import { NODE_EXPIRY_DEFAULTS, NodeExpiry } from "./node-expiry.ts";
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
  /** --node-expiry in milliseconds (0: never). Default NODE_EXPIRY_DEFAULTS.expirySec. */
  nodeExpiryMs?: number;
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
    replica: o.replica,
    nodeExpiryMs: o.nodeExpiryMs ?? NODE_EXPIRY_DEFAULTS.expirySec * 1000,
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
  /** PEM certificate chain and key: TLS with ALPN h2 and http/1.1. */
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
  /**
   * Node records not seen for this long (and not connected) are removed from
   * the store; 0 keeps them for ever. Default NODE_EXPIRY_DEFAULTS.expirySec.
   */
  nodeExpiryMs?: number;
}

/**
 * The control plane's server: Connect, gRPC and gRPC-Web, plus gRPC health
 * checking, and the web console (console/: GET /console/). One port answers
 * HTTP/2 and HTTP/1.1 (browsers speak no cleartext HTTP/2): cleartext, h2c
 * with prior knowledge or HTTP/1.1, told apart by a connection's first bytes
 * (createSniffingServer); TLS, ALPN h2 or http/1.1. A call's credential is
 * checked before its body is read (createControlHandler); no request message
 * over CONTROL_READ_MAX_BYTES (health: HEALTH_READ_MAX_BYTES) is read.
 */
export class ControlServer {
  readonly health: HealthRegistry;
  readonly #server: Server;
  /** The cleartext port's HTTP/1.1 server (handed its connections by the sniffer). */
  readonly #h1: http.Server | undefined;
  readonly #shutdown = new AbortController();
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #options: ControlServerOptions;
  #port = 0;
  #closing: Promise<void> | undefined;
  #expiry: NodeExpiry | undefined;

  private constructor(o: ControlServerOptions) {
    this.#options = o;
    this.health = new HealthRegistry(SERVICE_NAMES);
    const check = new CredentialCheck(o.credentials);
    const rpc = withSpecGrpcMessage(
      createControlHandler({
        routes: controlRoutes({
          store: o.store,
          credentials: check,
          health: this.health,
          replica: o.replica,
          log: o.log,
          nodeExpiryMs: this.#expiryMs,
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
    const serveConsole = createConsoleHandler();
    const handler: typeof rpc = (req, res) => {
      if (!serveConsole(req, res)) rpc(req, res);
    };
    const settings: http2.Settings = { maxConcurrentStreams: MAX_CONCURRENT_STREAMS };
    const onSocket = (s: Socket): void => {
      this.#sockets.add(s);
      s.once("close", () => this.#sockets.delete(s));
    };
    if (o.tls === undefined) {
      const h2 = http2.createServer({ settings }, handler);
      h2.on("session", (session: http2.ServerHttp2Session) => this.#track(session));
      this.#h1 = http.createServer(handler);
      this.#server = createSniffingServer({ h2, h1: this.#h1, onConnection: onSocket });
    } else {
      const h2 = http2.createSecureServer(
        { cert: o.tls.cert, key: o.tls.key, allowHTTP1: true, settings },
        handler,
      );
      h2.on("session", (session: http2.ServerHttp2Session) => this.#track(session));
      h2.on("connection", onSocket);
      this.#h1 = undefined;
      this.#server = h2;
    }
  }

  get #expiryMs(): number {
    return this.#options.nodeExpiryMs ?? NODE_EXPIRY_DEFAULTS.expirySec * 1000;
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
    s.#expiry = new NodeExpiry({ store: o.store, expiryMs: s.#expiryMs, log: o.log });
    s.#expiry.start();
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
    await this.#expiry?.stop();
    this.#shutdown.abort(new ConnectError("control plane shutting down", Code.Unavailable));
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const session of this.#sessions) session.close();
    // Closes idle HTTP/1.1 connections (browsers keep theirs open), and stops its timeout checks.
    this.#h1?.close();
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
