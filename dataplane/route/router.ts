import { EventEmitter } from "node:events";
import {
  DestinationStateLog,
  type DestinationStateReport,
} from "../../common/destination-state-log.ts";
import type { Logger } from "../../common/logger.ts";
import {
  Destination,
  type DestinationOptions,
  type OverflowPolicy,
} from "../forward/destination.ts";
import { type DestinationTransport, tcpTransport } from "../forward/destination-link.ts";
import type { DiskQueueSettings } from "../forward/destination-options.ts";
import { type DestinationSpec, parseDestination } from "../forward/destination-spec.ts";
import {
  addDestinationStats,
  type DestinationStats,
  mergeDestinations,
} from "../forward/destination-stats.ts";
import { fileTransport } from "../forward/file-destination.ts";
import type { LineRun } from "../forward/memory-only-lines.ts";
import { removeEmptyQueue } from "../forward/queue-dir.ts";
import { udpTransport } from "../forward/udp-destination.ts";
import type { LineSink } from "../ingest/line-sink.ts";
import {
  Aggregation,
  type AggregationStats,
  aggregateKey,
  type KeyedPoints,
} from "./aggregation.ts";
import { DiskQueues } from "./disk-queues.ts";
import { rerouteDisk } from "./disk-reroute.ts";
import {
  createHashRouter,
  type HashRouter,
  type HashRouterOptions,
  withoutMember,
} from "./hash/hash-router.ts";
import { noRouteCounts, type RouteCounts, RouteTable } from "./route-table.ts";
import type { RulesConfig } from "./rules/rules-config.ts";
import { RulesProgram, type RulesTarget } from "./rules/rules-program.ts";
import { type AggregateSink, RulesTable } from "./rules-table.ts";

export type Distribution = "broadcast" | "hash-route";

/** Where lines go and how they are queued there; plain data (sent to worker processes). */
export interface RouterConfig {
  destinations: DestinationSpec[];
  distribution: Distribution;
  hash: HashRouterOptions;
  /** Hash-route: failed connection attempts in a row before a destination leaves the ring; 0 = never. */
  ejectAfter: number;
  /** Queue bound per destination, bytes, for the whole process group (split across workers). */
  queueBytes: number;
  overflow: OverflowPolicy;
  /** Per-destination overrides, keyed by destination id (DestinationSpec.id). */
  queueBytesFor: Record<string, number>;
  overflowFor: Record<string, OverflowPolicy>;
  /** Resend window per destination and process, bytes, or "auto" (what the socket buffers hold). */
  resendBytes: number | "auto";
  backoffMinMs: number;
  backoffMaxMs: number;
  /**
   * A relay.conf (`--rules`, or a control plane's rules): its clusters and
   * rules decide where lines go, and `destinations`, `distribution` and
   * `hash` are not used. null: every line goes to `destinations`.
   */
  rules: RulesConfig | null;
  /** Disk queues (--queue-dir); null or absent: queues are in memory only. Not changed by apply(). */
  disk?: DiskQueueSettings | null;
}

export interface RouterOptions {
  /** This process's share of the queue bounds (1 / number of worker processes). Default 1. */
  share?: number;
  /**
   * Which process of the group this is (0: the primary, 1…: workers) and how
   * many there are: a disk queue belongs to a process number. Default 0 of 1.
   */
  process?: { index: number; count: number };
  /**
   * A worker process: the points aggregate rules take go to the process
   * that aggregates (the primary), batched per event-loop turn. Default:
   * this process aggregates.
   */
  remoteAggregates?: (points: KeyedPoints) => void;
  /** Counts datapoints the aggregations produced (as received and generated). */
  onProduced?: (lines: number) => void;
  /**
   * Where destination state changes go: a relay worker sends them to its
   * primary, which logs them once for the group. Default: this process's
   * own DestinationStateLog.
   */
  onDestinationState?: (report: DestinationStateReport) => void;
}

/** What the route and forward stages of one process have counted. */
export interface RouterStats {
  /** Valid lines given to at least one destination. */
  routed: number;
  /** Valid lines with no destination to go to (none configured, or none in the ring). */
  noDestination: number;
  /** Rules: valid lines no rule sent anywhere. */
  noMatch: number;
  /** Rules: valid lines that reached only the blackhole. */
  blackhole: number;
  /** Rules: valid lines a validate clause stopped. */
  validate: number;
  /** Rules with aggregate rules, in the process that aggregates: what they did. */
  aggregation: AggregationStats | null;
  /**
   * Every destination this router has had: current ones, removed ones still
   * draining, and the last counters of removed ones (`removed: true`).
   */
  destinations: DestinationStats[];
}

/**
 * Events: "blocked" and "unblocked" (a queue full under the block policy, and
 * no longer), "routable" (destinations again after none).
 */
export interface RouterEvents {
  blocked: [];
  unblocked: [];
  /** A configuration gave destinations to a router that had none. */
  routable: [];
}

/** The smallest queue a process gets, however many workers share a bound. */
export const MIN_QUEUE_BYTES = 64 * 1024;

/**
 * The queue bounds of `config` that are raised to MIN_QUEUE_BYTES once split
 * over processes taking `share` each: destination spec (or "default") →
 * the bound asked for. Said at start and on reload (no silent clamp).
 */
export function raisedQueueBounds(config: RouterConfig, share: number): Record<string, number> {
  const raised: Record<string, number> = {};
  const small = (bytes: number): boolean => Math.floor(bytes * share) < MIN_QUEUE_BYTES;
  if (small(config.queueBytes)) raised["default"] = config.queueBytes;
  for (const d of config.destinations) {
    const own = config.queueBytesFor[d.id];
    if (own !== undefined && small(own)) raised[d.spec] = own;
  }
  return raised;
}
/** How often datapoints that had no destination are reported in the log. */
const UNROUTED_LOG_MS = 5_000;
/** An adopted disk queue is delivered until it is empty: the longest timer there is (about 24 days). */
const ADOPTED_DRAIN_MS = 2 ** 31 - 1;
/** How long before a left-over disk queue that could not be opened is tried again. */
const ADOPT_RETRY_MS = 5_000;

/**
 * The route stage of one process, and the destinations it routes to: valid
 * lines in (a LineSink), routed by the current RouteTable (broadcast, or a
 * hash ring) into per-destination queues. Reconfigured in place by `apply`:
 * destinations that stay keep their queue and connection. In hash-route with
 * `ejectAfter`, a destination that keeps failing leaves the ring and its
 * queue is re-routed (carbon's DYNAMIC_ROUTER).
 */
export class Router extends EventEmitter<RouterEvents> implements LineSink {
  readonly #log: Logger;
  readonly #share: number;
  #config: RouterConfig;
  #destinations = new Map<string, Destination>();
  #table: RouteTable | RulesTable;
  readonly #counts: RouteCounts = noRouteCounts();
  /** This process's aggregations (null in a worker, or before a rules file with aggregate rules). */
  #aggregation: Aggregation | null = null;
  readonly #remoteAggregates: ((points: KeyedPoints) => void) | undefined;
  readonly #onProduced: ((lines: number) => void) | undefined;
  readonly #onDestinationState: (report: DestinationStateReport) => void;
  /** Removed destinations still delivering their queue, and the promise of their drain. */
  readonly #draining = new Map<Destination, Promise<void>>();
  /** The final counters of removed destinations, by id (summed if one was removed twice). */
  readonly #retired = new Map<string, DestinationStats>();
  #unroutedLogged = 0;
  readonly #unroutedTimer: NodeJS.Timeout;
  #blocking = false;
  /** Destinations taken out of the hash ring (ids). */
  #ejected = new Set<string>();
  /** The disk queues left by earlier processes were looked for (#adoptQueues). */
  #adoptedQueues = false;
  /** The timer of #retryAdoption, or null. */
  #adoptRetry: NodeJS.Timeout | null = null;
  /** drain() was called: the process is stopping. */
  #stopping = false;
  /** This process's disk queues (--queue-dir), or null. */
  readonly #disks: DiskQueues | null;

  constructor(config: RouterConfig, log: Logger, options: RouterOptions = {}) {
    super();
    this.#config = config;
    this.#log = log;
    this.#share = options.share ?? 1;
    this.#disks =
      config.disk == null
        ? null
        : new DiskQueues(config.disk, options.process ?? { index: 0, count: 1 }, this.#share, log);
    this.#remoteAggregates = options.remoteAggregates;
    this.#onProduced = options.onProduced;
    const states = new DestinationStateLog(log);
    this.#onDestinationState = options.onDestinationState ?? ((r) => states.report(0, r));
    this.#table = this.#buildTable(config, this.#destinations);
    this.#updateAggregation();
    this.#unroutedTimer = setInterval(() => this.#logUnrouted(), UNROUTED_LOG_MS);
    this.#unroutedTimer.unref();
    // A node with nothing configured yet (managed, before its first
    // configuration) adopts at its first configuration: a queue of a
    // destination it is about to get is its own, not an orphan.
    if (this.routable) this.#adoptQueues();
  }

  /**
   * Disk queues in --queue-dir that no destination of this process opened:
   * a destination removed while polymur was down or by a reload, or a
   * process number beyond today's group (fewer workers than before). Process
   * k of n adopts its own number's queues of destinations it does not have,
   * and every number j >= n with j mod n = k. Each is re-routed over the
   * ring (hash-route) or delivered to its destination (otherwise), and then
   * removed: never left behind.
   */
  #adoptQueues(): void {
    const disks = this.#disks;
    if (disks === null || this.#adoptedQueues) return;
    this.#adoptedQueues = true;
    const open = new Set<string>();
    for (const d of this.#destinations.values()) if (d.disk !== null) open.add(d.disk.dir);
    for (const d of this.#draining.keys()) if (d.disk !== null) open.add(d.disk.dir);
    for (const q of disks.leftovers(open)) this.#adopt(disks, q.dir, q.spec);
  }

  /** Re-routes or delivers the disk queue in `dir`, of the destination `spec`, then removes it. */
  #adopt(disks: DiskQueues, dir: string, spec: string): void {
    let d: Destination;
    try {
      const parsed = parseDestination(spec);
      d = new Destination(tcpTransport(parsed), {
        ...this.#destOptions(this.#config, parsed.id),
        disk: disks.opener(dir, spec),
      });
    } catch (err) {
      // Most likely held by a process that is still going away (a killed
      // worker not yet reaped): tried again a little later.
      this.#log.error(
        { dir, destination: spec, err: (err as Error).message, retryMs: ADOPT_RETRY_MS },
        `cannot open the disk queue in ${dir}; trying again in ${ADOPT_RETRY_MS / 1000} s`,
      );
      this.#retryAdoption();
      return;
    }
    const held = d.disk?.lines ?? 0;
    const config = this.#config;
    const reroute = config.rules === null && config.distribution === "hash-route";
    this.#log.warn(
      { dir, destination: spec, datapoints: held, action: reroute ? "reroute" : "deliver" },
      reroute
        ? `disk queue of ${spec}, which is not in the ring, holds ${held} datapoints: re-routing them over the ring`
        : `disk queue of ${spec} (${dir}) holds ${held} datapoints that no current destination of this process will send: delivering them to ${spec}`,
    );
    const finished = (reroute ? this.#rerouteAway(d) : this.#deliverDisk(d)).then(() => {
      this.#draining.delete(d);
      this.#retire(d);
      // Unless a destination (configured again meanwhile) took it over.
      if (!this.#holds(dir)) removeEmptyQueue(dir);
    });
    this.#draining.set(d, finished);
  }

  /** Looks for left-over disk queues again in a while (one timer at a time). */
  #retryAdoption(): void {
    if (this.#adoptRetry !== null || this.#stopping) return;
    this.#adoptRetry = setTimeout(() => {
      this.#adoptRetry = null;
      if (this.#stopping) return;
      this.#adoptedQueues = false;
      this.#adoptQueues();
    }, ADOPT_RETRY_MS);
    this.#adoptRetry.unref();
  }

  /** Whether a destination of this process, current or draining, has the disk queue in `dir` open. */
  #holds(dir: string): boolean {
    for (const d of this.#destinations.values()) if (d.disk?.dir === dir) return true;
    for (const d of this.#draining.keys()) if (d.disk?.dir === dir) return true;
    return false;
  }

  /** Sends an adopted disk queue to its destination until it is empty (or shutdown cuts it short). */
  async #deliverDisk(d: Destination): Promise<void> {
    this.#watch(d);
    d.start();
    // No deadline: it ends when the disk is empty, or at shutdown (drain()
    // cuts it short, and what is left stays on disk for the next start).
    await d.drain(ADOPTED_DRAIN_MS, true);
  }

  /**
   * Routes the disk part of `d` over the current table until it is empty or
   * `d` is routed to again (back in the ring), then closes `d` unless it is
   * one of the current destinations.
   */
  async #rerouteAway(d: Destination): Promise<void> {
    const id = d.spec.id;
    const moved = await rerouteDisk(
      d,
      (runs) => this.#reroute(runs),
      () => this.#destinations.get(id) !== d || this.#ejected.has(id),
    );
    if (this.#destinations.get(id) !== d) await d.drain(0);
    if (moved > 0) {
      this.#log.info(
        { destination: d.spec.spec, rerouted: moved },
        `disk queue of ${d.spec.spec}: ${moved} datapoints re-routed over the ring`,
      );
    }
  }

  /** Routes lines taken from a destination's queue; they were counted as routed when they first came in. */
  #reroute(runs: readonly LineRun[]): void {
    const table = this.#table;
    const { routed, noDestination } = this.#counts;
    for (const r of runs) table.route(r.chunk, 0, r.chunk.length, r.lines);
    this.#counts.routed = routed;
    this.#counts.noDestination = noDestination;
    table.flush();
  }

  /** A new destination over `transport`, with its disk queue when there is --queue-dir and it resends (TCP). */
  #newDestination(config: RouterConfig, transport: DestinationTransport): Destination {
    const { id, spec } = transport.name;
    const options = this.#destOptions(config, id);
    const disks = this.#disks;
    if (disks !== null && transport.resends) {
      const dir = disks.dirFor(id, spec);
      // A destination added again while its earlier self (or an adopted
      // queue of it) still holds the directory: that one lets go of it first.
      for (const d of this.#draining.keys()) if (d.disk?.dir === dir) d.releaseDisk();
      options.disk = disks.opener(dir, spec);
    }
    return new Destination(transport, options);
  }

  /** Says in the log how many datapoints had nowhere to go since it last did. */
  #logUnrouted(): void {
    const n = this.#counts.noDestination - this.#unroutedLogged;
    if (n === 0) return;
    this.#unroutedLogged = this.#counts.noDestination;
    this.#log.warn(
      { unrouted: n, reason: "no_destination", total: this.#counts.noDestination },
      `${n} datapoints had no destination and were not forwarded (counted as unrouted, reason no_destination)`,
    );
  }

  get config(): RouterConfig {
    return this.#config;
  }

  write(buf: Buffer, start: number, end: number, lines: number): void {
    this.#table.route(buf, start, end, lines);
  }

  /**
   * polymur's own metrics (self-metrics): where a rules file's `statistics`
   * sends them, else routed like any line.
   */
  writeStatistics(buf: Buffer, start: number, end: number, lines: number): void {
    const table = this.#table;
    if (table instanceof RulesTable) table.routeStatistics(buf, start, end);
    else table.route(buf, start, end, lines);
  }

  /** Hands what the route table accumulated to the destination queues now. */
  flush(): void {
    this.#table.flush();
  }

  /** True while a destination's queue is full under the block policy: ingest should pause. */
  get blocking(): boolean {
    return this.#blocking;
  }

  /** False while there is no destination to route to: lines would be unrouted. */
  get routable(): boolean {
    return this.#table instanceof RulesTable || this.#table.destinations.length > 0;
  }

  /** Points a worker process's aggregate rules took (this process aggregates). */
  aggregate(points: KeyedPoints): void {
    this.#aggregation?.addKeyed(points);
  }

  /**
   * Applies a new configuration atomically: destinations that stay keep their
   * queue and connection, new ones start, removed ones stop receiving at once
   * and drain in the background (up to `drainMs`). Throws, changing nothing,
   * if the routing cannot be built.
   */
  apply(config: RouterConfig, drainMs = 30_000): void {
    const old = this.#destinations;
    const next = new Map<string, Destination>();
    const ids = new Set(config.destinations.map((d) => d.id));
    const ejected = new Set([...this.#ejected].filter((id) => ids.has(id)));
    // Build the routing first: a configuration the router rejects changes nothing.
    if (config.rules === null) {
      for (const spec of config.destinations) {
        const d = old.get(spec.id);
        if (d !== undefined) next.set(spec.id, d);
      }
    }
    const table = this.#buildTable(config, next, ejected, old);
    this.#ejected = ejected;
    for (const d of old.values())
      if (next.has(d.spec.id)) d.reconfigure(this.#destOptions(config, d.spec.id));
    // Lines accumulated for the old table go out before the switch.
    this.#table.flush();
    for (const [id, d] of old) {
      if (next.has(id)) continue;
      const drained = d.drain(drainMs).then((left) => {
        this.#draining.delete(d);
        this.#retire(d);
        // What its disk queue still holds is re-routed or delivered, never left behind.
        if (this.#disks !== null && !this.#stopping && (d.stats().disk?.lines ?? 0) > 0)
          this.#adopt(this.#disks, d.disk!.dir, d.spec.spec);
        if (left > 0) {
          this.#log.warn(
            { destination: d.spec.spec, undelivered: left },
            `removed destination ${d.spec.spec} could not deliver ${left} datapoints (counted as undelivered)`,
          );
        } else {
          this.#log.info({ destination: d.spec.spec }, "removed destination drained");
        }
      });
      this.#draining.set(d, drained);
    }
    const wasRoutable = this.routable;
    this.#config = { ...config, disk: this.#config.disk ?? null };
    this.#table = table;
    this.#destinations = next;
    this.#updateAggregation();
    this.#updateBlocking();
    if (!wasRoutable && this.routable) this.emit("routable");
    if (this.routable) this.#adoptQueues();
  }

  /** Gives this process's aggregations the aggregate rules of the current table. */
  #updateAggregation(): void {
    const a = this.#aggregation;
    if (a === null) return;
    const table = this.#table;
    a.setRules(table instanceof RulesTable ? table.program.aggregates : []);
    a.start((aggregate, name, rest) => this.#routeProduced(aggregate, name, rest));
  }

  #destOptions(config: RouterConfig, id: string): DestinationOptions {
    const queueBytes = config.queueBytesFor[id] ?? config.queueBytes;
    return {
      queueBytes: Math.max(MIN_QUEUE_BYTES, Math.floor(queueBytes * this.#share)),
      overflow: config.overflowFor[id] ?? config.overflow,
      resendBytes: config.resendBytes,
      backoffMinMs: config.backoffMinMs,
      backoffMaxMs: config.backoffMaxMs,
    };
  }

  /**
   * Creates destinations missing from `keep` (all of them at construction),
   * and the routing over them; in hash-route, destinations ejected from the
   * ring are left out of it (carbon's DYNAMIC_ROUTER: the ring without them).
   */
  #buildTable(
    config: RouterConfig,
    keep: Map<string, Destination>,
    ejected = this.#ejected,
    reuse: ReadonlyMap<string, Destination> = keep,
  ): RouteTable | RulesTable {
    if (config.rules !== null) return this.#buildRulesTable(config, config.rules, keep, reuse);
    let hash: HashRouter | null = null;
    if (config.distribution === "hash-route") {
      hash = createHashRouter(config.destinations, config.hash);
      for (const spec of config.destinations) {
        if (ejected.has(spec.id)) hash = withoutMember(hash, spec);
      }
    } else {
      ejected.clear();
    }
    const list: Destination[] = [];
    for (const spec of config.destinations) {
      let d = keep.get(spec.id);
      if (d === undefined) {
        d = this.#newDestination(config, tcpTransport(spec));
        this.#watch(d);
        keep.set(spec.id, d);
        d.start();
      }
      if (!ejected.has(spec.id)) list.push(d);
    }
    return new RouteTable(list, hash, this.#counts);
  }

  /**
   * The routing of a relay.conf: one destination per target (id) across its
   * clusters: a TCP or UDP server, or a file. Throws RulesError, changing
   * nothing, for a file polymur cannot run.
   */
  #buildRulesTable(
    config: RouterConfig,
    rules: RulesConfig,
    keep: Map<string, Destination>,
    reuse: ReadonlyMap<string, Destination>,
  ): RulesTable {
    const program = RulesProgram.compile(rules);
    const sink = this.#aggregateSink(program);
    const targets: Destination[] = [];
    for (const t of program.targets) {
      const transport = targetTransport(t);
      const id = transport.name.id;
      let d = keep.get(id) ?? reuse.get(id);
      if (d !== undefined) keep.set(id, d);
      else {
        d = this.#newDestination(config, transport);
        this.#watch(d);
        keep.set(id, d);
        d.start();
      }
      targets.push(d);
    }
    return new RulesTable(program, targets, this.#counts, sink);
  }

  /** Where the points of a program's aggregate rules go: this process's aggregations, or the primary's. */
  #aggregateSink(program: RulesProgram): AggregateSink {
    const remote = this.#remoteAggregates;
    if (remote !== undefined) {
      const keys = program.aggregates.map(aggregateKey);
      let batch: KeyedPoints | null = null;
      return {
        add(aggregate, compute, metric, value, timestamp) {
          if (batch === null) {
            batch = {};
            const b = batch;
            setImmediate(() => {
              batch = null;
              remote(b);
            });
          }
          const key = keys[aggregate]!;
          const list = batch[key];
          if (list === undefined) batch[key] = [compute, metric, value, timestamp];
          else list.push(compute, metric, value, timestamp);
        },
      };
    }
    if (program.aggregates.length > 0 && this.#aggregation === null) {
      this.#aggregation = new Aggregation(this.#log);
    }
    return this.#aggregation ?? { add() {} };
  }

  /** Routes what the aggregations produced, counted as generated. */
  #routeProduced(aggregate: number, name: string, rest: string): void {
    const table = this.#table;
    if (!(table instanceof RulesTable)) return;
    this.#onProduced?.(1);
    table.routeProduced(aggregate, name, rest);
  }

  /**
   * Hash-route with ejectAfter: a destination that failed that many
   * connection attempts in a row leaves the ring, and its queue is re-routed
   * over the remaining ring (so nothing waits on it); it rejoins, with the
   * ring as configured, once it connects again.
   */
  #checkEjection(d: Destination, state: string): void {
    const config = this.#config;
    if (config.rules !== null || config.distribution !== "hash-route" || config.ejectAfter <= 0)
      return;
    if (this.#destinations.get(d.spec.id) !== d) return;
    const id = d.spec.id;
    if (state === "backoff" && d.failStreak >= config.ejectAfter && !this.#ejected.has(id)) {
      // The last member stays: with no ring at all, datapoints would have nowhere to go.
      if (config.destinations.length - this.#ejected.size <= 1) return;
      this.#ejected.add(id);
      let table: RouteTable | RulesTable;
      try {
        table = this.#buildTable(config, this.#destinations);
      } catch (err) {
        this.#ejected.delete(id);
        this.#log.error(
          { destination: d.spec.spec, err: (err as Error).message },
          "cannot take the destination out of the ring; keeping its queue",
        );
        return;
      }
      this.#table.flush();
      this.#table = table;
      const runs = d.takeQueued();
      let moved = 0;
      for (const r of runs) moved += r.lines;
      this.#reroute(runs);
      this.#log.warn(
        { destination: d.spec.spec, failures: d.failStreak, rerouted: moved },
        `destination ${d.spec.spec} taken out of the ring after ${d.failStreak} failed connection attempts; ${moved} queued datapoints re-routed`,
      );
      if (d.disk !== null && !d.disk.empty) void this.#rerouteAway(d);
    } else if (state === "connected" && this.#ejected.has(id)) {
      this.#ejected.delete(id);
      const table = this.#buildTable(config, this.#destinations);
      this.#table.flush();
      this.#table = table;
      this.#log.info(
        { destination: d.spec.spec },
        `destination ${d.spec.spec} is back in the ring`,
      );
    }
  }

  #watch(d: Destination): void {
    let unconfirmed = 0;
    d.on("state", (state) => {
      this.#checkEjection(d, state);
      const s = d.stats();
      // Logged once for the process group (DestinationStateLog), not here per process.
      this.#log.debug({ destination: d.spec.spec, state, error: s.lastError }, "destination state");
      this.#onDestinationState({
        destination: d.spec.spec,
        state,
        error: s.lastError,
        queued: s.queuedLines,
      });
      if (s.unconfirmed > unconfirmed) {
        this.#log.warn(
          { destination: d.spec.spec, unconfirmed: s.unconfirmed - unconfirmed },
          `destination ${d.spec.spec}: ${s.unconfirmed - unconfirmed} datapoints written before the connection failed may not have reached it (counted as unconfirmed; the resend window did not hold them)`,
        );
        unconfirmed = s.unconfirmed;
      }
    });
    d.on("blocked", () => this.#updateBlocking());
    d.on("unblocked", () => this.#updateBlocking());
  }

  #updateBlocking(): void {
    let blocking = false;
    for (const d of this.#destinations.values()) if (d.blocking) blocking = true;
    if (blocking === this.#blocking) return;
    this.#blocking = blocking;
    // Whoever feeds this router (a relay's listener, a gateway's streams)
    // holds its senders while it is blocked.
    this.#log.warn(
      { paused: blocking },
      blocking ? "queue full under block policy: ingest paused" : "ingest resumed",
    );
    this.emit(blocking ? "blocked" : "unblocked");
  }

  /** Keeps the final counters of a removed destination. */
  #retire(d: Destination): void {
    const s = { ...d.stats(), removed: true };
    const before = this.#retired.get(s.id);
    if (before === undefined) this.#retired.set(s.id, s);
    else addDestinationStats(before, s);
  }

  stats(): RouterStats {
    // What the table accumulated counts as queued: hand it to the queues first.
    this.#table.flush();
    // A destination re-added after removal: one row, its live state, summed counters.
    const rows: DestinationStats[] = [];
    for (const d of this.#destinations.values())
      rows.push({ ...d.stats(), ejected: this.#ejected.has(d.spec.id) });
    for (const d of this.#draining.keys()) rows.push({ ...d.stats(), removed: true });
    rows.push(...this.#retired.values());
    const c = this.#counts;
    return {
      routed: c.routed,
      noDestination: c.noDestination,
      noMatch: c.noMatch,
      blackhole: c.blackhole,
      validate: c.validate,
      aggregation: this.#aggregation?.stats() ?? null,
      destinations: mergeDestinations(rows),
    };
  }

  /**
   * Hands everything accumulated to the queues, then lets every destination
   * deliver its queue for up to `deadlineMs`. Resolves with what could not be
   * delivered, per destination.
   */
  async drain(deadlineMs: number): Promise<Record<string, number>> {
    this.#stopping = true;
    if (this.#adoptRetry !== null) clearTimeout(this.#adoptRetry);
    this.#aggregation?.flush();
    this.#table.flush();
    clearInterval(this.#unroutedTimer);
    this.#logUnrouted();
    // Removed destinations still draining are part of the report: their
    // drains end by their own deadline, or are cut short by this one.
    const removed = [...this.#draining.keys()];
    const entries = await Promise.all(
      [...this.#destinations.values(), ...removed].map(
        async (d) => [d.spec.spec, await d.drain(deadlineMs)] as const,
      ),
    );
    await Promise.all(this.#draining.values());
    const result: Record<string, number> = {};
    for (const [spec, n] of entries) result[spec] = (result[spec] ?? 0) + n;
    this.#logKeptOnDisk();
    return result;
  }

  /** At shutdown: what went to the disk queues, and what they hold for the next start. */
  #logKeptOnDisk(): void {
    if (this.#config.disk == null) return;
    let kept = 0;
    let held = 0;
    const per: Record<string, number> = {};
    for (const d of [...this.#destinations.values(), ...this.#draining.keys()]) {
      kept += d.keptOnDisk;
      const n = d.stats().disk?.lines ?? 0;
      held += n;
      if (n > 0) per[d.spec.spec] = (per[d.spec.spec] ?? 0) + n;
    }
    for (const s of this.#retired.values()) {
      const n = s.disk?.lines ?? 0;
      held += n;
      if (n > 0) per[s.spec] = (per[s.spec] ?? 0) + n;
    }
    if (held === 0) return;
    this.#log.info(
      { toDisk: kept, onDisk: held, destinations: per, queueDir: this.#config.disk.dir },
      `${kept} datapoints not delivered by the shutdown deadline went to the disk queues; they hold ${held} datapoints in all, sent first at the next start`,
    );
  }
}

/** How a relay.conf target is reached; its name's id keys the router's destinations. */
function targetTransport(t: RulesTarget): DestinationTransport {
  if (t.kind === "file") return fileTransport(t.path, t.ip);
  return t.kind === "udp" ? udpTransport(t.spec) : tcpTransport(t.spec);
}
