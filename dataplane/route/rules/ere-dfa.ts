/**
 * glibc's DFA states for one expression, built lazily as its regexec builds them: a
 * state is the set of NFA nodes reached (with the nodes whose "previous character"
 * constraint the context fails dropped), transitions are cached per byte.
 *
 * What the context is follows glibc (no REG_NEWLINE, eflags 0): the string's start is
 * "begin of buffer and newline", its end "end of buffer and newline", and word context
 * exists only when the expression uses a word anchor (`\b \B \< \>`). One glibc quirk is
 * kept: after a `\n` is consumed the next state is built in newline context, although
 * elsewhere a `\n` in the subject is an ordinary character.
 */
import { type ByteSet, hasByte, isWordByte } from "./ere-bracket.ts";
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

export const CONTEXT_WORD = 1;
export const CONTEXT_NEWLINE = 2;
export const CONTEXT_BEGBUF = 4;
export const CONTEXT_ENDBUF = 8;

/** States kept per expression before the cache starts over (glibc keeps all). */
const MAX_STATES = 2000;

export function failsPrev(constraint: number, context: number): boolean {
  return (
    ((constraint & PREV_WORD) !== 0 && (context & CONTEXT_WORD) === 0) ||
    ((constraint & PREV_NOTWORD) !== 0 && (context & CONTEXT_WORD) !== 0) ||
    ((constraint & PREV_NEWLINE) !== 0 && (context & CONTEXT_NEWLINE) === 0) ||
    ((constraint & PREV_BEGBUF) !== 0 && (context & CONTEXT_BEGBUF) === 0)
  );
}

export function failsNext(constraint: number, context: number): boolean {
  return (
    ((constraint & NEXT_WORD) !== 0 && (context & CONTEXT_WORD) === 0) ||
    ((constraint & NEXT_NOTWORD) !== 0 && (context & CONTEXT_WORD) !== 0) ||
    ((constraint & NEXT_NEWLINE) !== 0 && (context & CONTEXT_NEWLINE) === 0) ||
    ((constraint & NEXT_ENDBUF) !== 0 && (context & CONTEXT_ENDBUF) === 0)
  );
}

/** One DFA state (glibc's re_dfastate_t). */
export class DfaState {
  /** The nodes, sorted, after dropping those whose context constraint fails. */
  readonly nodes: Int32Array;
  /** The consuming nodes among them. */
  readonly consuming: Int32Array;
  /** `nodes` as a bit set over all NFA nodes. */
  readonly bits: Uint32Array;
  /** An END_OF_RE node was among the nodes before dropping (glibc's `halt`). */
  readonly halt: boolean;
  /** Some node carries a context constraint. */
  readonly hasConstraint: boolean;
  /** Transition per byte: undefined until computed, null for no match. */
  readonly next: (DfaState | null | undefined)[] = new Array(256);

  constructor(
    nodes: Int32Array,
    consuming: Int32Array,
    bits: Uint32Array,
    halt: boolean,
    constrained: boolean,
  ) {
    this.nodes = nodes;
    this.consuming = consuming;
    this.bits = bits;
    this.halt = halt;
    this.hasConstraint = constrained;
  }
}

/** The lazily built DFA of an NFA. */
export class EreDfa {
  readonly #nfa: EreNfa;
  /** Bytes that are word characters for contexts: none unless word anchors are used. */
  readonly #word: boolean[];
  /** Per node, the bytes it can consume in the DFA (its constraint on the next byte applied). */
  readonly #dfaAccepts: ByteSet[];
  readonly #states = new Map<string, DfaState>();
  readonly #mark: Uint8Array;
  readonly #init: number[];
  /** Initial state at the start of the string. */
  initBegbuf!: DfaState;
  /** Initial state after a non-word character. */
  initPlain!: DfaState;
  /** Initial state after a word character. */
  initWord!: DfaState;

  constructor(nfa: EreNfa, wordOps: boolean) {
    this.#nfa = nfa;
    this.#word = Array.from({ length: 256 }, (_, c) => wordOps && isWordByte(c));
    this.#mark = new Uint8Array(nfa.size);
    this.#dfaAccepts = [];
    for (let n = 0; n < nfa.size; n++) {
      const acc = Uint32Array.from(nfa.accepts[n]!);
      const c = nfa.constraint[n]!;
      if (c !== 0) {
        // group_nodes_into_DFAstates: a node that needs a newline after it can only
        // consume a newline, one that needs the end of the buffer nothing.
        for (let b = 0; b < 256; b++) {
          if (!hasByte(acc, b)) continue;
          const w = this.#word[b]!;
          const keep =
            ((c & NEXT_NEWLINE) === 0 || b === 0x0a) &&
            (c & NEXT_ENDBUF) === 0 &&
            ((c & NEXT_WORD) === 0 || w) &&
            ((c & NEXT_NOTWORD) === 0 || !w);
          if (!keep) acc[b >>> 5]! &= ~(1 << (b & 31));
        }
      }
      this.#dfaAccepts.push(acc);
    }
    this.#init = Array.from(nfa.eclosures[nfa.initNode]!);
    this.#reset();
  }

  #reset(): void {
    this.#states.clear();
    this.initPlain = this.#acquire(this.#init, 0);
    if (this.initPlain.hasConstraint) {
      this.initWord = this.#acquire(this.#init, CONTEXT_WORD);
      this.initBegbuf = this.#acquire(this.#init, CONTEXT_NEWLINE | CONTEXT_BEGBUF);
    } else {
      this.initWord = this.initBegbuf = this.initPlain;
    }
  }

  /** Whether byte `c` makes a word context (only with word anchors). */
  isWord(c: number): boolean {
    return this.#word[c] === true;
  }

  /** The state after consuming byte `c` in `state`, or null when nothing matches it. */
  step(state: DfaState, c: number): DfaState | null {
    const known = state.next[c];
    if (known !== undefined) return known;
    if (c > 255) return null;
    const nfa = this.#nfa;
    const mark = this.#mark;
    const follows: number[] = [];
    for (const n of state.consuming) {
      if (!hasByte(this.#dfaAccepts[n]!, c)) continue;
      for (const m of nfa.eclosures[nfa.nexts[n]!]!) {
        if (mark[m] === 0) {
          mark[m] = 1;
          follows.push(m);
        }
      }
    }
    for (const m of follows) mark[m] = 0;
    let result: DfaState | null = null;
    if (follows.length > 0) {
      follows.sort((a, b) => a - b);
      if (this.#states.size >= MAX_STATES) this.#reset();
      result = this.#acquire(
        follows,
        this.#word[c] ? CONTEXT_WORD : c === 0x0a ? CONTEXT_NEWLINE : 0,
      );
    }
    state.next[c] = result;
    return result;
  }

  /** re_acquire_state_context: the state of `entrance` (sorted nodes) in `context`. */
  #acquire(entrance: readonly number[], context: number): DfaState {
    const key = `${context}:${entrance.join(",")}`;
    const known = this.#states.get(key);
    if (known !== undefined) return known;
    const nfa = this.#nfa;
    const nodes: number[] = [];
    let halt = false;
    let constrained = false;
    for (const n of entrance) {
      const type = nfa.type[n]!;
      const c = nfa.constraint[n]!;
      if (type === END_OF_RE) halt = true;
      if (c !== 0) {
        constrained = true;
        if (failsPrev(c, context)) continue;
      }
      nodes.push(n);
    }
    const bits = new Uint32Array((nfa.size + 31) >>> 5);
    const consuming: number[] = [];
    for (const n of nodes) {
      bits[n >>> 5]! |= 1 << (n & 31);
      if ((nfa.type[n]! & EPSILON_BIT) === 0 && nfa.type[n] !== END_OF_RE) consuming.push(n);
    }
    const state = new DfaState(
      Int32Array.from(nodes),
      Int32Array.from(consuming),
      bits,
      halt,
      constrained,
    );
    this.#states.set(key, state);
    return state;
  }
}
