import type net from "node:net";
import { DestinationStateLog } from "../../common/destination-state-log.ts";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import { DEFAULT_API_ADDR, startLineApi } from "../control/line-api.ts";
import { type DestinationSpec, parseDestination } from "../forward/destination-spec.ts";
import { tlsMode } from "../ingest/listener-tls-settings.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { mergeStats, type PipelineStats } from "../observe/pipeline-stats.ts";
import { isDefaultAddress, startAuxiliary } from "../observe/stats-server.ts";
import { MIN_QUEUE_BYTES, raisedQueueBounds } from "../route/router.ts";
import { NodeRuntime } from "./node-runtime.ts";
import type { RelayConfig } from "./relay-config.ts";
import type { RelayNodeOptions } from "./relay-options.ts";
import { RelayProcess } from "./relay-process.ts";
import { statisticsSettings } from "./statistics-settings.ts";
import { WorkerPool } from "./worker-pool.ts";
import { WORKER_SCALING_DEFAULTS } from "./worker-scaling.ts";

/**
 * A relay node: the primary process's pipeline plus its worker processes,
 * the line API, the node runtime (stats endpoint, heartbeat, self-metrics),
 * and graceful shutdown.
 */
export class RelayNode {
  readonly #log: Logger;
  readonly #proc: RelayNodeOptions;
  #config: RelayConfig;
  readonly #primary: RelayProcess;
  readonly #runtime: NodeRuntime;
  #pool: WorkerPool | null = null;
  #api: net.Server | null = null;
  /** Destinations the line API added (ids → spec) or removed (ids) since start; a reload keeps the additions. */
  readonly #apiAdded = new Map<string, DestinationSpec>();
  readonly #apiRemoved = new Set<string>();
  /** Bound addresses, known after start(). */
  ports = {
    tcp: 0,
    udp: null as number | null,
    pickle: null as number | null,
    api: null as number | null,
    stats: null as number | null,
  };

  constructor(config: RelayConfig, proc: RelayNodeOptions, log: Logger) {
    this.#config = config;
    this.#proc = proc;
    this.#log = log;
    // --console-out: one process, and every forwarded line also goes to stdout.
    const workers = proc.consoleOut ? 1 : proc.workers;
    // Destination state changes of every process, logged once for the group.
    const states = new DestinationStateLog(log);
    // Each process taking connections holds its share of the queue bounds:
    // at first every process does (worker-pool.ts gives new shares as
    // workers retire or start again).
    const running = workers;
    this.#primary = new RelayProcess(config, log, {
      share: 1 / running,
      process: { index: 0, count: workers },
      onDestinationState: (report) => states.report(0, report),
      // Only the primary binds the ports; it deals each connection to a process.
      ...(workers > 1
        ? { deal: (socket, listener) => this.#pool?.deal(socket, listener) ?? false }
        : {}),
      ...(proc.consoleOut ? { console: process.stdout } : {}),
    });
    if (workers > 1) {
      this.#pool = new WorkerPool(
        workers - 1,
        config,
        1 / running,
        log,
        (points) => this.#primary.router.aggregate(points),
        states,
        {
          primary: this.#primary,
          min: proc.workersMin,
          scaling: {
            downTicks: Math.max(
              1,
              Math.round((proc.workersIdleSec * 1000) / WORKER_SCALING_DEFAULTS.tickMs),
            ),
          },
        },
      );
    }
    this.#runtime = new NodeRuntime({
      log,
      statAddr: proc.statAddr,
      stats: () => this.stats(),
      rejects: () => this.rejects(),
      selfMetrics: {
        ...statisticsSettings(config, proc.metricsFlushSec, proc.metricsPrefix),
        inject: (text) => this.#primary.inject(text),
      },
    });
  }

  async start(): Promise<void> {
    this.#warnRaisedQueues(this.#config);
    const { port, udpPort, picklePort } = await this.#primary.listen();
    this.ports.tcp = port;
    this.ports.udp = udpPort;
    this.ports.pickle = picklePort;
    await this.#pool?.start(port, picklePort);
    const p = this.#proc;
    const api = p.apiAddr;
    if (api !== null) {
      this.#api = await startAuxiliary(
        () => startLineApi(this, { ...api, token: p.apiToken }, this.#log),
        isDefaultAddress(api, DEFAULT_API_ADDR),
        "line API",
        "api-addr",
        this.#log,
      );
      if (this.#api !== null) this.ports.api = (this.#api.address() as net.AddressInfo).port;
    }
    await this.#runtime.start();
    this.ports.stats = this.#runtime.statsPort;
    this.#runtime.ready();
    this.#logStarted();
  }
  #logStarted(): void {
    const c = this.#config;
    const l = c.listen;
    this.#log.info(
      {
        listener: "tcp",
        address: l.host,
        port: this.ports.tcp,
        tls: tlsMode(c.tls ?? null),
        udpPort: this.ports.udp,
        picklePort: this.ports.pickle,
        apiPort: this.ports.api,
        statsPort: this.ports.stats,
        workers: this.#pool === null ? 1 : this.#proc.workers,
        workersMin: this.#pool === null ? 1 : this.#proc.workersMin,
      },
      "listening",
    );
    if (c.rules !== null) {
      this.#log.info(
        { rules: c.rules.files, clusters: c.rules.clusters.map((k) => k.name) },
        `routing by the rules in ${c.rules.files.join(", ")}: ${c.rules.clusters.length} clusters, ${c.rules.rules.length} rules`,
      );
    } else if (this.#proc.controlPlane !== "") {
      this.#log.info(
        {
          controlPlane: this.#proc.controlPlane,
          group: this.#proc.group,
          destinations: c.destinations.map((d) => d.spec),
        },
        `managed by the control plane at ${this.#proc.controlPlane} (group ${this.#proc.group}): forwarding to ${c.destinations.map((d) => d.spec).join(", ") || "nothing yet"}`,
      );
    } else if (c.destinations.length === 0) {
      this.#log.warn(
        `no destinations: datapoints are validated and counted as unrouted (no_destination), not forwarded. Add some with --destinations host:port[,...]` +
          (this.ports.api === null
            ? ""
            : ` or: echo putdest host:port | nc -q1 127.0.0.1 ${this.ports.api}`),
      );
    } else {
      const how =
        c.distribution === "broadcast"
          ? "broadcasting to"
          : `hash-routing (${c.hash.algo}, ${c.hash.compat} compat, replication ${c.hash.replication}) across`;
      this.#log.info(
        { destinations: c.destinations.map((d) => d.spec) },
        `forwarding: ${how} ${c.destinations.map((d) => d.spec).join(", ")}`,
      );
    }
  }

  get config(): RelayConfig {
    return this.#config;
  }

  ready(): boolean {
    return this.#runtime.isReady;
  }

  stats(): PipelineStats {
    return mergeStats([this.#primary.stats(), ...(this.#pool?.stats() ?? [])]);
  }

  rejects(): RejectSample[] {
    const all = [...this.#primary.recentRejects(), ...(this.#pool?.rejects() ?? [])];
    return all.sort((a, b) => b.at - a.at).slice(0, 64);
  }

  /** Says which queue bounds are too small to split over the processes, and what they become. */
  #warnRaisedQueues(config: RelayConfig): void {
    const workers = this.#pool === null ? 1 : this.#proc.workers;
    const raised = raisedQueueBounds(config, 1 / workers);
    if (Object.keys(raised).length === 0) return;
    this.#log.warn(
      { raised, workers, perProcessBytes: MIN_QUEUE_BYTES },
      `queue bounds too small for ${workers} processes are raised to ${MIN_QUEUE_BYTES / 1024} KiB per process (the relay holds up to ${(workers * MIN_QUEUE_BYTES) / 1024} KiB per destination): ${Object.entries(
        raised,
      )
        .map(([d, b]) => `${d} ${b} bytes`)
        .join(", ")}`,
    );
  }

  /** Applies a configuration to every process; throws (changing nothing) if it is invalid. */
  apply(config: RelayConfig): void {
    this.#primary.apply(config);
    this.#pool?.apply(config);
    this.#warnRaisedQueues(config);
    const before = new Set(this.#config.destinations.map((d) => d.id));
    const after = new Set(config.destinations.map((d) => d.id));
    const rules = config.rules;
    this.#log.info(
      rules !== null
        ? {
            rules: rules.files,
            clusters: rules.clusters.map((c) => c.name),
            statements: rules.rules.length,
          }
        : {
            added: config.destinations.filter((d) => !before.has(d.id)).map((d) => d.spec),
            removed: this.#config.destinations.filter((d) => !after.has(d.id)).map((d) => d.spec),
            distribution: config.distribution,
          },
      "configuration applied",
    );
    this.#config = config;
  }

  #refuseIfManaged(): void {
    const rules = this.#config.rules;
    if (rules !== null) {
      throw new PolymurError(
        ErrorCode.Config,
        `destinations come from the rules in ${rules.files.join(", ")}; edit the clusters there and send SIGHUP`,
      );
    }
    if (this.#proc.controlPlane !== "") {
      throw new PolymurError(
        ErrorCode.Config,
        `destinations are managed by the control plane at ${this.#proc.controlPlane}; use polymurctl dest add|rm`,
      );
    }
  }

  // LineApiTarget
  destinations(): string[] {
    return this.#config.destinations.map((d) => d.spec);
  }

  addDestination(spec: string): string {
    this.#refuseIfManaged();
    const d = parseDestination(spec);
    if (this.#config.destinations.some((x) => x.id === d.id)) {
      throw new PolymurError(ErrorCode.DestinationSpec, `destination ${d.spec} already exists`);
    }
    this.apply({ ...this.#config, destinations: [...this.#config.destinations, d] });
    this.#apiAdded.set(d.id, d);
    this.#apiRemoved.delete(d.id);
    return `added ${d.spec}`;
  }

  removeDestination(spec: string): string {
    this.#refuseIfManaged();
    const d = parseDestination(spec);
    const rest = this.#config.destinations.filter((x) => x.id !== d.id);
    if (rest.length === this.#config.destinations.length) {
      throw new PolymurError(ErrorCode.DestinationSpec, `no destination ${d.spec}`);
    }
    this.apply({ ...this.#config, destinations: rest });
    if (!this.#apiAdded.delete(d.id)) this.#apiRemoved.add(d.id);
    return `removed ${d.spec}`;
  }

  /**
   * SIGHUP's configuration (`base`, read from the config file), applied with
   * the destinations the line API added since start kept: they last until a
   * restart (or `deldest`). Destinations the line API removed come back if
   * the file has them: the file is what SIGHUP asks for. Both are logged.
   */
  reload(base: RelayConfig): void {
    const ids = new Set(base.destinations.map((d) => d.id));
    const kept = [...this.#apiAdded.values()].filter((d) => !ids.has(d.id));
    const back = base.destinations.filter((d) => this.#apiRemoved.has(d.id));
    this.apply({ ...base, destinations: [...base.destinations, ...kept] });
    if (kept.length > 0) {
      this.#log.info(
        { kept: kept.map((d) => d.spec) },
        `SIGHUP: kept destinations added through the line API: ${kept.map((d) => d.spec).join(", ")} (until restart; add them to the config file to keep them for good)`,
      );
    }
    if (back.length > 0) {
      this.#log.warn(
        { restored: back.map((d) => d.spec) },
        `SIGHUP: destinations removed through the line API are in the config file and were added back: ${back.map((d) => d.spec).join(", ")}`,
      );
    }
    for (const d of back) this.#apiRemoved.delete(d.id);
  }

  /**
   * Stops accepting, drains every queue for up to the shutdown timeout, and
   * logs exactly what was left undelivered.
   */
  async shutdown(): Promise<Record<string, number>> {
    this.#runtime.stop();
    this.#api?.close();
    const deadlineMs = this.#proc.shutdownTimeoutSec * 1000;
    this.#log.info({ deadlineMs }, "shutting down: no new connections, draining queues");
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
