/**
 * The binary tree glibc's regcomp builds from an expression, node for node: which
 * priorities and register updates glibc's matcher ends up with depends on its exact
 * shape (node numbering is a postorder walk of it, see ere-nfa.ts). So this builds it as
 * glibc does: left-deep concatenations and alternations, `{n,m}` written out as copies
 * (parse_dup_op), copies flagged `duplicated` and a `{0,m}` group's first copy flagged
 * optional, `((x))` folded into one group, and each group lowered into an
 * open-body-close concatenation.
 */
import type { ByteSet } from "./ere-bracket.ts";
import type { EreAst } from "./ere-syntax.ts";
import { RegexSyntaxError } from "./ere-syntax-error.ts";

// Node types: glibc's re_token_type_t values; the epsilon ones have bit 8.
export const CHARACTER = 1;
export const END_OF_RE = 2;
export const SIMPLE_BRACKET = 3;
export const OP_PERIOD = 5;
export const EPSILON_BIT = 8;
export const OP_OPEN_SUBEXP = 8;
export const OP_CLOSE_SUBEXP = 9;
export const OP_ALT = 10;
export const OP_DUP_ASTERISK = 11;
export const ANCHOR = 12;
export const CONCAT = 16;
export const SUBEXP = 17;

/**
 * Most tree nodes an expression may have: glibc has no such limit (it runs out of
 * memory later), polymur refuses an expression this large (`(a{1000}){1000}`).
 */
export const MAX_TREE_NODES = 200_000;

/** A node of glibc's bin_tree_t with the token fields the matcher uses. */
export class TreeNode {
  type: number;
  left: TreeNode | null = null;
  right: TreeNode | null = null;
  parent: TreeNode | null = null;
  /** CHARACTER: the byte. */
  char = 0;
  /** SIMPLE_BRACKET: the bytes. */
  set: ByteSet | null = null;
  /** ANCHOR: its constraint. */
  anchor = 0;
  /** SUBEXP, OP_OPEN_SUBEXP, OP_CLOSE_SUBEXP: the group index (0-based). */
  group = 0;
  /** Made by duplicate_tree (a copy for `{n,m}`, `+`). */
  duplicated = false;
  /** The group of an optional repetition (only its first copy, as glibc marks it). */
  optSubexp = false;
  first: TreeNode | null = null;
  next: TreeNode | null = null;
  nodeIndex = -1;

  constructor(type: number) {
    this.type = type;
  }
}

/** The tree of one expression: root is CONCAT(expression, END_OF_RE) or END_OF_RE alone. */
export interface EreTree {
  readonly root: TreeNode;
  /** subexpMap[i]: the group whose offsets group i reports (differs after `((x))` folding). */
  readonly subexpMap: Int32Array | null;
}

class Builder {
  count = 0;

  make(type: number, left: TreeNode | null, right: TreeNode | null): TreeNode {
    if (++this.count > MAX_TREE_NODES) throw new RegexSyntaxError("REG_ESIZE", 0);
    const node = new TreeNode(type);
    node.left = left;
    node.right = right;
    if (left !== null) left.parent = node;
    if (right !== null) right.parent = node;
    return node;
  }

  /** A copy of a node's token: create_token_tree resets `duplicated` and `optSubexp`. */
  copyToken(src: TreeNode): TreeNode {
    const node = this.make(src.type, null, null);
    node.char = src.char;
    node.set = src.set;
    node.anchor = src.anchor;
    node.group = src.group;
    return node;
  }

  /** glibc's duplicate_tree: a copy flagged `duplicated`, without parent. */
  duplicate(root: TreeNode): TreeNode {
    const copyOf = (src: TreeNode): TreeNode => {
      const node = this.copyToken(src);
      node.duplicated = true;
      return node;
    };
    const top = copyOf(root);
    const stack: [TreeNode, TreeNode][] = [[root, top]];
    while (stack.length > 0) {
      const [src, dst] = stack.pop()!;
      if (src.left !== null) {
        dst.left = copyOf(src.left);
        dst.left.parent = dst;
        stack.push([src.left, dst.left]);
      }
      if (src.right !== null) {
        dst.right = copyOf(src.right);
        dst.right.parent = dst;
        stack.push([src.right, dst.right]);
      }
    }
    return top;
  }

  fromAst(ast: EreAst | null): TreeNode | null {
    if (ast === null) return null;
    switch (ast.kind) {
      case "char": {
        const node = this.make(CHARACTER, null, null);
        node.char = ast.code;
        return node;
      }
      case "set": {
        const node = this.make(SIMPLE_BRACKET, null, null);
        node.set = ast.set;
        return node;
      }
      case "any":
        return this.make(OP_PERIOD, null, null);
      case "anchor": {
        const node = this.make(ANCHOR, null, null);
        node.anchor = ast.constraint;
        return node;
      }
      case "concat": {
        let tree = this.fromAst(ast.items[0]!)!;
        for (let i = 1; i < ast.items.length; i++) {
          tree = this.make(CONCAT, tree, this.fromAst(ast.items[i]!));
        }
        return tree;
      }
      case "alt": {
        let tree = this.fromAst(ast.branches[0]!);
        for (let i = 1; i < ast.branches.length; i++) {
          tree = this.make(OP_ALT, tree, this.fromAst(ast.branches[i]!));
        }
        return tree;
      }
      case "group": {
        const node = this.make(SUBEXP, this.fromAst(ast.body), null);
        node.group = ast.index;
        return node;
      }
      case "repeat":
        return this.repeat(this.fromAst(ast.body)!, ast.min, ast.max);
    }
  }

  /** glibc's parse_dup_op: `<re>{n,m}` as `<re>...<re>(<re>(<re>...)?)?` or `<re>...<re><re>*`. */
  repeat(elem: TreeNode, min: number, max: number): TreeNode {
    let old: TreeNode | null = null;
    if (min > 0) {
      let tree = elem;
      for (let i = 2; i <= min; i++) {
        elem = this.duplicate(elem);
        tree = this.make(CONCAT, tree, elem);
      }
      if (min === max) return tree;
      // The copy that becomes optional.
      elem = this.duplicate(elem);
      old = tree;
    }
    // mark_opt_subexp: only the outermost group, and only this copy (later copies are
    // made by duplicate_tree, which does not carry the mark).
    if (elem.type === SUBEXP) elem.optSubexp = true;
    let tree = this.make(max === -1 ? OP_DUP_ASTERISK : OP_ALT, elem, null);
    for (let i = min + 2; i <= max; i++) {
      elem = this.duplicate(elem);
      tree = this.make(CONCAT, tree, elem);
      tree = this.make(OP_ALT, tree, null);
    }
    return old === null ? tree : this.make(CONCAT, old, tree);
  }

  /** lower_subexp: a group becomes CONCAT(OPEN, CONCAT(body, CLOSE)) or CONCAT(OPEN, CLOSE). */
  lowerGroup(group: TreeNode): TreeNode {
    const open = this.make(OP_OPEN_SUBEXP, null, null);
    const close = this.make(OP_CLOSE_SUBEXP, null, null);
    const inner = group.left === null ? close : this.make(CONCAT, group.left, close);
    const tree = this.make(CONCAT, open, inner);
    open.group = close.group = group.group;
    open.optSubexp = close.optSubexp = group.optSubexp;
    return tree;
  }
}

/**
 * Visits the tree in preorder as glibc's `preorder` does: `fn` may replace the node's
 * children before they are visited.
 */
export function preorder(root: TreeNode, fn: (node: TreeNode) => void): void {
  let node: TreeNode | null = root;
  while (node !== null) {
    fn(node);
    if (node.left !== null) {
      node = node.left;
      continue;
    }
    let prev: TreeNode | null = null;
    while (node !== null && (node.right === prev || node.right === null)) {
      prev = node;
      node = node.parent;
    }
    if (node === null) return;
    node = node.right;
  }
}

/** Visits the tree in postorder as glibc's `postorder` does (children before parents). */
export function postorder(root: TreeNode, fn: (node: TreeNode) => void): void {
  let node: TreeNode = root;
  for (;;) {
    while (node.left !== null || node.right !== null) node = (node.left ?? node.right)!;
    let prev: TreeNode;
    do {
      fn(node);
      if (node.parent === null) return;
      prev = node;
      node = node.parent;
    } while (node.right === prev || node.right === null);
    node = node.right;
  }
}

/** Builds glibc's tree for a parsed expression, up to (and including) lower_subexps. */
export function buildTree(ast: EreAst | null, groupCount: number): EreTree {
  const b = new Builder();
  const expr = b.fromAst(ast);
  const eor = b.make(END_OF_RE, null, null);
  const root = expr === null ? eor : b.make(CONCAT, expr, eor);

  // optimize_subexps: `((x))` keeps only the outer group; the inner reports its offsets.
  const map = new Int32Array(groupCount);
  for (let i = 0; i < groupCount; i++) map[i] = i;
  let folded = false;
  preorder(root, (node) => {
    if (node.type === SUBEXP && node.left !== null && node.left.type === SUBEXP) {
      const inner = node.left.group;
      node.left = node.left.left;
      if (node.left !== null) node.left.parent = node;
      map[inner] = map[node.group]!;
      folded = true;
    }
  });

  // lower_subexps
  postorder(root, (node) => {
    if (node.left !== null && node.left.type === SUBEXP) {
      node.left = b.lowerGroup(node.left);
      node.left.parent = node;
    }
    if (node.right !== null && node.right.type === SUBEXP) {
      node.right = b.lowerGroup(node.right);
      node.right.parent = node;
    }
  });
  return { root, subexpMap: folded ? map : null };
}
