import { NamePairs, requiredPairs } from "./bigram-filter.ts";
import { FirstCharIndex, positionAfter } from "./first-char-index.ts";
import { cString } from "./posix-regex.ts";
import { METRIC_BUFSIZ } from "./replacement.ts";
import { type AggregateStep, type MatchStep, RuleKind, type Step } from "./rules-steps.ts";

/**
 * What the rules do with a metric name, worked out once per name: the steps
 * whose expression matches it, in order, with the name each sees (after the
 * rewrites before it) and what each makes of it (a route using key, the names
 * an aggregate writes). Everything in a plan depends on the name alone; what
 * depends on the rest of the line (whether a `validate` passes, whether a
 * renamed line still fits the relay's metric buffer) and on the members (which
 * are up) is decided when the plan is followed (rules-program.ts).
 *
 * A plan goes on past a step that can end routing on some lines and not on
 * others (a `validate` without `stop`); it ends at a step that ends routing
 * whatever the line (`stop` after a send, the blackhole, an aggregate's
 * `stop`).
 *
 * Asking the steps is made cheap where most do not match (none of which
 * changes a decision): only the steps that may match a name starting with its
 * first character (first-char-index.ts); with several steps that search the
 * name for text, the name's character pairs refuse those lacking a pair they
 * need (bigram-filter.ts); each expression's prefilter refuses most of the rest
 * by string comparisons (ere-prefilter.ts).
 */

/** A match step the name matched. */
export interface PlannedMatch {
  readonly kind: typeof RuleKind.Match;
  readonly step: MatchStep;
  /** The name as the step sees it. */
  readonly name: string;
  /** The route using key, or null without route using. */
  readonly key: string | null;
}

/** An aggregate step the name matched. */
export interface PlannedAggregate {
  readonly kind: typeof RuleKind.Aggregate;
  readonly step: AggregateStep;
  /** Per compute, the name it writes. */
  readonly produced: readonly string[];
  /** Whether the produced names were made from the match (and must fit with the line's rest). */
  readonly filled: boolean;
}

export interface Plan {
  readonly entries: readonly (PlannedMatch | PlannedAggregate)[];
  /**
   * The lengths of a line's rest the plan holds for: a rewrite renames only when
   * the new name and the rest fit the relay's metric buffer.
   */
  readonly minRest: number;
  readonly maxRest: number;
}

/** Steps that search a name (factors) from which its character pairs are worth computing. */
const MIN_PAIR_STEPS = 4;

export class RoutePlanner {
  readonly #steps: readonly Step[];
  /** The steps that may match a name, by its first character. */
  readonly #index: FirstCharIndex;
  /** Per step: the character pairs a name must have for its expression to match, or null. */
  readonly #pairsNeeded: readonly (Uint32Array | null)[];
  readonly #pairs = new NamePairs();

  constructor(steps: readonly Step[]) {
    this.#steps = steps;
    this.#index = new FirstCharIndex(steps.map((s) => s.matcher.firstChars()));
    const needed = steps.map((s) => requiredPairs(s.matcher.factors()));
    // a name's pairs cost about what a few searches of it do
    const searching = needed.filter((n) => n !== null).length;
    this.#pairsNeeded = searching >= MIN_PAIR_STEPS ? needed : steps.map(() => null);
  }

  /** The plan for `name` on a line whose rest is `restLength` bytes long. */
  plan(name: string, restLength: number): Plan {
    const steps = this.#steps;
    const needed = this.#pairsNeeded;
    const pairs = this.#pairs;
    const entries: (PlannedMatch | PlannedAggregate)[] = [];
    let minRest = 0;
    let maxRest = Number.MAX_SAFE_INTEGER;
    // what regular expressions see of the name (up to a NUL), cut once per name
    let cut = cString(name);
    pairs.reset(name);
    let list = this.#index.steps(name);
    for (let k = 0; k < list.length; k++) {
      const at = list[k]!;
      const need = needed[at]!;
      if (need !== null && !pairs.has(need)) continue;
      const step = steps[at]!;
      if (step.kind === RuleKind.Rewrite) {
        const renamed = step.into.apply(name, cut);
        if (renamed === null) continue;
        // the longest rest with which the renamed line fits
        const room = METRIC_BUFSIZ - 2 - renamed.length;
        if (restLength > room) {
          minRest = Math.max(minRest, room + 1);
          continue;
        }
        maxRest = Math.min(maxRest, room);
        name = renamed;
        cut = cString(name);
        pairs.reset(name);
        list = this.#index.steps(name);
        k = positionAfter(list, at) - 1;
        continue;
      }
      if (step.kind === RuleKind.Aggregate) {
        const planned = planAggregate(step, name, cut);
        if (planned === null) continue;
        entries.push(planned);
        if (step.stop) break;
        continue;
      }
      let key: string | null = null;
      if (step.using === null) {
        if (!step.matcher.test(name, cut)) continue;
      } else {
        key = step.using.apply(name, cut);
        if (key === null) continue;
      }
      entries.push({ kind: RuleKind.Match, step, name, key });
      if (step.blackhole || step.stop) break;
    }
    return { entries, minRest, maxRest };
  }
}

function planAggregate(step: AggregateStep, name: string, cut: string): PlannedAggregate | null {
  const matcher = step.matcher;
  const groups = matcher.groups;
  // Without groups the relay writes the template as it is (no references expanded).
  if (groups === 0) {
    if (!matcher.test(name, cut)) return null;
    const produced = step.computes.map((c) => c.template);
    return { kind: RuleKind.Aggregate, step, produced, filled: false };
  }
  const m = matcher.match(name, cut);
  if (m === null) return null;
  const produced = step.computes.map((c) => c.apply(name, m, groups));
  return { kind: RuleKind.Aggregate, step, produced, filled: true };
}
