/**
 * glibc's NFA for an expression (regcomp.c `analyze`): nodes numbered in postorder of
 * the tree, each consuming node's `next`, each epsilon node's destinations (sorted by
 * node number, which is what makes an earlier alternative or another loop iteration
 * preferred), and the epsilon closures, including the copies glibc makes of the nodes
 * after an anchor so that they carry its constraint (duplicate_node_closure).
 *
 * The closures are computed as glibc computes them, cycles and all, because its
 * matcher (and so carbon-c-relay) depends on exactly these sets.
 */
import { type ByteSet, emptySet, hasByte } from "./ere-bracket.ts";
import { RegexSyntaxError } from "./ere-syntax-error.ts";
import {
  ANCHOR,
  CHARACTER,
  CONCAT,
  END_OF_RE,
  EPSILON_BIT,
  type EreTree,
  OP_ALT,
  OP_CLOSE_SUBEXP,
  OP_DUP_ASTERISK,
  OP_OPEN_SUBEXP,
  OP_PERIOD,
  postorder,
  preorder,
  SIMPLE_BRACKET,
  type TreeNode,
} from "./ere-tree.ts";

/**
 * Limits glibc does not have: beyond them it takes minutes or runs out of memory
 * (word anchors in nested repetitions multiply the copies, `x{1,n}` has n^2/2 closure
 * entries); polymur refuses such an expression with REG_ESIZE instead.
 */
const MAX_NODES = 200_000;
/** Steps of the closure computation (set merges, searches for copies): about a second. */
const MAX_WORK = 100_000_000;

/** The compiled automaton: per node arrays, indexed by node number. */
export interface EreNfa {
  readonly size: number;
  /** Node types (ere-tree.ts constants). */
  readonly type: Uint8Array;
  /** Context constraints (ere-syntax.ts PREV_* / NEXT_* bits). */
  readonly constraint: Uint16Array;
  /** The bytes a consuming node matches, before its constraint; empty for epsilon nodes. */
  readonly accepts: readonly ByteSet[];
  /** Group index of OPEN/CLOSE nodes. */
  readonly group: Int32Array;
  /** OPEN/CLOSE nodes of an optional repetition's group. */
  readonly optSubexp: Uint8Array;
  /** For a consuming node: the node after it. */
  readonly nexts: Int32Array;
  /** For an epsilon node: its destinations, sorted. */
  readonly edests: readonly Int32Array[];
  /** Epsilon closure of each node, sorted. */
  readonly eclosures: readonly Int32Array[];
  /** The first node of the expression (dfa->init_node). */
  readonly initNode: number;
  /** The expression has `|` or a repetition (dfa->has_plural_match). */
  readonly hasPluralMatch: boolean;
}

class NfaBuilder {
  type: number[] = [];
  constraint: number[] = [];
  accepts: ByteSet[] = [];
  group: number[] = [];
  optSubexp: boolean[] = [];
  duplicated: boolean[] = [];
  /** Copies made by duplicateNode, by original node and constraint. */
  readonly #copies = new Map<number, number>();
  nexts: number[] = [];
  edests: number[][] = [];
  /** null: not computed; "busy": being computed; else the closure. */
  eclosures: (number[] | null | "busy")[] = [];
  work = 0;

  add(type: number, constraint: number, accepts: ByteSet, group: number, opt: boolean): number {
    const i = this.type.length;
    if (i >= MAX_NODES) throw new RegexSyntaxError("REG_ESIZE", 0);
    this.type.push(type);
    this.constraint.push(constraint);
    this.accepts.push(accepts);
    this.group.push(group);
    this.optSubexp.push(opt);
    this.duplicated.push(false);
    this.nexts.push(-1);
    this.edests.push([]);
    this.eclosures.push(null);
    return i;
  }

  #spend(units: number): void {
    this.work += units;
    if (this.work > MAX_WORK) throw new RegexSyntaxError("REG_ESIZE", 0);
  }

  /** re_dfa_add_node for a tree node (calc_first). */
  addTreeNode(t: TreeNode): number {
    let accepts: ByteSet;
    if (t.type === CHARACTER) {
      accepts = emptySet();
      accepts[t.char >>> 5] = 1 << (t.char & 31);
    } else if (t.type === SIMPLE_BRACKET) {
      accepts = t.set!;
    } else if (t.type === OP_PERIOD) {
      // RE_DOT_NEWLINE and RE_DOT_NOT_NULL: any byte but NUL.
      accepts = new Uint32Array(8).fill(0xffffffff);
      accepts[0] = 0xfffffffe;
    } else {
      accepts = EMPTY;
    }
    const i = this.add(t.type, t.type === ANCHOR ? t.anchor : 0, accepts, t.group, t.optSubexp);
    this.duplicated[i] = t.duplicated;
    return i;
  }

  /** duplicate_node: a copy of node `org` carrying `constraint` too. */
  duplicateNode(org: number, constraint: number): number {
    const i = this.add(
      this.type[org]!,
      constraint | this.constraint[org]!,
      this.accepts[org]!,
      this.group[org]!,
      this.optSubexp[org]!,
    );
    this.duplicated[i] = true;
    this.#copies.set(org * 0x10000 + this.constraint[i]!, i);
    return i;
  }

  /**
   * search_duplicated_node: the newest copy of `org` with exactly `constraint`, or -1.
   * (glibc scans the copies from the newest down; they are all after the tree's nodes.)
   */
  searchDuplicated(org: number, constraint: number): number {
    return this.#copies.get(org * 0x10000 + constraint) ?? -1;
  }

  /**
   * duplicate_node_closure: copies the epsilon closure of `topOrg` into `topClone`'s,
   * every copy carrying `constraint` (the anchor's) as well as its own.
   */
  duplicateClosure(topOrg: number, topClone: number, root: number, constraint: number): void {
    let org = topOrg;
    let clone = topClone;
    for (;;) {
      const orgEdests = this.edests[org]!;
      let orgDest: number;
      let cloneDest: number;
      if (orgEdests.length === 0) {
        this.nexts[clone] = this.nexts[org]!;
        return;
      }
      if (orgEdests.length === 1) {
        orgDest = orgEdests[0]!;
        const cloneEdests = this.edests[clone]!;
        cloneEdests.length = 0;
        if (org === root && clone !== org) {
          // A loop back to the anchor: tie the copy to the original's destination.
          cloneEdests.push(orgDest);
          return;
        }
        constraint |= this.constraint[org]!;
        cloneDest = this.duplicateNode(orgDest, constraint);
        cloneEdests.push(cloneDest);
      } else {
        orgDest = orgEdests[0]!;
        this.edests[clone]!.length = 0;
        cloneDest = this.searchDuplicated(orgDest, constraint);
        if (cloneDest === -1) {
          cloneDest = this.duplicateNode(orgDest, constraint);
          insertSorted(this.edests[clone]!, cloneDest);
          this.duplicateClosure(orgDest, cloneDest, root, constraint);
        } else {
          insertSorted(this.edests[clone]!, cloneDest);
        }
        orgDest = this.edests[org]![1]!;
        cloneDest = this.duplicateNode(orgDest, constraint);
        insertSorted(this.edests[clone]!, cloneDest);
      }
      org = orgDest;
      clone = cloneDest;
    }
  }

  /**
   * calc_eclosure_iter, without recursion: the closure of `start`. A closure that met
   * a node still being computed is incomplete; it is kept only for the node the
   * computation started from (glibc does the same), the others are computed again later.
   */
  closureOf(start: number): void {
    interface Frame {
      node: number;
      closure: number[];
      incomplete: boolean;
      next: number; // index into edests of the destination to visit next
    }
    const enter = (node: number): Frame => {
      this.eclosures[node] = "busy";
      const c = this.constraint[node]!;
      const dests = this.edests[node]!;
      if (c !== 0 && dests.length > 0 && !this.duplicated[dests[0]!]) {
        this.duplicateClosure(node, node, node, c);
      }
      return { node, closure: [node], incomplete: false, next: 0 };
    };
    const stack: Frame[] = [enter(start)];
    let returned: number[] | null = null; // closure of the frame just finished
    let returnedFrom = -1;
    while (stack.length > 0) {
      const f = stack[stack.length - 1]!;
      if (returned !== null) {
        f.closure = mergeSorted(f.closure, returned);
        this.#spend(f.closure.length);
        if (this.eclosures[returnedFrom] === null) f.incomplete = true;
        returned = null;
      }
      const dests = this.type[f.node]! & EPSILON_BIT ? this.edests[f.node]! : NONE;
      let descended = false;
      while (f.next < dests.length) {
        const d = dests[f.next++]!;
        const known = this.eclosures[d];
        if (known === "busy") {
          f.incomplete = true;
          continue;
        }
        if (known === null || known === undefined) {
          stack.push(enter(d));
          descended = true;
          break;
        }
        f.closure = mergeSorted(f.closure, known);
        this.#spend(f.closure.length);
      }
      if (descended) continue;
      stack.pop();
      if (f.incomplete && stack.length > 0) {
        this.eclosures[f.node] = null;
      } else {
        this.eclosures[f.node] = f.closure;
      }
      returned = f.closure;
      returnedFrom = f.node;
    }
  }
}

const EMPTY = emptySet();
const NONE: number[] = [];

function insertSorted(set: number[], v: number): void {
  let i = set.length;
  while (i > 0 && set[i - 1]! > v) i--;
  set.splice(i, 0, v);
}

function mergeSorted(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x < y) {
      out.push(x);
      i++;
    } else if (y < x) {
      out.push(y);
      j++;
    } else {
      out.push(x);
      i++;
      j++;
    }
  }
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

/** Builds the NFA of a tree (calc_first, calc_next, link_nfa_nodes, calc_eclosure). */
export function buildNfa(tree: EreTree): EreNfa {
  const b = new NfaBuilder();
  const root = tree.root;
  // calc_first
  postorder(root, (node) => {
    if (node.type === CONCAT) {
      node.first = node.left!.first;
      node.nodeIndex = node.left!.nodeIndex;
    } else {
      node.first = node;
      node.nodeIndex = b.addTreeNode(node);
    }
  });
  // calc_next
  preorder(root, (node) => {
    if (node.type === OP_DUP_ASTERISK) {
      node.left!.next = node;
    } else if (node.type === CONCAT) {
      node.left!.next = node.right!.first;
      node.right!.next = node.next;
    } else {
      if (node.left !== null) node.left.next = node.next;
      if (node.right !== null) node.right.next = node.next;
    }
  });
  // link_nfa_nodes
  let hasPluralMatch = false;
  preorder(root, (node) => {
    const i = node.nodeIndex;
    switch (node.type) {
      case CONCAT:
      case END_OF_RE:
        break;
      case OP_DUP_ASTERISK:
      case OP_ALT: {
        hasPluralMatch = true;
        const left = (node.left === null ? node.next! : node.left.first!).nodeIndex;
        const right = (node.right === null ? node.next! : node.right.first!).nodeIndex;
        b.edests[i] = left === right ? [left] : left < right ? [left, right] : [right, left];
        break;
      }
      case ANCHOR:
      case OP_OPEN_SUBEXP:
      case OP_CLOSE_SUBEXP:
        b.edests[i] = [node.next!.nodeIndex];
        break;
      default:
        b.nexts[i] = node.next!.nodeIndex;
    }
  });
  // calc_eclosure: every node, also the copies made on the way.
  for (let i = 0; i < b.type.length; i++) {
    if (b.eclosures[i] === null) b.closureOf(i);
  }

  const size = b.type.length;
  return {
    size,
    type: Uint8Array.from(b.type),
    constraint: Uint16Array.from(b.constraint),
    accepts: b.accepts,
    group: Int32Array.from(b.group),
    optSubexp: Uint8Array.from(b.optSubexp, (v) => (v ? 1 : 0)),
    nexts: Int32Array.from(b.nexts),
    edests: b.edests.map((d) => Int32Array.from(d)),
    eclosures: b.eclosures.map((c) => Int32Array.from(c as number[])),
    initNode: root.first!.nodeIndex,
    hasPluralMatch,
  };
}

/** Whether consuming node `n` of `nfa` matches byte `c`, before its constraint. */
export function nodeAccepts(nfa: EreNfa, n: number, c: number): boolean {
  return hasByte(nfa.accepts[n]!, c);
}
