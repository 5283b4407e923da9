import type { Logger } from "../../common/logger.ts";
import { Destination, type DestinationOptions } from "../forward/destination.ts";
import { parseDestination } from "../forward/destination-spec.ts";
import type { DestinationStats } from "../forward/destination-stats.ts";
import type { LineRun } from "../forward/memory-only-lines.ts";
import { specTransport } from "../forward/pickle-destination.ts";
import { removeEmptyQueue } from "../forward/queue-dir.ts";
import type { DiskQueues } from "./disk-queues.ts";

/** An adopted disk queue is delivered until it is empty: the longest timer there is (about 24 days). */
const ADOPTED_DRAIN_MS = 2 ** 31 - 1;
/** How long before a left-over disk queue that could not be opened is tried again. */
const ADOPT_RETRY_MS = 5_000;

/** What QueueAdoption needs of the router whose process it adopts queues for. */
export interface AdoptionHost {
  readonly log: Logger;
  /** Every destination of the process: routed to, removed and draining, adopted. */
  destinations(): Iterable<Destination>;
  /** Whether `d` is one of the configured destinations (routed to, or ejected from the ring). */
  configured(d: Destination): boolean;
  /** Whether `d` is routed to now (configured and in the ring). */
  routedTo(d: Destination): boolean;
  /** Hash-route: a left-over queue is re-routed over the ring; otherwise delivered to its destination. */
  reroutes(): boolean;
  /** The queue options of destination `id` (bounds, policy, backoff), and how TLS reaches it. */
  options(id: string): DestinationOptions;
  /** Routes lines taken from a queue over the current table (not counted as routed again). */
  reroute(runs: readonly LineRun[]): void;
  /** Logs `d`'s state changes as the router's own destinations'. */
  watch(d: Destination): void;
  /**
   * Keeps `d` (not routed to) among the process's destinations until `work`
   * ends, then keeps its last counters; resolves then.
   */
  track(d: Destination, work: Promise<void>): Promise<void>;
}

/**
 * The disk queues (--queue-dir) of one process that no configured
 * destination of it sends: left by earlier processes (a destination removed
 * while polymur was down, a process number beyond today's group) or by a
 * destination removed by a reload whose drain did not empty its disk. Each
 * is re-routed over the ring (hash-route) or delivered to its destination
 * (otherwise), however long that takes, and its directory is then removed:
 * nothing is left behind unread.
 */
export class QueueAdoption {
  readonly #disks: DiskQueues;
  readonly #host: AdoptionHost;
  /** The left-over queues were looked for. */
  #looked = false;
  #retry: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(disks: DiskQueues, host: AdoptionHost) {
    this.#disks = disks;
    this.#host = host;
  }

  /**
   * Adopts the queues left for this process (DiskQueues.leftovers), once.
   * Call it once the process has its configuration: a queue of a
   * destination it is about to get is its own, not a left-over.
   */
  adoptLeftovers(): void {
    if (this.#looked || this.#stopped) return;
    this.#looked = true;
    const open = new Set<string>();
    for (const d of this.#host.destinations()) if (d.disk !== null) open.add(d.disk.dir);
    for (const q of this.#disks.leftovers(open)) this.adopt(q.dir, q.spec);
  }

  /** Re-routes or delivers the disk queue in `dir`, of the destination `spec`, then removes it. */
  adopt(dir: string, spec: string): void {
    if (this.#stopped) return;
    const host = this.#host;
    let d: Destination;
    try {
      const parsed = parseDestination(spec);
      const options = host.options(parsed.id);
      d = new Destination(specTransport(parsed, options.tls ?? null), {
        ...options,
        disk: this.#disks.opener(dir, spec),
      });
    } catch (err) {
      // Most likely held by a process that is still going away (a killed
      // worker not yet reaped): tried again a little later.
      host.log.error(
        { dir, destination: spec, err: (err as Error).message, retryMs: ADOPT_RETRY_MS },
        `cannot open the disk queue in ${dir}; trying again in ${ADOPT_RETRY_MS / 1000} s`,
      );
      this.#retryLater();
      return;
    }
    const held = d.disk?.lines ?? 0;
    const reroute = host.reroutes();
    host.log.warn(
      { dir, destination: spec, datapoints: held, action: reroute ? "reroute" : "deliver" },
      reroute
        ? `disk queue of ${spec}, which is not in the ring, holds ${held} datapoints: re-routing them over the ring`
        : `disk queue of ${spec} (${dir}) holds ${held} datapoints that no current destination of this process will send: delivering them to ${spec}`,
    );
    void host.track(d, reroute ? this.rerouteAway(d) : this.#deliver(d)).then(() => {
      // Unless a destination (configured again meanwhile) took it over.
      if (!this.#held(dir)) removeEmptyQueue(dir);
    });
  }

  /**
   * Routes the disk part of `d` over the current table until it is empty or
   * `d` is routed to again (back in the ring), then closes `d` unless it is
   * configured (ejected, its queue re-routed meanwhile).
   */
  async rerouteAway(d: Destination): Promise<void> {
    const host = this.#host;
    const moved = await rerouteDisk(
      d,
      (runs) => host.reroute(runs),
      () => !host.routedTo(d),
    );
    if (!host.configured(d)) await d.drain(0);
    if (moved > 0) {
      host.log.info(
        { destination: d.spec.spec, rerouted: moved },
        `disk queue of ${d.spec.spec}: ${moved} datapoints re-routed over the ring`,
      );
    }
  }

  /** No more adopting: the process is stopping. */
  stop(): void {
    this.#stopped = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
  }

  /** Sends an adopted disk queue to its destination until it is empty (or shutdown cuts it short). */
  async #deliver(d: Destination): Promise<void> {
    this.#host.watch(d);
    d.start();
    // No deadline: it ends when the disk is empty, or at shutdown (drain()
    // cuts it short, and what is left stays on disk for the next start).
    await d.drain(ADOPTED_DRAIN_MS, true);
  }

  /** Looks for left-over queues again in a while (one timer at a time). */
  #retryLater(): void {
    if (this.#retry !== null || this.#stopped) return;
    this.#retry = setTimeout(() => {
      this.#retry = null;
      this.#looked = false;
      this.adoptLeftovers();
    }, ADOPT_RETRY_MS);
    this.#retry.unref();
  }

  /** Whether a destination of the process has the disk queue in `dir` open. */
  #held(dir: string): boolean {
    for (const d of this.#host.destinations()) if (d.disk?.dir === dir) return true;
    return false;
  }
}

/**
 * At shutdown: the log line saying what went to the disk queues (`kept`,
 * appended at the drain's end) and what they hold for the next start, per
 * destination (`rows`: every destination's last counters). Nothing when
 * they hold nothing.
 */
export function logKeptOnDisk(
  log: Logger,
  dir: string,
  kept: number,
  rows: Iterable<DestinationStats>,
): void {
  let held = 0;
  const per: Record<string, number> = {};
  for (const s of rows) {
    const n = s.disk?.lines ?? 0;
    held += n;
    if (n > 0) per[s.spec] = (per[s.spec] ?? 0) + n;
  }
  if (held === 0) return;
  log.info(
    { toDisk: kept, onDisk: held, destinations: per, queueDir: dir },
    `${kept} datapoints not delivered by the shutdown deadline went to the disk queues; they hold ${held} datapoints in all, sent first at the next start`,
  );
}

/** Bytes of a disk queue re-routed at once. */
const REROUTE_BYTES = 4 * 1024 * 1024;

/**
 * Moves the disk part of `d` to `route` (the rest of the ring), a few
 * megabytes at a time with a turn of the event loop in between (so that the
 * destinations take each part before the next is read), until it is empty
 * or `away()` turns false (`d` is routed to again). Resolves with the
 * datapoints moved; `d` counts them as rerouted.
 */
async function rerouteDisk(
  d: Destination,
  route: (runs: LineRun[]) => void,
  away: () => boolean,
): Promise<number> {
  let moved = 0;
  while (away()) {
    const runs = await d.takeDisk(REROUTE_BYTES);
    if (runs.length === 0) break;
    route(runs);
    for (const r of runs) moved += r.lines;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return moved;
}
