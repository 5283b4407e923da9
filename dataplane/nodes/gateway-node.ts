import { DestinationStateLog } from "../../common/destination-state-log.ts";
import type { Logger } from "../../common/logger.ts";
import { isLoopbackHost } from "../../common/loopback.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { ApiKeyRing } from "../link/gateway/api-keys.ts";
import { ClaimBoard, localClaims } from "../link/gateway/claim-board.ts";
import { DedupTable } from "../link/gateway/dedup-table.ts";
import { GatewayCounters } from "../link/gateway/gateway-counters.ts";
import { KeysFileReloader } from "../link/gateway/keys-file-reloader.ts";
import { mergeStats, type PipelineStats } from "../observe/pipeline-stats.ts";
import type { RouterConfig } from "../route/router.ts";
import type { GatewayOptions } from "./gateway-options.ts";
import { GatewayPool } from "./gateway-pool.ts";
import { GatewayProcess } from "./gateway-process.ts";
import { NodeRuntime } from "./node-runtime.ts";
import { statisticsSettings } from "./statistics-settings.ts";

/**
 * A gateway: proxy streams (and Go polymur-proxy requests) in, authenticated
 * by API key, their lines framed and validated as a relay's listener does,
 * then routed to destinations like a relay's (queues, overflow policies).
 *
 * --workers processes share the listen port (SO_REUSEPORT): this one, the
 * primary, and `workers - 1` worker processes (GatewayPool), each a
 * GatewayProcess with its share of the queue bounds and its own disk queue
 * directories. The primary owns what must be one for the whole gateway:
 * the API keys (read here from --keys-file or taken from the control plane,
 * and pushed to every worker on each change, as names and digests), the
 * de-duplication memory and which stream holds each proxy id (ClaimBoard,
 * claimed at each Hello, see claim-board.ts), the stats endpoint (the sum
 * over the processes), self-metrics and the shutdown summary.
 */
export class GatewayNode {
  readonly #o: GatewayOptions;
  readonly #log: Logger;
  readonly #runtime: NodeRuntime;
  readonly #primary: GatewayProcess;
  readonly #board: ClaimBoard;
  readonly #pool: GatewayPool | null;
  /** The keys every process accepts: this process's ring, pushed to the workers on each change. */
  readonly keys: ApiKeyRing;
  /** --keys-file, read at start, again when it changes and on SIGHUP (null: keys from the control plane). */
  readonly #keysFile: KeysFileReloader | null;
  ports = { listen: 0, stats: null as number | null };

  constructor(options: GatewayOptions, log: Logger) {
    this.#o = options;
    this.#log = log;
    const workers = Math.max(1, options.workers);
    // Destination state changes of every process, logged once for the gateway.
    const states = new DestinationStateLog(log);
    this.#board = new ClaimBoard(new DedupTable(options.dedupProxies));
    this.#primary = new GatewayProcess(options, log, {
      process: { index: 0, count: workers },
      trustedProxies: options.trustedProxies,
      claims: localClaims(this.#board, 0),
      dedup: this.#board.table,
      onDestinationState: (report) => states.report(0, report),
    });
    this.keys = this.#primary.keys;
    this.#pool =
      workers === 1
        ? null
        : new GatewayPool({
            count: workers - 1,
            options,
            log,
            board: this.#board,
            keys: () => this.keys.list(),
            onAggregate: (points) => this.#primary.router.aggregate(points),
            states,
          });
    // Every process refuses a revoked key at once: the workers get the new ring now.
    this.keys.on("changed", () => this.#pool?.keys(this.keys.list()));
    this.#keysFile =
      options.keysFile === null
        ? null
        : new KeysFileReloader({
            file: options.keysFile,
            ring: this.keys,
            log,
            counters: this.#primary.counters,
          });
    this.#runtime = new NodeRuntime({
      log,
      statAddr: options.statAddr,
      stats: () => this.stats(),
      rejects: () => this.rejects(),
      extra: () => {
        const counters = this.#counters();
        return {
          prometheus: counters.prometheus(),
          json: {
            gateway: {
              ...counters.json(),
              dedupProxies: this.#board.table.size,
              workers,
            },
          },
        };
      },
      selfMetrics: {
        ...statisticsSettings(options.routing, options.metricsFlushSec, options.metricsPrefix),
        inject: (text) => this.#primary.inject(text),
      },
    });
  }

  /** The gateway counters summed over the processes. */
  #counters(): GatewayCounters {
    if (this.#pool === null) return this.#primary.counters;
    return GatewayCounters.sum([
      this.#primary.counters.snapshot(),
      ...this.#pool.gatewayCounters(),
    ]);
  }

  async start(): Promise<void> {
    // Re-read when the file changes (and on SIGHUP, see reloadKeys): a
    // deleted key cuts its streams within a couple of seconds.
    this.#keysFile?.load();
    this.#keysFile?.watch();
    this.ports.listen = await this.#primary.listen();
    await this.#pool?.start(this.ports.listen);
    await this.#runtime.start();
    this.ports.stats = this.#runtime.statsPort;
    this.#runtime.ready();
    const c = this.#primary.router.config;
    this.#log.info(
      {
        listener: this.#o.tls === null ? "h2c+http/1.1" : "https (h2, http/1.1)",
        address: this.#o.listen.host,
        port: this.ports.listen,
        statsPort: this.ports.stats,
        keys: this.keys.names(),
        workers: this.#pool === null ? 1 : this.#o.workers,
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
  apply(config: RouterConfig, maxLineLength = this.#primary.intake.maxLineLength): void {
    this.#primary.apply(config, maxLineLength);
    this.#pool?.apply(config, maxLineLength);
  }

  /** The pipeline counters, summed over the processes. */
  stats(): PipelineStats {
    return mergeStats([this.#primary.stats(), ...(this.#pool?.stats() ?? [])]);
  }

  rejects(): RejectSample[] {
    const all = [...this.#primary.rejects(), ...(this.#pool?.rejects() ?? [])];
    return all.sort((a, b) => b.at - a.at).slice(0, 64);
  }

  /** Proxy streams open now, in every process. */
  streams(): number {
    return this.#counters().openStreams();
  }

  /** The worker processes' ids (none with --workers 1). */
  workerPids(): number[] {
    return this.#pool?.pids() ?? [];
  }

  /**
   * Graceful stop: no new connections; every proxy stream ends with
   * Unavailable (its proxy reconnects elsewhere and resends what this gateway
   * did not acknowledge); then the destination queues drain up to the
   * shutdown timeout.
   */
  async shutdown(): Promise<Record<string, number>> {
    this.#runtime.stop();
    this.#keysFile?.stop();
    const deadlineMs = this.#o.shutdownTimeoutSec * 1000;
    this.#log.info({ deadlineMs }, "shutting down: ending proxy streams, draining queues");
    const [local, workers] = await Promise.all([
      this.#primary.shutdown(deadlineMs),
      this.#pool?.shutdown(deadlineMs) ?? Promise.resolve([]),
    ]);
    const undelivered: Record<string, number> = {};
    for (const r of [local, ...workers]) {
      for (const [k, v] of Object.entries(r)) undelivered[k] = (undelivered[k] ?? 0) + v;
    }
    this.#runtime.logUndelivered(undelivered);
    this.#runtime.close();
    return undelivered;
  }
}
