import type { Replacement } from "./replacement.ts";
import type { Matcher } from "./rules-matcher.ts";

/**
 * A rule's expression and the template it fills from the match: a rewrite's
 * `into`, a match's `route using`.
 */
export class MatchedReplacement {
  readonly matcher: Matcher;
  readonly template: Replacement;

  constructor(matcher: Matcher, template: Replacement) {
    this.matcher = matcher;
    this.template = template;
  }

  /**
   * The template filled from the match in `name` (`cut`: the name up to a NUL,
   * what a regular expression sees), or null when the expression does not match.
   */
  apply(name: string, cut: string): string | null {
    const matcher = this.matcher;
    if (!matcher.mayMatch(name, cut)) return null;
    const m = matcher.match(name, cut);
    return m === null ? null : this.template.apply(name, m, matcher.groups);
  }
}
