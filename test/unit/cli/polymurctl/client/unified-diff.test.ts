import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { unifiedDiff } from "../../../../../cli/polymurctl/client/unified-diff.ts";

const dir = mkdtempSync(join(tmpdir(), "polymur-diff-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** GNU diff -u (with --minimal: the shortest script, as Myers' is), labels as ours. */
function gnuDiff(a: string, b: string): string | null {
  writeFileSync(join(dir, "a"), a, "latin1");
  writeFileSync(join(dir, "b"), b, "latin1");
  const r = spawnSync(
    "diff",
    ["-u", "--minimal", "--label", "A", "--label", "B", join(dir, "a"), join(dir, "b")],
    { encoding: "latin1" },
  );
  if (r.error !== undefined) return null;
  return r.stdout;
}
const hasDiff = gnuDiff("", "") !== null;

/** Applies a unified diff to `a` (checking every context and removed line). */
function patch(a: string, diff: string): string {
  const old = a.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  const lines = diff.split("\n");
  const out: string[] = [];
  let at = 0;
  let i = 2;
  while (i < lines.length && lines[i] !== "") {
    const m = /^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@$/.exec(lines[i]!);
    if (m === null) throw new Error(`bad hunk header ${lines[i]}`);
    const start = Number(m[1]) - (m[2] === "0" ? 0 : 1);
    while (at < start) out.push(old[at++]!);
    i++;
    while (i < lines.length && lines[i] !== "" && !lines[i]!.startsWith("@@")) {
      const kind = lines[i]![0];
      let text = `${lines[i]!.slice(1)}\n`;
      if (lines[i + 1] === "\\ No newline at end of file") {
        text = text.slice(0, -1);
        i++;
      }
      if (kind !== "+") {
        if (old[at] !== text) throw new Error(`line ${at + 1} is ${old[at]}, diff says ${text}`);
        at++;
      }
      if (kind !== "-") out.push(text);
      i++;
    }
  }
  while (at < old.length) out.push(old[at++]!);
  return out.join("");
}

const changed = (d: string) =>
  d.split("\n").filter((l) => /^[-+]/.test(l) && !/^(---|\+\+\+) /.test(l)).length;

describe("unifiedDiff", () => {
  it("prints nothing for equal texts", () => {
    expect(unifiedDiff("a\nb\n", "a\nb\n", "A", "B")).toBe("");
    expect(unifiedDiff("", "", "A", "B")).toBe("");
  });

  it("prints hunks with three lines of context, as diff -u", () => {
    const a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n16\n";
    const b = "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\nsixteen\n17\n";
    expect(unifiedDiff(a, b, "A", "B")).toBe(
      [
        "--- A",
        "+++ B",
        "@@ -1,6 +1,6 @@",
        " 1",
        " 2",
        "-3",
        "+three",
        " 4",
        " 5",
        " 6",
        "@@ -13,4 +13,5 @@",
        " 13",
        " 14",
        " 15",
        "-16",
        "+sixteen",
        "+17",
        "",
      ].join("\n"),
    );
  });

  it("an empty side, and a last line without a newline", () => {
    expect(unifiedDiff("", "x\ny\n", "none", "B")).toBe(
      "--- none\n+++ B\n@@ -0,0 +1,2 @@\n+x\n+y\n",
    );
    expect(unifiedDiff("x\n", "", "A", "B")).toBe("--- A\n+++ B\n@@ -1 +0,0 @@\n-x\n");
    expect(unifiedDiff("x\ny\n", "x\ny", "A", "B")).toBe(
      "--- A\n+++ B\n@@ -1,2 +1,2 @@\n x\n-y\n+y\n\\ No newline at end of file\n",
    );
  });

  it.skipIf(!hasDiff)("agrees with GNU diff: the same shortest change, and it applies", () => {
    const line = fc.constantFrom("a", "b", "c", "d", "match * send to x;", "", "\xe9");
    const text = fc
      .tuple(fc.array(line, { maxLength: 30 }), fc.boolean())
      .map(([ls, nl]) => (ls.length === 0 ? "" : ls.join("\n") + (nl ? "\n" : "")));
    fc.assert(
      fc.property(text, text, (a, b) => {
        const ours = unifiedDiff(a, b, "A", "B");
        const gnu = gnuDiff(a, b)!;
        expect(ours === "").toBe(gnu === "");
        if (ours === "") return;
        expect(changed(ours)).toBe(changed(gnu));
        expect(patch(a, ours)).toBe(b);
      }),
      { seed: 10, numRuns: 150 },
    );
  });

  it("a very different pair of texts is still a correct diff", () => {
    const a = Array.from({ length: 3000 }, (_, i) => `a${i}\n`).join("");
    const b = Array.from({ length: 3000 }, (_, i) => `b${i}\n`).join("");
    const d = unifiedDiff(a, b, "A", "B");
    expect(changed(d)).toBe(6000);
    expect(patch(a, d)).toBe(b);
  });
});
