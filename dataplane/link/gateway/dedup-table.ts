/** The DedupTable defaults, in one place; `--dedup-proxies` defaults to maxProxies. */
export const DEDUP_TABLE_DEFAULTS = {
  /** Proxies remembered before the least recently seen is forgotten. */
  maxProxies: 10_000,
  /** Instances remembered per proxy (restarts, or proxies sharing its id). */
  instancesPerProxy: 4,
} as const;

/**
 * What a stream's instance is to its proxy's memory (DedupTable.claim):
 * - `first`: the gateway remembers nothing of this (key, proxy id);
 * - `same`: the instance that streamed last, streaming again (a reconnect);
 * - `new`: an instance not seen before took over: the proxy restarted, or
 *   another process uses the same proxy id;
 * - `returning`: an instance that another had replaced came back. A
 *   restarted process never does (its instance id is new), so two live
 *   processes are taking turns with one proxy id.
 */
export type InstanceChange = "first" | "same" | "new" | "returning";

/** What DedupTable.claim found: the change, and the instance that streamed before ("" if none or unknown). */
export interface InstanceClaim {
  change: InstanceChange;
  previous: string;
}

/** One (key, proxy id): which instance streams now, and what each instance has queued. */
interface ProxyMemory {
  /** The instance whose batches arrive now: the last to claim the proxy id. */
  owner: string;
  /** Highest seq queued per instance, least recently claimed first. */
  seqs: Map<string, number>;
}

/**
 * A gateway's memory of what each proxy already queued: per (key name,
 * proxy id) and per instance of that proxy (Hello.instance_id, random per
 * proxy process), the highest batch seq that was queued. A batch at or
 * below it is a resend of one the gateway already has: it is acknowledged
 * again but not queued twice. A rejected batch is not recorded: sent again,
 * it is checked again (BatchIntake.batch).
 *
 * Per instance, because seqs only mean something within one process's line
 * of batches: two processes with one proxy id (a copied spool directory)
 * hand out the same seqs for different data, and a restarted proxy cannot be
 * told from such a copy. So a new instance starts from nothing (it resends
 * what it holds, and the gateway queues it: duplicates at worst, never a
 * batch dropped as another's duplicate), and a Welcome never acknowledges
 * one instance's batches with another's seqs. Instances stream one at a time
 * (the link service refuses a second while one is connected); `claim` says
 * which one batches of the proxy id come from until the next claim.
 *
 * Bounded: the least recently seen proxies are forgotten first, and the
 * least recently claimed instances of each (a forgotten proxy or instance
 * that resends gets duplicates, never a loss). In memory only, so a
 * restarted gateway starts empty.
 *
 * Keyed by key name as well as proxy id, so that one tenant cannot claim
 * another's proxy id and make the gateway drop that proxy's batches.
 */
export class DedupTable {
  readonly #max: number;
  readonly #instances: number;
  // A Map iterates in insertion order: re-inserting on use makes it an LRU.
  readonly #proxies = new Map<string, ProxyMemory>();
  evicted = 0;
  /**
   * Told of every `record`, with the instance it was recorded for: a gateway
   * worker process reports it to the primary's table (dedup-client.ts), in
   * order, before the batch is acknowledged. Default: nobody.
   */
  onRecord: ((keyName: string, proxyId: string, instance: string, seq: number) => void) | null =
    null;

  constructor(
    maxProxies: number = DEDUP_TABLE_DEFAULTS.maxProxies,
    instancesPerProxy: number = DEDUP_TABLE_DEFAULTS.instancesPerProxy,
  ) {
    this.#max = Math.max(1, maxProxies);
    this.#instances = Math.max(1, instancesPerProxy);
  }

  /** Proxies remembered. */
  get size(): number {
    return this.#proxies.size;
  }

  /**
   * A stream of `instance` opened for this proxy: from now on its batches are
   * the ones de-duplicated, against what this instance itself queued.
   * `known`: what this instance is known to have queued already (a worker
   * process's table takes the primary's word at each claim); the higher of
   * it and what this table remembers counts.
   */
  claim(keyName: string, proxyId: string, instance: string, known = 0): InstanceClaim {
    const id = `${keyName}\0${proxyId}`;
    const m = this.#proxies.get(id);
    if (m === undefined) {
      this.#insert(id, { owner: instance, seqs: new Map([[instance, known]]) });
      return { change: "first", previous: "" };
    }
    this.#touch(id, m);
    const change: InstanceChange =
      m.owner === instance ? "same" : m.seqs.has(instance) ? "returning" : "new";
    const previous = m.owner;
    const seq = Math.max(m.seqs.get(instance) ?? 0, known);
    m.seqs.delete(instance);
    m.seqs.set(instance, seq);
    m.owner = instance;
    if (m.seqs.size > this.#instances) {
      const oldest = m.seqs.keys().next().value;
      if (oldest !== undefined) m.seqs.delete(oldest);
    }
    return { change, previous };
  }

  /** Highest seq queued for this proxy by the instance streaming now (0 if unknown). */
  highest(keyName: string, proxyId: string): number {
    const id = `${keyName}\0${proxyId}`;
    const m = this.#proxies.get(id);
    if (m === undefined) return 0;
    this.#touch(id, m);
    return m.seqs.get(m.owner) ?? 0;
  }

  /**
   * Records that `seq` is queued for this proxy, by the
   * instance streaming now, or by `instance` if given and still remembered
   * (the primary's table records what a worker reports for the instance it
   * claimed for; one forgotten meanwhile is not recorded). A proxy forgotten
   * meanwhile is remembered again under `instance`, or an unknown one ("")
   * whose next stream starts from nothing.
   */
  record(keyName: string, proxyId: string, seq: number, instance?: string): void {
    const id = `${keyName}\0${proxyId}`;
    let m = this.#proxies.get(id);
    if (m === undefined) {
      m = { owner: instance ?? "", seqs: new Map() };
      this.#insert(id, m);
    } else {
      this.#touch(id, m);
    }
    const who = instance ?? m.owner;
    // An instance forgotten meanwhile: nothing to record (at worst it gets duplicates).
    if (who !== m.owner && !m.seqs.has(who)) return;
    m.seqs.set(who, Math.max(m.seqs.get(who) ?? 0, seq));
    this.onRecord?.(keyName, proxyId, who, seq);
  }

  #touch(id: string, m: ProxyMemory): void {
    this.#proxies.delete(id);
    this.#proxies.set(id, m);
  }

  #insert(id: string, m: ProxyMemory): void {
    this.#proxies.set(id, m);
    if (this.#proxies.size > this.#max) {
      const oldest = this.#proxies.keys().next().value;
      if (oldest !== undefined) this.#proxies.delete(oldest);
      this.evicted++;
    }
  }
}
