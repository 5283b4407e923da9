/**
 * A bounded memo from metric-name bytes to a route (up to `width` member indices), for
 * routers whose per-name work costs clearly more than a probe (jump_fnv1a_ch by default).
 * A probe is bound by memory latency (the tag, then the record: one or two cache misses
 * once the memo outgrows the CPU caches), so it pays for hashes well above ~150 ns.
 *
 * Two-way set-associative: a name may sit in either slot of set `hash(name) & (sets - 1)`,
 * and a new name replaces the one of the two used less recently. A hit is confirmed by
 * comparing the stored bytes, so the memo can never change a route. Names longer than
 * `maxKeyLength` are not memoised.
 *
 * Layout, for one cache miss per probe at most: a small array of 32-bit tags (checked
 * first, 4 bytes a slot), and one record per slot holding
 * `[length + 1][route count][route...][name bytes...]`. Memory is
 * `slots * (4 + recordSize)` bytes, allocated up front; nothing is allocated per call.
 */
export interface RouteCacheOptions {
  /** Number of slots, rounded up to a power of two. Default 65536. */
  slots?: number;
  /** Record size in bytes (a multiple of 64 is cache-line friendly). Default 128. */
  recordSize?: number;
}

/** The memo's hash: 32-bit FNV-1a over the bytes. */
function tagOf(key: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5 | 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h;
}

export class RouteCache {
  readonly slots: number;
  readonly width: number;
  /** Longest name memoised, in bytes. */
  readonly maxKeyLength: number;
  readonly #setMask: number;
  readonly #record: number;
  readonly #keyAt: number;
  readonly #tags: Int32Array;
  readonly #records: Uint8Array;
  /** Per set: the way (0 or 1) hit or filled last. */
  readonly #recent: Uint8Array;
  /** Slot and tag of the last `get` miss, for the following `set`. */
  #pendingSlot = -1;
  #pendingTag = 0;

  constructor(width: number, options: RouteCacheOptions = {}) {
    const want = Math.max(1, options.slots ?? 65536);
    let slots = 2;
    while (slots < want) slots *= 2;
    this.slots = slots;
    this.width = width;
    this.#setMask = slots / 2 - 1;
    this.#record = Math.max(options.recordSize ?? 128, width + 3);
    this.#keyAt = 2 + width;
    this.maxKeyLength = Math.min(254, this.#record - this.#keyAt);
    this.#tags = new Int32Array(slots);
    this.#records = new Uint8Array(slots * this.#record);
    this.#recent = new Uint8Array(slots / 2);
  }

  /**
   * Copies the memoised route for key[start, end) into `out` and returns its length, or
   * returns -1 on a miss (then `set` stores the route computed for the same key).
   */
  get(key: Uint8Array, start: number, end: number, out: Uint8Array): number {
    const len = end - start;
    if (len > this.maxKeyLength) {
      this.#pendingSlot = -1;
      return -1;
    }
    const tag = tagOf(key, start, end);
    const set = tag & this.#setMask;
    const first = set * 2;
    for (let way = 0; way < 2; way++) {
      const slot = first + way;
      if (this.#tags[slot] !== tag) continue;
      const rec = this.#records;
      const r = slot * this.#record;
      if (rec[r] !== len + 1) continue;
      let k = r + this.#keyAt;
      let i = start;
      while (i < end && rec[k] === key[i]) {
        i++;
        k++;
      }
      if (i !== end) continue;
      this.#recent[set] = way;
      const n = rec[r + 1]!;
      for (let j = 0; j < n; j++) out[j] = rec[r + 2 + j]!;
      return n;
    }
    this.#pendingSlot = first + (this.#recent[set]! ^ 1);
    this.#pendingTag = tag;
    return -1;
  }

  /** Stores `route[0, count)` for the key of the preceding missed `get`. */
  set(key: Uint8Array, start: number, end: number, route: Uint8Array, count: number): void {
    const slot = this.#pendingSlot;
    if (slot < 0) return;
    this.#pendingSlot = -1;
    const rec = this.#records;
    const r = slot * this.#record;
    rec[r] = end - start + 1;
    rec[r + 1] = count;
    for (let j = 0; j < count; j++) rec[r + 2 + j] = route[j]!;
    let k = r + this.#keyAt;
    for (let i = start; i < end; i++) rec[k++] = key[i]!;
    this.#tags[slot] = this.#pendingTag;
    this.#recent[slot >>> 1] = slot & 1;
  }
}
