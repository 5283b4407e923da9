/**
 * The path glibc's set_regs walks through a match, found depth first, for the
 * expressions where that gives the same path (ere-verdict.ts's dfaDecides).
 *
 * glibc first sifts the DFA's states down to the nodes on some path to the match's
 * end (prune_impossible_nodes), then walks from the first node taking at each
 * choice the first destination left. For those expressions the sifted set at a
 * position is exactly the nodes reached there from which the end can still be
 * reached (nothing is dropped for its context, closures are whole, see
 * ere-verdict.ts), so the walk takes the first destination, in glibc's order,
 * from which the end can be reached: the first path of a depth-first search in
 * that order. Remembering where the search failed (a node at a position) makes
 * it linear in nodes times positions at worst; a greedy expression that matches
 * on its first try visits little more than the path itself.
 */
import { hasByte } from "./ere-bracket.ts";
import type { EreNfa } from "./ere-nfa.ts";
import { END_OF_RE, EPSILON_BIT } from "./ere-tree.ts";

/** (node, position) pairs remembered at most: beyond, find() declines (the caller sifts instead). */
const MAX_CELLS = 1 << 20;

export class FirstPath {
  readonly #nfa: EreNfa;
  /** The path found: node per step, and the position (from the match's start) at it. */
  nodes = new Int32Array(64);
  at = new Int32Array(64);
  /** Steps in the path. */
  length = 0;
  /** The next destination to try, per step (epsilon nodes), or 1 once a consuming node moved on. */
  #edge = new Int32Array(64);
  /** Failed (node, position) pairs of this search: stamp === #stamp. */
  #failed = new Int32Array(0);
  #stamp = 0;

  constructor(nfa: EreNfa) {
    this.#nfa = nfa;
  }

  /**
   * Finds the first path from the first node at position 0 to `lastNode` at
   * `end`, consuming s[start, start + end). False when there is none (which the
   * DFA's match rules out for the expressions this is used for), or when the
   * match is too long for its memory (over MAX_CELLS nodes times positions).
   */
  find(s: string, start: number, end: number, lastNode: number): boolean {
    const nfa = this.#nfa;
    const type = nfa.type;
    const cells = nfa.size * (end + 1);
    if (cells > MAX_CELLS) return false;
    if (this.#failed.length < cells) {
      this.#failed = new Int32Array(Math.max(cells, 2 * this.#failed.length));
      this.#stamp = 0;
    }
    if (++this.#stamp > 0x3fffffff) {
      this.#failed.fill(0);
      this.#stamp = 1;
    }
    const stamp = this.#stamp;
    const failed = this.#failed;
    let top = 0;
    this.#push(0, nfa.initNode, 0);
    while (top >= 0) {
      const n = this.nodes[top]!;
      const i = this.at[top]!;
      const e = this.#edge[top]!;
      if (e === 0) {
        if (i === end && n === lastNode) {
          this.length = top + 1;
          return true;
        }
        if (failed[n * (end + 1) + i] === stamp) {
          top--;
          continue;
        }
      }
      const t = type[n]!;
      if ((t & EPSILON_BIT) !== 0) {
        const dests = nfa.edests[n]!;
        if (e < dests.length) {
          this.#edge[top] = e + 1;
          top++;
          this.#push(top, dests[e]!, i);
          continue;
        }
      } else if (t !== END_OF_RE && e === 0 && i < end) {
        const c = s.charCodeAt(start + i);
        if (c <= 255 && hasByte(nfa.accepts[n]!, c)) {
          this.#edge[top] = 1;
          top++;
          this.#push(top, nfa.nexts[n]!, i + 1);
          continue;
        }
      }
      failed[n * (end + 1) + i] = stamp;
      top--;
    }
    this.length = 0;
    return false;
  }

  #push(k: number, node: number, at: number): void {
    if (k === this.nodes.length) {
      const grow = (a: Int32Array) => {
        const b = new Int32Array(2 * a.length);
        b.set(a);
        return b;
      };
      this.nodes = grow(this.nodes);
      this.at = grow(this.at);
      this.#edge = grow(this.#edge);
    }
    this.nodes[k] = node;
    this.at[k] = at;
    this.#edge[k] = 0;
  }
}
