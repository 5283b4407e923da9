import { readFileSync, unwatchFile, watchFile } from "node:fs";
import type http from "node:http";
import { createContextKey, createContextValues, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HealthRegistry } from "../common/health-registry.ts";
import type { Logger } from "../common/logger.ts";
import { IngestService } from "../gen/polymur/ingest/v1/ingest_pb.ts";
import { type ApiKey, ApiKeyRing, parseKeysFile } from "./api-keys.ts";
import { DedupTable } from "./dedup-table.ts";
import { GatewayCounters } from "./gateway-counters.ts";
import { GatewayIngest } from "./gateway-ingest.ts";
import { GatewayListener } from "./gateway-listener.ts";
import type { GatewayOptions } from "./gateway-options.ts";
import { createIngestService } from "./ingest-service.ts";
import { createLegacyHandler } from "./legacy-ingest.ts";
import type { RejectSample } from "./reject-log.ts";
import type { RelayConfig } from "./relay-config.ts";
import { type EngineStats, RelayEngine } from "./relay-engine.ts";
import { SelfMetrics } from "./self-metrics.ts";
import { startStatsEndpoint } from "./stats-server.ts";

const kClient = createContextKey<string>("unknown", { description: "client address" });

/**
 * A gateway: proxy streams (and Go polymur-proxy requests) in, authenticated
 * by API key, queued through a relay engine (routing, per-destination
 * queues, overflow policies) to its destinations. One process: the
 * de-duplication memory is per process, so run several gateways (behind a
 * load balancer, or listed on the proxies) for more cores.
 */
export class GatewayNode {
  readonly #o: GatewayOptions;
  readonly #log: Logger;
  readonly #engine: RelayEngine;
  readonly keys = new ApiKeyRing();
  readonly #dedup: DedupTable;
  readonly #counters = new GatewayCounters();
  readonly #listener: GatewayListener;
  readonly #shutdown = new AbortController();
  /** gRPC health checking on the proxy listener: "" and the ingest service. */
  readonly #health = new HealthRegistry([IngestService.typeName]);
  readonly #selfMetrics: SelfMetrics;
  #statsServer: http.Server | null = null;
  #timers: NodeJS.Timeout[] = [];
  #ready = false;
  #lastReceived = 0;
  ports = { listen: 0, stats: null as number | null };

  constructor(options: GatewayOptions, log: Logger) {
    this.#o = options;
    this.#log = log;
    this.#engine = new RelayEngine(options.engine, log, { udp: false });
    this.#dedup = new DedupTable(options.dedupProxies);
    this.#selfMetrics = new SelfMetrics(options.metricsPrefix);
    const ingest = new GatewayIngest({
      engine: this.#engine,
      dedup: this.#dedup,
      counters: this.#counters,
      log,
      keyPrefix: options.keyPrefix,
      maxBatchBytes: options.maxBatchBytes,
    });
    const trusted = options.trustedProxies;
    const service = createIngestService({
      ingest,
      keys: this.keys,
      dedup: this.#dedup,
      counters: this.#counters,
      log,
      shutdown: this.#shutdown.signal,
      clientOf: (ctx: HandlerContext) => ctx.values.get(kClient),
    });
    const legacy = createLegacyHandler({
      ingest,
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

  get engine(): RelayEngine {
    return this.#engine;
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
    const stats = await startStatsEndpoint(
      {
        stats: () => this.#engine.stats(),
        rejects: () => this.#engine.recentRejects(),
        ready: () => this.#ready,
        extra: () => ({
          prometheus: this.#counters.prometheus(),
          json: { gateway: { ...this.#counters.json(), dedupProxies: this.#dedup.size } },
        }),
      },
      this.#o.statAddr,
      this.#log,
    );
    this.#statsServer = stats?.server ?? null;
    this.ports.stats = stats?.port ?? null;
    this.#ready = true;
    this.#timers.push(setInterval(() => this.#logRate(), 5_000));
    const sec = this.#o.metricsFlushSec;
    if (sec > 0) {
      this.#timers.push(
        setInterval(() => {
          const now = Math.floor(Date.now() / 1000);
          this.#engine.inject(this.#selfMetrics.lines(this.#engine.stats(), now));
        }, sec * 1000),
      );
    }
    const c = this.#engine.config;
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

  /** Applies a new routing configuration (destinations, hash) to the engine. */
  apply(config: RelayConfig): void {
    this.#engine.apply(config);
  }

  #logRate(): void {
    const received = this.#engine.stats().received;
    const n = received - this.#lastReceived;
    this.#lastReceived = received;
    this.#log.info(
      { received: n },
      `Last 5s: Received ${n} datapoints | Avg: ${(n / 5).toFixed(2)}/sec`,
    );
  }

  stats(): EngineStats {
    return this.#engine.stats();
  }

  rejects(): RejectSample[] {
    return this.#engine.recentRejects();
  }

  counters(): Record<string, unknown> {
    return this.#counters.json();
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
    this.#ready = false;
    // Load balancers and proxies probing health stop sending here first.
    this.#health.shutdown();
    for (const t of this.#timers) clearInterval(t);
    if (this.#o.keysFile !== null) unwatchFile(this.#o.keysFile);
    const deadlineMs = this.#o.shutdownTimeoutSec * 1000;
    this.#log.info({ deadlineMs }, "shutting down: ending proxy streams, draining queues");
    this.#shutdown.abort();
    this.#listener.close();
    // Give the handlers a moment to send their final status.
    await new Promise((r) => setTimeout(r, 100));
    this.#listener.destroy();
    const undelivered = await this.#engine.shutdown(deadlineMs, 0);
    const total = Object.values(undelivered).reduce((a, b) => a + b, 0);
    if (total === 0) {
      this.#log.info(
        { received: this.#engine.stats().received },
        "shutdown complete: every queued datapoint was written",
      );
    } else {
      this.#log.warn(
        { undelivered, total },
        `shutdown complete: ${total} datapoints left undelivered`,
      );
    }
    this.#statsServer?.close();
    this.#statsServer?.closeAllConnections();
    return undelivered;
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}
