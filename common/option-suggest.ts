/**
 * "Did you mean" for mistyped option names, shared by `polymur` (every role)
 * and `polymurctl` (every command) so both say the same thing the same way.
 */

/**
 * Edit distance with adjacent transpositions counted as one edit (optimal
 * string alignment): `hsah` is one edit from `hash`, as a typist sees it.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(
        d[(i - 1) * cols + j]! + 1,
        d[i * cols + j - 1]! + 1,
        d[(i - 1) * cols + j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = best;
    }
  }
  return d[rows * cols - 1]!;
}

/**
 * The candidate closest to `name`, when it is close: at most one edit for
 * names of up to four characters, two up to eight, three beyond (a quarter
 * of the longer name, roughly); otherwise undefined. Ties go to the
 * candidate listed first.
 */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const limit =
      Math.max(name.length, c.length) <= 4 ? 1 : Math.max(name.length, c.length) <= 8 ? 2 : 3;
    const dist = editDistance(name, c);
    if (dist <= limit && dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  return best;
}

/**
 * `unknown option --hsah; did you mean --hash?`, or, with nothing close,
 * `unknown option --frobnicate (see <help>)`. `flag` is the option as
 * written (without any `=value`); `name` is its bare name. `aliases` (old
 * name → current name) are candidates too, suggested by their current name.
 */
export function unknownOptionText(
  flag: string,
  name: string,
  candidates: Iterable<string>,
  help: string,
  aliases: Readonly<Record<string, string>> = {},
): string {
  const close = closestName(name, [...candidates, ...Object.keys(aliases)]);
  return close === undefined
    ? `unknown option ${flag} (see ${help})`
    : `unknown option ${flag}; did you mean --${Object.hasOwn(aliases, close) ? aliases[close] : close}?`;
}
