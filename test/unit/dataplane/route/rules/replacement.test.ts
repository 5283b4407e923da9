/**
 * Replacement templates against carbon-c-relay 3.7.3: the table below was
 * checked with `carbon-c-relay -t`, and the last block compares seeded random
 * templates with the relay's own output (aggregate `write to`, which prints
 * the expanded name for every compute).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { METRIC_BUFSIZ, Replacement } from "../../../../../dataplane/route/rules/replacement.ts";
import { prng } from "../../../../fixtures/names.ts";
import { ccrBinary } from "../../../../fixtures/references.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

/** regexec-style offsets of a JS regex match (the patterns here match the same under POSIX). */
function offsets(re: RegExp, name: string): Int32Array {
  const m = new RegExp(re.source, "d").exec(name);
  if (m === null) throw new Error(`${re} does not match ${name}`);
  const out = new Int32Array(m.indices!.length * 2);
  m.indices!.forEach((pair, i) => {
    out[2 * i] = pair === undefined ? -1 : pair[0];
    out[2 * i + 1] = pair === undefined ? -1 : pair[1];
  });
  return out;
}

function expand(template: string, re: RegExp, name: string): string {
  const m = offsets(re, name);
  return Replacement.compile(template).apply(name, m, m.length / 2 - 1);
}

describe("Replacement", () => {
  const FBB = /^(Foo)\.(Bar)\.(Baz)$/;

  it.each([
    // template, result (all checked with carbon-c-relay -t)
    ["\\1.\\2.\\3", "Foo.Bar.Baz"],
    ["\\_1\\2.\\1\\_2.\\^3.\\0.\\10.\\.1", "foobar.Foo_2.BAZ...Foo"],
    ["\\_1\\2", "foobar"],
    ["\\1\\_2", "Foo_2"],
    ["\\1\\^2", "Foo^2"],
    ["\\1\\.2", "Foo.2"],
    ["\\^1\\2\\3", "FOOBARBAZ"],
    ["\\01", "Foo"],
    ["\\\\1", "Foo"],
    ["\\_^1", "^1"],
    ["\\._1", "_1"],
    ["\\_x", "x"],
    ["\\x\\", "x"],
    ["a\\4b", "ab"],
    ["plain", "plain"],
    ["", ""],
  ])("%s on Foo.Bar.Baz gives %s", (template, want) => {
    expect(expand(template, FBB, "Foo.Bar.Baz")).toBe(want);
  });

  it("combines dots and case: \\_.N, \\^.N, and a second dot drops the case", () => {
    const re = /^(A\.b)\.(c\.D)$/;
    expect(expand("\\_.1|\\^.2|\\.1|\\_..2|\\1", re, "A.b.c.D")).toBe("a_b|C_D|A_b|c_D|A.b");
  });

  it("keeps the name outside the match", () => {
    expect(expand("\\_2", /(Ab)\.(cD)/, "pre.Ab.cD.post")).toBe("pre.cd.post");
    // Without groups the relay reads stale offsets here (relay-conf.md); polymur uses the match.
    expect(expand("x", /b+/, "abbbc")).toBe("axc");
  });

  it("inserts nothing for a group that did not take part, or that the expression lacks", () => {
    expect(expand("[\\2][\\1]", /^(x)(A)?/, "x.A")).toBe("[][x].A");
    // Group count + 1: the relay reads an offset pair regexec never set (here it cut the
    // name short: "[][x]["); polymur inserts nothing.
    expect(expand("[\\2][\\1][\\3]", /^(x)(A)?/, "x.A")).toBe("[][x][].A");
  });

  it("reads multi-digit references (\\10 is group ten)", () => {
    const re = /^(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)$/;
    expect(expand("\\10-\\11-\\1\\0", re, "abcdefghijk")).toBe("j-k-a");
  });

  it("converts ASCII only (the relay runs in the C locale)", () => {
    expect(expand("\\^1", /^(.*)$/, "\u00e9a")).toBe("\u00e9A");
    expect(expand("\\_1", /^(.*)$/, "\u00c9A")).toBe("\u00c9a");
  });

  it("knows the highest group referenced", () => {
    expect(Replacement.compile("\\1\\12x\\_3").maxRef).toBe(12);
    expect(Replacement.compile("plain\\0").maxRef).toBe(0);
    expect(METRIC_BUFSIZ).toBe(32768);
  });
});

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "Replacement against carbon-c-relay -t",
  () => {
    it("expands 400 random templates as the relay does", () => {
      const rand = prng(0x5eed);
      // Characters a template may hold unquoted in relay.conf, weighted to the interesting ones
      // (no \4: group count + 1 reads offsets regexec never set).
      const alphabet = ["\\", "\\", "\\", "_", "^", ".", "0", "1", "2", "3", "9", "a", "Z", "-"];
      const templates: string[] = [];
      for (let i = 0; i < 400; i++) {
        let t = "";
        const n = 1 + Math.floor(rand() * 9);
        for (let j = 0; j < n; j++) t += alphabet[Math.floor(rand() * alphabet.length)];
        // A template ending in a backslash is read by the lexer differently: end on a letter.
        templates.push(`${t}q`);
      }
      const re = /(Ab)\.(c\.D)\.(x)?/;
      const name = "pre.Ab.c.D.post";
      const conf = [
        `aggregate ${re.source}`,
        "  every 10 seconds expire after 20 seconds",
        ...templates.map((t) => `  compute sum write to ${t}`),
        "  ;",
      ].join("\n");
      const dir = mkdtempSync(join(tmpdir(), "polymur-replacement-"));
      try {
        const path = join(dir, "relay.conf");
        writeFileSync(path, `${conf}\n`);
        const r = spawnSync(ccrBinary!, ["-t", "-f", path], { input: `${name} 1 2\n` });
        expect(r.status).toBe(0);
        const got = r.stdout
          .toString("latin1")
          .split("\n")
          .filter((l) => l.startsWith("    sum("))
          .map((l) => {
            const out = l.slice(l.lastIndexOf(") -> ") + 5);
            return out.slice(0, out.lastIndexOf(" 1 2"));
          });
        expect(got).toHaveLength(templates.length);
        const mine = templates.map((t) => expand(t, re, name));
        expect(mine).toEqual(got);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
