import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NamePairs, requiredPairs } from "../../../../../dataplane/route/rules/bigram-filter.ts";

/** A name that contains one string of each list (the lists' promise), from random parts. */
const CHARS = ["a", "b", ".", "_", "x", "\u00e9", "\u00ff", "\u0100", "9", "\0"];
const text = fc.array(fc.constantFrom(...CHARS), { maxLength: 8 }).map((c) => c.join(""));

describe("bigram filter", () => {
  it("never refuses a name that contains one string of each list", () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(text, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
        fc.array(text, { minLength: 4, maxLength: 4 }),
        fc.nat(),
        (lists, fill, pick) => {
          const need = requiredPairs(lists);
          if (need === null) return;
          // one string of each list, with other text around them
          const name = lists.map((l, i) => `${fill[i % 4]}${l[(pick + i) % l.length]}`).join("");
          const pairs = new NamePairs();
          pairs.reset(`${name}${fill[3]}`);
          expect(pairs.has(need)).toBe(true);
        },
      ),
      { seed: 7, numRuns: 3000 },
    );
  });

  it("refuses a name without a pair every string of a list has", () => {
    const need = requiredPairs([["host07."], [".gc.x", ".gc.y"]])!;
    const pairs = new NamePairs();
    pairs.reset("servers.web001.cpu.cpu0.user");
    expect(pairs.has(need)).toBe(false);
    pairs.reset("a.host07.b.gc.y");
    expect(pairs.has(need)).toBe(true);
    // a rename: the pairs of the new name
    pairs.reset("servers.web001");
    expect(pairs.has(need)).toBe(false);
  });

  it("needs nothing from one-character strings or lists without a common pair", () => {
    expect(requiredPairs([["a"], ["b"]])).toBeNull();
    expect(requiredPairs([["ab", "cd"]])).toBeNull();
    expect(requiredPairs([[""]])).toBeNull();
    expect(requiredPairs([])).toBeNull();
  });
});
