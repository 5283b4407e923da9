/**
 * A bounded memo of what a rule computes from a metric name (a rewrite's new
 * name, a `route using` key): the same name gives the same result, and the same
 * names come back every interval, so a name seen lately costs a map lookup
 * instead of a regular expression match and a replacement.
 *
 * Two generations of at most `size` names each: when the young one is full it
 * becomes the old one (the previous old one is dropped), and a name found in the
 * old one is copied into the young one. Names used within about `size` distinct
 * names of each other stay; memory is at most 2 * `size` entries. Names longer
 * than MAX_NAME are not remembered.
 */

/** Longest name remembered, in characters. */
const MAX_NAME = 256;

export class NameMemo<V> {
  readonly size: number;
  #young = new Map<string, V>();
  #old = new Map<string, V>();

  constructor(size: number) {
    this.size = Math.max(1, size);
  }

  /** What was remembered for `name`, or undefined. */
  get(name: string): V | undefined {
    const v = this.#young.get(name);
    if (v !== undefined || this.#old.size === 0) return v;
    const old = this.#old.get(name);
    if (old !== undefined) this.set(name, old);
    return old;
  }

  /** Remembers `value` (not undefined) for `name`. */
  set(name: string, value: V): void {
    if (name.length > MAX_NAME) return;
    if (this.#young.size >= this.size) {
      this.#old = this.#young;
      this.#young = new Map();
    }
    this.#young.set(name, value);
  }
}
