/**
 * PosixRegex against glibc on generated expressions and subjects: fast-check draws
 * (fixed seeds) expressions from a small grammar over a small alphabet, so that
 * matches are frequent and every construct meets every other (groups, empty
 * alternatives, bounds, repetitions of repetitions, anchors anywhere, word anchors,
 * brackets, latin1 bytes, newlines), plus strings of syntax characters for the
 * parser's errors. One glibc process answers the whole batch; compile success and
 * message, re_nsub, test() and the full pmatch must all agree.
 *
 * The grammar keeps clear of what makes glibc itself take exponential time or loop
 * forever (an unbounded repetition of what may match empty, anchors under two
 * repetitions): posix-regex.test.ts covers those one by one.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PosixRegex } from "../../../../../dataplane/route/rules/posix-regex.ts";
import { glibcPython, runGlibcRegex } from "../../../../fixtures/glibc-regex.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

const ATOMS = [
  "a",
  "b",
  "c",
  ".",
  "-",
  "x",
  "\\.",
  "\\d",
  "[ab]",
  "[^a]",
  "[a-c]",
  "[]a-]",
  "[^.-]",
  "[[:alpha:]]",
  "[[:punct:]]",
  "\xe9",
  "[\xe0-\xff]",
  "()",
  "\\w",
  "\\S",
];
const ANCHORS = ["^", "$", "\\b", "\\B", "\\<", "\\>", "\\`", "\\'"];
const BOUNDED = ["?", "{2}", "{0,2}", "{,2}", "{1,3}", "{0}", "{1}", "??"];
const UNBOUNDED = ["*", "+", "{1,}", "{2,}", "+?", "*?"];

const memo = new Map<string, fc.Arbitrary<string>>();

/** An expression at `depth` that cannot match the empty string, with no anchors. */
function solid(depth: number): fc.Arbitrary<string> {
  const key = `solid/${depth}`;
  const known = memo.get(key);
  if (known !== undefined) return known;
  const leaf = fc.constantFrom(...ATOMS.filter((a) => a !== "()"));
  if (depth >= 4) {
    memo.set(key, leaf);
    return leaf;
  }
  const sub = solid(depth + 1);
  const arb = fc.oneof(
    { depthSize: "small" },
    leaf,
    fc.tuple(sub, sub).map(([x, y]) => x + y),
    sub.map((x) => `(${x})`),
    fc.array(sub, { minLength: 2, maxLength: 3 }).map((bs) => `(${bs.join("|")})`),
    fc.tuple(sub, fc.constantFrom("{2}", "{1,3}", "{1}")).map(([x, q]) => `(${x})${q}`),
  );
  memo.set(key, arb);
  return arb;
}

/** Wraps an expression in a group unless it is one character or already a group. */
function unit(arb: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return arb.map((x) => (x.length === 1 || (x.startsWith("(") && x.endsWith(")")) ? x : `(${x})`));
}

/**
 * An expression at `depth`, under `loops` bounded repetitions (at most two; anchors
 * under at most one). Unbounded repetitions take a solid() body.
 */
function expression(depth: number, loops: number): fc.Arbitrary<string> {
  const key = `expr/${depth}/${loops}`;
  const known = memo.get(key);
  if (known !== undefined) return known;
  const leaf = fc.constantFrom(...ATOMS, ...(loops <= 1 ? ANCHORS : []));
  if (depth >= 4) {
    memo.set(key, leaf);
    return leaf;
  }
  const sub = expression(depth + 1, loops);
  const branch = fc.oneof(sub, fc.constant(""));
  const parts: fc.Arbitrary<string>[] = [
    leaf,
    fc.tuple(sub, sub).map(([x, y]) => x + y),
    fc.tuple(sub, sub, sub).map(([x, y, z]) => x + y + z),
    sub.map((x) => `(${x})`),
    fc.array(branch, { minLength: 2, maxLength: 3 }).map((bs) => `(${bs.join("|")})`),
  ];
  parts.push(
    fc.tuple(unit(solid(depth + 1)), fc.constantFrom(...UNBOUNDED)).map(([x, q]) => x + q),
  );
  if (loops < 2) {
    parts.push(
      fc
        .tuple(unit(expression(depth + 1, loops + 1)), fc.constantFrom(...BOUNDED))
        .map(([x, q]) => x + q),
    );
  }
  const arb = fc.oneof({ depthSize: "small" }, ...parts);
  memo.set(key, arb);
  return arb;
}

const pattern = fc.oneof(
  { arbitrary: expression(0, 0), weight: 4 },
  {
    arbitrary: fc.tuple(expression(1, 0), expression(1, 0)).map(([x, y]) => `${x}|${y}`),
    weight: 1,
  },
);
const subject = fc
  .array(fc.constantFrom("a", "b", "c", ".", "-", "x", "\n", " ", "\xe9"), { maxLength: 9 })
  .map((cs) => cs.join(""));
const junk = fc
  .array(fc.constantFrom(..."()[]{}|*+?^$\\.-,0123a:=b]^"), { minLength: 1, maxLength: 8 })
  .map((cs) => cs.join(""));

interface Case {
  pattern: string;
  subjects: string[];
}

function cases(arb: fc.Arbitrary<string>, n: number, seed: number): Case[] {
  return fc.sample(
    fc.record({ pattern: arb, subjects: fc.array(subject, { minLength: 6, maxLength: 6 }) }),
    {
      numRuns: n,
      seed,
    },
  );
}

function compile(source: string): PosixRegex | string {
  try {
    return PosixRegex.compile(source);
  } catch (err) {
    return (err as Error).message;
  }
}

describe("PosixRegex on generated expressions", () => {
  it("test() says a match exactly when exec() finds one", () => {
    fc.assert(
      fc.property(expression(0, 0), fc.array(subject, { maxLength: 4 }), (source, subjects) => {
        const re = compile(source);
        if (typeof re === "string") return;
        for (const s of subjects) expect(re.test(s)).toBe(re.exec(s) !== null);
      }),
      { seed: 20261130, numRuns: 500 },
    );
  });

  describe.skipIf(skipUnlessAvailable("python3 with glibc", glibcPython !== undefined))(
    "against glibc",
    () => {
      it("compiles, counts groups and matches as glibc does", () => {
        const batch = [...cases(pattern, 3000, 7), ...cases(junk, 1000, 11)];
        const results = runGlibcRegex(batch);
        const wrong: string[] = [];
        let compared = 0;
        let matched = 0;
        batch.forEach((c, i) => {
          const r = results[i]!;
          const re = compile(c.pattern);
          const p = JSON.stringify(c.pattern);
          if (typeof re === "string" || r.error !== null) {
            if (typeof re !== "string" || r.message !== re) {
              wrong.push(
                `${p}: glibc ${r.message ?? "compiles"}, ours ${typeof re === "string" ? re : "compiles"}`,
              );
            }
            return;
          }
          if (re.groupCount !== r.nsub) wrong.push(`${p}: ${r.nsub} groups, ours ${re.groupCount}`);
          c.subjects.forEach((s, j) => {
            const want = r.matches[j];
            const got = re.exec(s);
            const gotJson = JSON.stringify(got === null ? null : [...got]);
            compared++;
            if (want !== null) matched++;
            if (want === "hang") {
              if (got !== null)
                wrong.push(`${p} on ${JSON.stringify(s)}: glibc loops, ours ${gotJson}`);
            } else if (gotJson !== JSON.stringify(want) || re.test(s) !== (want !== null)) {
              wrong.push(
                `${p} on ${JSON.stringify(s)}: glibc ${JSON.stringify(want)}, ours ${gotJson} test ${re.test(s)}`,
              );
            }
          });
        });
        expect(wrong.slice(0, 20)).toEqual([]);
        // The grammar is meant to make matches frequent and compare many of them.
        expect(compared).toBeGreaterThan(5000);
        expect(matched).toBeGreaterThan(compared / 4);
      }, 60_000);
    },
  );
});
