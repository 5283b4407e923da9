import type http from "node:http";
import type { Logger } from "../../common/logger.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { datapointTotals, type PipelineStats } from "../observe/pipeline-stats.ts";
import { SelfMetrics } from "../observe/self-metrics.ts";
import { startStatsEndpoint } from "../observe/stats-server.ts";
import { HeapTrim } from "./heap-trim.ts";

/** How often a node logs what it received. */
export const HEARTBEAT_MS = 5_000;
/** While nothing arrives, the heartbeat is logged at most this often. */
export const IDLE_HEARTBEAT_MS = 60_000;

export interface NodeRuntimeOptions {
  log: Logger;
  /** The stats endpoint's address (--stat-addr); null = off. */
  statAddr: { host: string; port: number } | null;
  /** The node's pipeline counters (summed over its processes). */
  stats(): PipelineStats;
  /** The most recent rejected lines. */
  rejects(): RejectSample[];
  /** Role-specific counters for the stats endpoint: Prometheus text, and fields merged into /stats. */
  extra?(): { prometheus: string; json: Record<string, unknown> };
  /** Fields added to the heartbeat log line. */
  heartbeat?(): Record<string, unknown>;
  /**
   * polymur's own metrics, sent as Graphite lines every `flushSec` seconds
   * (0 = off) under `prefix`, through `inject` (the node's router).
   */
  selfMetrics?: {
    flushSec: number;
    prefix: string;
    /** Counters as totals since start rather than increases (a rules file's `statistics` without `reset counters after interval`). */
    cumulative?: boolean;
    inject(text: string): void;
  };
}

/**
 * What every node role (relay, proxy, gateway) runs beside its pipeline: the
 * stats endpoint and its readiness, the heartbeat log line, self-metrics,
 * periodic chores, and the shutdown summary.
 */
export class NodeRuntime {
  readonly #o: NodeRuntimeOptions;
  #server: http.Server | null = null;
  #timers: NodeJS.Timeout[] = [];
  #ready = false;
  #trim: HeapTrim | null = null;
  #lastReceived = 0;
  #lastLoggedAt = Number.NEGATIVE_INFINITY;
  /** The stats endpoint's bound port; null when off (or its default port was taken). */
  statsPort: number | null = null;

  constructor(options: NodeRuntimeOptions) {
    this.#o = options;
  }

  /** Starts the stats endpoint (not yet ready: see `ready()`). */
  async start(): Promise<void> {
    const o = this.#o;
    const stats = await startStatsEndpoint(
      {
        stats: () => o.stats(),
        rejects: () => o.rejects(),
        ready: () => this.#ready,
        ...(o.extra === undefined ? {} : { extra: () => o.extra!() }),
      },
      o.statAddr,
      o.log,
    );
    this.#server = stats?.server ?? null;
    this.statsPort = stats?.port ?? null;
  }

  /**
   * The node takes traffic: /readyz answers 200; the heartbeat, self-metrics
   * and the idle heap trim (heap-trim.ts) start.
   */
  ready(): void {
    this.#ready = true;
    this.#trim = new HeapTrim().start();
    this.every(HEARTBEAT_MS, () => this.#heartbeat());
    const m = this.#o.selfMetrics;
    if (m !== undefined && m.flushSec > 0) {
      const metrics = new SelfMetrics(m.prefix, m.cumulative ?? false);
      this.every(m.flushSec * 1000, () => {
        m.inject(metrics.lines(this.#o.stats(), Math.floor(Date.now() / 1000)));
      });
    }
  }

  get isReady(): boolean {
    return this.#ready;
  }

  /** Runs `f` every `ms` until stop(). */
  every(ms: number, f: () => void): void {
    this.#timers.push(setInterval(f, ms));
  }

  #heartbeat(): void {
    // The Go polymur's heartbeat line, kept verbatim for people who grep for
    // it: lines from senders (polymur's own are not news), every 5 s while
    // they arrive, at most once a minute while none do.
    const s = this.#o.stats();
    const received = s.received - s.generated;
    const n = received - this.#lastReceived;
    this.#lastReceived = received;
    const now = Date.now();
    if (n === 0 && now - this.#lastLoggedAt < IDLE_HEARTBEAT_MS) return;
    this.#lastLoggedAt = now;
    this.#o.log.info(
      { received: n, ...this.#o.heartbeat?.() },
      `Last 5s: Received ${n} datapoints | Avg: ${(n / (HEARTBEAT_MS / 1000)).toFixed(2)}/sec`,
    );
  }

  /** The node is draining: /readyz answers 503; timers stop. */
  stop(): void {
    this.#ready = false;
    this.#trim?.stop();
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
  }

  /**
   * Logs what a relay or gateway could not deliver at shutdown (datapoints
   * per destination) and returns the total.
   */
  logUndelivered(undelivered: Record<string, number>): number {
    const total = Object.values(undelivered).reduce((a, b) => a + b, 0);
    // The node's whole account, for the record (see datapointTotals).
    const datapoints = datapointTotals(this.#o.stats());
    const unconfirmed =
      datapoints.unconfirmed === 0
        ? ""
        : `; ${datapoints.unconfirmed} datapoints written before a connection failed may not have reached their destination (unconfirmed)`;
    // What is still queued at the end is on disk (--queue-dir): the next start sends it.
    const onDisk =
      datapoints.queued === 0
        ? ""
        : `; ${datapoints.queued} datapoints wait in the disk queues for the next start`;
    if (total === 0) {
      this.#o.log.info(
        { received: datapoints.received, datapoints, onDisk: datapoints.queued },
        datapoints.queued === 0
          ? `shutdown complete: every queued datapoint was written${unconfirmed}`
          : `shutdown complete: nothing undelivered${onDisk}${unconfirmed}`,
      );
    } else {
      this.#o.log.warn(
        { undelivered, total, datapoints, onDisk: datapoints.queued },
        `shutdown complete: ${total} datapoints left undelivered${onDisk}${unconfirmed}`,
      );
    }
    return total;
  }

  /** Closes the stats endpoint (last: it answers while the node drains). */
  close(): void {
    this.stop();
    this.#server?.close();
    this.#server?.closeAllConnections();
    this.#server = null;
  }
}
