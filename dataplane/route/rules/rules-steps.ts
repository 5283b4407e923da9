import type { ClusterSelector } from "./cluster-select.ts";
import { MatchedReplacement } from "./matched-replacement.ts";
import { METRIC_BUFSIZ, Replacement } from "./replacement.ts";
import type { AggregateRule, Expr, RulesConfig, Targets } from "./rules-config.ts";
import { Matcher } from "./rules-matcher.ts";

/**
 * A relay.conf's rules as the steps routing walks, in file order: each
 * expression of a `match` or `aggregate` is a step of its own (a line matching
 * two is sent, or aggregated, twice), as in carbon-c-relay's router.
 */

export const RuleKind = { Match: 0, Rewrite: 1, Aggregate: 2 } as const;

export interface MatchStep {
  readonly kind: typeof RuleKind.Match;
  readonly matcher: Matcher;
  readonly validate: Matcher | null;
  /** `route using`: the hash key from the match. */
  readonly using: MatchedReplacement | null;
  /** Clusters that hash (route using applies to them only). */
  readonly hashes: readonly boolean[];
  readonly clusters: readonly ClusterSelector[];
  readonly blackhole: boolean;
  readonly hasSendTo: boolean;
  /** Routing ends here once the step sends (always with blackhole; never without send to). */
  readonly stop: boolean;
}

export interface RewriteStep {
  readonly kind: typeof RuleKind.Rewrite;
  readonly matcher: Matcher;
  readonly into: MatchedReplacement;
}

export interface AggregateStep {
  readonly kind: typeof RuleKind.Aggregate;
  readonly matcher: Matcher;
  /** Index into the program's aggregates. */
  readonly index: number;
  /** Per compute: the `write to` template (used as written when the expression has no groups). */
  readonly computes: readonly Replacement[];
  readonly stop: boolean;
}

export type Step = MatchStep | RewriteStep | AggregateStep;

/** Where an aggregate's output goes: its clusters, the blackhole, or (null) the rules. */
export type Output = {
  readonly blackhole: boolean;
  readonly clusters: readonly ClusterSelector[];
} | null;

/** Whether a renamed line (name, rest, newline, NUL) fits the relay's metric buffer. */
export function fits(nameLength: number, restLength: number): boolean {
  return nameLength + restLength + 2 <= METRIC_BUFSIZ;
}

/** A `send to`'s clusters (none for the blackhole); throws RulesError for an unknown one. */
export type ResolveTargets = (to: Targets, at: Expr["pos"]) => ClusterSelector[];

/** The steps of `config`'s rules, its aggregate rules, and where each aggregate's output goes. */
export function buildSteps(
  config: RulesConfig,
  resolve: ResolveTargets,
): { steps: Step[]; aggregates: AggregateRule[]; outputs: Output[] } {
  const steps: Step[] = [];
  const aggregates: AggregateRule[] = [];
  const outputs: Output[] = [];
  for (const rule of config.rules) {
    if (rule.kind === "rewrite") {
      const matcher = new Matcher(rule.expr);
      const into = new MatchedReplacement(matcher, Replacement.compile(rule.into));
      steps.push({ kind: RuleKind.Rewrite, matcher, into });
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
      const using = rule.routeUsing === null ? null : Replacement.compile(rule.routeUsing);
      for (const expr of exprs) {
        const matcher = new Matcher(expr ?? { source: "*", pos: rule.pos });
        steps.push({
          kind: RuleKind.Match,
          matcher,
          validate,
          using: using === null ? null : new MatchedReplacement(matcher, using),
          hashes: clusters.map((c) => c.cluster.type.endsWith("_ch")),
          clusters,
          blackhole,
          hasSendTo: rule.sendTo !== null,
          stop: rule.sendTo === null ? false : blackhole || rule.stop,
        });
      }
    }
  }
  return { steps, aggregates, outputs };
}
