/**
 * PosixRegex construct by construct. Every expectation in the tables below is what
 * glibc 2.36's regcomp(REG_EXTENDED)/regexec answer (nmatch = groups + 1, C locale,
 * what carbon-c-relay calls): the last block runs the same tables through glibc
 * itself (test/fixtures/glibc_regex.py) and fails where they disagree, and compares a
 * corpus of tricky expressions without written-down answers.
 */
import { describe, expect, it } from "vitest";
import { PosixRegex, RegexSyntaxError } from "../../../../../dataplane/route/rules/posix-regex.ts";
import { glibcPython, runGlibcRegex } from "../../../../fixtures/glibc-regex.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

/** [expression, subject, regexec's pmatch or null]. */
type MatchCase = readonly [string, string, readonly number[] | null];

const MATCHES: Record<string, readonly MatchCase[]> = {
  "leftmost-longest, groups from the first path in priority order": [
    ["a|ab", "ab", [0, 2]],
    ["(a|ab)(c|bcd)(d*)", "abcd", [0, 4, 0, 1, 1, 4, 4, 4]],
    ["^(x|xy)(yz|z)", "xyz", [0, 3, 0, 1, 1, 3]],
    ["(db|dbproxy)(-[0-9]+)?", "dbproxy-3", [0, 9, 0, 7, 7, 9]],
    ["(db|dbproxy)(-[0-9]+)?", "db", [0, 2, 0, 2, -1, -1]],
    ["(a*)(ab)*(b*)", "ab", [0, 2, 0, 1, -1, -1, 1, 2]],
    ["(.*)\\.(.*)", "a.b.c", [0, 5, 0, 3, 4, 5]],
    ["^servers\\.([^.]+)\\.cpu\\.(.*)$", "servers.web01.cpu.user", [0, 22, 8, 13, 18, 22]],
    ["^servers\\.([^.]+)\\.cpu\\.(.*)$", "servers.web01.mem.free", null],
    ["(a)|b", "b", [0, 1, -1, -1]],
  ],
  "repeated groups report their last iteration": [
    ["(a|b)+", "abab", [0, 4, 3, 4]],
    ["(a|b)*c", "abc", [0, 3, 1, 2]],
    ["(a|b)*c", "c", [0, 1, -1, -1]],
    ["(a){2}", "aaa", [0, 2, 1, 2]],
    ["(a|b)*b", "abb", [0, 3, 1, 2]],
  ],
  "nested groups": [
    ["((a))", "a", [0, 1, 0, 1, 0, 1]],
    ["((a)(b))", "ab", [0, 2, 0, 2, 0, 1, 1, 2]],
  ],
  "+? *? ?? are a repetition repeated, greedy": [
    ["a+?", "aaa", [0, 3]],
    ["(a+?)b", "aab", [0, 3, 0, 2]],
    ["a*?", "aa", [0, 2]],
    ["a??", "a", [0, 1]],
    ["a**", "aa", [0, 2]],
  ],
  "an escaped character is itself (\\d is d)": [
    ["^x\\d+", "x123", null],
    ["^x\\d+", "xddd", [0, 4]],
    ["a\\.b", "a.b", [0, 3]],
    ["a\\.b", "axb", null],
    ["\\(\\)", "()", [0, 2]],
  ],
  bounds: [
    ["a{,2}", "aaa", [0, 2]],
    ["a{2,3}", "aaaa", [0, 3]],
    ["a{2,3}", "a", null],
    ["a{3}", "aaaa", [0, 3]],
    ["(a){0}b", "ab", [1, 2, -1, -1]],
    ["a{0,0}b", "ab", [1, 2]],
    ["a{1\\,2}", "aaa", [0, 2]],
    ["a{32767}", "a", null],
  ],
  "bracket expressions (C locale, bytes)": [
    ["[]a]", "]", [0, 1]],
    ["[^]a]", "]", null],
    ["[^]a]", "b", [0, 1]],
    ["[a-c]+", "xabcd", [1, 4]],
    ["[a-]", "-", [0, 1]],
    ["[--z]", "-", [0, 1]],
    ["[[:digit:]]+", "ab123c", [2, 5]],
    ["[[:alnum:]_]+", "a_1.b", [0, 3]],
    ["[[:punct:]]", "a.b", [1, 2]],
    ["[[:upper:]][[:lower:]]", "xAb", [1, 3]],
    ["[[:space:]]", "a\tb", [1, 2]],
    ["[[:xdigit:]]+", "xfF09g", [1, 5]],
    ["[[:alpha:]]+", "1ab2", [1, 3]],
    ["[[:print:]]+", "\x01ab \x7f", [1, 4]],
    ["[[:graph:]]+", " ab ", [1, 3]],
    ["[[:cntrl:]]", "a\x1fb", [1, 2]],
    ["[[:blank:]]", "a b", [1, 2]],
    ["[[.a.]-c]+", "abcd", [0, 3]],
    ["[[=a=]]", "a", [0, 1]],
    ["[\\]", "\\", [0, 1]],
    ["[.]", "a", null],
    ["[\xe0-\xff]+", "a\xe9\xff", [1, 3]],
    ["[^a]", "\xe9", [0, 1]],
    ["[[:alpha:]]", "\xe9", null],
    ["\xe9", "\xe9", [0, 1]],
  ],
  "anchors and dot": [
    ["^a", "ba", null],
    ["^a", "ab", [0, 1]],
    ["a$", "ab", null],
    ["a$", "ba", [1, 2]],
    ["a^b", "a^b", null],
    ["a$b", "a$b", null],
    ["(a$)", "a", [0, 1, 0, 1]],
    ["^$", "", [0, 0]],
    ["(^a|b)", "ba", [0, 1, 0, 1]],
    ["a.b", "a\nb", [0, 3]],
    ["a.b", "ab", null],
  ],
  "empty groups and alternatives": [
    ["()", "x", [0, 0, 0, 0]],
    ["", "abc", [0, 0]],
    ["a|", "b", [0, 0]],
    ["|a", "a", [0, 1]],
    ["a||b", "b", [0, 1]],
    ["(a|)b", "b", [0, 1, 0, 0]],
    ["(|a)+", "aa", [0, 2, 1, 2]],
    ["(a|())+", "aa", [0, 2, 1, 2, -1, -1]],
    ["(a*)*", "b", [0, 0, 0, 0]],
    ["(a*)*", "aa", [0, 2, 0, 2]],
    ["(a*)+", "b", [0, 0, 0, 0]],
    ["(()|a)*", "a", [0, 1, 0, 1, 0, 0]],
  ],
  "unmatched ) ] } are ordinary characters": [
    ["a)", "a)", [0, 2]],
    ["a]", "a]", [0, 2]],
    ["a}", "a}", [0, 2]],
  ],
  "GNU operators": [
    ["\\w+", "a_1.b", [0, 3]],
    ["\\W", "ab.c", [2, 3]],
    ["\\s", "a b", [1, 2]],
    ["\\S+", " ab ", [1, 3]],
    ["\\bb", "ab b", [3, 4]],
    ["a\\B", "a ab", [2, 3]],
    ["\\<b", "ab b", [3, 4]],
    ["b\\>", "bb b", [1, 2]],
    ["\\`a", "aa", [0, 1]],
    ["a\\'", "aa", [1, 2]],
  ],
  "glibc quirks": [
    // An anchor in the second copy of a repetition: glibc's DFA matches "aa" but its
    // sifting finds no path, so regexec reports no match.
    ["(^a)+", "aa", null],
    ["(^a)+", "a", [0, 1, 0, 1]],
  ],
  "a NUL ends the subject, as it ends a C string": [
    ["b", "ab\x00b", [1, 2]],
    ["b$", "ab\x00c", [1, 2]],
    ["c", "ab\x00c", null],
  ],
};

/** [expression, glibc's error, offset polymur reports]. */
const ERRORS: readonly (readonly [string, RegexSyntaxError["code"], number])[] = [
  ["(", "REG_EPAREN", 0],
  ["ab(c", "REG_EPAREN", 2],
  ["[", "REG_BADPAT", 0],
  ["[^", "REG_BADPAT", 0],
  ["[a", "REG_EBRACK", 0],
  ["[[:alpha:]", "REG_EBRACK", 0],
  ["*a", "REG_BADRPT", 0],
  ["a|*b", "REG_BADRPT", 2],
  ["(*a)", "REG_BADRPT", 1],
  ["^*", "REG_BADRPT", 1],
  ["a{", "REG_EBRACE", 1],
  ["a{1", "REG_EBRACE", 1],
  ["a{x}", "REG_BADBR", 1],
  ["a{2,1}", "REG_BADBR", 1],
  ["a{1,2,3}", "REG_BADBR", 1],
  ["a{}", "REG_BADBR", 1],
  ["a{32768}", "REG_ESIZE", 1],
  ["a{1,32768}", "REG_ESIZE", 1],
  ["a{99999999999}", "REG_ESIZE", 1],
  ["[[:foo:]]", "REG_ECTYPE", 8],
  ["[z-a]", "REG_ERANGE", 4],
  ["[a-z-9]", "REG_ERANGE", 5],
  ["[a-[:alpha:]]", "REG_ERANGE", 12],
  ["[[:alpha:]-z]", "REG_ERANGE", 11],
  ["[[.ab.]]", "REG_ECOLLATE", 7],
  ["[[=ab=]]", "REG_ECOLLATE", 7],
  ["a\\", "REG_EESCAPE", 1],
  ["\\1(a)", "REG_ESUBREG", 0],
  ["(a\\1)", "REG_ESUBREG", 2],
  ["(a)|\\1", "REG_ESUBREG", 4],
];

/** Expressions glibc accepts and polymur refuses: back-references to a closed group. */
const REFUSED = ["(a)\\1", "(a)(b)\\2", "^(.*)\\.\\1$"];

/** Tricky expressions compared with glibc directly (subjects each). */
const CORPUS: readonly (readonly [string, readonly string[]])[] = [
  ["(a|ab)(bc|c)?(d*)", ["abcd", "abc", "acd"]],
  ["(x*)(x|xy)*(y*)", ["xxyy", "xy", "y"]],
  ["((a|b)*)(c|bc)", ["abbc", "bc"]],
  ["(a?)((ab)?)(b?)", ["ab", "b"]],
  ["((a?))*b", ["aab", "b"]],
  ["(a|b|)*", ["abba", ""]],
  ["(.?){2}(b)", ["ab", "aab", "b"]],
  ["^(([^.]+)\\.)+([^.]+)$", ["a.b.c", "abc"]],
  ["([a-z]+)[.-]([0-9]{1,3})?", ["db-12.x", "x."]],
  ["^(carbon|collectd)\\.agents?\\.([^.]+)\\.(.*)", ["carbon.agents.h1.cpu", "collectd.agent.x.y"]],
  ["(^|\\.)cpu(\\.|$)", ["a.cpu", "cpu.b", "acpu"]],
  ["(a$|b)(c|$)", ["a", "bc", "b"]],
  ["\\<(a|b)+\\>", ["ab ba", "xab"]],
  ["\\B(a)", ["aa", "a"]],
  ["x{0,3}(x)", ["xxxx"]],
  ["(a{2}|a{3})*", ["aaaaa", "aaaa"]],
  ["(()|a)(b|())", ["ab", "a", ""]],
  ["(a|()){2,3}b", ["aab", "b"]],
  ["[[:digit:][:alpha:]]+", ["ab1-2"]],
  ["[^[:alnum:]]+", ["ab..c"]],
  ["a\n^b", ["a\nb"]],
  ["a$\n", ["a\n"]],
  ["(a$\n)", ["a\n"]],
  ["[\x80-\xff][^\x80-\xff]", ["\xe9a", "a\xe9"]],
];

function pmatch(m: Int32Array | null): number[] | null {
  return m === null ? null : [...m];
}

describe("PosixRegex", () => {
  for (const [title, cases] of Object.entries(MATCHES)) {
    describe(title, () => {
      it.each(cases)("%j on %j", (source, subject, want) => {
        const re = PosixRegex.compile(source);
        expect(pmatch(re.exec(subject))).toEqual(want);
        expect(re.test(subject)).toBe(want !== null);
      });
    });
  }

  it("reports groups as re_nsub counts them, also those a {0} drops", () => {
    expect(PosixRegex.compile("a").groupCount).toBe(0);
    expect(PosixRegex.compile("(a)(b(c))").groupCount).toBe(3);
    expect(PosixRegex.compile("(a){0}(b)").groupCount).toBe(2);
    expect(PosixRegex.compile("\\(a\\)").groupCount).toBe(0);
    const re = PosixRegex.compile("x(a)?");
    expect(re.source).toBe("x(a)?");
    expect(re.exec("x")).toEqual(Int32Array.from([0, 1, -1, -1]));
  });

  it("ends the expression at a NUL, as regcomp reads a C string", () => {
    const re = PosixRegex.compile("a\0(");
    expect(re.groupCount).toBe(0);
    expect(re.source).toBe("a\0(");
    expect(re.test("ba")).toBe(true);
  });

  it.each(ERRORS)("refuses %j with %s as regcomp does", (source, code, offset) => {
    let err: unknown;
    try {
      PosixRegex.compile(source);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RegexSyntaxError);
    expect((err as RegexSyntaxError).code).toBe(code);
    expect((err as RegexSyntaxError).offset).toBe(offset);
  });

  it("says why in regerror's words", () => {
    expect(() => PosixRegex.compile("(a")).toThrow("Unmatched ( or \\(");
    expect(() => PosixRegex.compile("[a")).toThrow("Unmatched [, [^, [:, [., or [=");
    expect(() => PosixRegex.compile("+a")).toThrow("Invalid preceding regular expression");
  });

  it.each(REFUSED)("refuses the back-reference in %j (glibc accepts it)", (source) => {
    expect(() => PosixRegex.compile(source)).toThrow(
      expect.objectContaining({ code: "BACKREF_UNSUPPORTED" }),
    );
  });

  it("refuses an expression glibc would take minutes to compile", () => {
    expect(() => PosixRegex.compile("(((\\<|[ab])(\\B)+){1,}){3}")).toThrow(
      expect.objectContaining({ code: "REG_ESIZE" }),
    );
  });

  it("reports no match where glibc's regexec would loop forever", () => {
    // glibc's set_regs goes round an empty loop for ever on this one.
    const re = PosixRegex.compile("(()|a)**");
    expect(re.exec("a")).toBeNull();
    expect(re.test("a")).toBe(false);
    expect(pmatch(re.exec("b"))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("test() never hands a backtracking engine what it would take ages on", () => {
    // A backtracking engine (a plain JavaScript RegExp) needs 2^50 or n^5 steps on
    // these; test() keeps them on glibc's DFA.
    expect(PosixRegex.compile("^(a|aa)+$").test(`${"a".repeat(50)}b`)).toBe(false);
    expect(PosixRegex.compile("^(.*)(.*)(.*)(.*)(.*)x$").test("a".repeat(3000))).toBe(false);
    expect(PosixRegex.compile("^(.*)\\.(.*)\\.(.*)\\.(.*)$").test(".".repeat(2000))).toBe(true);
    expect(PosixRegex.compile("^([^.]+\\.)*x$").test(`${"a.".repeat(2000)}y`)).toBe(false);
  });

  it("has no exponential blowup on nested repetitions (a DFA, like glibc)", () => {
    const re = PosixRegex.compile("(a|aa)*(a*)*b");
    const s = "a".repeat(2000);
    expect(re.test(s)).toBe(false);
    expect(re.exec(s)).toBeNull();
    expect(pmatch(PosixRegex.compile("^(.*)\\.(.*)$").exec(`${"x.".repeat(5000)}y`))).toEqual([
      0, 10001, 0, 9999, 10000, 10001,
    ]);
  });

  describe.skipIf(skipUnlessAvailable("python3 with glibc", glibcPython !== undefined))(
    "against glibc itself",
    () => {
      it("the tables above are glibc's answers", () => {
        const matches = Object.values(MATCHES).flat();
        const cases = [
          ...matches.map(([pattern, subject]) => ({ pattern, subjects: [subject] })),
          ...ERRORS.map(([pattern]) => ({ pattern, subjects: [] })),
          ...REFUSED.map((pattern) => ({ pattern, subjects: [] })),
        ];
        const results = runGlibcRegex(cases);
        const wrong: string[] = [];
        matches.forEach(([pattern, subject, want], i) => {
          const got = results[i]!.matches[0];
          if (JSON.stringify(got) !== JSON.stringify(want)) {
            wrong.push(
              `${JSON.stringify(pattern)} on ${JSON.stringify(subject)}: glibc ${JSON.stringify(got)}`,
            );
          }
        });
        ERRORS.forEach(([pattern, code], i) => {
          const r = results[matches.length + i]!;
          let ours = "";
          try {
            PosixRegex.compile(pattern);
          } catch (e) {
            ours = (e as Error).message;
          }
          if (r.error === null || r.message !== ours) {
            wrong.push(`${JSON.stringify(pattern)} (${code}): glibc says ${r.message}`);
          }
        });
        REFUSED.forEach((pattern, i) => {
          if (results[matches.length + ERRORS.length + i]!.error !== null) {
            wrong.push(`${JSON.stringify(pattern)}: glibc refuses it too`);
          }
        });
        expect(wrong).toEqual([]);
      });

      it("tricky expressions match as in glibc", () => {
        const results = runGlibcRegex(CORPUS.map(([pattern, subjects]) => ({ pattern, subjects })));
        const wrong: string[] = [];
        CORPUS.forEach(([pattern, subjects], i) => {
          const re = PosixRegex.compile(pattern);
          expect(re.groupCount).toBe(results[i]!.nsub);
          subjects.forEach((s, j) => {
            const want = results[i]!.matches[j];
            const got = pmatch(re.exec(s));
            if (JSON.stringify(got) !== JSON.stringify(want) || re.test(s) !== (want !== null)) {
              wrong.push(
                `${JSON.stringify(pattern)} on ${JSON.stringify(s)}: glibc ${JSON.stringify(want)}, ours ${JSON.stringify(got)}`,
              );
            }
          });
        });
        expect(wrong).toEqual([]);
      });

      it("glibc's regexec loops where polymur reports no match", () => {
        const [r] = runGlibcRegex([{ pattern: "(()|a)**", subjects: ["a"] }], { hangSeconds: 1 });
        expect(r!.matches[0]).toBe("hang");
      });
    },
  );
});
