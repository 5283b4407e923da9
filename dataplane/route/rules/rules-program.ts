import type { DestinationSpec } from "../../forward/destination-spec.ts";
import {
  buildTargets,
  type ClusterSelector,
  HashKey,
  type MemberSink,
  type RulesTarget,
} from "./cluster-select.ts";
import { PosixRegex, RegexSyntaxError } from "./posix-regex.ts";
import { METRIC_BUFSIZ, Replacement } from "./replacement.ts";
import {
  type AggregateRule,
  type Expr,
  type RulesConfig,
  RulesError,
  type Targets,
} from "./rules-config.ts";

/**
 * A relay.conf compiled: per line, what carbon-c-relay 3.7.3's router
 * (router.c `router_route_intern`) decides, as its test mode (`-t`) prints it.
 *
 * - Rules run in file order; each expression of a `match` or `aggregate` is a
 *   rule of its own (a line matching two is sent, or aggregated, twice).
 * - `rewrite` renames the line for the rules after it.
 * - A `match` with no `send to` ignores `stop`; `send to blackhole` always
 *   stops. A failed `validate` skips the rule's `send to` and stops when the
 *   rule has `stop` or no `send to`.
 * - An aggregate takes the line (and not its `send to`, which is for what the
 *   aggregate produces) and stops when it has `stop`.
 * - `statistics` is not per line, and does not take part.
 *
 * Expressions are POSIX EREs; like the relay, an expression that is a plain
 * word (optionally `^`-anchored and/or `$`-anchored) is compared as a string.
 * Where the relay reads stale match offsets (an expression without groups, or
 * `*`, in a rewrite or `route using`), the program uses the real match (the
 * whole name for `*`), so a template's references insert nothing; and
 * `route using` after a `validate` uses the match's offsets, not (as the relay
 * does) those its validate expression left behind.
 *
 * Besides what the expressions' matcher does, route() allocates only for
 * renamed names, route using keys and validate subjects. It is not re-entrant:
 * a visitor must not route from inside a callback.
 */

export type { RulesTarget };

export interface RulesVisitor extends MemberSink {
  /** The member (index into program.targets) of cluster `cluster` gets the line, with metric name `metric` (latin1). */
  send(cluster: string, target: number, metric: string): void;
  blackhole(): void;
  /** Aggregate rule `aggregate` (index into program.aggregates), compute `compute`, gets a point for the produced name `metric`. */
  aggregate(aggregate: number, compute: number, metric: string): void;
  /** A validate clause stopped the line ("validate" for else drop and else log alike). */
  drop(reason: "validate"): void;
  /** Whether a target is up (failover, any_of, dynamic hash clusters). The CLI says always true. */
  up(target: number): boolean;
}

/** relay.conf's limit: RE_MAX_MATCHES offset pairs, group 0 included. */
const MAX_GROUPS = 63;

const Kind = { All: 0, Regex: 1, Contains: 2, StartsWith: 3, EndsWith: 4, Equals: 5 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

/** An expression as the relay runs it: `*`, a string comparison, or a regular expression. */
class Matcher {
  readonly source: string;
  readonly kind: Kind;
  /** Groups the expression has (0 for all but regular expressions). */
  readonly groups: number;
  readonly #literal: string;
  readonly #regex: PosixRegex | null;
  readonly #match = new Int32Array(2);

  constructor(expr: Expr) {
    this.source = expr.source;
    const { kind, literal } = classify(expr.source);
    this.kind = kind;
    this.#literal = literal;
    if (kind !== Kind.Regex) {
      this.#regex = null;
      this.groups = 0;
      return;
    }
    try {
      this.#regex = PosixRegex.compile(expr.source);
    } catch (err) {
      if (!(err instanceof RegexSyntaxError)) throw err;
      const pos = { ...expr.pos, column: expr.pos.column + Math.max(0, err.offset) };
      throw new RulesError(pos, `invalid expression '${expr.source}': ${err.message}`);
    }
    this.groups = this.#regex.groupCount;
    if (this.groups > MAX_GROUPS) {
      throw new RulesError(
        expr.pos,
        `too many match groups in '${expr.source}' (at most ${MAX_GROUPS})`,
      );
    }
  }

  test(s: string): boolean {
    const lit = this.#literal;
    switch (this.kind) {
      case Kind.All:
        return true;
      case Kind.Regex:
        return this.#regex!.test(s);
      case Kind.Contains:
        return s.includes(lit);
      case Kind.StartsWith:
        return s.startsWith(lit);
      case Kind.EndsWith:
        return s.endsWith(lit);
      default:
        return s === lit;
    }
  }

  /** Match offsets for a name test() accepted (reused array: use it at once). */
  exec(s: string): Int32Array | null {
    if (this.kind === Kind.Regex) return this.#regex!.exec(s);
    const m = this.#match;
    const n = this.#literal.length;
    switch (this.kind) {
      case Kind.All:
        m[0] = 0;
        m[1] = s.length;
        break;
      case Kind.Contains:
        m[0] = s.indexOf(this.#literal);
        m[1] = m[0] + n;
        break;
      case Kind.EndsWith:
        m[0] = s.length - n;
        m[1] = s.length;
        break;
      default:
        m[0] = 0;
        m[1] = n;
    }
    return m[0]! < 0 ? null : m;
  }
}

/**
 * carbon-c-relay's `determine_if_regex`: `*` matches everything; letters,
 * digits, `_`, `-` and backslash-escaped `.^*+\` make a literal, compared as a
 * string (`^` at the start: a prefix; `$` at the end: a suffix; both: the whole
 * name). Anything else is a regular expression.
 */
function classify(source: string): { kind: Kind; literal: string } {
  if (source === "*") return { kind: Kind.All, literal: "" };
  let kind: Kind = Kind.Contains;
  let i = 0;
  if (source.startsWith("^")) {
    kind = Kind.StartsWith;
    i = 1;
  }
  let literal = "";
  let esc = false;
  for (; i < source.length; i++) {
    const c = source[i]!;
    if (c === "\\") {
      if (esc) literal += c;
      esc = !esc;
    } else if (c === "." || c === "^" || c === "*" || c === "+") {
      if (!esc) return { kind: Kind.Regex, literal: "" };
      literal += c;
      esc = false;
    } else if (c === "$") {
      if (esc || i !== source.length - 1) return { kind: Kind.Regex, literal: "" };
      kind = kind === Kind.StartsWith ? Kind.Equals : Kind.EndsWith;
    } else if (!esc && /[A-Za-z0-9_-]/.test(c)) {
      literal += c;
    } else {
      return { kind: Kind.Regex, literal: "" };
    }
  }
  return { kind, literal };
}

const RuleKind = { Match: 0, Rewrite: 1, Aggregate: 2 } as const;

interface MatchStep {
  readonly kind: typeof RuleKind.Match;
  readonly matcher: Matcher;
  readonly validate: Matcher | null;
  readonly using: Replacement | null;
  /** Clusters that hash (route using applies to them only). */
  readonly hashes: readonly boolean[];
  readonly clusters: readonly ClusterSelector[];
  readonly blackhole: boolean;
  readonly hasSendTo: boolean;
  readonly stop: boolean;
}

interface RewriteStep {
  readonly kind: typeof RuleKind.Rewrite;
  readonly matcher: Matcher;
  readonly into: Replacement;
}

interface AggregateStep {
  readonly kind: typeof RuleKind.Aggregate;
  readonly matcher: Matcher;
  readonly index: number;
  /** Per compute: the `write to` template (used as written when the expression has no groups). */
  readonly computes: readonly Replacement[];
  readonly stop: boolean;
}

type Step = MatchStep | RewriteStep | AggregateStep;

/** Where an aggregate's output goes: its clusters, the blackhole, or (null) the rules. */
type Output = { readonly blackhole: boolean; readonly clusters: readonly ClusterSelector[] } | null;

/** Whether a renamed line (name, rest, newline, NUL) fits the relay's metric buffer. */
function fits(name: string, rest: string): boolean {
  return name.length + rest.length + 2 <= METRIC_BUFSIZ;
}

export class RulesProgram {
  readonly config: RulesConfig;
  /** Every network member once (one server per id across clusters, as carbon-c-relay), then file paths, in order of first appearance. */
  readonly targets: readonly RulesTarget[];
  readonly aggregates: readonly AggregateRule[];
  readonly #steps: readonly Step[];
  readonly #outputs: readonly Output[];
  /** `statistics ... send to` / `send statistics to`: where polymur's own metrics go; null: through the rules. */
  readonly #statistics: Output;
  readonly #key = new HashKey();

  private constructor(
    config: RulesConfig,
    targets: readonly RulesTarget[],
    aggregates: readonly AggregateRule[],
    steps: readonly Step[],
    outputs: readonly Output[],
    statistics: Output,
  ) {
    this.config = config;
    this.targets = targets;
    this.aggregates = aggregates;
    this.#steps = steps;
    this.#outputs = outputs;
    this.#statistics = statistics;
  }

  /** Throws RulesError (at the expression, for a bad regular expression). */
  static compile(config: RulesConfig): RulesProgram {
    const { targets, selectors } = buildTargets(config);
    const resolve = (to: Targets, at: Expr["pos"]): ClusterSelector[] => {
      if (to.blackhole) return [];
      return to.clusters.map((name) => {
        const s = selectors.get(name);
        if (s === undefined) throw new RulesError(at, `unknown cluster '${name}'`);
        return s;
      });
    };
    const steps: Step[] = [];
    const aggregates: AggregateRule[] = [];
    const outputs: Output[] = [];
    for (const rule of config.rules) {
      if (rule.kind === "rewrite") {
        const into = Replacement.compile(rule.into);
        steps.push({ kind: RuleKind.Rewrite, matcher: new Matcher(rule.expr), into });
      } else if (rule.kind === "aggregate") {
        const index = aggregates.length;
        aggregates.push(rule);
        outputs.push(
          rule.sendTo === null
            ? null
            : { blackhole: rule.sendTo.blackhole, clusters: resolve(rule.sendTo, rule.pos) },
        );
        const computes = rule.computes.map((c) => Replacement.compile(c.writeTo));
        for (const expr of rule.exprs) {
          const matcher = new Matcher(expr);
          steps.push({ kind: RuleKind.Aggregate, matcher, index, computes, stop: rule.stop });
        }
      } else {
        const validate = rule.validate === null ? null : new Matcher(rule.validate.expr);
        const clusters = rule.sendTo === null ? [] : resolve(rule.sendTo, rule.pos);
        const blackhole = rule.sendTo?.blackhole === true;
        const exprs: readonly (Expr | null)[] = rule.exprs ?? [null];
        for (const expr of exprs) {
          steps.push({
            kind: RuleKind.Match,
            matcher: new Matcher(expr ?? { source: "*", pos: rule.pos }),
            validate,
            using: rule.routeUsing === null ? null : Replacement.compile(rule.routeUsing),
            hashes: clusters.map((c) => c.cluster.type.endsWith("_ch")),
            clusters,
            blackhole,
            hasSendTo: rule.sendTo !== null,
            stop: rule.sendTo === null ? false : blackhole || rule.stop,
          });
        }
      }
    }
    const stats = config.statistics?.sendTo ?? null;
    const statistics: Output =
      stats === null || config.statistics === null
        ? null
        : { blackhole: stats.blackhole, clusters: resolve(stats, config.statistics.pos) };
    return new RulesProgram(config, targets, aggregates, steps, outputs, statistics);
  }

  /** Routes one line: name is the metric name (latin1 string), rest is the rest of the line after the name, e.g. " 1.5 1700000000". */
  route(name: string, rest: string, visitor: RulesVisitor): void {
    const key = this.#key;
    let subject: string | null = null;
    for (const step of this.#steps) {
      const matcher = step.matcher;
      if (!matcher.test(name)) continue;
      if (step.kind === RuleKind.Rewrite) {
        const m = matcher.exec(name);
        if (m === null) continue;
        const renamed = step.into.apply(name, m, matcher.groups);
        if (fits(renamed, rest)) name = renamed;
        continue;
      }
      if (step.kind === RuleKind.Aggregate) {
        this.#aggregate(step, name, rest, visitor);
        if (step.stop) return;
        continue;
      }
      if (step.validate !== null) {
        subject ??= validateSubject(rest);
        if (!step.validate.test(subject)) {
          if (step.stop || !step.hasSendTo) {
            visitor.drop("validate");
            return;
          }
          continue;
        }
      }
      if (step.blackhole) {
        visitor.blackhole();
        return;
      }
      const clusters = step.clusters;
      if (clusters.length > 0) {
        key.set(name);
        let hashKeyOk = true;
        if (step.using !== null) {
          const m = matcher.exec(name);
          const k = m === null ? name : step.using.apply(name, m, matcher.groups);
          hashKeyOk = fits(k, rest);
          key.set(k);
        }
        for (let i = 0; i < clusters.length; i++) {
          // A route using key that does not fit: the relay skips the hash clusters.
          if (!hashKeyOk && step.hashes[i]!) continue;
          clusters[i]!.select(name, key, visitor);
        }
      }
      if (step.stop) return;
    }
  }

  /** What an aggregate's produced metric does: to its send-to clusters, or routed from the top when it has none. */
  routeProduced(aggregate: number, metric: string, rest: string, visitor: RulesVisitor): void {
    const out = this.#outputs[aggregate];
    if (out === undefined) throw new RangeError(`no aggregate ${aggregate}`);
    this.#output(out, metric, rest, visitor);
  }

  /** polymur's own metrics: to the `statistics` clusters, or through the rules when the file names none. */
  routeStatistics(metric: string, rest: string, visitor: RulesVisitor): void {
    this.#output(this.#statistics, metric, rest, visitor);
  }

  #output(out: Output, metric: string, rest: string, visitor: RulesVisitor): void {
    if (out === null) {
      this.route(metric, rest, visitor);
      return;
    }
    if (out.blackhole) {
      visitor.blackhole();
      return;
    }
    const key = this.#key;
    key.set(metric);
    for (const c of out.clusters) c.select(metric, key, visitor);
  }

  #aggregate(step: AggregateStep, name: string, rest: string, visitor: RulesVisitor): void {
    const matcher = step.matcher;
    const groups = matcher.groups;
    const computes = step.computes;
    // Without groups the relay writes the template as it is (no references expanded).
    const m = groups > 0 ? matcher.exec(name) : null;
    if (groups > 0 && m === null) return;
    for (let i = 0; i < computes.length; i++) {
      const template = computes[i]!;
      let produced = template.template;
      if (m !== null) {
        produced = template.apply(name, m, groups);
        if (!fits(produced, rest)) continue;
      }
      visitor.aggregate(step.index, i, produced);
    }
  }
}

/**
 * What `validate` matches: the line after the name, without the separator
 * before the value, whitespace runs as one space (the relay's reader turns tabs
 * into spaces and collapses runs before routing).
 */
function validateSubject(rest: string): string {
  let simple = rest.charCodeAt(0) === 0x20;
  for (let i = 1; simple && i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    simple = c !== 0x09 && !(c === 0x20 && (i === 1 || rest.charCodeAt(i - 1) === 0x20));
  }
  if (simple) return rest.slice(1);
  const parts = rest.split(/[ \t]+/);
  if (parts[0] === "") parts.shift();
  return parts.join(" ");
}

/** The `host:port` carbon-c-relay's test mode prints for a member (IPv6 bracketed), or a file's path. */
export function targetText(t: RulesTarget): string {
  if (t.kind === "file") return t.path;
  const spec: DestinationSpec = t.spec;
  return spec.host.includes(":") ? `[${spec.host}]:${spec.port}` : `${spec.host}:${spec.port}`;
}
