import type { DestinationStateReport } from "../../common/destination-state-log.ts";
import type { OverflowPolicy } from "../forward/destination.ts";
import type { DiskQueueSettings } from "../forward/destination-options.ts";
import type { DestinationSpec } from "../forward/destination-spec.ts";
import type { DestinationStats } from "../forward/destination-stats.ts";
import type { DestinationTlsSettings } from "../forward/destination-tls.ts";
import type { AggregationStats, KeyedPoints } from "./aggregation.ts";
import type { HashRouterOptions } from "./hash/hash-router.ts";
import type { RulesConfig } from "./rules/rules-config.ts";

// The Router's configuration, options, counters and events: plain data, what
// a relay's options build and what is sent to worker processes.

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
  /**
   * How `tls://` and `pickle+tls://` destinations are reached
   * (--destination-tls-*: file paths, read by each process); null or absent:
   * Node's default trust store, no client certificate, each destination's
   * host. Not changed by apply() (the files are re-read when they change).
   */
  destinationTls?: DestinationTlsSettings | null;
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
