import type { AggregateCompute, AggregateRule, Expr, SourcePos, Targets } from "./rules-config.ts";
import { describeToken, type Token } from "./rules-lexer.ts";
import { at, oneOf, type ParseContext, type StatisticsState } from "./rules-parse-context.ts";
import { type ParsedTargets, parseTargets, toExpr } from "./rules-parse-match.ts";

const COMPUTE_TYPES = [
  "sum",
  "count",
  "max",
  "min",
  "average",
  "median",
  "variance",
  "stddev",
] as const;
type PlainCompute = (typeof COMPUTE_TYPES)[number];
const isPlainCompute = (k: string): k is PlainCompute =>
  (COMPUTE_TYPES as readonly string[]).includes(k);

/** Seconds: a positive number (conffile.y: "interval must be > 0", "expire must be > 0"). */
function seconds(ctx: ParseContext, t: Token, what: string): number {
  const v = ctx.int(t);
  if (v <= 0) ctx.fail(t.pos, `${what} must be > 0, not ${t.raw}`);
  return v;
}

/**
 * `aggregate EXPR... every N seconds expire after M seconds
 * [timestamp at start|middle|end of bucket] (compute TYPE write to NAME)...
 * [send to TARGETS] [stop] ;`, with conffile.y's checks: N > 0, M > N,
 * percentiles 1-99. `stop` without `send to` is accepted (carbon-c-relay's
 * scanner refuses it although its grammar allows it).
 */
export function parseAggregate(ctx: ParseContext, kw: Token): void {
  const exprs: Expr[] = [toExpr(ctx.expect("string", "an expression", 'after "aggregate"'))];
  for (let t = ctx.accept("string"); t !== null; t = ctx.accept("string")) exprs.push(toExpr(t));
  ctx.expect("every", 'another expression or "every"', "after the aggregate expressions");
  const everyTok = ctx.expect("int", "a number of seconds", 'after "every"');
  const every = seconds(ctx, everyTok, "the interval");
  ctx.expect("seconds", '"seconds"', `after "every ${everyTok.raw}"`);
  ctx.expect("expire", '"expire after"', `after "every ${everyTok.raw} seconds"`);
  ctx.expect("after", '"after"', 'after "expire"');
  const expireTok = ctx.expect("int", "a number of seconds", 'after "expire after"');
  const expire = seconds(ctx, expireTok, "expire");
  if (expire <= every) {
    ctx.fail(
      expireTok.pos,
      `expire (${expire} seconds) must be greater than the interval (${every} seconds)`,
    );
  }
  ctx.expect("seconds", '"seconds"', `after "expire after ${expireTok.raw}"`);
  let timestamp: AggregateRule["timestamp"] = "end";
  if (ctx.accept("timestamp") !== null) {
    ctx.expect("at", '"at"', 'after "timestamp"');
    const t = ctx.take();
    if (t.kind !== "start" && t.kind !== "middle" && t.kind !== "end") {
      ctx.fail(
        t.pos,
        `expected "start", "middle" or "end" after "timestamp at", found ${describeToken(t)}`,
      );
    }
    timestamp = t.kind;
    ctx.expect("of", '"of bucket"', `after "timestamp at ${t.raw}"`);
    ctx.expect("bucket", '"bucket"', 'after "of"');
  } else if (ctx.tok.kind !== "compute") {
    ctx.unexpected('"timestamp" or "compute"', `after "expire after ${expireTok.raw} seconds"`);
  }
  const computes: AggregateCompute[] = [];
  do {
    if (ctx.tok.kind !== "compute")
      ctx.unexpected('"compute"', 'after "timestamp at ... of bucket"');
    computes.push(parseCompute(ctx, ctx.take()));
  } while (ctx.tok.kind === "compute");
  let sendTo: Targets | null = null;
  const send = ctx.accept("send");
  if (send !== null) sendTo = parseTargets(ctx).targets;
  const stop = ctx.accept("stop") !== null;
  if (ctx.tok.kind !== ";") {
    const next = stop ? [] : sendTo === null ? ['"compute"', '"send to"', '"stop"'] : ['"stop"'];
    if (!stop && sendTo !== null && !sendTo.blackhole) next.unshift("another cluster");
    ctx.unexpected(oneOf([...next, '";"']), "in the aggregate");
  }
  ctx.take();
  ctx.state.rules.push({
    kind: "aggregate",
    exprs,
    every,
    expire,
    timestamp,
    computes,
    sendTo,
    stop,
    pos: kw.pos,
  });
}

/** `TYPE write to NAME` after `compute`. */
function parseCompute(ctx: ParseContext, kw: Token): AggregateCompute {
  const t = ctx.take();
  let type: AggregateCompute["type"];
  let percentile: number | null = null;
  if (t.kind === "percentile") {
    if (t.value < 1 || t.value > 99) {
      ctx.fail(
        t.pos,
        `${t.raw}: the percentile must be between 1 and 99 (percentile1 to percentile99)`,
      );
    }
    type = "percentile";
    percentile = t.value;
  } else if (isPlainCompute(t.kind)) {
    type = t.kind;
  } else {
    ctx.fail(
      t.pos,
      `expected ${oneOf([...COMPUTE_TYPES, "percentileNN"])} after "compute", found ${describeToken(t)}`,
    );
  }
  ctx.expect("write", '"write to"', `after "compute ${t.raw}"`);
  ctx.expect("to", '"to"', 'after "write"');
  const name = ctx.expect("string", "a metric name", 'after "write to"');
  return { type, percentile, writeTo: name.text, pos: kw.pos };
}

/** The statistics so far, created with carbon-c-relay's defaults on first use. */
function statistics(ctx: ParseContext, pos: SourcePos): StatisticsState {
  ctx.state.statistics ??= {
    intervalSec: null,
    resetCounters: false,
    prefix: null,
    sendTo: null,
    sendPos: null,
    stop: false,
    pos,
  };
  return ctx.state.statistics;
}

/** Sets where statistics go; only once (router.c `router_set_statistics`). */
function setStatisticsTargets(
  ctx: ParseContext,
  send: Token,
  parsed: ParsedTargets,
  stop: boolean,
): void {
  const st = statistics(ctx, send.pos);
  if (st.sendPos !== null) {
    ctx.fail(
      send.pos,
      `statistics are already sent to clusters (at ${at(st.sendPos)}): name all of them in that one "send to"`,
    );
  }
  st.sendTo = parsed.targets;
  st.sendPos = send.pos;
  st.stop = stop;
}

/**
 * `statistics [submit every N seconds] [reset counters after interval]
 * [prefix with STRING] [send to TARGETS [stop]] ;`. Several statements
 * merge as in carbon-c-relay: a later interval or prefix replaces an earlier
 * one, each statement sets (or clears) `reset counters`, and `send to` may
 * be given once.
 */
export function parseStatistics(ctx: ParseContext, kw: Token): void {
  let interval: number | null = null;
  if (ctx.accept("submit") !== null) {
    ctx.expect("every", '"every"', 'after "submit"');
    const t = ctx.expect("int", "a number of seconds", 'after "submit every"');
    interval = seconds(ctx, t, "the interval");
    ctx.expect("seconds", '"seconds"', `after "submit every ${t.raw}"`);
  }
  let reset = false;
  if (ctx.accept("reset") !== null) {
    ctx.expect("counters", '"counters"', 'after "reset"');
    ctx.expect("after", '"after"', 'after "reset counters"');
    ctx.expect("interval", '"interval"', 'after "reset counters after"');
    reset = true;
  }
  let prefix: string | null = null;
  if (ctx.accept("prefix") !== null) {
    ctx.expect("with", '"with"', 'after "prefix"');
    prefix = ctx.expect("string", "a prefix", 'after "prefix with"').text;
  }
  const send = ctx.accept("send");
  const parsed = send === null ? null : parseTargets(ctx);
  const stop = parsed !== null && ctx.accept("stop") !== null;
  if (ctx.tok.kind !== ";") {
    const next: string[] = [];
    if (parsed === null) {
      if (interval === null && !reset && prefix === null) next.push('"submit every"');
      if (!reset && prefix === null) next.push('"reset counters after interval"');
      if (prefix === null) next.push('"prefix with"');
      next.push('"send to"');
    } else if (!stop) {
      if (!parsed.targets.blackhole) next.push("another cluster");
      next.push('"stop"');
    }
    ctx.unexpected(oneOf([...next, '";"']), "in the statistics statement");
  }
  ctx.take();
  const st = statistics(ctx, kw.pos);
  if (interval !== null) st.intervalSec = interval;
  if (prefix !== null) st.prefix = prefix;
  st.resetCounters = reset;
  if (send !== null && parsed !== null) setStatisticsTargets(ctx, send, parsed, stop);
}

/** `send statistics to TARGETS [stop] ;` (deprecated in carbon-c-relay for `statistics send to`). */
export function parseSendStatistics(ctx: ParseContext, kw: Token): void {
  ctx.expect(
    "statistics",
    '"statistics"',
    'after "send" (a statement cannot start with "send" otherwise)',
  );
  const parsed = parseTargets(ctx, '"send statistics"');
  const stop = ctx.accept("stop") !== null;
  if (ctx.tok.kind !== ";") {
    const next = stop ? [] : [...(parsed.targets.blackhole ? [] : ["another cluster"]), '"stop"'];
    ctx.unexpected(oneOf([...next, '";"']), 'in "send statistics to"');
  }
  ctx.take();
  setStatisticsTargets(ctx, kw, parsed, stop);
}
