import { createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { DestinationStateReport } from "../../common/destination-state-log.ts";
import { HealthRegistry } from "../../common/health-registry.ts";
import type { Logger } from "../../common/logger.ts";
import { IngestService } from "../../gen/polymur/ingest/v1/ingest_pb.ts";
import { IngestCounters } from "../ingest/ingest-counters.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { ApiKeyRing } from "../link/gateway/api-keys.ts";
import { BatchIntake } from "../link/gateway/batch-intake.ts";
import type { ProxyClaims } from "../link/gateway/claim-board.ts";
import type { TrustedProxies } from "../link/gateway/client-address.ts";
import type { DedupTable } from "../link/gateway/dedup-table.ts";
import { GatewayCounters } from "../link/gateway/gateway-counters.ts";
import { GatewayListener, type ServerRequest } from "../link/gateway/gateway-listener.ts";
import { createLegacyHandler } from "../link/gateway/legacy-handler.ts";
import { createLinkService } from "../link/gateway/link-service.ts";
import { type PipelineStats, pipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import { Router, type RouterConfig } from "../route/router.ts";
import type { GatewayOptions } from "./gateway-options.ts";

const kClient = createContextKey<string>("unknown", { description: "client address" });
const kAlive = createContextKey<(timeoutMs: number) => Promise<boolean>>(
  () => Promise.resolve(true),
  { description: "whether the connection under a request answers a PING" },
);

/** What a GatewayProcess needs besides the gateway's options. */
export interface GatewayProcessOptions {
  /** Which process of the gateway this is (0: the primary) and how many there are: disk queues belong to a number. */
  process: { index: number; count: number };
  /** The client address of a request (X-Forwarded-For from these, else the peer). */
  trustedProxies: TrustedProxies;
  /** Who holds each proxy id: the primary's ClaimBoard (localClaims), or a worker's DedupClient. */
  claims: ProxyClaims;
  /** The DedupTable this process's intake checks and records into (the board's, or the DedupClient's). */
  dedup: DedupTable;
  /** A worker: the points its aggregate rules take go to the primary. Default: aggregated here. */
  remoteAggregates?: (points: KeyedPoints) => void;
  /** Where destination state changes go (the gateway's log). Default: this process logs them. */
  onDestinationState?: (report: DestinationStateReport) => void;
}

/**
 * The gateway pipeline of one process (the primary, or one worker of
 * --workers): its listener (SO_REUSEPORT when there are several) → link
 * service and legacy handler → BatchIntake → its router, with its own
 * API key ring (the primary's, or a copy the primary keeps up to date), its
 * counters and its share of the queue bounds.
 */
export class GatewayProcess {
  readonly router: Router;
  readonly keys = new ApiKeyRing();
  readonly counters = new GatewayCounters();
  /** Lines of proxies' batches are framed, validated and counted as a relay's listener does. */
  readonly ingest = new IngestCounters();
  readonly intake: BatchIntake;
  readonly #listener: GatewayListener;
  readonly #shutdown = new AbortController();
  /** gRPC health checking on the proxy listener: "" and the link service (IngestService on the wire). */
  readonly #health = new HealthRegistry([IngestService.typeName]);

  constructor(options: GatewayOptions, log: Logger, p: GatewayProcessOptions) {
    const count = p.process.count;
    this.router = new Router(options.routing, log, {
      share: 1 / count,
      process: p.process,
      onProduced: (lines) => this.ingest.countGenerated(lines),
      ...(p.remoteAggregates === undefined ? {} : { remoteAggregates: p.remoteAggregates }),
      ...(p.onDestinationState === undefined ? {} : { onDestinationState: p.onDestinationState }),
    });
    this.intake = new BatchIntake({
      router: this.router,
      ingestCounters: this.ingest,
      maxLineLength: options.maxLineLength,
      dedup: p.dedup,
      counters: this.counters,
      log,
      keyPrefix: options.keyPrefix,
      maxBatchBytes: options.maxBatchBytes,
    });
    const trusted = p.trustedProxies;
    const service = createLinkService({
      intake: this.intake,
      keys: this.keys,
      dedup: p.dedup,
      claims: p.claims,
      counters: this.counters,
      log,
      shutdown: this.#shutdown.signal,
      clientOf: (ctx: HandlerContext) => ctx.values.get(kClient),
      alive: (ctx: HandlerContext, timeoutMs: number) => ctx.values.get(kAlive)(timeoutMs),
    });
    const legacy = createLegacyHandler({
      intake: this.intake,
      keys: this.keys,
      counters: this.counters,
      log,
      maxBatchBytes: options.maxBatchBytes,
      shutdown: this.#shutdown.signal,
      clientOf: (req) =>
        trusted.client(GatewayListener.peer(req), header(req.headers["x-forwarded-for"])),
    });
    const handler = connectNodeAdapter({
      routes: (r) => {
        r.service(IngestService, service);
        this.#health.register(r);
      },
      fallback: legacy,
      // A batch up to twice the limit still gets a clean Reject; beyond that
      // the stream itself fails (ResourceExhausted).
      readMaxBytes: options.maxBatchBytes * 2 + 64 * 1024,
      contextValues: (req) =>
        createContextValues()
          .set(
            kClient,
            trusted.client(GatewayListener.peer(req), header(req.headers["x-forwarded-for"])),
          )
          .set(kAlive, pinger(req)),
    });
    this.#listener = new GatewayListener({
      host: options.listen.host,
      port: options.listen.port,
      tls: options.tls,
      handler,
      reusePort: count > 1,
    });
  }

  /** Binds the listener; resolves with its port. */
  listen(): Promise<number> {
    return this.#listener.listen();
  }

  /**
   * Applies a new routing configuration (throws, changing nothing, if
   * invalid) and the line limit.
   */
  apply(config: RouterConfig, maxLineLength: number): void {
    this.router.apply(config);
    this.intake.maxLineLength = maxLineLength;
  }

  stats(): PipelineStats {
    return pipelineStats(this.ingest.stats(0, this.router.blocking), this.router.stats());
  }

  rejects(): RejectSample[] {
    return this.ingest.recentRejects();
  }

  /** polymur's own metrics, as lines generated here. */
  inject(text: string): void {
    this.ingest.generate(
      { write: (buf, start, end, lines) => this.router.writeStatistics(buf, start, end, lines) },
      text,
    );
  }

  /**
   * Graceful stop: no new connections; every proxy stream ends with
   * Unavailable (its proxy reconnects elsewhere and resends what was not
   * acknowledged); then the destination queues drain up to `deadlineMs`.
   */
  async shutdown(deadlineMs: number): Promise<Record<string, number>> {
    // Load balancers and proxies probing health stop sending here first.
    this.#health.shutdown();
    this.#shutdown.abort();
    this.#listener.close();
    // Give the handlers a moment to send their final status.
    await new Promise((r) => setTimeout(r, 100));
    this.#listener.destroy();
    return this.router.drain(deadlineMs);
  }
}

/**
 * Pings the HTTP/2 connection under a request: resolves false if no answer
 * comes within `timeoutMs` (or the connection is gone). HTTP/1.1 has no
 * PING, and carries no proxy streams: always true.
 */
function pinger(req: ServerRequest): (timeoutMs: number) => Promise<boolean> {
  if (!("stream" in req)) return () => Promise.resolve(true);
  const stream = req.stream;
  return (timeoutMs) =>
    new Promise((resolve) => {
      const session = stream.session;
      if (session === undefined || session.destroyed || session.closed) return resolve(false);
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const answered = (err: Error | null): void => {
        clearTimeout(timer);
        resolve(err === null);
      };
      try {
        // false: not sent (too many PINGs unanswered already).
        if (!session.ping(answered)) answered(new Error("PING not sent"));
      } catch (err) {
        answered(err as Error);
      }
    });
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
