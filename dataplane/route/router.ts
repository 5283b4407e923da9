import { EventEmitter } from "node:events";
import type { Logger } from "../../common/logger.ts";
import {
  Destination,
  type DestinationOptions,
  type DestinationStats,
  type OverflowPolicy,
} from "../forward/destination.ts";
import type { DestinationSpec } from "../forward/destination-spec.ts";
import type { LineSink } from "../ingest/line-sink.ts";
import {
  createHashRouter,
  type HashRouter,
  type HashRouterOptions,
  withoutMember,
} from "./hash/hash-router.ts";
import { RouteTable } from "./route-table.ts";

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
  resendBytes: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export interface RouterOptions {
  /** This process's share of the queue bounds (1 / number of worker processes). Default 1. */
  share?: number;
}

/** What the route and forward stages of one process have counted. */
export interface RouterStats {
  /** Datapoints lost at shutdown or on removal of a destination that could not drain. */
  undelivered: number;
  destinations: DestinationStats[];
}

/** Events: "blocked" and "unblocked" (a queue full under the block policy, and no longer). */
export interface RouterEvents {
  blocked: [];
  unblocked: [];
}

/** The smallest queue a process gets, however many workers share a bound. */
const MIN_QUEUE_BYTES = 64 * 1024;

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
  #table: RouteTable;
  #undelivered = 0;
  #blocking = false;
  /** Destinations taken out of the hash ring (ids). */
  #ejected = new Set<string>();

  constructor(config: RouterConfig, log: Logger, options: RouterOptions = {}) {
    super();
    this.#config = config;
    this.#log = log;
    this.#share = options.share ?? 1;
    this.#table = this.#buildTable(config, this.#destinations);
  }

  get config(): RouterConfig {
    return this.#config;
  }

  write(buf: Buffer, start: number, end: number, lines: number): void {
    this.#table.route(buf, start, end, lines);
  }

  /** Hands what the route table accumulated to the destination queues now. */
  flush(): void {
    this.#table.flush();
  }

  /** True while a destination's queue is full under the block policy: ingest should pause. */
  get blocking(): boolean {
    return this.#blocking;
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
    for (const spec of config.destinations) {
      const d = old.get(spec.id);
      if (d !== undefined) next.set(spec.id, d);
    }
    const table = this.#buildTable(config, next, ejected);
    this.#ejected = ejected;
    for (const d of old.values())
      if (next.has(d.spec.id)) d.reconfigure(this.#destOptions(config, d.spec.id));
    // Lines accumulated for the old table go out before the switch.
    this.#table.flush();
    for (const [id, d] of old) {
      if (next.has(id)) continue;
      void d.drain(drainMs).then((left) => {
        if (left > 0) {
          this.#undelivered += left;
          this.#log.warn(
            { destination: d.spec.spec, undelivered: left },
            "removed destination could not deliver everything",
          );
        } else {
          this.#log.info({ destination: d.spec.spec }, "removed destination drained");
        }
      });
    }
    this.#config = config;
    this.#table = table;
    this.#destinations = next;
    this.#updateBlocking();
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
  ): RouteTable {
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
        d = new Destination(spec, this.#destOptions(config, spec.id));
        this.#watch(d);
        keep.set(spec.id, d);
        d.start();
      }
      if (!ejected.has(spec.id)) list.push(d);
    }
    return new RouteTable(list, hash);
  }

  /**
   * Hash-route with ejectAfter: a destination that failed that many
   * connection attempts in a row leaves the ring, and its queue is re-routed
   * over the remaining ring (so nothing waits on it); it rejoins, with the
   * ring as configured, once it connects again.
   */
  #checkEjection(d: Destination, state: string): void {
    const config = this.#config;
    if (config.distribution !== "hash-route" || config.ejectAfter <= 0) return;
    if (this.#destinations.get(d.spec.id) !== d) return;
    const id = d.spec.id;
    if (state === "backoff" && d.failStreak >= config.ejectAfter && !this.#ejected.has(id)) {
      // The last member stays: with no ring at all, datapoints would have nowhere to go.
      if (config.destinations.length - this.#ejected.size <= 1) return;
      this.#ejected.add(id);
      let table: RouteTable;
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
      let moved = 0;
      for (const { chunk, lines } of d.takeQueued()) {
        moved += lines;
        table.route(chunk, 0, chunk.length, lines);
      }
      table.flush();
      this.#log.warn(
        { destination: d.spec.spec, failures: d.failStreak, rerouted: moved },
        `destination ${d.spec.spec} taken out of the ring after ${d.failStreak} failed connection attempts; ${moved} queued datapoints re-routed`,
      );
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
    d.on("state", (state) => {
      this.#checkEjection(d, state);
      const s = d.stats();
      const level = state === "backoff" ? "warn" : "info";
      this.#log[level](
        { destination: d.spec.spec, state, error: s.lastError, queued: s.queuedLines },
        `destination ${d.spec.spec} ${state}`,
      );
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

  stats(): RouterStats {
    return {
      undelivered: this.#undelivered,
      destinations: [...this.#destinations.values()].map((d) => ({
        ...d.stats(),
        ejected: this.#ejected.has(d.spec.id),
      })),
    };
  }

  /**
   * Hands everything accumulated to the queues, then lets every destination
   * deliver its queue for up to `deadlineMs`. Resolves with what could not be
   * delivered, per destination.
   */
  async drain(deadlineMs: number): Promise<Record<string, number>> {
    this.#table.flush();
    const entries = await Promise.all(
      [...this.#destinations.values()].map(
        async (d) => [d.spec.spec, await d.drain(deadlineMs)] as const,
      ),
    );
    const result = Object.fromEntries(entries);
    for (const n of Object.values(result)) this.#undelivered += n;
    return result;
  }
}
