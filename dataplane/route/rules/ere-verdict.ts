/**
 * Whether the DFA alone gives regexec's answer for an expression with groups.
 *
 * With groups, glibc's regexec (as carbon-c-relay calls it, nmatch = groups + 1)
 * does more after its DFA finds a match (ere-matcher.ts): it sifts the states
 * backwards (prune_impossible_nodes), trying the next start when nothing is left,
 * and walks the match to fill the groups (set_regs), reporting no match at all
 * when the walk gets stuck. Both can only turn a match the DFA found into none, and
 * only through context constraints (anchors) and epsilon loops. Where neither
 * applies they always succeed, and whether the expression matches is whether the
 * DFA finds a match: a test needs neither the sifting, nor the walk, nor even the
 * longest match.
 *
 * The conditions, on the NFA (nodes after a consuming step are "re-entered"):
 * 1. no word anchors (no word context anywhere);
 * 2. no consuming node needs a context after it (`$` in the middle);
 * 3. no re-entered node needs a context before it (`^` inside a repetition),
 *    and, unless the matcher only tries the subject's start (where the context
 *    satisfies `^`), no node at all does;
 * 4. no cycle of epsilon moves (a repetition of something that may be empty);
 * 5. (what the argument below assumes of the NFA, checked rather than trusted)
 *    each epsilon closure is the node and the closures of its destinations, and
 *    without `|` or a repetition no epsilon node has a choice.
 *
 * Why that suffices: every state after the first holds the whole epsilon closure of
 * the nodes reached (condition 3: nothing is dropped for its context), and the
 * first state holds the whole closure of the first node (condition 3 again). So for
 * a node the DFA reached at one position, the node that led to it from the previous
 * position is there too, and it accepted the byte (condition 2: accepting is the
 * same test in both phases), and so on back to the start: the sifting keeps a
 * non-empty set at every position. From any kept epsilon node some destination is
 * kept, so the walk always has a choice; without epsilon cycles (condition 4) it
 * never takes one twice at a position, and so reaches the end.
 */
import type { EreNfa } from "./ere-nfa.ts";
import {
  NEXT_ENDBUF,
  NEXT_NEWLINE,
  NEXT_NOTWORD,
  NEXT_WORD,
  PREV_BEGBUF,
  PREV_NEWLINE,
  PREV_NOTWORD,
  PREV_WORD,
} from "./ere-syntax.ts";
import { END_OF_RE, EPSILON_BIT } from "./ere-tree.ts";

const PREV = PREV_WORD | PREV_NOTWORD | PREV_NEWLINE | PREV_BEGBUF;
const NEXT = NEXT_WORD | NEXT_NOTWORD | NEXT_NEWLINE | NEXT_ENDBUF;
const WORD = PREV_WORD | PREV_NOTWORD | NEXT_WORD | NEXT_NOTWORD;

/**
 * True when the expression matches exactly when its DFA finds a match (see above).
 * `startOnly`: the matcher tries a match at the subject's start only.
 */
export function dfaDecides(nfa: EreNfa, wordOps: boolean, startOnly: boolean): boolean {
  if (wordOps) return false;
  const reentered = new Uint8Array(nfa.size);
  for (let n = 0; n < nfa.size; n++) {
    if (!consuming(nfa, n)) continue;
    for (const m of nfa.eclosures[nfa.nexts[n]!]!) reentered[m] = 1;
  }
  for (let n = 0; n < nfa.size; n++) {
    const c = nfa.constraint[n]!;
    if (c === 0) continue;
    if ((c & WORD) !== 0) return false;
    if ((c & NEXT) !== 0 && consuming(nfa, n)) return false;
    if ((c & PREV) !== 0 && (reentered[n] === 1 || !startOnly)) return false;
  }
  return !hasEpsilonCycle(nfa) && closuresFollowEdges(nfa);
}

/** Condition 5: closures are what the epsilon edges reach, and choices come from `|` or repetitions. */
function closuresFollowEdges(nfa: EreNfa): boolean {
  for (let n = 0; n < nfa.size; n++) {
    const closure = nfa.eclosures[n]!;
    if ((nfa.type[n]! & EPSILON_BIT) === 0) {
      if (closure.length !== 1 || closure[0] !== n) return false;
      continue;
    }
    const dests = nfa.edests[n]!;
    if (!nfa.hasPluralMatch && dests.length > 1) return false;
    const reach = new Set<number>([n]);
    for (const d of dests) for (const m of nfa.eclosures[d]!) reach.add(m);
    if (reach.size !== closure.length) return false;
    for (const m of closure) if (!reach.has(m)) return false;
  }
  return true;
}

function consuming(nfa: EreNfa, n: number): boolean {
  const t = nfa.type[n]!;
  return (t & EPSILON_BIT) === 0 && t !== END_OF_RE;
}

/** Whether epsilon moves can come back to a node (depth-first search, iterative). */
function hasEpsilonCycle(nfa: EreNfa): boolean {
  const state = new Uint8Array(nfa.size); // 0 new, 1 on the path, 2 done
  const stack: number[] = [];
  const edge: number[] = [];
  for (let root = 0; root < nfa.size; root++) {
    if (state[root] !== 0) continue;
    stack.push(root);
    edge.push(0);
    state[root] = 1;
    while (stack.length > 0) {
      const n = stack[stack.length - 1]!;
      const dests = (nfa.type[n]! & EPSILON_BIT) !== 0 ? nfa.edests[n]! : null;
      const i = edge[edge.length - 1]!;
      if (dests === null || i >= dests.length) {
        state[n] = 2;
        stack.pop();
        edge.pop();
        continue;
      }
      edge[edge.length - 1] = i + 1;
      const d = dests[i]!;
      if (state[d] === 1) return true;
      if (state[d] === 0) {
        state[d] = 1;
        stack.push(d);
        edge.push(0);
      }
    }
  }
  return false;
}
