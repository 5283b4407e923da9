import type { Logger } from "../common/logger.ts";
import type { ControlStore, NodeRecord } from "./control-store.ts";
import { CONNECTED_WITHIN_MS, nodeLastSeenMs } from "./state-proto.ts";

/**
 * Node records that stopped reporting are removed after `--node-expiry`: a
 * node that is not connected and was last heard of (its subscription's
 * refresh or its last report, the later) longer ago than that. Until then
 * `nodes ls` shows it as stale, with the time it expires. A connected node
 * never expires: its replica refreshes its record every few seconds.
 */

/** Every node-expiry default, in one place: `--node-expiry` takes its default from here. */
export const NODE_EXPIRY_DEFAULTS = {
  /** A day: a node down over a weekend night is still listed on Monday's first look, as stale. */
  expirySec: 24 * 3600,
  /** How often a replica sweeps, at most (and at least once a second). */
  maxSweepIntervalMs: 60_000,
} as const;

/** True when `rec` is to be removed: not connected, and not seen for longer than `expiryMs` (0: never). */
export function nodeExpired(rec: NodeRecord, nowMs: number, expiryMs: number): boolean {
  if (expiryMs <= 0) return false;
  const sub = rec.subscription;
  const connected = sub?.open === true && nowMs - sub.lastSeenMs < CONNECTED_WITHIN_MS;
  return !connected && nowMs - nodeLastSeenMs(rec) > expiryMs;
}

export interface NodeExpiryOptions {
  store: ControlStore;
  /** --node-expiry in milliseconds; 0 keeps records for ever (nothing runs). */
  expiryMs: number;
  log?: Logger;
  now?: () => number;
  /** Sweep interval. Default a quarter of the expiry, between 1 s and NODE_EXPIRY_DEFAULTS.maxSweepIntervalMs. */
  intervalMs?: number;
}

/**
 * Removes expired node records from the store, at start and then
 * periodically; every replica sweeps (removing a record twice is harmless,
 * and the store keeps one that changed since it was read). Each removal is
 * logged.
 */
export class NodeExpiry {
  readonly #o: NodeExpiryOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> = Promise.resolve();

  constructor(o: NodeExpiryOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Sweeps now and every interval after (nothing when records never expire). */
  start(): void {
    if (this.#o.expiryMs <= 0 || this.#timer !== undefined) return;
    const every =
      this.#o.intervalMs ??
      Math.min(NODE_EXPIRY_DEFAULTS.maxSweepIntervalMs, Math.max(1000, this.#o.expiryMs / 4));
    const tick = (): void => {
      this.#running = this.sweep().catch((err: unknown) => {
        this.#o.log?.debug({ err: (err as Error).message }, "node expiry: sweep failed; next time");
      });
    };
    tick();
    this.#timer = setInterval(tick, every);
    this.#timer.unref();
  }

  /** Removes the records expired now; resolves with them. */
  async sweep(): Promise<NodeRecord[]> {
    const now = this.#now();
    const removed = await this.#o.store.removeNodes((r) => nodeExpired(r, now, this.#o.expiryMs));
    for (const r of removed) {
      const who = r.report ?? r.subscription;
      this.#o.log?.info(
        {
          node: r.nodeId,
          group: who?.group ?? "",
          hostname: who?.hostname ?? "",
          lastSeen: new Date(nodeLastSeenMs(r)).toISOString(),
          expirySec: this.#o.expiryMs / 1000,
        },
        "node record expired (not seen for longer than --node-expiry); removed",
      );
    }
    return removed;
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}
