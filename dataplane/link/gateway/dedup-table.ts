/** The DedupTable default, in one place; `--dedup-proxies` defaults to it. */
export const DEDUP_TABLE_DEFAULTS = {
  /** Proxies remembered before the least recently seen is forgotten. */
  maxProxies: 10_000,
} as const;

/**
 * A gateway's memory of what each proxy already queued: per (key name,
 * proxy id), the highest batch seq that was queued (or rejected). A batch at
 * or below it is a resend of one the gateway already has: it is acknowledged
 * again but not queued twice. Bounded: the least recently seen proxies are
 * forgotten first (a forgotten proxy that resends gets duplicates, never a
 * loss). In memory only, so a restarted gateway starts empty.
 *
 * Keyed by key name as well as proxy id, so that one tenant cannot claim
 * another's proxy id and make the gateway drop that proxy's batches.
 */
export class DedupTable {
  readonly #max: number;
  // A Map iterates in insertion order: re-inserting on use makes it an LRU.
  readonly #seen = new Map<string, number>();
  evicted = 0;

  constructor(maxProxies: number = DEDUP_TABLE_DEFAULTS.maxProxies) {
    this.#max = Math.max(1, maxProxies);
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Highest seq queued for this proxy (0 if unknown). */
  highest(keyName: string, proxyId: string): number {
    const id = `${keyName}\0${proxyId}`;
    const v = this.#seen.get(id);
    if (v === undefined) return 0;
    this.#seen.delete(id);
    this.#seen.set(id, v);
    return v;
  }

  /** Records that `seq` is queued (or rejected) for this proxy. */
  record(keyName: string, proxyId: string, seq: number): void {
    const id = `${keyName}\0${proxyId}`;
    const v = this.#seen.get(id) ?? 0;
    this.#seen.delete(id);
    this.#seen.set(id, Math.max(v, seq));
    if (this.#seen.size > this.#max) {
      const oldest = this.#seen.keys().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
      this.evicted++;
    }
  }
}
