/**
 * glibc's regexec for one compiled expression (regexec.c re_search_internal with
 * nmatch = re_nsub + 1, as carbon-c-relay calls it for an expression with groups):
 *
 * 1. From each start in turn, run the DFA as far as it goes and keep the last end where
 *    it could stop: the leftmost start, and the longest match from it.
 * 2. With groups and `|` or a repetition: sift the states backwards down to the nodes on
 *    some path to that end (prune_impossible_nodes). When none is left (glibc's DFA and
 *    its sifting disagree, e.g. for an anchor inside a repeated group), try the next start.
 * 3. With groups: walk from the first node to the end, taking at each choice the first
 *    (lowest numbered) destination still in the sifted state, and record where groups
 *    open and close (set_regs, update_regs). If the walk gets stuck, regexec reports
 *    no match at all.
 *
 * Work buffers live on the instance: a call allocates nothing but new DFA states.
 */
import { hasByte } from "./ere-bracket.ts";
import {
  CONTEXT_BEGBUF,
  CONTEXT_ENDBUF,
  CONTEXT_NEWLINE,
  CONTEXT_WORD,
  type DfaState,
  EreDfa,
  failsNext,
} from "./ere-dfa.ts";
import type { EreNfa } from "./ere-nfa.ts";
import { FirstPath } from "./ere-path.ts";
import { END_OF_RE, EPSILON_BIT, OP_CLOSE_SUBEXP, OP_OPEN_SUBEXP } from "./ere-tree.ts";
import { dfaDecides } from "./ere-verdict.ts";

/**
 * Epsilon moves the group walk makes at one position before giving up. glibc has no
 * limit (it would loop); no expression seen in testing gets near it.
 */
const MAX_EPSILON_STEPS_FACTOR = 4;

export class EreMatcher {
  readonly #nfa: EreNfa;
  readonly #dfa: EreDfa;
  readonly #groups: number;
  readonly #subexpMap: Int32Array | null;
  readonly #wordOps: boolean;
  /** Only a match at the start is possible (glibc: the non-begbuf initial states are empty). */
  readonly #anchored: boolean;
  /** Per node, the consuming nodes of its epsilon closure (for sifting). */
  readonly #closureConsuming: Int32Array[];
  readonly #words: number;
  #log: DfaState[] = [];
  #sifted: Uint32Array = new Uint32Array(0);
  readonly #epsVia: Int32Array;
  #stamp = 0;
  readonly #regs: Int32Array;
  readonly #prev: Int32Array;
  /**
   * Whether a match is what the DFA alone finds (no groups, or ere-verdict.ts's
   * conditions): found() answers test(), and groups come from FirstPath.
   */
  readonly dfaDecides: boolean;
  /** Finds set_regs's path without sifting, where dfaDecides; null otherwise. */
  readonly #path: FirstPath | null;
  // The subject of the current call.
  #s = "";
  #len = 0;
  #start = 0;
  #last = 0;
  #lastNode = 0;

  /** `shortcuts` false: no dfaDecides (always the whole of glibc's algorithm), for tests. */
  constructor(
    nfa: EreNfa,
    groups: number,
    subexpMap: Int32Array | null,
    wordOps: boolean,
    shortcuts = true,
  ) {
    this.#nfa = nfa;
    this.#dfa = new EreDfa(nfa, wordOps);
    this.#groups = groups;
    this.#subexpMap = subexpMap;
    this.#wordOps = wordOps;
    this.#anchored =
      this.#dfa.initPlain.nodes.length === 0 && this.#dfa.initWord.nodes.length === 0;
    this.#closureConsuming = nfa.eclosures.map((ecl) =>
      ecl.filter((m) => (nfa.type[m]! & EPSILON_BIT) === 0),
    );
    this.#words = (nfa.size + 31) >>> 5;
    this.#epsVia = new Int32Array(nfa.size);
    this.#regs = new Int32Array(2 * (groups + 1));
    this.#prev = new Int32Array(2 * (groups + 1));
    this.dfaDecides = shortcuts && (groups === 0 || dfaDecides(nfa, wordOps, this.#anchored));
    this.#path = groups > 0 && this.dfaDecides ? new FirstPath(nfa) : null;
  }

  /** Only a match at the subject's start is possible (`^...`). */
  get anchored(): boolean {
    return this.#anchored;
  }

  /**
   * Whether the DFA finds a match anywhere in `s` (a C string: no NUL): the first
   * end it reaches from the first start that has one, not the longest. This is
   * regexec's answer for an expression without groups, and for one that
   * ere-verdict.ts's dfaDecides accepts; exec() is for the others.
   */
  found(s: string): boolean {
    const dfa = this.#dfa;
    const len = s.length;
    const wordOps = this.#wordOps;
    this.#s = s;
    this.#len = len;
    try {
      for (let start = 0; start <= len; start++) {
        if (start > 0 && this.#anchored) return false;
        let state =
          start === 0
            ? dfa.initBegbuf
            : wordOps && dfa.isWord(s.charCodeAt(start - 1))
              ? dfa.initWord
              : dfa.initPlain;
        if (state.halt && this.#halts(state, start)) return true;
        for (let i = start; i < len; i++) {
          const next = dfa.step(state, s.charCodeAt(i));
          if (next === null) break;
          state = next;
          if (state.halt && this.#halts(state, i + 1)) return true;
        }
      }
      return false;
    } finally {
      this.#s = "";
    }
  }

  /**
   * Matches `s` (a C string: no NUL). On a match fills `out` (2 * (groups + 1) offsets,
   * -1 for unset) when given and returns true.
   */
  exec(s: string, out: Int32Array | null): boolean {
    this.#s = s;
    this.#len = s.length;
    try {
      let from = 0;
      for (;;) {
        if (!this.#search(from)) return false;
        if (this.#groups === 0) {
          if (out !== null) {
            out[0] = this.#start;
            out[1] = this.#last;
          }
          return true;
        }
        this.#lastNode = this.#haltNode(this.#log[this.#last - this.#start]!, this.#last);
        const path = this.#path;
        if (path?.find(s, this.#start, this.#last - this.#start, this.#lastNode) === true) {
          this.#replay(path, out);
          return true;
        }
        const pruned = this.#nfa.hasPluralMatch;
        if (pruned && !this.#prune()) {
          from = this.#start + 1;
          continue;
        }
        return this.#setRegs(pruned, out);
      }
    } finally {
      this.#s = "";
    }
  }

  /** re_string_context_at with no REG_NEWLINE and no REG_NOTBOL/REG_NOTEOL. */
  #contextAt(i: number): number {
    if (i < 0) return CONTEXT_NEWLINE | CONTEXT_BEGBUF;
    if (i >= this.#len) return CONTEXT_NEWLINE | CONTEXT_ENDBUF;
    return this.#wordOps && this.#dfa.isWord(this.#s.charCodeAt(i)) ? CONTEXT_WORD : 0;
  }

  /** check_halt_state_context: the first END node of `state` whose constraint holds at `i`, or 0. */
  #haltNode(state: DfaState, i: number): number {
    const nfa = this.#nfa;
    const ctx = this.#contextAt(i);
    for (const n of state.nodes) {
      if (nfa.type[n] !== END_OF_RE) continue;
      const c = nfa.constraint[n]!;
      if (c === 0 || !failsNext(c, ctx)) return n;
    }
    return 0;
  }

  #halts(state: DfaState, i: number): boolean {
    return state.halt && (!state.hasConstraint || this.#haltNode(state, i) !== 0);
  }

  /** check_node_accept: whether consuming node `n` takes the byte at `i` (NUL at the end). */
  #accepts(n: number, i: number): boolean {
    const c = i < this.#len ? this.#s.charCodeAt(i) : 0;
    if (c > 255 || !hasByte(this.#nfa.accepts[n]!, c)) return false;
    const constraint = this.#nfa.constraint[n]!;
    return constraint === 0 || !failsNext(constraint, this.#contextAt(i));
  }

  /** Finds the leftmost start at or after `from` with a match, and its longest end. */
  #search(from: number): boolean {
    const dfa = this.#dfa;
    const s = this.#s;
    const len = this.#len;
    const log = this.#log;
    for (let start = from; start <= len; start++) {
      if (start > 0 && this.#anchored) return false;
      let state =
        start === 0
          ? dfa.initBegbuf
          : this.#wordOps && dfa.isWord(s.charCodeAt(start - 1))
            ? dfa.initWord
            : dfa.initPlain;
      let last = this.#halts(state, start) ? start : -1;
      if (last < 0 && (start === len || dfa.step(state, s.charCodeAt(start)) === null)) continue;
      log[0] = state;
      for (let i = start; i < len; i++) {
        const next = dfa.step(state, s.charCodeAt(i));
        if (next === null) break;
        state = next;
        log[i + 1 - start] = state;
        if (state.halt && this.#halts(state, i + 1)) last = i + 1;
      }
      if (last >= 0) {
        this.#start = start;
        this.#last = last;
        return true;
      }
    }
    return false;
  }

  /** prune_impossible_nodes / sift_states_backward: false when no path is left. */
  #prune(): boolean {
    const nfa = this.#nfa;
    const w = this.#words;
    const end = this.#last - this.#start;
    const need = (end + 1) * w;
    if (this.#sifted.length < need)
      this.#sifted = new Uint32Array(Math.max(need, 2 * this.#sifted.length));
    const sifted = this.#sifted;
    sifted.fill(0, 0, need);
    const log = this.#log;
    const last = this.#lastNode;
    sifted[end * w + (last >>> 5)]! |= 1 << (last & 31);
    this.#addEpsilonSources(log[end]!, end * w);
    for (let idx = end - 1; idx >= 0; idx--) {
      const base = idx * w;
      const above = base + w;
      let any = false;
      for (const n of log[idx]!.consuming) {
        const next = nfa.nexts[n]!;
        if ((sifted[above + (next >>> 5)]! & (1 << (next & 31))) === 0) continue;
        if (!this.#accepts(n, this.#start + idx)) continue;
        sifted[base + (n >>> 5)]! |= 1 << (n & 31);
        any = true;
      }
      if (!any) return false;
      this.#addEpsilonSources(log[idx]!, base);
    }
    return true;
  }

  /** add_epsilon_src_nodes: adds the state's epsilon nodes whose closure reaches the set. */
  #addEpsilonSources(state: DfaState, base: number): void {
    const nfa = this.#nfa;
    const sifted = this.#sifted;
    for (const m of state.nodes) {
      if ((nfa.type[m]! & EPSILON_BIT) === 0) continue;
      for (const d of this.#closureConsuming[m]!) {
        if ((sifted[base + (d >>> 5)]! & (1 << (d & 31))) !== 0) {
          sifted[base + (m >>> 5)]! |= 1 << (m & 31);
          break;
        }
      }
    }
  }

  /** set_regs along a path FirstPath found: the groups its nodes open and close. */
  #replay(path: FirstPath, out: Int32Array | null): void {
    const regs = this.#regs;
    regs.fill(-1);
    regs[0] = 0;
    regs[1] = this.#last - this.#start;
    this.#prev.set(regs);
    const nodes = path.nodes;
    const at = path.at;
    for (let k = 0; k < path.length; k++) this.#updateRegs(nodes[k]!, at[k]!);
    if (out !== null) this.#output(out);
  }

  /** set_regs without back-references: walks the match and records the groups. */
  #setRegs(pruned: boolean, out: Int32Array | null): boolean {
    const nfa = this.#nfa;
    const regs = this.#regs;
    const prev = this.#prev;
    const end = this.#last - this.#start;
    regs.fill(-1);
    regs[0] = 0;
    regs[1] = end;
    prev.set(regs);
    const w = this.#words;
    const sifted = this.#sifted;
    const log = this.#log;
    const epsVia = this.#epsVia;
    const maxSteps = MAX_EPSILON_STEPS_FACTOR * nfa.size + 8;
    let stamp = this.#nextStamp();
    let steps = 0;
    let node = nfa.initNode;
    let idx = 0;
    const inState = (x: number): boolean =>
      pruned
        ? (sifted[idx * w + (x >>> 5)]! & (1 << (x & 31))) !== 0
        : (log[idx]!.bits[x >>> 5]! & (1 << (x & 31))) !== 0;
    while (idx <= end) {
      this.#updateRegs(node, idx);
      if (idx === end && node === this.#lastNode) break;
      if ((nfa.type[node]! & EPSILON_BIT) !== 0) {
        epsVia[node] = stamp;
        let dest = -1;
        for (const cand of nfa.edests[node]!) {
          if (!inState(cand)) continue;
          if (dest === -1) {
            dest = cand;
          } else {
            // The first choice was taken before at this position: a loop, take the second.
            if (epsVia[dest] === stamp) dest = cand;
            break;
          }
        }
        if (dest === -1 || ++steps > maxSteps) return false;
        node = dest;
      } else {
        if (!this.#accepts(node, this.#start + idx)) return false;
        node = nfa.nexts[node]!;
        idx++;
        stamp = this.#nextStamp();
        steps = 0;
      }
    }
    if (out !== null) this.#output(out);
    return true;
  }

  /** The groups recorded, as regexec's offsets into the subject. */
  #output(out: Int32Array): void {
    const regs = this.#regs;
    const start = this.#start;
    for (let i = 0; i < regs.length; i += 2) {
      if (regs[i] === -1) {
        out[i] = out[i + 1] = -1;
      } else {
        out[i] = regs[i]! + start;
        out[i + 1] = regs[i + 1]! + start;
      }
    }
    const map = this.#subexpMap;
    if (map !== null) {
      for (let g = 0; g < map.length; g++) {
        const to = map[g]!;
        if (to === g) continue;
        out[2 * g + 2] = out[2 * to + 2]!;
        out[2 * g + 3] = out[2 * to + 3]!;
      }
    }
  }

  /** update_regs, including glibc's undo of an empty pass through an optional group. */
  #updateRegs(node: number, idx: number): void {
    const nfa = this.#nfa;
    const type = nfa.type[node];
    if (type === OP_OPEN_SUBEXP) {
      const r = 2 * (nfa.group[node]! + 1);
      this.#regs[r] = idx;
      this.#regs[r + 1] = -1;
    } else if (type === OP_CLOSE_SUBEXP) {
      const r = 2 * (nfa.group[node]! + 1);
      const regs = this.#regs;
      if (regs[r]! < idx) {
        regs[r + 1] = idx;
        this.#prev.set(regs);
      } else if (nfa.optSubexp[node] === 1 && this.#prev[r] !== -1) {
        regs.set(this.#prev);
      } else {
        regs[r + 1] = idx;
      }
    }
  }

  #nextStamp(): number {
    if (++this.#stamp > 0x3fffffff) {
      this.#epsVia.fill(0);
      this.#stamp = 1;
    }
    return this.#stamp;
  }
}
