import type { HashRouter } from "../../../dataplane/route/hash/hash-router.ts";

/** What happened to a destination in a ring change. */
export type RingMemberChange = "kept" | "added" | "removed";

/** One destination's share of a ring change, in names. */
export interface RingMemberMoves {
  /** The destination as written (before the change if it was there, else after). */
  readonly destination: string;
  readonly change: RingMemberChange;
  /** Names it held before the change (as primary or replica). */
  before: number;
  /** Names it holds after. */
  after: number;
  /** Names it held before and not after. */
  lost: number;
  /** Names it holds after and did not before. */
  gained: number;
}

/**
 * Counts, name by name, what a hash ring change does: where each name goes
 * before and after, with the two rings the relays build (`createHashRouter`
 * over each configuration, as `Router.apply` does on a reload). A name moves
 * when the set of destinations that get it changes; replicas only re-ordered
 * do not move it. Destinations are told apart by their id (`host:port[:instance]`
 * after any scheme), as a relay tells its destinations apart.
 */
export class RingMoves {
  /** Every destination, before's in order then those only after has. */
  readonly members: readonly RingMemberMoves[];
  /** Names counted. */
  names = 0;
  /** Of them, names whose destinations changed. */
  moved = 0;
  /** Of those, names that leave a destination (not only gain one, as a higher replication does). */
  leaving = 0;

  readonly #before: HashRouter;
  readonly #after: HashRouter;
  /** Member index of each ring → index into `members`. */
  readonly #beforeAt: Uint16Array;
  readonly #afterAt: Uint16Array;
  readonly #beforeOut: Uint8Array;
  readonly #afterOut: Uint8Array;
  /** Per member, the name number that last routed to it in each ring (allocation-free sets). */
  readonly #inBefore: Float64Array;
  readonly #inAfter: Float64Array;
  #beforeCount = 0;
  #afterCount = 0;

  constructor(before: HashRouter, after: HashRouter) {
    this.#before = before;
    this.#after = after;
    const members: RingMemberMoves[] = [];
    const at = new Map<string, number>();
    const afterIds = new Set(after.members.map((m) => m.id));
    const beforeIds = new Set(before.members.map((m) => m.id));
    const row = (spec: string, change: RingMemberChange): RingMemberMoves => ({
      destination: spec,
      change,
      before: 0,
      after: 0,
      lost: 0,
      gained: 0,
    });
    for (const m of before.members) {
      at.set(m.id, members.length);
      members.push(row(m.spec, afterIds.has(m.id) ? "kept" : "removed"));
    }
    for (const m of after.members) {
      if (beforeIds.has(m.id)) continue;
      at.set(m.id, members.length);
      members.push(row(m.spec, "added"));
    }
    this.members = members;
    this.#beforeAt = Uint16Array.from(before.members, (m) => at.get(m.id)!);
    this.#afterAt = Uint16Array.from(after.members, (m) => at.get(m.id)!);
    this.#beforeOut = new Uint8Array(Math.max(1, before.maxRoutes));
    this.#afterOut = new Uint8Array(Math.max(1, after.maxRoutes));
    this.#inBefore = new Float64Array(members.length).fill(-1);
    this.#inAfter = new Float64Array(members.length).fill(-1);
  }

  /**
   * Routes the name in key[start, end) (UTF-8 bytes) through both rings and
   * counts it; true when it moves (then `from()` and `to()` name its
   * destinations, primary first).
   */
  add(key: Uint8Array, start: number, end: number): boolean {
    const stamp = this.names++;
    const nb = this.#before.route(key, start, end, this.#beforeOut);
    const na = this.#after.route(key, start, end, this.#afterOut);
    this.#beforeCount = nb;
    this.#afterCount = na;
    const members = this.members;
    const inBefore = this.#inBefore;
    const inAfter = this.#inAfter;
    for (let i = 0; i < nb; i++) {
      const m = this.#beforeAt[this.#beforeOut[i]!]!;
      inBefore[m] = stamp;
      members[m]!.before++;
    }
    let gains = false;
    let leaves = false;
    for (let i = 0; i < na; i++) {
      const m = this.#afterAt[this.#afterOut[i]!]!;
      inAfter[m] = stamp;
      members[m]!.after++;
      if (inBefore[m] !== stamp) {
        members[m]!.gained++;
        gains = true;
      }
    }
    for (let i = 0; i < nb; i++) {
      const m = this.#beforeAt[this.#beforeOut[i]!]!;
      if (inAfter[m] !== stamp) {
        members[m]!.lost++;
        leaves = true;
      }
    }
    if (leaves) this.leaving++;
    if (gains || leaves) this.moved++;
    return gains || leaves;
  }

  /** The destinations of the name last added, before the change, primary first. */
  from(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#beforeCount; i++) {
      out.push(this.members[this.#beforeAt[this.#beforeOut[i]!]!]!.destination);
    }
    return out;
  }

  /** The destinations of the name last added, after the change, primary first. */
  to(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#afterCount; i++) {
      out.push(this.members[this.#afterAt[this.#afterOut[i]!]!]!.destination);
    }
    return out;
  }

  /** The share of names that move, 0 to 1 (0 with no names). */
  get share(): number {
    return this.names === 0 ? 0 : this.moved / this.names;
  }
}
