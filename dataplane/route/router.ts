import { EventEmitter } from "node:events";
import {
  DestinationStateLog,
  type DestinationStateReport,
} from "../../common/destination-state-log.ts";
import type { Logger } from "../../common/logger.ts";
import { Destination, type DestinationOptions } from "../forward/destination.ts";
import type { DestinationTransport } from "../forward/destination-link.ts";
import {
  addDestinationStats,
  type DestinationStats,
  mergeDestinations,
} from "../forward/destination-stats.ts";
import type { DestinationTlsSettings } from "../forward/destination-tls.ts";
import { fileTransport } from "../forward/file-destination.ts";
import type { LineRun } from "../forward/memory-only-lines.ts";
import { specTransport } from "../forward/pickle-destination.ts";
import { udpTransport } from "../forward/udp-destination.ts";
import type { LineSink } from "../ingest/line-sink.ts";
import { remoteAggregateSink } from "./aggregate-sink.ts";
import { Aggregation, type KeyedPoints } from "./aggregation.ts";
import { DiskQueues } from "./disk-queues.ts";
import { createHashRouter, type HashRouter, withoutMember } from "./hash/hash-router.ts";
import { type AdoptionHost, logKeptOnDisk, QueueAdoption } from "./queue-adoption.ts";
import { noRouteCounts, type RouteCounts, RouteTable } from "./route-table.ts";
import {
  MIN_QUEUE_BYTES,
  type RouterConfig,
  type RouterEvents,
  type RouterOptions,
  type RouterStats,
} from "./router-config.ts";
import type { RulesConfig } from "./rules/rules-config.ts";
import { RulesProgram, type RulesTarget } from "./rules/rules-program.ts";
import { type AggregateSink, RulesTable } from "./rules-table.ts";

export {
  type Distribution,
  MIN_QUEUE_BYTES,
  type RouterConfig,
  type RouterEvents,
  type RouterOptions,
  type RouterStats,
  raisedQueueBounds,
} from "./router-config.ts";

/** How often datapoints that had no destination are reported in the log. */
const UNROUTED_LOG_MS = 5_000;

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
  #share: number;
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
  /** This process's disk queues (--queue-dir), or null. */
  readonly #disks: DiskQueues | null;
  /** This process's left-over disk queues (with --queue-dir), or null. */
  readonly #adoption: QueueAdoption | null;
  /** How TLS destinations are reached (RouterConfig.destinationTls, as at construction). */
  readonly #destinationTls: DestinationTlsSettings | null;

  constructor(config: RouterConfig, log: Logger, options: RouterOptions = {}) {
    super();
    this.#config = config;
    this.#log = log;
    this.#share = options.share ?? 1;
    this.#destinationTls = config.destinationTls ?? null;
    this.#disks =
      config.disk == null
        ? null
        : new DiskQueues(config.disk, options.process ?? { index: 0, count: 1 }, this.#share, log);
    this.#adoption =
      this.#disks === null ? null : new QueueAdoption(this.#disks, this.#adoptionHost());
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
    if (this.routable) this.#adoption?.adoptLeftovers();
  }

  /** The router as its QueueAdoption sees it. */
  #adoptionHost(): AdoptionHost {
    return {
      log: this.#log,
      destinations: () => [...this.#destinations.values(), ...this.#draining.keys()],
      configured: (d) => this.#destinations.get(d.spec.id) === d,
      routedTo: (d) => this.#destinations.get(d.spec.id) === d && !this.#ejected.has(d.spec.id),
      reroutes: () => this.#config.rules === null && this.#config.distribution === "hash-route",
      options: (id) => this.#destOptions(this.#config, id),
      reroute: (runs) => this.#reroute(runs),
      watch: (d) => this.#watch(d),
      track: (d, work) => {
        const done = work.then(() => {
          this.#draining.delete(d);
          this.#retire(d);
        });
        this.#draining.set(d, done);
        return done;
      },
    };
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
        if (d.disk !== null && (d.stats().disk?.lines ?? 0) > 0)
          this.#adoption?.adopt(d.disk.dir, d.spec.spec);
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
    if (this.routable) this.#adoption?.adoptLeftovers();
  }

  /** Gives this process's aggregations the aggregate rules of the current table. */
  #updateAggregation(): void {
    const a = this.#aggregation;
    if (a === null) return;
    const table = this.#table;
    a.setRules(table instanceof RulesTable ? table.program.aggregates : []);
    a.start((aggregate, name, rest) => this.#routeProduced(aggregate, name, rest));
  }

  /**
   * A new share of the queue bounds (the relay runs more or fewer
   * processes): every destination's memory bound, and the disk queues',
   * follow it.
   */
  setShare(share: number): void {
    if (share === this.#share) return;
    this.#share = share;
    this.#disks?.setShare(share);
    for (const d of this.#destinations.values())
      d.reconfigure(this.#destOptions(this.#config, d.spec.id));
  }

  /** How full the fullest destination's memory queue is (0 to 1; more after setShare shrank it). */
  get fullest(): number {
    let most = 0;
    for (const d of this.#destinations.values()) most = Math.max(most, d.fill);
    return most;
  }

  /** This process's share of the queue bounds. */
  get share(): number {
    return this.#share;
  }

  #destOptions(config: RouterConfig, id: string): DestinationOptions {
    const queueBytes = config.queueBytesFor[id] ?? config.queueBytes;
    return {
      queueBytes: Math.max(MIN_QUEUE_BYTES, Math.floor(queueBytes * this.#share)),
      overflow: config.overflowFor[id] ?? config.overflow,
      resendBytes: config.resendBytes,
      backoffMinMs: config.backoffMinMs,
      backoffMaxMs: config.backoffMaxMs,
      tls: this.#destinationTls,
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
        const transport = specTransport(spec, this.#destinationTls);
        d = this.#newDestination(config, transport);
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
      const transport = targetTransport(t, this.#destinationTls);
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
    if (remote !== undefined) return remoteAggregateSink(program, remote);
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
      if (d.disk !== null && !d.disk.empty) void this.#adoption?.rerouteAway(d);
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
    this.#adoption?.stop();
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
    if (this.#disks !== null) {
      const all = [...this.#destinations.values(), ...this.#draining.keys()];
      let kept = 0;
      for (const d of all) kept += d.keptOnDisk;
      logKeptOnDisk(this.#log, this.#disks.settings.dir, kept, [
        ...all.map((d) => d.stats()),
        ...this.#retired.values(),
      ]);
    }
    return result;
  }
}

/**
 * How a relay.conf target is reached (a TCP member as its spec says: TLS,
 * pickle, with `tls` for TLS); its name's id keys the router's destinations.
 */
function targetTransport(t: RulesTarget, tls: DestinationTlsSettings | null): DestinationTransport {
  if (t.kind === "file") return fileTransport(t.path, t.ip);
  return t.kind === "udp" ? udpTransport(t.spec) : specTransport(t.spec, tls);
}
