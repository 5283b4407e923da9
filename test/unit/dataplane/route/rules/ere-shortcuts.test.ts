import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildPool } from "../../../../../bench/gen-workload.ts";
import { Prefilter } from "../../../../../dataplane/route/rules/ere-prefilter.ts";
import { parseEre } from "../../../../../dataplane/route/rules/ere-syntax.ts";
import { PosixRegex } from "../../../../../dataplane/route/rules/posix-regex.ts";

/**
 * The matcher's shortcuts (posix-regex.ts: the prefilter, the DFA-only test and
 * the depth-first groups) change no answer: for generated expressions (anchors
 * anywhere, empty alternatives, loops of what may be empty, word anchors) and
 * subjects (with newlines, NULs, latin1 bytes), test() and exec() give what the
 * whole of glibc's algorithm gives (compile with shortcuts: false), which the
 * tests against glibc itself pin down.
 */

function compile(source: string, shortcuts: boolean): PosixRegex | null {
  try {
    return PosixRegex.compile(source, { shortcuts });
  } catch {
    return null;
  }
}

function expectSame(source: string, subjects: readonly string[]): void {
  const fast = compile(source, true);
  const full = compile(source, false);
  expect(fast === null).toBe(full === null);
  if (fast === null || full === null) return;
  for (const s of subjects) {
    const want = full.exec(s);
    const got = fast.exec(s);
    if (
      JSON.stringify(got && [...got]) !== JSON.stringify(want && [...want]) ||
      fast.test(s) !== full.test(s) ||
      full.test(s) !== (want !== null)
    ) {
      expect.fail(
        `${JSON.stringify(source)} on ${JSON.stringify(s)}: ` +
          `test ${fast.test(s)} / ${full.test(s)}, exec ${JSON.stringify(got && [...got])} / ${JSON.stringify(want && [...want])}`,
      );
    }
  }
}

const ATOMS = [
  "a",
  "b",
  "x",
  "\\.",
  ".",
  "[ab]",
  "[^.]",
  "[a-x]",
  "\\n",
  "é",
  "ab",
  "ba.",
  "\\b",
  "\\<",
  "\\>",
  "\\w",
  "\\B",
];
const ANCHORS = ["^", "$"];
const SUBJECT_CHARS = ["a", "b", "x", ".", "\n", "\0", "é", " "];

/** An expression: atoms, groups, alternations, repetitions and anchors, nested up to `depth`. */
function expr(depth: number): fc.Arbitrary<string> {
  const atom = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...ATOMS) },
    { weight: 2, arbitrary: fc.constantFrom(...ANCHORS) },
    ...(depth > 0
      ? [
          {
            weight: 3,
            arbitrary: fc
              .array(expr(depth - 1), { minLength: 1, maxLength: 3 })
              .map((alts) => `(${alts.join("|")})`),
          },
          { weight: 1, arbitrary: fc.constant("()") },
          { weight: 1, arbitrary: expr(depth - 1).map((e) => `(${e}|)`) },
        ]
      : []),
  );
  const repeated = fc
    .tuple(atom, fc.constantFrom("", "", "", "*", "+", "?", "{1,2}", "{2}", "{0,1}"))
    .map(([a, r]) => (ANCHORS.includes(a) ? a : a + r));
  return fc.array(repeated, { minLength: 1, maxLength: 4 }).map((items) => items.join(""));
}

const subject = fc
  .array(fc.constantFrom(...SUBJECT_CHARS), { maxLength: 10 })
  .map((chars) => chars.join(""));

describe("matcher shortcuts", () => {
  it("change no answer on generated expressions and subjects", { timeout: 30_000 }, () => {
    fc.assert(
      fc.property(
        fc.oneof(
          expr(2),
          expr(2).map((e) => `^${e}`),
          expr(2).map((e) => `${e}$`),
        ),
        fc.array(subject, { minLength: 20, maxLength: 20 }),
        (source, subjects) => {
          expectSame(source, subjects);
        },
      ),
      { seed: 20261130, numRuns: 1500 },
    );
  });

  it("change no answer on the benchmark's expressions and relaybench's names", () => {
    const names = buildPool(3000, 3000).map((l) => l.slice(0, l.indexOf(" ")));
    const subjects = [...names, ...names.slice(0, 200).map((n) => `${n}\0x`), ""];
    for (const source of [
      "^(test|tmp|scratch)\\.",
      "[^A-Za-z0-9_.:=-]",
      "\\.(p999|max_latency)$",
      "\\.(gc|heap)\\.[^.]+\\.(young|old)$",
      "^stats\\.timers\\.([^.]+)\\.[^.]+\\.([^.]+)\\.count$",
      "^collectd\\.([^.]+)\\.load\\.load\\.([a-z]+)$",
      "^k8s\\.prod-([a-z0-9-]+)\\.([^.]+)\\.([a-z]+)-[0-9a-f]+-[0-9a-z]+\\.container\\.(.*)$",
      "^stats\\.timers\\.([^.]+)\\.(.*)$",
      "^apps\\.([^.]+)\\.([^.]+)\\.([^.]+)\\.([^.]+)\\.requests\\.(.*)$",
      "^servers\\.[^.]+\\.(cpu|memory|disk|network|load)\\.",
      "^k8s\\.([^.]+)\\.([^.]+)\\.",
      "(^|\\.)(load|cpu)\\.",
      "([a-z]+)([0-9]+)\\.",
      "(db|dbproxy)(-[0-9]+)?",
      "^(x|xy)(yz|z)",
      "^([^.]*)\\.(.*)\\.([^.]*)$",
    ]) {
      expectSame(source, subjects);
    }
  });
});

describe("Prefilter", () => {
  const facts = (source: string, anchored: boolean) =>
    Prefilter.of(parseEre(source).ast, anchored)?.describe() ?? null;

  it("reads literal prefixes, suffixes and factors", () => {
    expect(facts("^(mysql|postgres)\\.[^.]+\\.", true)).toEqual({
      prefix: ["mysql.", "postgres."],
      suffix: null,
      factors: [],
    });
    expect(facts("\\.(gc|heap)\\.[^.]+\\.(young|old)$", false)).toEqual({
      prefix: null,
      suffix: [".young", ".old"],
      factors: [[".gc.", ".heap."]],
    });
    expect(facts("(^|\\.)legacy\\.", false)).toEqual({
      prefix: null,
      suffix: null,
      factors: [["legacy."]],
    });
  });

  it("says nothing where a match may be empty or anything", () => {
    expect(facts("a*", false)).toBeNull();
    expect(facts(".+", true)).toBeNull();
    expect(facts("^(a|)b", true)?.prefix).toEqual(["ab", "b"]);
    expect(facts("x|[^.]", false)).toBeNull();
  });

  it("takes a prefix only where the matcher only tries the start", () => {
    expect(facts("^abc", false)).toEqual({ prefix: null, suffix: null, factors: [["abc"]] });
  });
});
