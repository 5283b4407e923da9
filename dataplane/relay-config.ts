import type { OverflowPolicy } from "./destination.ts";
import type { DestinationSpec } from "./destination-spec.ts";
import type { HashRouterOptions } from "./hash-router.ts";

export type Distribution = "broadcast" | "hash-route";

/**
 * Everything a relay engine needs, already parsed and validated. Produced by
 * cli/relay-options.ts from flags, POLYMUR_* variables and a config file;
 * plain data, so it can be sent to worker processes as JSON.
 */
export interface RelayConfig {
  /** TCP listen address. */
  listen: { host: string; port: number };
  /** UDP listen address, or null for none. */
  udp: { host: string; port: number } | null;
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
  maxLineLength: number;
  /** Per process. 0 = unlimited. */
  maxConnections: number;
  /** Close ingest connections idle this long; 0 = never. */
  idleTimeoutMs: number;
}
