import { createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HealthRegistry } from "../../common/health-registry.ts";
import type { Logger } from "../../common/logger.ts";
import { isLoopbackHost } from "../../common/loopback.ts";
import { IngestService } from "../../gen/polymur/ingest/v1/ingest_pb.ts";
import { IngestCounters } from "../ingest/ingest-counters.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { ApiKeyRing } from "../link/gateway/api-keys.ts";
import { BatchIntake } from "../link/gateway/batch-intake.ts";
import { DedupTable } from "../link/gateway/dedup-table.ts";
import { GatewayCounters } from "../link/gateway/gateway-counters.ts";
import { GatewayListener, type ServerRequest } from "../link/gateway/gateway-listener.ts";
import { KeysFileReloader } from "../link/gateway/keys-file-reloader.ts";
import { createLegacyHandler } from "../link/gateway/legacy-handler.ts";
import { createLinkService } from "../link/gateway/link-service.ts";
import { type PipelineStats, pipelineStats } from "../observe/pipeline-stats.ts";
import { Router, type RouterConfig } from "../route/router.ts";
import type { GatewayOptions } from "./gateway-options.ts";
import { NodeRuntime } from "./node-runtime.ts";
import { statisticsSettings } from "./statistics-settings.ts";

const kClient = createContextKey<string>("unknown", { description: "client address" });
const kAlive = createContextKey<(timeoutMs: number) => Promise<boolean>>(
  () => Promise.resolve(true),
  { description: "whether the connection under a request answers a PING" },
);

/**
 * A gateway: proxy streams (and Go polymur-proxy requests) in, authenticated
 * by API key, their lines framed and validated as a relay's listener does,
 * then routed to destinations like a relay's (queues, overflow policies).
 * One process: the de-duplication memory is per process, so run several
 * gateways (behind a load balancer, or listed on the proxies) for more cores.
 */
export class GatewayNode {
  readonly #o: GatewayOptions;
  readonly #log: Logger;
  readonly #router: Router;
  /** Lines of proxies' batches are framed, validated and counted as a relay's listener does. */
  readonly #ingest = new IngestCounters();
  readonly #runtime: NodeRuntime;
  readonly #intake: BatchIntake;
  readonly keys = new ApiKeyRing();
  readonly #dedup: DedupTable;
  /** --keys-file, read at start, again when it changes and on SIGHUP (null: keys from the control plane). */
  readonly #keysFile: KeysFileReloader | null;
  readonly #counters = new GatewayCounters();
  readonly #listener: GatewayListener;
  readonly #shutdown = new AbortController();
  /** gRPC health checking on the proxy listener: "" and the link service (IngestService on the wire). */
  readonly #health = new HealthRegistry([IngestService.typeName]);
  ports = { listen: 0, stats: null as number | null };

  constructor(options: GatewayOptions, log: Logger) {
    this.#o = options;
    this.#log = log;
    this.#router = new Router(options.routing, log, {
      onProduced: (lines) => this.#ingest.countGenerated(lines),
    });
    this.#dedup = new DedupTable(options.dedupProxies);
    this.#keysFile =
      options.keysFile === null
        ? null
        : new KeysFileReloader({
            file: options.keysFile,
            ring: this.keys,
            log,
            counters: this.#counters,
          });
    this.#runtime = new NodeRuntime({
      log,
      statAddr: options.statAddr,
      stats: () => this.stats(),
      rejects: () => this.rejects(),
      extra: () => ({
        prometheus: this.#counters.prometheus(),
        json: { gateway: { ...this.#counters.json(), dedupProxies: this.#dedup.size } },
      }),
      selfMetrics: {
        ...statisticsSettings(options.routing, options.metricsFlushSec, options.metricsPrefix),
        inject: (text) =>
          this.#ingest.generate(
            {
              write: (buf, start, end, lines) =>
                this.#router.writeStatistics(buf, start, end, lines),
            },
            text,
          ),
      },
    });
    this.#intake = new BatchIntake({
      router: this.#router,
      ingestCounters: this.#ingest,
      maxLineLength: options.maxLineLength,
      dedup: this.#dedup,
      counters: this.#counters,
      log,
      keyPrefix: options.keyPrefix,
      maxBatchBytes: options.maxBatchBytes,
    });
    const trusted = options.trustedProxies;
    const service = createLinkService({
      intake: this.#intake,
      keys: this.keys,
      dedup: this.#dedup,
      counters: this.#counters,
      log,
      shutdown: this.#shutdown.signal,
      clientOf: (ctx: HandlerContext) => ctx.values.get(kClient),
      alive: (ctx: HandlerContext, timeoutMs: number) => ctx.values.get(kAlive)(timeoutMs),
    });
    const legacy = createLegacyHandler({
      intake: this.#intake,
      keys: this.keys,
      counters: this.#counters,
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
    });
  }

  async start(): Promise<void> {
    // Re-read when the file changes (and on SIGHUP, see reloadKeys): a
    // deleted key cuts its streams within a couple of seconds.
    this.#keysFile?.load();
    this.#keysFile?.watch();
    this.ports.listen = await this.#listener.listen();
    await this.#runtime.start();
    this.ports.stats = this.#runtime.statsPort;
    this.#runtime.ready();
    const c = this.#router.config;
    this.#log.info(
      {
        listener: this.#o.tls === null ? "h2c+http/1.1" : "https (h2, http/1.1)",
        address: this.#o.listen.host,
        port: this.ports.listen,
        statsPort: this.ports.stats,
        keys: this.keys.names(),
        keyPrefix: this.#o.keyPrefix,
        destinations: c.destinations.map((d) => d.spec),
      },
      "listening",
    );
    if (c.destinations.length === 0 && this.#o.controlPlane === null) {
      this.#log.warn(
        "no destinations: batches are not acknowledged (proxies keep them) until there are some. Add some with --destinations host:port[,...]",
      );
    }
    if (this.#o.tls === null && !isLoopbackHost(this.#o.listen.host)) {
      this.#log.warn(
        { host: this.#o.listen.host },
        "serving cleartext HTTP/2 and HTTP/1.1 beyond loopback: API keys and datapoints cross the network unencrypted; set --tls-cert and --tls-key, or terminate TLS in front of a gateway on 127.0.0.1",
      );
    }
  }

  /**
   * Re-reads --keys-file (SIGHUP): applied only if whole and valid, and a
   * file without keys only if it says so; otherwise the keys in force stay
   * and a warning says why (KeysFileReloader). Never rejects.
   */
  reloadKeys(): Promise<void> {
    return this.#keysFile?.reload() ?? Promise.resolve();
  }

  /**
   * Applies a new routing configuration (destinations, hash; throws, changing
   * nothing, if invalid) and, from a reloaded config file, the line limit.
   */
  apply(config: RouterConfig, maxLineLength = this.#intake.maxLineLength): void {
    this.#router.apply(config);
    this.#intake.maxLineLength = maxLineLength;
  }

  stats(): PipelineStats {
    return pipelineStats(this.#ingest.stats(0, this.#router.blocking), this.#router.stats());
  }

  rejects(): RejectSample[] {
    return this.#ingest.recentRejects();
  }

  /** Proxy streams open now. */
  streams(): number {
    return this.#counters.openStreams();
  }

  /**
   * Graceful stop: no new connections; every proxy stream ends with
   * Unavailable (its proxy reconnects elsewhere and resends what this gateway
   * did not acknowledge); then the destination queues drain up to the
   * shutdown timeout.
   */
  async shutdown(): Promise<Record<string, number>> {
    // Load balancers and proxies probing health stop sending here first.
    this.#health.shutdown();
    this.#runtime.stop();
    this.#keysFile?.stop();
    const deadlineMs = this.#o.shutdownTimeoutSec * 1000;
    this.#log.info({ deadlineMs }, "shutting down: ending proxy streams, draining queues");
    this.#shutdown.abort();
    this.#listener.close();
    // Give the handlers a moment to send their final status.
    await new Promise((r) => setTimeout(r, 100));
    this.#listener.destroy();
    const undelivered = await this.#router.drain(deadlineMs);
    this.#runtime.logUndelivered(undelivered);
    this.#runtime.close();
    return undelivered;
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
