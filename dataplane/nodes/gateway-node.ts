import { readFileSync, unwatchFile, watchFile } from "node:fs";
import { createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HealthRegistry } from "../../common/health-registry.ts";
import type { Logger } from "../../common/logger.ts";
import { IngestService } from "../../gen/polymur/ingest/v1/ingest_pb.ts";
import { IngestCounters } from "../ingest/ingest-counters.ts";
import { writeText } from "../ingest/line-sink.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { type ApiKey, ApiKeyRing, parseKeysFile } from "../link/gateway/api-keys.ts";
import { BatchIntake } from "../link/gateway/batch-intake.ts";
import { DedupTable } from "../link/gateway/dedup-table.ts";
import { GatewayCounters } from "../link/gateway/gateway-counters.ts";
import { GatewayListener } from "../link/gateway/gateway-listener.ts";
import { createLegacyHandler } from "../link/gateway/legacy-handler.ts";
import { createLinkService } from "../link/gateway/link-service.ts";
import { type PipelineStats, pipelineStats } from "../observe/pipeline-stats.ts";
import { Router, type RouterConfig } from "../route/router.ts";
import type { GatewayOptions } from "./gateway-options.ts";
import { NodeRuntime } from "./node-runtime.ts";

const kClient = createContextKey<string>("unknown", { description: "client address" });

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
  readonly #counters = new GatewayCounters();
  readonly #listener: GatewayListener;
  readonly #shutdown = new AbortController();
  /** gRPC health checking on the proxy listener: "" and the link service (IngestService on the wire). */
  readonly #health = new HealthRegistry([IngestService.typeName]);
  ports = { listen: 0, stats: null as number | null };

  constructor(options: GatewayOptions, log: Logger) {
    this.#o = options;
    this.#log = log;
    this.#router = new Router(options.routing, log);
    this.#dedup = new DedupTable(options.dedupProxies);
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
        flushSec: options.metricsFlushSec,
        prefix: options.metricsPrefix,
        inject: (text) => writeText(this.#router, text),
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
        createContextValues().set(
          kClient,
          trusted.client(GatewayListener.peer(req), header(req.headers["x-forwarded-for"])),
        ),
    });
    this.#listener = new GatewayListener({
      host: options.listen.host,
      port: options.listen.port,
      tls: options.tls,
      handler,
    });
  }

  async start(): Promise<void> {
    if (this.#o.keysFile !== null) {
      this.keys.replace(this.#readKeysFile(this.#o.keysFile));
      // Re-read when the file changes (and on SIGHUP, see reloadKeys): a
      // deleted key cuts its streams within a couple of seconds.
      const file = this.#o.keysFile;
      watchFile(file, { interval: 1_000 }, (cur, prev) => {
        if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size) this.reloadKeys();
      });
    }
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
        "no destinations: datapoints are validated and counted but not forwarded. Add some with --destinations host:port[,...]",
      );
    }
  }

  #readKeysFile(file: string): ApiKey[] {
    return parseKeysFile(readFileSync(file, "utf8"), file);
  }

  /** Re-reads --keys-file; a file that does not parse keeps the keys in force. */
  reloadKeys(): void {
    if (this.#o.keysFile === null) return;
    try {
      const before = new Set(this.keys.names());
      this.keys.replace(this.#readKeysFile(this.#o.keysFile));
      const after = this.keys.names();
      this.#log.info(
        {
          keys: after,
          added: after.filter((n) => !before.has(n)),
          removed: [...before].filter((n) => !after.includes(n)),
        },
        "API keys reloaded",
      );
    } catch (err) {
      this.#log.error(
        { err: (err as Error).message, file: this.#o.keysFile },
        "API keys file unreadable; keeping the keys in force",
      );
    }
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
    if (this.#o.keysFile !== null) unwatchFile(this.#o.keysFile);
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

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
