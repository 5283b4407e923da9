/**
 * Which rules of a program can match a name, by the name's first character.
 *
 * A rule whose expression only matches names starting with certain characters
 * (`^servers\.`, `^(mysql|postgres)\.`, a plain `^word`) cannot match a name
 * that starts with another, so routing need not ask it: for a name starting
 * with `c` the program walks only the rules that may match such a name, in file
 * order. Unlike carbon-c-relay's optimiser (which groups rules by a word and may
 * skip a rule that would match) this leaves out only rules that cannot match,
 * so no decision changes.
 */

/** Lists per first character: 0-255, then one for an empty name or a character above 255. */
const OTHER = 256;

export class FirstCharIndex {
  /** Per first character (OTHER: none of 0-255), the steps to ask, ascending. */
  readonly #lists: readonly Int32Array[];

  /**
   * `firsts[i]`: the characters a name must start with for step i to match (each
   * once; none matches an empty name), or null when it may start with any.
   */
  constructor(firsts: readonly (string | null)[]) {
    const shared = new Map<string, Int32Array>();
    const lists: Int32Array[] = [];
    for (let c = 0; c <= OTHER; c++) {
      const ch = c < OTHER ? String.fromCharCode(c) : null;
      const steps: number[] = [];
      for (let i = 0; i < firsts.length; i++) {
        const f = firsts[i]!;
        if (f === null || (ch !== null && f.includes(ch))) steps.push(i);
      }
      const key = steps.join(",");
      let list = shared.get(key);
      if (list === undefined) {
        list = Int32Array.from(steps);
        shared.set(key, list);
      }
      lists.push(list);
    }
    this.#lists = lists;
  }

  /** The steps that may match `name`, ascending. */
  steps(name: string): Int32Array {
    const c = name.charCodeAt(0);
    return this.#lists[c < OTHER ? c : OTHER]!;
  }
}

/** The position in `list` (ascending) of the first step after `step`. */
export function positionAfter(list: Int32Array, step: number): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]! <= step) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
