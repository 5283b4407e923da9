/**
 * A per-line quick refusal shared by all the rules of a program: the pairs of
 * adjacent characters ("bigrams") in the metric name, hashed into a 256-bit set
 * once per name, against the pairs a rule's match must contain.
 *
 * What a rule's match must contain comes from its expression: the literal of a
 * string comparison, or the prefix, suffix and factor lists of a regular
 * expression's prefilter (each list: the name contains one of its strings). A
 * pair in every string of a list is in the name; the rule needs all such pairs
 * of all its lists. A rule whose pairs are not all in the name's set cannot
 * match and is not asked. Hash collisions only add pairs to the name's set, so
 * the refusal is never wrong; a name has some 40-60 pairs, so a rule needing
 * five or six pairs the name lacks is refused with a handful of word tests
 * instead of string searches.
 */

/** Words of the 256-bit sets. */
const WORDS = 8;

/** A pair's bit: any function of the two characters does, if both sides use it. */
function addPairs(text: string, bits: Uint32Array): void {
  let prev = text.charCodeAt(0);
  for (let i = 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const h = ((prev << 3) ^ c ^ (prev >>> 5)) & 0xff;
    bits[h >>> 5]! |= 1 << (h & 31);
    prev = c;
  }
}

/**
 * The pairs a match must contain, given lists of which the subject contains
 * one string each; null when that is none.
 */
export function requiredPairs(lists: readonly (readonly string[])[]): Uint32Array | null {
  const need = new Uint32Array(WORDS);
  for (const list of lists) {
    if (list.length === 0) continue;
    const common = new Uint32Array(WORDS).fill(0xffffffff);
    for (const s of list) {
      const own = new Uint32Array(WORDS);
      addPairs(s, own);
      for (let w = 0; w < WORDS; w++) common[w]! &= own[w]!;
    }
    for (let w = 0; w < WORDS; w++) need[w]! |= common[w]!;
  }
  return need.some((w) => w !== 0) ? need : null;
}

/** The pairs of the name being routed, computed on the first question about it. */
export class NamePairs {
  readonly #bits = new Uint32Array(WORDS);
  #name = "";
  #ready = false;

  /** The name is now `name` (routing starts, or a rewrite renamed the line). */
  reset(name: string): void {
    this.#name = name;
    this.#ready = false;
  }

  /** Whether the name has every pair of `need` (requiredPairs). */
  has(need: Uint32Array): boolean {
    const bits = this.#bits;
    if (!this.#ready) {
      bits.fill(0);
      addPairs(this.#name, bits);
      this.#ready = true;
    }
    for (let w = 0; w < WORDS; w++) {
      if ((need[w]! & ~bits[w]!) !== 0) return false;
    }
    return true;
  }
}
