import type { DestinationSpec } from "../../forward/destination-spec.ts";
import {
  buildTargets,
  type ClusterSelector,
  HashKey,
  type MemberSink,
  type RulesTarget,
} from "./cluster-select.ts";
import { NameMemo } from "./name-memo.ts";
import { cString } from "./posix-regex.ts";
import { type Plan, RoutePlanner } from "./route-plan.ts";
import {
  type AggregateRule,
  type Expr,
  type RulesConfig,
  RulesError,
  type Targets,
} from "./rules-config.ts";
import { buildSteps, fits, type Output, RuleKind } from "./rules-steps.ts";

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
 * A line is routed in two parts. What depends on its name alone (which steps
 * match, the names rewrites give, route using keys, the names aggregates
 * write) is a plan (route-plan.ts), worked out without asking most of the
 * steps that cannot match, and remembered for the names routed lately
 * (name-memo.ts: the same names come back every interval). Following the plan
 * decides what depends on the rest of the line (validate, whether a renamed
 * line fits) and on which members are up. Neither part changes a decision.
 *
 * route() allocates for the plans of names not seen lately, validate subjects,
 * and the rest of the line's text (when given as a LineRest) only for
 * validate. It is not re-entrant: a visitor must not route from inside a
 * callback.
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

/**
 * Names whose plan a program remembers, per generation (two generations:
 * name-memo.ts). A plan takes some 200-300 bytes with its names.
 */
const PLANS = 65_536;

/** The rest of a line after its name, made into a string only when a rule reads it. */
export interface LineRest {
  /** Its length in bytes (latin1 chars). */
  readonly length: number;
  /** The text, e.g. " 1.5 1700000000". */
  text(): string;
}

export class RulesProgram {
  readonly config: RulesConfig;
  /** Every network member once (one server per id across clusters, as carbon-c-relay), then file paths, in order of first appearance. */
  readonly targets: readonly RulesTarget[];
  readonly aggregates: readonly AggregateRule[];
  readonly #planner: RoutePlanner;
  /** The plans of the names routed lately: the same names come back every interval. */
  readonly #plans = new NameMemo<Plan>(PLANS);
  readonly #outputs: readonly Output[];
  /** `statistics ... send to` / `send statistics to`: where polymur's own metrics go; null: through the rules. */
  readonly #statistics: Output;
  readonly #key = new HashKey();

  private constructor(
    config: RulesConfig,
    targets: readonly RulesTarget[],
    aggregates: readonly AggregateRule[],
    planner: RoutePlanner,
    outputs: readonly Output[],
    statistics: Output,
  ) {
    this.config = config;
    this.targets = targets;
    this.aggregates = aggregates;
    this.#planner = planner;
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
    const { steps, aggregates, outputs } = buildSteps(config, resolve);
    const stats = config.statistics?.sendTo ?? null;
    const statistics: Output =
      stats === null || config.statistics === null
        ? null
        : { blackhole: stats.blackhole, clusters: resolve(stats, config.statistics.pos) };
    const planner = new RoutePlanner(steps);
    return new RulesProgram(config, targets, aggregates, planner, outputs, statistics);
  }

  /**
   * Routes one line: name is the metric name (latin1 string), rest is the rest of
   * the line after the name, e.g. " 1.5 1700000000", or a LineRest that makes
   * that text only if a `validate` needs it.
   */
  route(name: string, rest: string | LineRest, visitor: RulesVisitor): void {
    const restLength = rest.length;
    let plan = this.#plans.get(name);
    if (plan === undefined) {
      plan = this.#planner.plan(name, restLength);
      this.#plans.set(name, plan);
    } else if (restLength < plan.minRest || restLength > plan.maxRest) {
      // a rewrite that renames with this rest and not with that (32 KiB lines)
      plan = this.#planner.plan(name, restLength);
    }
    this.#follow(plan, rest, restLength, visitor);
  }

  /** Does what a plan says, deciding what depends on the line's rest and on which members are up. */
  #follow(plan: Plan, rest: string | LineRest, restLength: number, visitor: RulesVisitor): void {
    const key = this.#key;
    let subject: string | null = null;
    let subjectCut = "";
    for (const entry of plan.entries) {
      if (entry.kind === RuleKind.Aggregate) {
        const { step, produced } = entry;
        for (let i = 0; i < produced.length; i++) {
          const metric = produced[i]!;
          if (entry.filled && !fits(metric.length, restLength)) continue;
          visitor.aggregate(step.index, i, metric);
        }
        if (step.stop) return;
        continue;
      }
      const { step, name } = entry;
      if (step.validate !== null) {
        if (subject === null) {
          subject = validateSubject(typeof rest === "string" ? rest : rest.text());
          subjectCut = cString(subject);
        }
        if (!step.validate.test(subject, subjectCut)) {
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
        if (entry.key !== null) {
          hashKeyOk = fits(entry.key.length, restLength);
          key.set(entry.key);
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
