import { randomUUID } from "node:crypto";
import { EventEmitter, once } from "node:events";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BACKOFF_DEFAULTS, backoffDelay, sleep } from "../../../common/backoff.ts";
import {
  caHint,
  connectionMistake,
  HINT_USE_HTTP,
  HINT_USE_HTTPS,
  hostHint,
} from "../../../common/connection-hints.ts";
import type { Logger } from "../../../common/logger.ts";
import {
  IngestService,
  type StreamRequestSchema,
} from "../../../gen/polymur/ingest/v1/ingest_pb.ts";
import type { BatchBuffer, BufferedBatch } from "./batch-buffer.ts";
import { LinkSession } from "./link-session.ts";

export type LinkState = "connecting" | "open" | "backoff" | "closed" | "failed";

/** What a GatewayLink emits (listeners are typed by it). */
export interface GatewayLinkEvents {
  /** The state changed; the argument is the new one. */
  state: [state: LinkState];
}

/**
 * Every GatewayLinkOptions default, in one place: the link falls back to
 * these, and the proxy's flag defaults (`--ping-interval`, `--ping-timeout`,
 * `--backoff-min`, `--backoff-max`) are built from them.
 */
export const GATEWAY_LINK_DEFAULTS = {
  pingIntervalMs: 10_000,
  pingTimeoutMs: 5_000,
  backoffMinMs: BACKOFF_DEFAULTS.minMs,
  backoffMaxMs: BACKOFF_DEFAULTS.maxMs,
  welcomeTimeoutMs: 10_000,
} as const satisfies Partial<GatewayLinkOptions>;

export interface GatewayLinkOptions {
  /** Gateway base URLs (http:// = cleartext HTTP/2, https:// = TLS); tried in turn. */
  gateways: readonly string[];
  /** The API key, sent as `authorization: Bearer <secret>`. */
  apiKey: string;
  /** Hello.proxy_id; called on every connect (it can change, see onIdConflict). */
  proxyId: () => string;
  buffer: BatchBuffer;
  log: Logger;
  /** PEM CA certificate(s) for https gateways. Default: the system's CAs. */
  ca?: string;
  /** HTTP/2 PING interval on an open link. Default 10 s (GRPC_ARG_KEEPALIVE_TIME_MS). */
  pingIntervalMs?: number;
  /** A PING unanswered this long closes the link. Default 5 s (GRPC_ARG_KEEPALIVE_TIMEOUT_MS). */
  pingTimeoutMs?: number;
  /** Reconnect delay, doubling from min to max, with jitter. Defaults 100 ms, 10 s. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** A Welcome must arrive this soon after opening a stream. Default 10 s. */
  welcomeTimeoutMs?: number;
  /** The gateway refused the API key: the link stops for good. */
  onAuthFailure(err: ConnectError, gateway: string): void;
  /**
   * The gateway says it already queued seqs this proxy has not made yet: the
   * proxy id is in use elsewhere (a copied spool directory). Must return a
   * new id; the link reconnects with it.
   */
  onIdConflict(ackedSeq: number, nextSeq: number): void;
}

export interface LinkStats {
  state: LinkState;
  gateway: string;
  connects: number;
  failures: number;
  batchesSent: number;
  batchesResent: number;
  batchesAcked: number;
  linesAcked: number;
  batchesRejected: number;
  linesRejected: number;
  lastError: string | undefined;
}

type Request = MessageInitShape<typeof StreamRequestSchema>;

/** Hello.instance_id: random per process, so a gateway tells it from another using its proxy id. */
const INSTANCE_ID = randomUUID();

/**
 * The proxy's side of the proxy → gateway link: one long-lived gRPC
 * bidirectional stream over HTTP/2 at a time. On each stream it sends Hello,
 * waits for Welcome (which says what the gateway already queued), then sends
 * every pending batch in seq order and keeps sending new ones as they come;
 * acknowledgements free batches from the buffer. When the stream fails it
 * reconnects (next gateway in the list, capped exponential backoff with
 * jitter) and resends whatever is still unacknowledged. A refused API key
 * (Unauthenticated, PermissionDenied) stops the link: retrying cannot help.
 *
 * Keepalive: HTTP/2 PINGs every pingIntervalMs while no data arrives, a
 * missing answer within pingTimeoutMs kills the connection (connect-node's
 * Http2SessionManager), so a silently dead path is noticed in seconds.
 *
 * Events (GatewayLinkEvents): "state" (LinkState).
 */
export class GatewayLink extends EventEmitter<GatewayLinkEvents> {
  readonly #o: GatewayLinkOptions;
  #index = 0;
  #state: LinkState = "closed";
  #stop = new AbortController();
  #running: Promise<void> | null = null;
  #attempt: AbortController | null = null;
  #s: Omit<LinkStats, "state" | "gateway"> = {
    connects: 0,
    failures: 0,
    batchesSent: 0,
    batchesResent: 0,
    batchesAcked: 0,
    linesAcked: 0,
    batchesRejected: 0,
    linesRejected: 0,
    lastError: undefined,
  };

  constructor(options: GatewayLinkOptions) {
    super();
    this.#o = options;
  }

  get state(): LinkState {
    return this.#state;
  }

  get gateway(): string {
    return this.#o.gateways[this.#index]!;
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  /** Closes the stream and stops reconnecting. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#attempt?.abort();
    await this.#running;
    this.#setState(this.#state === "failed" ? "failed" : "closed");
  }

  /** Drops the current stream and connects again at once (e.g. the proxy id changed). */
  reconnect(): void {
    this.#attempt?.abort();
  }

  stats(): LinkStats {
    return { state: this.#state, gateway: this.gateway, ...this.#s };
  }

  #setState(s: LinkState): void {
    if (s === this.#state) return;
    this.#state = s;
    this.emit("state", s);
  }

  async #loop(): Promise<void> {
    let failures = 0;
    const min = this.#o.backoffMinMs ?? GATEWAY_LINK_DEFAULTS.backoffMinMs;
    const max = this.#o.backoffMaxMs ?? GATEWAY_LINK_DEFAULTS.backoffMaxMs;
    while (!this.#stop.signal.aborted) {
      const result = await this.#run();
      if (result === "stopped") break;
      if (result === "auth") {
        this.#setState("failed");
        return;
      }
      if (result === "welcomed") failures = 0;
      if (result === "restart") continue;
      // Rotate: the next attempt goes to the next gateway in the list (with
      // one URL behind a load balancer, a new connection lands where it may).
      this.#index = (this.#index + 1) % this.#o.gateways.length;
      const delay = backoffDelay(failures, min, max);
      failures++;
      this.#setState("backoff");
      await sleep(delay, this.#stop.signal);
    }
    this.#setState("closed");
  }

  /** One stream, from open to failure. */
  async #run(): Promise<"stopped" | "auth" | "welcomed" | "failed" | "restart"> {
    const url = this.gateway;
    const ac = new AbortController();
    this.#attempt = ac;
    const signal = AbortSignal.any([ac.signal, this.#stop.signal]);
    const feed = new RequestFeed(this.#o.buffer, this.#o.proxyId(), signal, this.#s);
    let welcomed = false;
    let restart = false;
    this.#setState("connecting");
    this.#s.connects++;
    this.#o.log.debug({ gateway: url, pending: this.#o.buffer.size }, "opening a stream");
    const welcomeTimer = setTimeout(() => {
      if (!welcomed)
        ac.abort(new ConnectError("no Welcome from the gateway", Code.DeadlineExceeded));
    }, this.#o.welcomeTimeoutMs ?? GATEWAY_LINK_DEFAULTS.welcomeTimeoutMs);
    // A fresh connection per stream attempt (see LinkSession).
    const session = new LinkSession(url, {
      ...(this.#o.ca === undefined ? {} : { ca: this.#o.ca }),
      pingIntervalMs: this.#o.pingIntervalMs ?? GATEWAY_LINK_DEFAULTS.pingIntervalMs,
      pingTimeoutMs: this.#o.pingTimeoutMs ?? GATEWAY_LINK_DEFAULTS.pingTimeoutMs,
    });
    const client = createClient(
      IngestService,
      createGrpcTransport({ baseUrl: url, sessionManager: session }),
    );
    try {
      const responses = client.stream(feed, {
        signal,
        headers: { authorization: `Bearer ${this.#o.apiKey}` },
      });
      for await (const res of responses) {
        switch (res.msg.case) {
          case "welcome": {
            const acked = Number(res.msg.value.ackedSeq);
            const next = this.#o.buffer.nextSeq;
            if (acked >= next) {
              this.#o.log.error(
                { gateway: url, ackedSeq: acked, nextSeq: next },
                "gateway already has batches this proxy never made: another proxy uses the same id (a copied spool directory?); taking a new id",
              );
              this.#o.onIdConflict(acked, next);
              restart = true;
              ac.abort();
              break;
            }
            welcomed = true;
            clearTimeout(welcomeTimer);
            this.#ack(acked);
            feed.welcome(acked);
            this.#setState("open");
            this.#o.log.info(
              {
                gateway: url,
                keyName: res.msg.value.keyName,
                ackedSeq: acked,
                pending: this.#o.buffer.size,
              },
              `connected to gateway ${url} as key "${res.msg.value.keyName}"`,
            );
            break;
          }
          case "ack":
            this.#ack(Number(res.msg.value.seq));
            break;
          case "reject": {
            const seq = Number(res.msg.value.seq);
            const b = this.#o.buffer.reject(seq);
            this.#s.batchesRejected++;
            this.#s.linesRejected += b?.lines ?? 0;
            this.#o.log.error(
              { gateway: url, seq, lines: b?.lines, reason: res.msg.value.reason },
              `gateway rejected batch ${seq}: ${res.msg.value.reason}`,
            );
            break;
          }
          default:
            break;
        }
        if (restart) break;
      }
      if (restart) return "restart";
      if (this.#stop.signal.aborted) return "stopped";
      this.#failed(url, "the gateway ended the stream");
      return welcomed ? "welcomed" : "failed";
    } catch (err) {
      if (this.#stop.signal.aborted) return "stopped";
      if (restart) return "restart";
      const reason: unknown = ac.signal.reason;
      const ce = ConnectError.from(
        ac.signal.aborted && reason instanceof ConnectError ? reason : err,
      );
      if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) {
        this.#s.lastError = ce.rawMessage;
        this.#o.onAuthFailure(ce, url);
        return "auth";
      }
      const hint = linkHint(url, ce, session.sessionError);
      this.#failed(
        url,
        `${Code[ce.code]}: ${ce.rawMessage.trim()}${hint === "" ? "" : `; ${hint}`}`,
      );
      return welcomed ? "welcomed" : "failed";
    } finally {
      clearTimeout(welcomeTimer);
      ac.abort();
      session.destroy();
      this.#attempt = null;
    }
  }

  #ack(seq: number): void {
    const { batches, lines } = this.#o.buffer.ack(seq);
    this.#s.batchesAcked += batches;
    this.#s.linesAcked += lines;
  }

  #failed(url: string, why: string): void {
    this.#s.failures++;
    this.#s.lastError = why;
    this.#o.log.warn(
      {
        gateway: url,
        err: why,
        pending: this.#o.buffer.size,
        pendingLines: this.#o.buffer.pendingLines,
      },
      `link to gateway ${url} failed: ${why}; unacknowledged batches will be resent`,
    );
  }
}

/**
 * The request side of one stream, pulled by connect-node one message at a
 * time (the next is asked for only once the previous one was handed to the
 * HTTP/2 stream, so HTTP/2 flow control paces it): Hello, then, after
 * Welcome, every pending batch in order, waiting for new ones when caught up.
 * Ends when the stream's signal aborts, so no pull is left hanging (connect
 * does not call return() on a request iterable after an error).
 */
class RequestFeed implements AsyncIterable<Request> {
  readonly #buffer: BatchBuffer;
  readonly #proxyId: string;
  readonly #signal: AbortSignal;
  readonly #stats: { batchesSent: number; batchesResent: number };
  readonly #closed = new AbortController();
  #helloSent = false;
  #cursor = -1;
  #welcomed: Promise<void>;
  #resolveWelcome!: () => void;

  constructor(
    buffer: BatchBuffer,
    proxyId: string,
    signal: AbortSignal,
    stats: { batchesSent: number; batchesResent: number },
  ) {
    this.#buffer = buffer;
    this.#proxyId = proxyId;
    this.#signal = AbortSignal.any([signal, this.#closed.signal]);
    this.#stats = stats;
    this.#welcomed = new Promise((resolve) => {
      this.#resolveWelcome = resolve;
    });
  }

  welcome(ackedSeq: number): void {
    this.#cursor = ackedSeq;
    this.#resolveWelcome();
  }

  [Symbol.asyncIterator](): AsyncIterator<Request> {
    // connect-node requires throw() (it aborts request iterables with it).
    const finish = async (): Promise<IteratorResult<Request>> => {
      this.#closed.abort();
      return { done: true, value: undefined };
    };
    return { next: () => this.#next(), throw: finish, return: finish };
  }

  async #next(): Promise<IteratorResult<Request>> {
    const end: IteratorResult<Request> = { done: true, value: undefined };
    if (this.#signal.aborted) return end;
    if (!this.#helloSent) {
      this.#helloSent = true;
      const hello = { proxyId: this.#proxyId, instanceId: INSTANCE_ID };
      return { done: false, value: { msg: { case: "hello", value: hello } } };
    }
    if (!(await until(this.#welcomed, this.#signal))) return end;
    for (;;) {
      const b = this.#buffer.after(this.#cursor);
      if (b !== undefined) {
        this.#cursor = b.seq;
        // null: acknowledged meanwhile, or it cannot be read back from the
        // spool (the buffer then counted it lost and logged where it was,
        // and it is done, so no later cumulative ack counts it as delivered).
        const payload = await this.#buffer.payload(b);
        if (payload === null) continue;
        if (this.#signal.aborted) return end;
        this.#count(b);
        return {
          done: false,
          value: {
            msg: {
              case: "batch",
              value: {
                seq: BigInt(b.seq),
                compression: b.compression,
                payload,
                lines: b.lines,
                rawBytes: b.rawBytes,
              },
            },
          },
        };
      }
      if (!(await nextBatch(this.#buffer, this.#signal))) return end;
    }
  }

  #count(b: BufferedBatch): void {
    if (b.sends++ > 0) this.#stats.batchesResent++;
    else this.#stats.batchesSent++;
  }
}

/** Resolves true when `p` settles first, false when `signal` aborts first. */
function until(p: Promise<unknown>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = (): void => resolve(false);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      },
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve(false);
      },
    );
  });
}

/** Resolves true when a batch is added, false when `signal` aborts first. */
function nextBatch(buffer: BatchBuffer, signal: AbortSignal): Promise<boolean> {
  return once(buffer, "batch", { signal }).then(
    () => true,
    () => false,
  );
}

/**
 * What to do about a failed stream when its cause is a URL or TLS mistake
 * (common/connection-hints.ts, shared with polymurctl); "" otherwise.
 */
export function linkHint(url: string, err: unknown, sessionError: Error | null): string {
  const m = connectionMistake(err, url, sessionError ?? undefined);
  switch (m?.kind) {
    case "untrusted":
      return `cannot verify the gateway's certificate (${m.code}); ${caHint("--ca FILE")}`;
    case "wrong-host":
      return hostHint(url);
    case "https-to-cleartext":
      return `TLS handshake failed (${m.code}); ${HINT_USE_HTTP}`;
    case "http-to-tls":
      return HINT_USE_HTTPS;
    default:
      return "";
  }
}
