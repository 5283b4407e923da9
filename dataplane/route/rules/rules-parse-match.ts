import type { Expr, MatchRule, Targets } from "./rules-config.ts";
import { describeToken, type Token } from "./rules-lexer.ts";
import { oneOf, type ParseContext, q } from "./rules-parse-context.ts";

/** An expression token as an Expr: its value, positioned at its first character. */
export const toExpr = (t: Token): Expr => ({ source: t.text, pos: t.valuePos });

/** What `send to` named. */
export interface ParsedTargets {
  readonly targets: Targets;
  /**
   * The first target is the blackhole (`blackhole`, or a quoted
   * `"blackhole"` first in a list): carbon-c-relay then stops a match rule
   * whatever `stop` says.
   */
  readonly blackholeFirst: boolean;
}

/**
 * `to blackhole` or `to CLUSTER...` after a `send` keyword (`after`: it, for messages). Clusters must be
 * defined earlier (router.c `router_validate_cluster`). The unquoted word
 * `blackhole` stands alone; a quoted `"blackhole"` is the built-in cluster
 * like any other name, so it may stand in a list, where it sends nothing.
 */
export function parseTargets(ctx: ParseContext, after = '"send"'): ParsedTargets {
  ctx.expect("to", '"to"', `after ${after}`);
  if (ctx.accept("blackhole") !== null) {
    if (ctx.tok.kind === "string") {
      ctx.fail(ctx.tok.pos, `"send to blackhole" takes no clusters, found ${q(ctx.tok.text)}`);
    }
    return { targets: { blackhole: true }, blackholeFirst: true };
  }
  if (ctx.tok.kind !== "string") ctx.unexpected('a cluster name or "blackhole"', 'after "send to"');
  const names: string[] = [];
  for (let t = ctx.accept("string"); t !== null; t = ctx.accept("string")) {
    if (t.text !== "blackhole" && !ctx.state.clusterByName.has(t.text)) {
      ctx.fail(
        t.pos,
        `unknown cluster ${q(t.text)} (no cluster of that name is defined before this)`,
      );
    }
    names.push(t.text);
  }
  if (ctx.is("blackhole")) {
    ctx.fail(ctx.tok.pos, '"blackhole" cannot be combined with clusters in one "send to"');
  }
  const clusters = names.filter((n) => n !== "blackhole");
  return {
    targets: clusters.length === 0 ? { blackhole: true } : { blackhole: false, clusters },
    blackholeFirst: names[0] === "blackhole",
  };
}

/**
 * `match (* | EXPR...) [validate EXPR else log|drop] [route using REPL]
 * [send to TARGETS] [stop] ;`. A match with neither `send to` nor
 * `validate` is refused: it does nothing (carbon-c-relay 3.7.3 crashes on it).
 * MatchRule.stop is the stop carbon-c-relay applies: false without `send to`,
 * true when the blackhole comes first.
 */
export function parseMatch(ctx: ParseContext, kw: Token): void {
  let exprs: Expr[] | null = null;
  if (ctx.accept("*") === null) {
    if (ctx.tok.kind !== "string") ctx.unexpected('"*" or an expression', 'after "match"');
    exprs = [];
    for (let t = ctx.accept("string"); t !== null; t = ctx.accept("string")) exprs.push(toExpr(t));
  }
  let validate: MatchRule["validate"] = null;
  if (ctx.accept("validate") !== null) {
    const expr = toExpr(ctx.expect("string", "an expression", 'after "validate"'));
    ctx.expect("else", '"else"', "after the validate expression");
    const t = ctx.take();
    if (t.kind !== "log" && t.kind !== "drop") {
      ctx.fail(t.pos, `expected "log" or "drop" after "else", found ${describeToken(t)}`);
    }
    validate = { expr, onFail: t.kind };
  }
  let routeUsing: string | null = null;
  if (ctx.accept("route") !== null) {
    ctx.expect("using", '"using"', 'after "route"');
    routeUsing = ctx.expect("string", "a replacement", 'after "route using"').text;
  }
  let sendTo: Targets | null = null;
  let blackholeFirst = false;
  const send = ctx.accept("send");
  if (send !== null) ({ targets: sendTo, blackholeFirst } = parseTargets(ctx));
  const stop = ctx.accept("stop") !== null;
  const end = ctx.tok;
  if (end.kind !== ";") {
    const opened = validate !== null || routeUsing !== null;
    const next: string[] = [];
    if (stop) {
      // only ";"
    } else if (sendTo !== null) {
      if (!sendTo.blackhole) next.push("another cluster");
      next.push('"stop"');
    } else {
      if (exprs !== null && !opened) next.push("another expression");
      if (validate === null && routeUsing === null) next.push('"validate"');
      if (routeUsing === null) next.push('"route using"');
      next.push('"send to"');
      if (opened) next.push('"stop"');
    }
    ctx.unexpected(oneOf([...next, '";"']), "in the match", wordsHint(exprs, send !== null));
  }
  if (sendTo === null && validate === null) {
    ctx.fail(
      end.pos,
      `expected "send to" or "validate" in the match: without them it does nothing${wordsHint(exprs, false)}`,
    );
  }
  ctx.take();
  // `match "*"` is `match *` (router_validate_expression).
  if (exprs?.length === 1 && exprs[0]!.source === "*") exprs = null;
  ctx.state.rules.push({
    kind: "match",
    exprs,
    validate,
    routeUsing,
    sendTo,
    // router.c: a match without `send to` never stops; `send to blackhole` always does.
    stop: sendTo === null ? false : blackholeFirst || stop,
    pos: kw.pos,
  });
}

/** Words after `match` are expressions until a keyword: say so when the user may have meant one. */
function wordsHint(exprs: readonly Expr[] | null, sent: boolean): string {
  if (exprs === null || sent || exprs.length < 2) return "";
  return ` (the words after "match" were read as expressions: ${exprs.map((e) => q(e.source)).join(" ")})`;
}

/** `rewrite EXPR into REPLACEMENT ;`. */
export function parseRewrite(ctx: ParseContext, kw: Token): void {
  const expr = toExpr(ctx.expect("string", "an expression", 'after "rewrite"'));
  ctx.expect("into", '"into"', "after the rewrite expression");
  const into = ctx.expect("string", "a replacement", 'after "into"').text;
  ctx.expect(";", '";"', "after the rewrite replacement");
  ctx.state.rules.push({ kind: "rewrite", expr, into, pos: kw.pos });
}
